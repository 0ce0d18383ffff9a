/**
 * Routing of signed messages over the neighbour links.
 *
 * **Directed (DATA)** — greedy XOR routing: each node hands the message to its neighbour
 * closest (XOR) to the target, provided that neighbour is strictly closer than itself; the
 * neighbour set (one link into every non-empty bucket) guarantees such a neighbour exists
 * once membership has converged, and strict progress rules out loops. A node with no closer
 * neighbour (views still converging, target gone) switches the message to flood mode: it goes
 * to every link, each node forwarding it once (seen-cache), straight to the target when
 * linked — only for targets that are known members, so a message to a made-up id cannot make
 * every node send a frame on every link. `duplicates: k` sends k extra copies to the next-closest distinct neighbours.
 *
 * **Broadcast (BCAST)** — bucket tree: a node responsible for `limit` sends one copy (or
 * `redundancy` copies) into each of its buckets `b ≥ limit`, with limit `b + 1`; the receivers
 * then cover exactly that bucket. With converged views that is n − 1 frames for n nodes
 * (times the redundancy). When a bucket has known members but no link, the node falls back to
 * flooding. When those members are ones it failed to dial (behind a NAT, or crashed) it
 * does not flood: it hands the bucket to the neighbour best placed to reach them by lowering
 * the limit of that neighbour's copy (the surplus it covers arrives as dropped duplicates).
 * A node that receives a copy with a smaller limit than it already served covers the
 * difference; a flood copy makes it flood once.
 *
 * Every node verifies a message (signature, timestamp window) the first time it sees its id,
 * before forwarding or delivering it; invalid ones count against the link they came on.
 * Relaying never waits for the application.
 * @module
 */
import { MAX_HOPS } from './constants.js';
import { envelopeProblem, FRAME_BCAST, MODE_FLOOD, MODE_NORMAL, relayFrame, type Envelope } from './envelope.js';
import type { Link } from './link.js';
import type { LinkSet } from './links.js';
import { SeenCache } from './seen.js';
import type { SwarmStats } from './types.js';

/** Broadcast progress of one message at this node. */
interface BcastState {
  /** Smallest limit served so far (257 = none). */
  limit: number;
  /** Already flooded. */
  flooded: boolean;
}

/** What the router needs from the node. */
export interface RouterDeps {
  readonly selfId: Buffer;
  readonly protocolHash: Buffer;
  readonly links: LinkSet;
  /** Whether `idHex` is a live member we know (only those are worth a flood). */
  isMember(idHex: string): boolean;
  /** Live members in a bucket that we can reach (for the broadcast flood fallback). */
  reachable(bucket: number): number;
  /** Live members in a bucket, reachable or not. */
  memberCount(bucket: number): number;
  readonly stats: SwarmStats;
  readonly redundancy: number;
  now(): number;
  /** A verified message for us. */
  deliver(env: Envelope, from: Link | undefined): void;
  /** A link sent something invalid. */
  penalize(link: Link, reason: string): void;
}

/** Routes DATA and BCAST frames. */
export class Router {
  readonly seenData: SeenCache<true>;
  readonly seenBcast: SeenCache<BcastState>;

  constructor(
    private readonly d: RouterDeps,
    seenSize: number,
    seenTtl: number,
  ) {
    this.seenData = new SeenCache(seenSize, seenTtl);
    this.seenBcast = new SeenCache(seenSize, seenTtl);
  }

