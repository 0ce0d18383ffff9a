/**
 * Neighbour maintenance: which members to link to, dialing them (bounded concurrency,
 * exponential back-off), members found unreachable, keep-alives and pruning.
 * @module
 */
import { DIAL_BACKOFF, LINK_IDLE_TIMEOUT, MAX_CONCURRENT_DIALS, PING_INTERVAL, UNREACHABLE_AFTER } from './constants.js';
import { PING_FRAME } from './frames.js';
import { desiredNeighbors, type LinkSet } from './links.js';
import type { Member, MemberTable } from './member.js';

/** What maintenance needs from the node. */
export interface NeighbourDeps {
  readonly links: LinkSet;
  readonly members: MemberTable;
  readonly linksPerBucket: number;
  readonly maxLinks: number;
  now(): number;
  /** Dials and registers a member; rejects when the dial fails. */
  dial(m: Member): Promise<void>;
}

/** Keeps a node's neighbour set healthy. */
export class Neighbours {
  readonly #d: NeighbourDeps;
  readonly #dialing = new Set<string>();
  readonly #backoff = new Map<string, { until: number; fails: number }>();
  /** Members we failed to dial repeatedly (id → bucket); not counted for coverage until heard from again. */
  readonly #unreachable = new Map<string, number>();
  readonly #unreachableCount = new Int32Array(257);
  #desired: { version: number; ids: Set<string>; list: Member[] } | undefined;

  constructor(d: NeighbourDeps) {
    this.#d = d;
  }

  /** Live members in `bucket` that we do not consider unreachable. */
  reachableCount(bucket: number): number {
    return this.#d.members.bucketCount(bucket) - (this.#unreachableCount[bucket] ?? 0);
  }

  /** Whether we gave up dialing this member for now. */
  isUnreachable(idHex: string): boolean {
    return this.#unreachable.has(idHex);
  }

  /** The member proved alive (a link, a newer announcement) or is gone: forget failures. */
  reachable(idHex: string): void {
    this.#backoff.delete(idHex);
    const b = this.#unreachable.get(idHex);
    if (b === undefined) return;
    this.#unreachable.delete(idHex);
    this.#unreachableCount[b] = (this.#unreachableCount[b] ?? 1) - 1;
  }

  /** The members we want as neighbours (cached per membership version). */
  desired(): { ids: Set<string>; list: Member[] } {
    const c = this.#desired;
    if (c && c.version === this.#d.members.version) return c;
    const list = desiredNeighbors(this.#d.members.selfId, this.#d.members.alive(), this.#d.linksPerBucket);
    this.#desired = { version: this.#d.members.version, ids: new Set(list.map((m) => m.idHex)), list };
    return this.#desired;
  }

  /** One maintenance round: keep-alives, dials of missing neighbours, pruning over the cap. */
  tick(): void {
    const { links } = this.#d;
    const mono = performance.now();
    for (const l of [...links.all]) {
      if (mono - l.lastRecv > LINK_IDLE_TIMEOUT) {
        l.retired = true;
        l.io.reset(); // a silent peer: dead, or cut off
      } else if (mono - l.lastSent > PING_INTERVAL) l.send(PING_FRAME);
    }
    const now = this.#d.now();
    const { ids, list } = this.desired();
    for (const m of list) {
      if (this.#dialing.size >= MAX_CONCURRENT_DIALS) break;
      if (links.get(m.idHex) || this.#dialing.has(m.idHex)) continue;
      const b = this.#backoff.get(m.idHex);
      if (b && b.until > now) continue;
      this.#dial(m);
    }
    let excess = links.size - this.#d.maxLinks;
    if (excess <= 0) return;
    // Over the cap: close links we dialed to members we no longer want (they do the same).
    for (const l of [...links.values()]) {
      if (excess <= 0) break;
      if (l.initiator && !ids.has(l.remoteIdHex)) {
        l.retired = true;
        void l.io.close();
        excess--;
      }
    }
  }

  #dial(m: Member): void {
    this.#dialing.add(m.idHex);
    this.#d
      .dial(m)
      .then(
        () => this.reachable(m.idHex),
        () => {
          const b = this.#backoff.get(m.idHex) ?? { until: 0, fails: 0 };
          b.fails++;
          b.until = this.#d.now() + DIAL_BACKOFF * 2 ** Math.min(b.fails - 1, 6);
          this.#backoff.set(m.idHex, b);
          if (b.fails >= UNREACHABLE_AFTER && !this.#d.links.get(m.idHex) && !this.#unreachable.has(m.idHex)) {
            this.#unreachable.set(m.idHex, m.bucket);
            this.#unreachableCount[m.bucket] = (this.#unreachableCount[m.bucket] ?? 0) + 1;
          }
        },
      )
      .finally(() => this.#dialing.delete(m.idHex));
  }
}
