/**
 * A node's local record store: the replicas it holds for others, with the ownership rule
 * applied on every write, a record-count quota, and republish bookkeeping.
 * @module
 */
import { idToHex, keyToId, type DhtId } from './id.js';
import type { StoreStatus } from './messages.js';
import { decideStore, verifyRecord, type DhtRecord } from './record.js';

/** Default most records a node holds for others. */
export const DEFAULT_MAX_RECORDS = 10_000;

/** A record held by the store. */
export interface StoredRecord {
  readonly record: DhtRecord;
  /** SHA-256 of the key. */
  readonly keyId: DhtId;
  /** When this version was stored, ms. */
  readonly storedAt: number;
  /** Last time the record was (re)sent to its closest nodes, by us or by a STORE we received, ms. */
  lastReplicated: number;
}

/** Options of {@link RecordStore}. */
export interface RecordStoreOptions {
  /** Most records held. @default {@link DEFAULT_MAX_RECORDS} */
  maxRecords?: number;
  /** Tolerated future clock skew of record timestamps, ms. @default {@link MAX_CLOCK_SKEW_MS} */
  maxClockSkew?: number;
  /** Clock, ms. @default `Date.now` */
  now?: () => number;
  /** Records expire this long after their timestamp (ms); `0` = never. @default 0 */
  ttl?: number;
}

/** Local record store keyed by key id. */
export class RecordStore {
  readonly #map = new Map<string, StoredRecord>();
  readonly #max: number;
  readonly #skew: number | undefined;
  readonly #now: () => number;
  readonly #ttl: number;

  constructor(opts: RecordStoreOptions = {}) {
    this.#max = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
    this.#skew = opts.maxClockSkew;
    this.#now = opts.now ?? Date.now;
    this.#ttl = opts.ttl ?? 0;
  }

  #expired(r: DhtRecord, now: number): boolean {
    return this.#ttl > 0 && r.timestamp + this.#ttl <= now;
  }

  /** Drops expired records; returns how many. */
  expire(): number {
    if (this.#ttl <= 0) return 0;
    const now = this.#now();
    let n = 0;
    for (const [hex, s] of this.#map) {
      if (this.#expired(s.record, now)) {
        this.#map.delete(hex);
        n++;
      }
    }
    return n;
  }

  /** Number of records (tombstones included). */
  get size(): number {
    return this.#map.size;
  }

  /** The record for a key id, if held (an expired one is dropped instead). */
  get(keyId: DhtId): StoredRecord | undefined {
    const hex = idToHex(keyId);
    const s = this.#map.get(hex);
    if (s && this.#expired(s.record, this.#now())) {
      this.#map.delete(hex);
      return undefined;
    }
    return s;
  }

  /** All held records. */
  values(): IterableIterator<StoredRecord> {
    return this.#map.values();
  }

  /** Drops the replica for a key id. */
  delete(keyId: DhtId): boolean {
    return this.#map.delete(idToHex(keyId));
  }

  /**
   * Offers a record (from the network or from ourselves): verifies it, applies the
   * ownership rule and the quota, and stores it if accepted. `'same'` (the identical version)
   * counts as `'ok'` and refreshes its replication time.
   */
  offer(record: DhtRecord, opts: { keyId?: DhtId } = {}): StoreStatus {
    const now = this.#now();
    try {
      verifyRecord(record, { now, ...(this.#skew !== undefined ? { maxClockSkew: this.#skew } : {}), ...opts });
    } catch {
      return 'invalid';
    }
    if (this.#expired(record, now)) return 'stale';
    const keyId = opts.keyId ?? keyToId(record.key);
    const hex = idToHex(keyId);
    let existing = this.#map.get(hex);
    if (existing && this.#expired(existing.record, now)) {
      this.#map.delete(hex);
      existing = undefined;
    }
    switch (decideStore(existing?.record, record)) {
      case 'not-owner':
        return 'not-owner';
      case 'stale':
        return 'stale';
      case 'same':
        if (existing) existing.lastReplicated = now;
        return 'ok';
      case 'accept':
        if (!existing && this.#map.size >= this.#max && (this.expire() === 0 || this.#map.size >= this.#max)) return 'full';
        this.#map.set(hex, { record, keyId, storedAt: now, lastReplicated: now });
        return 'ok';
    }
  }
}