  #send(link: Link, frame: Buffer, type: number): boolean {
    if (link.send(frame)) {
      if (type === FRAME_BCAST) this.d.stats.framesSent.bcast++;
      else this.d.stats.framesSent.data++;
      return true;
    }
    this.d.stats.sendDropped++;
    return false;
  }

  // ----------------------------------------------------------------------------- directed --

  /**
   * Sends a message we originate; returns the number of first hops tried (0 = delivered
   * locally, or no route) and how many of them took the frame (the others were congested).
   */
  originateData(env: Envelope, duplicates: number): { hops: number; accepted: number } {
    const now = this.d.now();
    this.seenData.set(SeenCache.key(env.originKey, env.msgId), true, now, env.timestamp);
    if (env.target.equals(this.d.selfId)) {
      this.d.deliver(env, undefined);
      return { hops: 0, accepted: 0 };
    }
    const direct = this.d.links.get(env.target.toString('hex'));
    const hops = direct ? [direct, ...this.d.links.closerHops(env.target, direct)] : this.d.links.closerHops(env.target);
    if (hops.length === 0) {
      if (!this.d.isMember(env.target.toString('hex'))) return { hops: 0, accepted: 0 };
      return { hops: this.d.links.size, accepted: this.#flood(env, undefined, 0) };
    }
    const use = hops.slice(0, 1 + Math.max(0, duplicates));
    if (use.length < 1 + duplicates) {
      // Not enough strictly-closer neighbours: any other link will still route greedily from there.
      for (const l of this.d.links.others()) {
        if (use.length >= 1 + duplicates) break;
        if (!use.includes(l)) use.push(l);
      }
    }
    const frame = relayFrame(env, 0, MODE_NORMAL, 0);
    let accepted = 0;
    for (const l of use) if (this.#send(l, frame, env.type)) accepted++;
    return { hops: use.length, accepted };
  }

  /** A DATA frame from a neighbour. */
  onData(link: Link, env: Envelope): void {
    const now = this.d.now();
    if (this.seenData.get(SeenCache.key(env.originKey, env.msgId), now) || this.seenData.forgotten(SeenCache.key(env.originKey, env.msgId), env.timestamp)) {
      this.d.stats.duplicates++;
      return;
    }
    const problem = envelopeProblem(env, this.d.protocolHash, now);
    if (problem) {
      this.d.penalize(link, problem);
      return;
    }
    this.seenData.set(SeenCache.key(env.originKey, env.msgId), true, now, env.timestamp);
    if (env.target.equals(this.d.selfId)) {
      this.d.deliver(env, link);
      return;
    }
    const hops = env.hops + 1;
    if (hops > MAX_HOPS) return;
    this.d.stats.relayed++;
    const direct = this.d.links.get(env.target.toString('hex'));
    if (direct) {
      this.#send(direct, relayFrame(env, hops, env.mode, 0), env.type);
      return;
    }
    if (env.mode === MODE_NORMAL) {
      const next = this.d.links.closerHops(env.target, link)[0];
      if (next) {
        this.#send(next, relayFrame(env, hops, MODE_NORMAL, 0), env.type);
        return;
      }
    }
    // No neighbour closer to the target: flood — but only for a member we know, so a message
    // to a made-up id cannot make every node send a frame on every link.
    if (this.d.isMember(env.target.toString('hex'))) this.#flood(env, link, hops);
  }

  #flood(env: Envelope, except: Link | undefined, hops: number): number {
    this.d.stats.floods++;
    const frame = relayFrame(env, hops, MODE_FLOOD, 0);
    let accepted = 0;
    for (const l of this.d.links.others(except)) if (this.#send(l, frame, env.type)) accepted++;
    return accepted;
  }

  // ---------------------------------------------------------------------------- broadcast --

  /** Sends a broadcast we originate. */
  originateBcast(env: Envelope): void {
    const st: BcastState = { limit: 257, flooded: false };
    this.seenBcast.set(SeenCache.key(env.originKey, env.msgId), st, this.d.now(), env.timestamp);
    this.#fanOut(env, undefined, 0, 256, st, 0);
  }

  /** A BCAST frame from a neighbour. */
  onBcast(link: Link, env: Envelope): void {
    const now = this.d.now();
    const st = this.seenBcast.get(SeenCache.key(env.originKey, env.msgId), now);
    const hops = env.hops + 1;
    if (st) {
      this.d.stats.duplicates++;
      if (st.flooded || hops > MAX_HOPS) return;
      if (env.mode === MODE_FLOOD) this.#floodBcast(env, link, hops, st);
      else if (env.limit < st.limit) this.#fanOut(env, link, env.limit, st.limit, st, hops);
      return;
    }
    if (this.seenBcast.forgotten(SeenCache.key(env.originKey, env.msgId), env.timestamp)) {
      this.d.stats.duplicates++;
      return;
    }
    const problem = envelopeProblem(env, this.d.protocolHash, now);
    if (problem) {
      this.d.penalize(link, problem);
      return;
    }
    const fresh: BcastState = { limit: 257, flooded: false };
    this.seenBcast.set(SeenCache.key(env.originKey, env.msgId), fresh, now, env.timestamp);
    if (hops <= MAX_HOPS) {
      if (env.mode === MODE_FLOOD) this.#floodBcast(env, link, hops, fresh);
      else this.#fanOut(env, link, env.limit, 256, fresh, hops);
    }
    if (!env.exclude.some((x) => x.equals(this.d.selfId))) this.d.deliver(env, link);
  }

  #floodBcast(env: Envelope, except: Link | undefined, hops: number, st: BcastState): void {
    st.flooded = true;
    st.limit = 0;
    const frame = relayFrame(env, hops, MODE_FLOOD, 0);
    for (const l of this.d.links.others(except)) this.#send(l, frame, FRAME_BCAST);
  }

  /** Serves buckets [from, to) of the tree; falls back to flooding when a bucket has members but no link. */
  #fanOut(env: Envelope, except: Link | undefined, from: number, to: number, st: BcastState, hops: number): void {
    const r = this.d.redundancy;
    const sends: [Link, number][] = [];
    let gap = -1;
    for (let b = from; b < to && b < 256; b++) {
      const links = this.d.links.bucket(b);
      let n = 0;
      for (const l of links) {
        if (n >= r) break;
        if (l === except) continue;
        sends.push([l, b + 1]);
        n++;
      }
      if (n > 0) continue;
      const sender = except && except.member.bucket === b ? 1 : 0;
      if (this.d.reachable(b) > sender) {
        this.#floodBcast(env, except, hops, st);
        return;
      }
      if (gap < 0 && this.d.memberCount(b) > sender) gap = b;
    }
    st.limit = Math.min(st.limit, from);
    if (gap >= 0) this.#delegate(gap, except, sends);
    for (const [l, limit] of sends) this.#send(l, relayFrame(env, hops, MODE_NORMAL, limit), FRAME_BCAST);
  }

  /**
   * Bucket `gap` holds members we cannot dial, and we have no link into it; another node may
   * reach them. Picks the neighbour in the nearest linked bucket `x` above `gap` (its bucket
   * `gap` is our bucket `gap`), else the nearest below (its bucket `x` holds them), and lowers
   * the limit of its copy to `min(gap, x)` so that it covers them.
   */
  #delegate(gap: number, except: Link | undefined, sends: [Link, number][]): void {
    const rank = (x: number): number => (x > gap ? x - gap : 256 + gap - x);
    let best: Link | undefined;
    for (const l of this.d.links.values()) {
      if (l !== except && (!best || rank(l.member.bucket) < rank(best.member.bucket))) best = l;
    }
    if (!best) return;
    const limit = Math.min(gap, best.member.bucket);
    const i = sends.findIndex(([l]) => l === best);
    if (i < 0) sends.push([best, limit]);
    else sends[i] = [best, Math.min(limit, (sends[i] as [Link, number])[1])];
  }
}
