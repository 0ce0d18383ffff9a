/**
 * The digest of a dict's records, kept up to date incrementally.
 *
 * Digest = SHA-256 over the sorted SHA-256 hashes of every record held (order-independent;
 * the same value as before it was incremental, so members of either version compare equal).
 * Each record is hashed once, when it is stored; the sorted list is updated per change; the
 * final hash (32 bytes per record) is computed only when asked after a change.
 * @module
 */
import { createHash } from 'node:crypto';
import type { SyncRecord } from './record.js';

/** Index of the first hash ≥ `h` in the sorted `list`. */
function lowerBound(list: readonly Buffer[], h: Buffer): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(list[mid] as Buffer, h) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The multiset of record hashes of a dict and its digest. */
export class DigestSet {
  readonly #hashOf = new WeakMap<SyncRecord, Buffer>();
  readonly #sorted: Buffer[] = [];
  #digest: Buffer | undefined;

  /** Number of records. */
  get size(): number {
    return this.#sorted.length;
  }

  #hash(r: SyncRecord): Buffer {
    let h = this.#hashOf.get(r);
    if (!h) {
      h = createHash('sha256').update(r.raw).digest();
      this.#hashOf.set(r, h);
    }
    return h;
  }

  /** A record is now held. */
  add(r: SyncRecord): void {
    const h = this.#hash(r);
    this.#sorted.splice(lowerBound(this.#sorted, h), 0, h);
    this.#digest = undefined;
  }

  /** A record is no longer held. */
  delete(r: SyncRecord): void {
    const h = this.#hash(r);
    const i = lowerBound(this.#sorted, h);
    if (i < this.#sorted.length && (this.#sorted[i] as Buffer).equals(h)) {
      this.#sorted.splice(i, 1);
      this.#digest = undefined;
    }
  }

  /** The digest (recomputed only after a change). */
  digest(): Buffer {
    if (this.#digest) return this.#digest;
    const h = createHash('sha256');
    for (const x of this.#sorted) h.update(x);
    this.#digest = h.digest();
    return this.#digest;
  }
}
