/**
 * DHT identifiers: 256-bit (32-byte) ids in the Kademlia XOR metric.
 *
 * A node's id is SHA-256 of its Ed25519 public key (see `src/crypto/identity.ts`); a key's id
 * is SHA-256 of the key bytes ({@link keyToId}). Distance between two ids is their XOR read as
 * a big-endian unsigned integer. Bucket `i` of a node holds the contacts whose distance lies
 * in `[2^i, 2^(i+1))`, i.e. `i = 255 - (length of the common prefix)`.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/** Length of a DHT id, bytes. */
export const ID_BYTES = 32;
/** Length of a DHT id, bits (also the number of k-buckets). */
export const ID_BITS = ID_BYTES * 8;

/** A 32-byte DHT id (node id or key id). */
export type DhtId = Uint8Array;

const HEX_RE = /^[0-9a-fA-F]{64}$/;

/** True if `x` is a `Uint8Array` of exactly {@link ID_BYTES} bytes. */
export function isId(x: unknown): x is DhtId {
  return x instanceof Uint8Array && x.length === ID_BYTES;
}

/** Throws {@link InvalidArgumentError} unless `x` is a 32-byte id. */
export function assertId(x: unknown, what = 'id'): asserts x is DhtId {
  if (!isId(x)) throw new InvalidArgumentError(`${what} must be a ${ID_BYTES}-byte Uint8Array`);
}

/** Lowercase hex of an id (64 characters). */
export function idToHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}

/** Parses 64 hex characters into an id. @throws InvalidArgumentError on anything else. */
export function idFromHex(hex: string): DhtId {
  if (typeof hex !== 'string' || !HEX_RE.test(hex)) {
    throw new InvalidArgumentError(`an id is ${ID_BYTES * 2} hex characters`);
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Short hex prefix of an id, for logs. */
export function shortId(id: Uint8Array): string {
  return idToHex(id).slice(0, 8);
}

/** True if both ids have the same bytes. */
export function idEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Byte-wise comparison of two ids as big-endian integers: negative, 0 or positive. */
export function compareIds(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** XOR distance `a ⊕ b` as a new 32-byte array. */
export function xorDistance(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(ID_BYTES);
  for (let i = 0; i < ID_BYTES; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

/**
 * Compares the XOR distances of `a` and `b` to `target` without allocating: negative if `a`
 * is closer, positive if `b` is closer, 0 if `a` equals `b`.
 */
export function compareDistance(target: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const t = target[i] as number;
    const d = ((a[i] as number) ^ t) - ((b[i] as number) ^ t);
    if (d !== 0) return d;
  }
  return 0;
}

/** Number of leading bits `a` and `b` have in common (0–256; 256 for equal ids). */
export function commonPrefixLength(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const x = (a[i] as number) ^ (b[i] as number);
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return ID_BITS;
}

/**
 * Index of the k-bucket of `self` that `other` belongs to: `floor(log2(self ⊕ other))`,
 * 0 (closest) … 255 (the half of the space that differs in the first bit). Returns -1 for
 * `other` equal to `self`.
 */
export function bucketIndex(self: Uint8Array, other: Uint8Array): number {
  return ID_BITS - 1 - commonPrefixLength(self, other);
}

/**
 * A random id in bucket `index` of `self` (its distance to `self` lies in
 * `[2^index, 2^(index+1))`); used to refresh a bucket.
 */
export function randomIdInBucket(self: Uint8Array, index: number): DhtId {
  if (!Number.isInteger(index) || index < 0 || index >= ID_BITS) {
    throw new InvalidArgumentError(`bucket index must be 0–${ID_BITS - 1}`);
  }
  const dist = new Uint8Array(randomBytes(ID_BYTES));
  const bit = ID_BITS - 1 - index; // position of the leading 1, counted from the most significant bit
  const byte = bit >> 3;
  for (let i = 0; i < byte; i++) dist[i] = 0;
  const lead = 0x80 >> (bit & 7);
  dist[byte] = ((dist[byte] as number) & (lead - 1)) | lead;
  return xorDistance(self, dist);
}

/** A uniformly random id. */
export function randomId(): DhtId {
  return new Uint8Array(randomBytes(ID_BYTES));
}

/** UTF-8 bytes of a string key, or the key bytes themselves. */
export function keyBytes(key: string | Uint8Array): Uint8Array {
  if (typeof key === 'string') return new Uint8Array(Buffer.from(key, 'utf8'));
  if (key instanceof Uint8Array) return key;
  throw new InvalidArgumentError('a DHT key is a string or a Uint8Array');
}

/**
 * The DHT id of a key: SHA-256 of its bytes (strings are UTF-8 encoded, so `'a'` and
 * `Uint8Array [0x61]` are the same key).
 */
export function keyToId(key: string | Uint8Array): DhtId {
  return new Uint8Array(createHash('sha256').update(keyBytes(key)).digest());
}

/** Sorts (a copy of) `items` by XOR distance of `getId(item)` to `target`, closest first. */
export function sortByDistance<T>(target: Uint8Array, items: Iterable<T>, getId: (t: T) => Uint8Array): T[] {
  return [...items].sort((x, y) => compareDistance(target, getId(x), getId(y)));
}
