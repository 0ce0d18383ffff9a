/**
 * The records a dict holds: per key, each owner's latest record (at most
 * {@link MAX_OWNERS_PER_KEY}), the resolved value of each key, and their digest.
 * @module
 */
import { MAX_KEYS, MAX_OWNERS_PER_KEY } from './constants.js';
import { DigestSet } from './digest.js';
import { newerOf, resolveKey, type SyncRecord } from './record.js';

/** A key whose resolved record changed: the record before and after (either may be absent). */
export interface WinnerChange {
  readonly before: SyncRecord | undefined;
  readonly after: SyncRecord | undefined;
}

/** Records of one dict, keyed by key (latin1 string of the key bytes). */
export class RecordStore {
  readonly #records = new Map<string, Map<string, SyncRecord>>();
  readonly #winners = new Map<string, SyncRecord>();
  readonly #digest = new DigestSet();
  #version = 0;

  constructor(
    private readonly leasing: boolean,
    private readonly leaseTime: number,
  ) {}

  /** Bumped whenever the set of records changes (lets callers cache what they derive from it). */
  get version(): number {
    return this.#version;
  }

  /** Number of keys with records (values and tombstones). */
  get keyCount(): number {
    return this.#records.size;
  }

  /** Whether a new key could not be stored. */
  get full(): boolean {
    return this.#records.size >= MAX_KEYS;
  }

  /** Whether records of `k` are held. */
  hasKey(k: string): boolean {
    return this.#winners.has(k) || this.#records.has(k);
  }

  /** The record giving `k` its value (a tombstone = absent), or `undefined`. */
  winner(k: string): SyncRecord | undefined {
    return this.#winners.get(k);
  }

  /** Resolved records of every key. */
  winners(): IterableIterator<SyncRecord> {
    return this.#winners.values();
  }

  /** `owner`'s record of `k`. */
  recordOf(k: string, ownerHex: string): SyncRecord | undefined {
    return this.#records.get(k)?.get(ownerHex);
  }

  /** Encodings of every record held. */
  *raws(): IterableIterator<Buffer> {
    for (const owners of this.#records.values()) for (const r of owners.values()) yield r.raw;
  }

  /** Digest of every record held (order-independent). */
  digest(): Buffer {
    return this.#digest.digest();
  }

  /**
   * Stores a verified record. Returns `undefined` if the store did not change; else the key's
   * resolved record before and after (the same record when only a non-winning record changed).
   */
  merge(r: SyncRecord): WinnerChange | undefined {
    const k = r.key.toString('latin1');
    let owners = this.#records.get(k);
    if (!owners) {
      if (this.#records.size >= MAX_KEYS) return undefined;
      owners = new Map();
      this.#records.set(k, owners);
    }
    const old = owners.get(r.ownerHex);
    if (old && !newerOf(r, old)) return undefined;
    owners.set(r.ownerHex, r);
    let after = resolveKey(owners.values(), this.leasing, this.leaseTime);
    if (owners.size > MAX_OWNERS_PER_KEY) {
      // Forget the oldest write that is not the key's current value: a flood of claims from
      // throw-away keys cannot push out the holder's record and with it the holder's lease.
      // (Only a new owner grows the set, so `old` is undefined here.)
      let oldest: SyncRecord | undefined;
      for (const x of owners.values()) {
        if (x === after) continue;
        if (!oldest || x.ts < oldest.ts || (x.ts === oldest.ts && Buffer.compare(x.ownerId, oldest.ownerId) > 0)) oldest = x;
      }
      if (oldest) owners.delete(oldest.ownerHex);
      if (oldest === r) return undefined;
      if (oldest) this.#digest.delete(oldest);
      after = resolveKey(owners.values(), this.leasing, this.leaseTime);
    }
    if (old) this.#digest.delete(old);
    this.#digest.add(r);
    this.#version++;
    const before = this.#winners.get(k);
    if (after) this.#winners.set(k, after);
    else this.#winners.delete(k);
    return { before, after };
  }
}
