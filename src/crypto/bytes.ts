/**
 * Byte helpers shared by the Noise modules: zero-copy Buffer views and input checks.
 * @module
 */

/** A shared empty buffer (never written to). */
export const EMPTY = Buffer.alloc(0);

/** A Buffer view of `u` without copying (Buffers are returned as is). */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** `true` if `u` is a `Uint8Array` (a `Buffer` included). */
export function isBytes(u: unknown): u is Uint8Array {
  return u instanceof Uint8Array;
}
