/**
 * The neighbour set of a node: at most one active link per neighbour (simultaneous dials are
 * resolved deterministically), links indexed by XOR bucket, next-hop choice for greedy
 * routing, and the choice of which members a node wants as neighbours.
 * @module
 */
import { commonPrefix, compareDistance } from './codec.js';
import type { Link } from './link.js';
import type { Member } from './member.js';

/**
 * Of two links to the same neighbour, which one both ends keep: the one dialed by the node
 * with the smaller id; between two dialed by the same node (a reconnect), the newer one.
 */
export function preferLink(selfId: Buffer, existing: Link, incoming: Link): Link {
  const dialer = (l: Link): Buffer => (l.initiator ? selfId : l.remoteId);
  const c = Buffer.compare(dialer(existing), dialer(incoming));
  if (c === 0) return incoming;
  return c < 0 ? existing : incoming;
}

/** Active links by neighbour id and by bucket. */
export class LinkSet {
  readonly #byId = new Map<string, Link>();
  readonly #byBucket: Link[][] = Array.from({ length: 257 }, () => []);
  /** Every open link, including duplicates about to close. */
  readonly all = new Set<Link>();

  constructor(readonly selfId: Buffer) {}

  /** Number of neighbours. */
  get size(): number {
    return this.#byId.size;
  }

  /** Active link to a neighbour. */
  get(idHex: string): Link | undefined {
    return this.#byId.get(idHex);
  }

  /** Active links. */
  values(): IterableIterator<Link> {
    return this.#byId.values();
  }

  /** Active links whose neighbour shares exactly `bucket` leading bits with us. */
  bucket(bucket: number): readonly Link[] {
    return this.#byBucket[bucket] ?? [];
  }

  /**
   * Adds a link. Returns the link that lost a duplicate race (to be closed), if any; it may be
   * `link` itself.
   */
  add(link: Link): Link | undefined {
    this.all.add(link);
    const cur = this.#byId.get(link.remoteIdHex);
    if (!cur) {
      this.#set(link);
      return undefined;
    }
    const keep = preferLink(this.selfId, cur, link);
    const lose = keep === cur ? link : cur;
    if (keep !== cur) {
      this.#unset(cur);
      this.#set(keep);
    }
    lose.retired = true;
    return lose;
  }

  /** Removes a closed link; returns true if it was the active one for its neighbour (now gone, or replaced by another open link). */
  remove(link: Link): boolean {
    this.all.delete(link);
    if (this.#byId.get(link.remoteIdHex) !== link) return false;
    this.#unset(link);
    for (const other of this.all) {
      if (other.remoteIdHex === link.remoteIdHex && !other.io.closed) {
        other.retired = false;
        this.#set(other);
        break;
      }
    }
    return true;
  }

  #set(l: Link): void {
    this.#byId.set(l.remoteIdHex, l);
    (this.#byBucket[l.member.bucket] as Link[]).push(l);
  }

  #unset(l: Link): void {
    this.#byId.delete(l.remoteIdHex);
    const arr = this.#byBucket[l.member.bucket] as Link[];
    const i = arr.indexOf(l);
    if (i >= 0) arr.splice(i, 1);
  }

  /**
   * Links ordered by XOR distance of the neighbour to `target`, closest first, keeping only
   * neighbours strictly closer to `target` than we are (greedy progress), without `except`.
   */
  closerHops(target: Uint8Array, except?: Link): Link[] {
    const out: Link[] = [];
    for (const l of this.#byId.values()) {
      if (l === except) continue;
      if (compareDistance(l.remoteId, this.selfId, target) < 0) out.push(l);
    }
    out.sort((a, b) => compareDistance(a.remoteId, b.remoteId, target));
    return out;
  }

  /** Every active link except `except`. */
  others(except?: Link): Link[] {
    const out: Link[] = [];
    for (const l of this.#byId.values()) if (l !== except) out.push(l);
    return out;
  }
}

/**
 * The members a node wants as neighbours: in every non-empty XOR bucket, the `perBucket`
 * members closest to it. With one live link into each non-empty bucket, greedy XOR routing
 * gains at least one shared prefix bit per hop and the bucket-tree broadcast reaches every
 * member.
 */
export function desiredNeighbors(selfId: Buffer, members: Iterable<Member>, perBucket: number): Member[] {
  const buckets = new Map<number, Member[]>();
  for (const m of members) {
    const arr = buckets.get(m.bucket);
    if (arr) arr.push(m);
    else buckets.set(m.bucket, [m]);
  }
  const out: Member[] = [];
  for (const arr of buckets.values()) {
    arr.sort((a, b) => compareDistance(a.id, b.id, selfId));
    for (let i = 0; i < perBucket && i < arr.length; i++) out.push(arr[i] as Member);
  }
  return out;
}

/** Bucket of `id` relative to `selfId` (shared leading bits). */
export function bucketOf(selfId: Uint8Array, id: Uint8Array): number {
  return commonPrefix(selfId, id);
}
