/**
 * The seen-cache: message ids remembered for a bounded time and count, for exactly-once
 * delivery and relay dedupe. Oldest entries go first when full; entries also expire after
 * their TTL. Each entry carries a small per-message state (e.g. how much of a broadcast
 * tree this node already served).
 * @module
 */

interface Entry<S> {
  state: S;
  expires: number;
}

/** A bounded, time-limited map from message key ({@link SeenCache.key}) to per-message state. */
export class SeenCache<S> {
  readonly #map = new Map<string, Entry<S>>();
  /** Entries dropped because the cache was full (before their TTL). */
  evicted = 0;

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

  /** Remembers (or updates) an id with `state`; keeps the original expiry of an existing entry. */
  set(k: string, state: S, now: number): void {
    const e = this.#map.get(k);
    if (e && e.expires > now) {
      e.state = state;
      return;
    }
    if (e) this.#map.delete(k);
    this.#map.set(k, { state, expires: now + this.ttl });
    if (this.#map.size > this.maxSize) {
      this.#map.delete(this.#map.keys().next().value as string);
      this.evicted++;
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
  }
}
