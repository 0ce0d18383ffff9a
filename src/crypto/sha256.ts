/**
 * SHA-256 and HMAC-SHA256 for the Noise handshake, on `node:crypto`'s one-shot `hash()` where
 * the running Node has it (20.12+), else on `createHash` / `createHmac`.
 *
 * A handshake hashes a dozen short inputs and computes a dozen HMACs per side. `createHash` /
 * `createHmac` build a hash object (an OpenSSL context) each time: ~2.5 µs per hash and ~3.9 µs
 * per HMAC on 2 vCPUs, against ~0.8 µs for a one-shot `hash()`. HMAC is built from two one-shot
 * hashes as RFC 2104 defines it (`H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m))`), ~2.2 µs. Both give the same
 * bytes as the object API (checked at load time against a known answer, and by a property test
 * in test/crypto-sha256.test.ts).
 * @module
 */
import * as nodeCrypto from 'node:crypto';

/** SHA-256 block size (bytes). */
const BLOCK = 64;
/** SHA-256 output size (bytes). */
const OUT = 32;

type OneShot = (data: Uint8Array) => Buffer;

/** `crypto.hash('sha256', data, 'buffer')` if this Node has it and it answers correctly. */
function detectOneShot(): OneShot | undefined {
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

const oneShot = detectOneShot();

/** Whether the one-shot path is in use (for tests). @internal */
export const SHA256_ONE_SHOT = oneShot !== undefined;

/** SHA-256 of `a ‖ b`. @internal */
export function sha256(a: Uint8Array, b?: Uint8Array): Buffer {
  if (oneShot === undefined) {
    const h = nodeCrypto.createHash('sha256').update(a);
    if (b !== undefined) h.update(b);
    return h.digest();
  }
  if (b === undefined || b.length === 0) return oneShot(a);
  const buf = Buffer.allocUnsafe(a.length + b.length);
  buf.set(a, 0);
  buf.set(b, a.length);
  return oneShot(buf);
}

/** HMAC-SHA256 of the concatenation of `parts` under `key`. @internal */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  if (oneShot === undefined) {
    const m = nodeCrypto.createHmac('sha256', key);
    for (const p of parts) m.update(p);
    return m.digest();
  }
  const k = key.length > BLOCK ? oneShot(key) : key;
  let n = 0;
  for (const p of parts) n += p.length;
  const inner = Buffer.allocUnsafe(BLOCK + n);
  for (let i = 0; i < BLOCK; i++) inner[i] = (i < k.length ? (k[i] as number) : 0) ^ 0x36;
  let off = BLOCK;
  for (const p of parts) {
    inner.set(p, off);
    off += p.length;
  }
  const outer = Buffer.allocUnsafe(BLOCK + OUT);
  for (let i = 0; i < BLOCK; i++) outer[i] = (i < k.length ? (k[i] as number) : 0) ^ 0x5c;
  outer.set(oneShot(inner), BLOCK);
  inner.fill(0, 0, BLOCK); // the padded key
  const mac = oneShot(outer);
  outer.fill(0, 0, BLOCK);
  return mac;
}
