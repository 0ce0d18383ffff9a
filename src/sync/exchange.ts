/**
 * Anti-entropy of a synced dict: the digest exchange that brings members' records together.
 *
 * A dict sends its digest to each new neighbour and, every `syncInterval`, to one random
 * neighbour. A node receiving a digest that differs from its own answers with its whole state
 * (every record it holds); the requester merges what is new to it and re-broadcasts that.
 *
 * A state reply costs the replier far more than the digest cost its sender (one signature per
 * message over the whole state), so replies are bounded:
 * - only neighbours (nodes we hold a link to, which proved their key on it) are answered —
 *   digests are only ever sent to neighbours, and a node signing under throw-away keys is no
 *   one's neighbour; others' digests are counted (`digestsIgnored`) and dropped before any work;
 * - one reply per neighbour per {@link MIN_STATE_REPLY_INTERVAL}: digests arriving sooner are
 *   coalesced into one reply when the interval has passed, sent only if that neighbour's latest
 *   digest still differs from ours;
 * - the encoded state messages are built once per state and reused (for a short while) by
 *   every reply until the records change.
 * @module
 */
import type { SwarmPeer } from '../swarm/peer.js';
import type { SwarmPeerInfo } from '../swarm/types.js';
import { KIND_SYNC, MIN_STATE_REPLY_INTERVAL, MSG_DIGEST, MSG_STATE } from './constants.js';
import type { RecordStore } from './store.js';
import { recordMessages, syncMessage } from './wire.js';

/** Counters of a dict's digest exchange. */
export interface SyncDictStats {
  /** Digests received. */
  digestsReceived: number;
  /** Digests ignored: their sender is not a neighbour (no link to it), so nothing was sent back. */
  digestsIgnored: number;
  /** Full-state replies sent. */
  stateReplies: number;
  /** Digests whose reply was held back by {@link MIN_STATE_REPLY_INTERVAL} (at most one reply follows per interval). */
  stateRepliesCoalesced: number;
}

/** Zeroed counters. */
export function emptySyncStats(): SyncDictStats {
  return { digestsReceived: 0, digestsIgnored: 0, stateReplies: 0, stateRepliesCoalesced: 0 };
}

/** Per requester: when it last got our state, and the digest a held-back reply answers. */
interface Requester {
  last: number;
  theirs: Buffer | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** Size of the requester table that triggers a sweep of stale entries. */
const SWEEP_MIN = 64;

/** The digest exchange of one dict. */
export class AntiEntropy {
  readonly #peer: SwarmPeer;
  readonly #namespace: Buffer;
  readonly #store: RecordStore;
  readonly #requesters = new Map<string, Requester>();
  #sweepAt = SWEEP_MIN;
  #cache: { version: number; messages: Buffer[]; timer: NodeJS.Timeout } | undefined;
  #closed = false;
  /** Counters. */
  readonly stats: SyncDictStats = emptySyncStats();

  constructor(peer: SwarmPeer, namespace: Buffer, store: RecordStore) {
    this.#peer = peer;
    this.#namespace = namespace;
    this.#store = store;
  }

  #usable(): boolean {
    return !this.#closed && this.#peer.bound && !this.#peer.closed;
  }

  /** Whether we hold a link to `idHex`. */
  #isNeighbour(idHex: string): boolean {
    return this.#usable() && this.#peer.core.links.get(idHex) !== undefined;
  }

  /** Sends our digest to `to` (it answers with its state if it differs). */
  sendDigest(to: Buffer): void {
    if (!this.#usable()) return;
    this.#peer.sendInternal(KIND_SYNC, to, syncMessage(MSG_DIGEST, this.#namespace, this.#store.digest()));
  }

  /** One anti-entropy round: our digest to a random neighbour. */
  round(): void {
    if (!this.#usable()) return;
    const nbs = this.#peer.peers;
    const nb = nbs[Math.floor(Math.random() * nbs.length)];
    try {
      if (nb) this.sendDigest(nb.id);
    } catch {
      // The neighbour went away in the meantime: the next round picks another.
    }
  }

  /** A digest from `src`: answers with our state if they differ, within the bounds above. */
  onDigest(theirs: Buffer, src: SwarmPeerInfo): void {
    this.stats.digestsReceived++;
    if (!this.#isNeighbour(src.idHex)) {
      this.stats.digestsIgnored++;
      return;
    }
    const q = this.#requesters.get(src.idHex);
    if (theirs.equals(this.#store.digest())) {
      if (q) q.theirs = undefined; // it caught up: a held-back reply has nothing left to answer
      return;
    }
    const now = performance.now();
    if (q && now - q.last < MIN_STATE_REPLY_INTERVAL) {
      this.stats.stateRepliesCoalesced++;
      q.theirs = theirs;
      if (!q.timer) {
        q.timer = setTimeout(() => this.#heldBack(src), q.last + MIN_STATE_REPLY_INTERVAL - now);
        q.timer.unref();
      }
      return;
    }
    this.#reply(src, now);
  }

  /** The interval since the last reply to `src` has passed: answer its latest digest if it still differs. */
  #heldBack(src: SwarmPeerInfo): void {
    const q = this.#requesters.get(src.idHex);
    if (!q) return;
    q.timer = undefined;
    const theirs = q.theirs;
    q.theirs = undefined;
    if (!theirs || !this.#isNeighbour(src.idHex) || theirs.equals(this.#store.digest())) return;
    this.#reply(src, performance.now());
  }

  #reply(src: SwarmPeerInfo, now: number): void {
    this.#sweep(now);
    const q = this.#requesters.get(src.idHex);
    if (q) {
      q.last = now;
      q.theirs = undefined;
    } else this.#requesters.set(src.idHex, { last: now, theirs: undefined, timer: undefined });
    try {
      for (const m of this.#stateMessages()) this.#peer.sendInternal(KIND_SYNC, src.id, m);
      this.stats.stateReplies++;
    } catch {
      // The link went down meanwhile (no route): the requester asks again when it is back.
    }
  }

  /** Our state as encoded messages, built once per state (kept briefly for further replies). */
  #stateMessages(): Buffer[] {
    const version = this.#store.version;
    if (this.#cache?.version === version) return this.#cache.messages;
    this.#dropCache();
    const messages = recordMessages(MSG_STATE, this.#namespace, this.#store.raws());
    const timer = setTimeout(() => this.#dropCache(), MIN_STATE_REPLY_INTERVAL);
    timer.unref();
    this.#cache = { version, messages, timer };
    return messages;
  }

  #dropCache(): void {
    if (this.#cache) clearTimeout(this.#cache.timer);
    this.#cache = undefined;
  }

  /** Forgets requesters whose interval passed and that wait for nothing (amortised: only when the table doubled). */
  #sweep(now: number): void {
    if (this.#requesters.size < this.#sweepAt) return;
    for (const [id, q] of this.#requesters) if (!q.timer && now - q.last >= MIN_STATE_REPLY_INTERVAL) this.#requesters.delete(id);
    this.#sweepAt = Math.max(SWEEP_MIN, 2 * this.#requesters.size);
  }

  /** Stops: cancels held-back replies and drops the cache. */
  close(): void {
    this.#closed = true;
    for (const q of this.#requesters.values()) if (q.timer) clearTimeout(q.timer);
    this.#requesters.clear();
    this.#dropCache();
  }
}
