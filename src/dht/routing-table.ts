/**
 * Kademlia routing table: 256 fixed k-buckets, one per distance range.
 *
 * ## Layout
 * Bucket `i` holds up to `k` contacts whose XOR distance to the local id lies in
 * `[2^i, 2^(i+1))` (see {@link bucketIndex}). Fixed buckets (rather than split-on-own-bucket)
 * keep the code small and make bucket refresh bookkeeping a plain array; the cost is that
 * buckets below the closest known contact stay empty, so {@link RoutingTable.bucketsToRefresh}
 * only reports buckets from the lowest non-empty one upwards.
 *
 * ## Liveness: prefer long-lived contacts
 * Each bucket is ordered least-recently-seen first. Seeing a known contact moves it to the
 * tail. A new contact for a full bucket goes into the bucket's *replacement cache* and the
 * least-recently-seen contact is pinged (one ping per bucket at a time, through the injected
 * `ping`): if it answers it moves to the tail and the newcomer stays in the cache; only if it
 * fails is it evicted and the most recently seen replacement promoted. Long-lived contacts
 * are therefore never displaced by newcomers while they keep answering.
 *
 * ## Stale contacts
 * {@link RoutingTable.markFailed} counts consecutive failed RPCs. A contact is evicted after
 * `maxFailures` failures, or after its first failure when the bucket's replacement cache has
 * a candidate to take its place (as in the Kademlia paper). Any successful exchange
 * ({@link RoutingTable.add}) resets the count.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Contact } from './contact.js';
import { bucketIndex, compareDistance, ID_BITS, idEquals, idToHex, type DhtId } from './id.js';

/** Kademlia's replication / bucket size parameter k. */
export const DEFAULT_K = 20;
/** Default number of consecutive failed RPCs before a contact is evicted. */
export const DEFAULT_MAX_FAILURES = 3;

/** Options of {@link RoutingTable}. */
export interface RoutingTableOptions {
  /** Bucket size. @default {@link DEFAULT_K} */
  k?: number;
  /** Size of each bucket's replacement cache. @default `k` */
  replacementCacheSize?: number;
  /** Consecutive failures before eviction when no replacement waits. @default {@link DEFAULT_MAX_FAILURES} */
  maxFailures?: number;
  /**
   * Liveness check of a full bucket's least-recently-seen contact; resolves `true` if it
   * answered. Without it, newcomers to a full bucket only enter the replacement cache.
   */
  ping?: (contact: Contact) => Promise<boolean>;
  /** Clock in ms. @default `Date.now` */
  now?: () => number;
  /** Called after a contact enters a bucket (not on updates of a known contact). */
  onAdded?: (contact: Contact) => void;
  /** Called after a contact leaves a bucket (evicted, removed). */
  onRemoved?: (contact: Contact) => void;
}

/** What {@link RoutingTable.add} did with a contact. */
export type AddResult = 'added' | 'updated' | 'cached' | 'self';

/** A contact plus its liveness bookkeeping. */
export interface RoutingEntry {
  contact: Contact;
  /** When the contact was first put in a bucket, ms. */
  readonly firstSeen: number;
  /** Last successful exchange, ms. */
  lastSeen: number;
  /** Consecutive failed RPCs. */
  failures: number;
}

interface Bucket {
  /** Least-recently-seen first. */
  entries: RoutingEntry[];
  /** Oldest first; the newest is promoted first. */
  replacements: RoutingEntry[];
  pinging: boolean;
  /** Last lookup of an id in this bucket's range, ms. */
  lastLookup: number;
}

function prefix32(id: Uint8Array): number {
  return (((id[0] as number) << 24) | ((id[1] as number) << 16) | ((id[2] as number) << 8) | (id[3] as number)) >>> 0;
}

