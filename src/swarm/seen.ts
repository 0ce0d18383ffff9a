/**
 * The seen-cache: message ids remembered for a bounded time and count, for exactly-once
 * delivery and relay dedupe. Oldest entries go first when full; entries also expire after
 * their TTL. Each entry carries a small per-message state (e.g. how much of a broadcast
 * tree this node already served). An id evicted before its TTL could be replayed as new, so
 * the cache keeps, per origin, the newest message timestamp it has evicted
 * ({@link SeenCache.forgotten}): a message of that origin no newer than that may have been
 * seen and is refused (at most once under overload, never twice). Per origin, so that a node
 * whose clock runs behind loses nothing to other origins' evictions.
 *
 * When more origins need a floor than the cache holds, the least recently raised floor is
 * folded into one floor shared by every origin. What is folded is capped at the time the
 * evicted message arrived: a flood of throw-away origins stamping their messages up to
 * MAX_CLOCK_SKEW ahead of our clock would otherwise make every origin's messages count as
 * seen until then (one member silencing the swarm). So the guarantee stays whole for messages
 * not stamped in our future; a replay of one stamped ahead of our clock can get through once
 * its entry and its origin's floor are both gone.
 * @module
 */

/** Characters of a cache key that name the origin (its 32-byte key, latin1). */
const ORIGIN_CHARS = 32;

interface Entry<S> {
  state: S;
  expires: number;
  /** The message's own timestamp (ms). */
  ts: number;
}

/** A bounded, time-limited map from message key ({@link SeenCache.key}) to per-message state. */
export class SeenCache<S> {
  readonly #map = new Map<string, Entry<S>>();
  /** Entries dropped because the cache was full (before their TTL). */
  evicted = 0;
  /**
   * Per origin (the key's first {@link ORIGIN_CHARS} characters): newest evicted message
   * timestamp (`ts`), and the same capped at each message's arrival (`capped`, what is folded
   * into {@link #globalFloor}). Bounded by `maxSize`.
   */
  readonly #floors = new Map<string, { ts: number; capped: number }>();
  /** Floor for origins whose own floor was dropped from {@link #floors} (the highest `capped` such). */
  #globalFloor = Number.NEGATIVE_INFINITY;

  constructor(
    readonly maxSize: number,
    readonly ttl: number,
  ) {}

  /** Number of remembered ids. */
  get size(): number {
    return this.#map.size;
  }

  /**
   * The cache key of a message: its origin's key and its id. (Keying by the id alone would let
   * a relay that saw an id first publish its own message under it and so censor the original.)
   */
  static key(originKey: Uint8Array, msgId: Uint8Array): string {
    const b = (u: Uint8Array): string => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('latin1');
    return b(originKey) + b(msgId);
  }

  /** The state of a live entry, or `undefined`. */
  get(k: string, now: number): S | undefined {
    const e = this.#map.get(k);
    if (!e) return undefined;
    if (e.expires <= now) {
      this.#map.delete(k);
      return undefined;
    }
    return e.state;
  }

  /**
   * True if the message of key `k` stamped `ts` (not found by {@link get}) may nevertheless
   * have been seen: the cache, full, evicted an entry of the same origin at least as new.
   */
  forgotten(k: string, ts: number): boolean {
    if (ts <= this.#globalFloor) return true;
    const f = this.#floors.get(k.slice(0, ORIGIN_CHARS));
    return f !== undefined && ts <= f.ts;
  }

  /**
   * Remembers (or updates) an id with `state`; keeps the original expiry of an existing entry.
   * `ts`: the message's own timestamp (see {@link forgotten}).
   */
  set(k: string, state: S, now: number, ts = Number.NEGATIVE_INFINITY): void {
    const e = this.#map.get(k);
    if (e && e.expires > now) {
      e.state = state;
      return;
    }
    if (e) this.#map.delete(k);
    this.#map.set(k, { state, expires: now + this.ttl, ts });
    if (this.#map.size > this.maxSize) {
      const [oldKey, old] = this.#map.entries().next().value as [string, Entry<S>];
      this.#map.delete(oldKey);
      this.evicted++;
      this.#raiseFloor(oldKey.slice(0, ORIGIN_CHARS), old.ts, Math.min(old.ts, old.expires - this.ttl));
    }
  }

  #raiseFloor(origin: string, ts: number, capped: number): void {
    const f = this.#floors.get(origin);
    if (f !== undefined && f.ts >= ts && f.capped >= capped) return;
    this.#floors.delete(origin); // re-insert: most recently raised last
    this.#floors.set(origin, { ts: Math.max(ts, f?.ts ?? ts), capped: Math.max(capped, f?.capped ?? capped) });
    if (this.#floors.size > this.maxSize) {
      const [o, v] = this.#floors.entries().next().value as [string, { ts: number; capped: number }];
      this.#floors.delete(o);
      if (v.capped > this.#globalFloor) this.#globalFloor = v.capped;
    }
  }

  /** Drops expired entries (they are in insertion order, so this stops at the first live one). */
  sweep(now: number): void {
    for (const [k, e] of this.#map) {
      if (e.expires > now) break;
      this.#map.delete(k);
    }
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
    this.#floors.clear();
    this.#globalFloor = Number.NEGATIVE_INFINITY;
  }
}
