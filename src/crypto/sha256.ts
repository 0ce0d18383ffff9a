/**
 * SHA-256 and HMAC-SHA256 for the Noise handshake. SHA-256 runs on `node:crypto`'s one-shot
 * `hash()` where the running Node has it (20.12+), else on `createHash`.
 *
 * A handshake hashes seven short inputs per side (`MixHash`). `createHash` builds a hash object
 * (an OpenSSL context) each time; the one-shot `hash()` does not: 1.3–1.4 µs against 1.9–2.0 µs
 * per call, interleaved and warmed, on 2 vCPUs. HMAC stays on `createHmac`: HMAC built from two
 * one-shot hashes (RFC 2104) measured no faster (3.0–3.2 µs against 2.8–2.9 µs), so there is
 * nothing to gain from a construction of our own.
 * @module
 */
import * as nodeCrypto from 'node:crypto';

/** A one-shot SHA-256: `data` in, the 32-byte digest out. @internal */
export type Sha256OneShot = (data: Uint8Array) => Buffer;

/** `crypto.hash('sha256', data, 'buffer')` if this Node has it and it answers correctly. */
function detectOneShot(): Sha256OneShot | undefined {
  const h = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => unknown }).hash;
  if (typeof h !== 'function') return undefined;
  try {
    const probe = Buffer.from('abc', 'latin1');
    const r = h('sha256', probe, 'buffer');
    if (!Buffer.isBuffer(r) || !r.equals(nodeCrypto.createHash('sha256').update(probe).digest())) return undefined;
  } catch {
    return undefined; // an older Node without the 'buffer' output encoding
  }
  return (data) => h('sha256', data, 'buffer') as Buffer;
}

/**
 * SHA-256 of `a ‖ b` on `oneShot` when given, else on `createHash`.
 * @internal (exported so that tests cover both paths)
 */
export function sha256With(oneShot: Sha256OneShot | undefined): (a: Uint8Array, b?: Uint8Array) => Buffer {
  if (oneShot === undefined) {
    return (a, b) => {
      const h = nodeCrypto.createHash('sha256').update(a);
      if (b !== undefined) h.update(b);
      return h.digest();
    };
  }
  return (a, b) => {
    if (b === undefined || b.length === 0) return oneShot(a);
    const buf = Buffer.allocUnsafe(a.length + b.length);
    buf.set(a, 0);
    buf.set(b, a.length);
    return oneShot(buf);
  };
}

const oneShot = detectOneShot();

/** Whether SHA-256 runs on the one-shot `crypto.hash()` (for tests). @internal */
export const SHA256_ONE_SHOT = oneShot !== undefined;

/** SHA-256 of `a ‖ b`, on the fastest path this Node has. @internal */
export const sha256 = sha256With(oneShot);

/** HMAC-SHA256 of the concatenation of `parts` under `key`. @internal */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const m = nodeCrypto.createHmac('sha256', key);
  for (const p of parts) m.update(p);
  return m.digest();
}