function positiveInt(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${what} must be a positive integer`);
  return v;
}

/** A Kademlia routing table for the node `selfId`. */
export class RoutingTable {
  /** The local node id. */
  readonly selfId: DhtId;
  /** Bucket size k. */
  readonly k: number;
  readonly #replacementSize: number;
  readonly #maxFailures: number;
  readonly #opts: RoutingTableOptions;
  readonly #now: () => number;
  readonly #buckets: Bucket[] = [];
  #size = 0;
  #closed = false;

  constructor(selfId: DhtId, opts: RoutingTableOptions = {}) {
    this.selfId = selfId;
    this.k = positiveInt(opts.k, DEFAULT_K, 'k');
    this.#replacementSize = opts.replacementCacheSize === 0 ? 0 : positiveInt(opts.replacementCacheSize, this.k, 'replacementCacheSize');
    this.#maxFailures = positiveInt(opts.maxFailures, DEFAULT_MAX_FAILURES, 'maxFailures');
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    const t = this.#now();
    for (let i = 0; i < ID_BITS; i++) this.#buckets.push({ entries: [], replacements: [], pinging: false, lastLookup: t });
  }

  /** Number of contacts in buckets (replacement caches not counted). */
  get size(): number {
    return this.#size;
  }

  /** Stops liveness pings from mutating the table (pending ones are ignored when they settle). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Records a successful exchange with `contact` (it answered us, or sent us a request).
   * Known contacts move to the tail of their bucket (address updated, failures reset); new
   * ones are added if their bucket has room, else cached while the bucket's
   * least-recently-seen contact is pinged.
   */
  add(contact: Contact): AddResult {
    const idx = bucketIndex(this.selfId, contact.id);
    if (idx < 0) return 'self';
    const b = this.#buckets[idx] as Bucket;
    const now = this.#now();
    const i = b.entries.findIndex((e) => idEquals(e.contact.id, contact.id));
    if (i >= 0) {
      const e = b.entries[i] as RoutingEntry;
      b.entries.splice(i, 1);
      e.contact = contact;
      e.lastSeen = now;
      e.failures = 0;
      b.entries.push(e);
      return 'updated';
    }
    const entry: RoutingEntry = { contact, firstSeen: now, lastSeen: now, failures: 0 };
    if (b.entries.length < this.k) {
      b.entries.push(entry);
      this.#size++;
      b.replacements = b.replacements.filter((r) => !idEquals(r.contact.id, contact.id));
      this.#opts.onAdded?.(contact);
      return 'added';
    }
    this.#cache(b, entry);
    this.#checkOldest(b);
    return 'cached';
  }

  #cache(b: Bucket, entry: RoutingEntry): void {
    if (this.#replacementSize === 0) return;
    b.replacements = b.replacements.filter((r) => !idEquals(r.contact.id, entry.contact.id));
    b.replacements.push(entry);
    if (b.replacements.length > this.#replacementSize) b.replacements.shift();
  }

  #checkOldest(b: Bucket): void {
    const ping = this.#opts.ping;
    if (!ping || b.pinging || this.#closed) return;
    const oldest = b.entries[0];
    if (!oldest) return;
    b.pinging = true;
    let p: Promise<boolean>;
    try {
      p = ping(oldest.contact);
    } catch {
      p = Promise.resolve(false);
    }
    p.then(
      (ok) => this.#pinged(b, oldest, ok),
      () => this.#pinged(b, oldest, false),
    );
  }

  #pinged(b: Bucket, oldest: RoutingEntry, ok: boolean): void {
    b.pinging = false;
    if (this.#closed) return;
    const i = b.entries.indexOf(oldest);
    if (i < 0) return;
    if (ok) {
      b.entries.splice(i, 1);
      oldest.lastSeen = this.#now();
      oldest.failures = 0;
      b.entries.push(oldest);
    } else {
      this.#evict(b, i);
    }
  }

  #evict(b: Bucket, i: number): void {
    const [gone] = b.entries.splice(i, 1);
    this.#size--;
    const next = b.replacements.pop();
    if (next) {
      b.entries.push(next);
      this.#size++;
    }
    if (gone) this.#opts.onRemoved?.(gone.contact);
    if (next) this.#opts.onAdded?.(next.contact);
  }

  /**
   * Records a failed RPC to `id`. Evicts the contact (promoting a replacement) after its
   * first failure if a replacement waits, else after `maxFailures` consecutive failures.
   * A cached replacement that fails is dropped from the cache. Returns true if evicted.
   */
  markFailed(id: DhtId): boolean {
    const at = this.#dropReplacement(id);
    if (at === undefined) return false;
    const { b, i } = at;
    const e = b.entries[i] as RoutingEntry;
    e.failures++;
    if (e.failures >= this.#maxFailures || b.replacements.length > 0) {
      this.#evict(b, i);
      return true;
    }
    return false;
  }

  /** Removes a contact (promoting a replacement). Returns true if it was in a bucket. */
  remove(id: DhtId): boolean {
    const at = this.#dropReplacement(id);
    if (at === undefined) return false;
    this.#evict(at.b, at.i);
    return true;
  }

  /** Drops `id` from its bucket's replacement cache; returns the bucket and its entry index if it is an entry. */
  #dropReplacement(id: DhtId): { b: Bucket; i: number } | undefined {
    const idx = bucketIndex(this.selfId, id);
    if (idx < 0) return undefined;
    const b = this.#buckets[idx] as Bucket;
    b.replacements = b.replacements.filter((r) => !idEquals(r.contact.id, id));
    const i = b.entries.findIndex((e) => idEquals(e.contact.id, id));
    return i < 0 ? undefined : { b, i };
  }

  /** The entry for `id`, if it is in a bucket. */
  get(id: DhtId): RoutingEntry | undefined {
    const idx = bucketIndex(this.selfId, id);
    if (idx < 0) return undefined;
    return (this.#buckets[idx] as Bucket).entries.find((e) => idEquals(e.contact.id, id));
  }

  /** True if `id` is in a bucket. */
  has(id: DhtId): boolean {
    return this.get(id) !== undefined;
  }

  /**
   * Up to `count` contacts closest to `target` (XOR), closest first. `exclude` drops one id
   * (typically the requester); `excludeFailing` drops contacts with a failed RPC pending.
   */
  closest(target: DhtId, count = this.k, opts: { exclude?: DhtId; excludeFailing?: boolean } = {}): Contact[] {
    // Sort on the first 32 bits of the distance, full comparison only on ties.
    const t0 = prefix32(target);
    const out: Array<{ c: Contact; d: number }> = [];
    for (const b of this.#buckets) {
      for (const e of b.entries) {
        if (opts.excludeFailing && e.failures > 0) continue;
        if (opts.exclude && idEquals(e.contact.id, opts.exclude)) continue;
        out.push({ c: e.contact, d: (prefix32(e.contact.id) ^ t0) >>> 0 });
      }
    }
    out.sort((a, b) => a.d - b.d || compareDistance(target, a.c.id, b.c.id));
    return out.slice(0, Math.max(0, count)).map((x) => x.c);
  }

  /**
   * How many contacts in buckets are strictly closer to `target` than `id` is; `id` belongs
   * to the k closest known contacts for `target` iff this is `< k`. Counting stops at `limit`.
   */
  rankOf(target: DhtId, id: DhtId, limit = Infinity): number {
    let n = 0;
    for (const b of this.#buckets) {
      for (const e of b.entries) {
        if (compareDistance(target, e.contact.id, id) < 0 && ++n >= limit) return n;
      }
    }
    return n;
  }

  /** All contacts, bucket 0 first. */
  contacts(): Contact[] {
    return this.#buckets.flatMap((b) => b.entries.map((e) => e.contact));
  }

  /** Contacts per bucket index (only non-empty buckets), for diagnostics. */
  bucketSizes(): Record<number, number> {
    const out: Record<number, number> = {};
    this.#buckets.forEach((b, i) => {
      if (b.entries.length > 0) out[i] = b.entries.length;
    });
    return out;
  }

  /** Marks the bucket that `target` falls in as just looked up (refresh bookkeeping). */
  touch(target: DhtId): void {
    const idx = bucketIndex(this.selfId, target);
    if (idx >= 0) (this.#buckets[idx] as Bucket).lastLookup = this.#now();
  }

  /** Time of the last lookup in bucket `index`, ms. */
  lastLookup(index: number): number {
    return this.#buckets[index]?.lastLookup ?? 0;
  }

  /**
   * Indexes of buckets not looked up for `maxAge` ms, from the lowest non-empty bucket up to
   * 255 (lower buckets cover ids nearer to us than any known node; a lookup of our own id
   * covers them). Empty table → `[]`.
   */
  bucketsToRefresh(maxAge: number): number[] {
    const lowest = this.#buckets.findIndex((b) => b.entries.length > 0);
    if (lowest < 0) return [];
    const now = this.#now();
    const out: number[] = [];
    for (let i = lowest; i < ID_BITS; i++) {
      if (now - (this.#buckets[i] as Bucket).lastLookup >= maxAge) out.push(i);
    }
    return out;
  }

  /** Debug string: `self=ab12cd34 size=63 buckets={255:20,254:20,…}`. */
  toString(): string {
    return `self=${idToHex(this.selfId).slice(0, 8)} size=${this.#size} buckets=${JSON.stringify(this.bucketSizes())}`;
  }
}
