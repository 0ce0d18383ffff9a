/**
 * STUN credentials and checksums: CRC-32 for FINGERPRINT, HMAC-SHA1/SHA256 for
 * MESSAGE-INTEGRITY(-SHA256), and the short-term / long-term key derivations (RFC 8489 §9).
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import { FINGERPRINT_XOR } from './constants.js';

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, the zlib/Ethernet polynomial) of `data`, as an unsigned 32-bit number. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = (CRC_TABLE[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The FINGERPRINT value for the message bytes that precede the FINGERPRINT attribute. */
export function fingerprintOf(data: Uint8Array): number {
  return (crc32(data) ^ FINGERPRINT_XOR) >>> 0;
}

/** A MESSAGE-INTEGRITY key: raw bytes, or a string taken as UTF-8 (used as is, no preparation). */
export type StunKey = Uint8Array | string;

/** Normalises a {@link StunKey} to bytes; throws {@link InvalidArgumentError} for anything else. */
export function keyBytes(key: StunKey): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8');
  if (key instanceof Uint8Array) return Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  throw new InvalidArgumentError('STUN key must be a Uint8Array or a string');
}

/** HMAC-SHA1 (`sha256` false) or HMAC-SHA256 of `parts`, concatenated, under `key`. */
export function hmac(key: StunKey, sha256: boolean, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(sha256 ? 'sha256' : 'sha1', keyBytes(key));
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Constant-time comparison of `actual` against the first `actual.length` bytes of `expected`. */
export function macEquals(actual: Uint8Array, expected: Uint8Array): boolean {
  if (actual.length === 0 || actual.length > expected.length) return false;
  return timingSafeEqual(actual, expected.subarray(0, actual.length));
}

// RFC 3454 table B.1 ("commonly mapped to nothing").
const MAPPED_TO_NOTHING = /[\u00ad\u034f\u1806\u180b-\u180d\u200b-\u200d\u2060\ufe00-\ufe0f\ufeff]/g;
// RFC 3454 table C.1.2 (non-ASCII space characters), mapped to U+0020 by SASLprep.
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g;

/**
 * A subset of SASLprep (RFC 4013) / OpaqueString (RFC 8265) used on passwords: characters of
 * RFC 3454 table B.1 are removed, non-ASCII spaces become U+0020, then Unicode NFKC is
 * applied. Prohibited-output and bidirectional checks are NOT performed (such strings are
 * passed through), so exotic passwords may derive a different key than a full SASLprep
 * implementation. Pure-ASCII strings are returned unchanged.
 */
export function prepareCredential(s: string): string {
  if (typeof s !== 'string') throw new InvalidArgumentError('credential must be a string');
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(s)) return s;
  return s.replace(MAPPED_TO_NOTHING, '').replace(NON_ASCII_SPACE, ' ').normalize('NFKC');
}

/** Short-term credential key (RFC 8489 §9.1.1): the prepared password's UTF-8 bytes. */
export function shortTermKey(password: string): Buffer {
  return Buffer.from(prepareCredential(password), 'utf8');
}

/** PASSWORD-ALGORITHM of the long-term mechanism: MD5 (the default, RFC 5389) or SHA-256 (RFC 8489). */
export type PasswordAlgorithm = 'md5' | 'sha256';

/**
 * Long-term credential key (RFC 8489 §9.2.2): `MD5(username ":" realm ":" password)` (or
 * SHA-256 with `algorithm: 'sha256'`). Only the password goes through
 * {@link prepareCredential}; username and realm are used exactly as sent on the wire.
 */
export function longTermKey(username: string, realm: string, password: string, algorithm: PasswordAlgorithm = 'md5'): Buffer {
  if (typeof username !== 'string' || typeof realm !== 'string') throw new InvalidArgumentError('username and realm must be strings');
  if (algorithm !== 'md5' && algorithm !== 'sha256') throw new InvalidArgumentError(`unknown password algorithm ${String(algorithm)}`);
  return createHash(algorithm).update(`${username}:${realm}:${prepareCredential(password)}`, 'utf8').digest();
}

/** USERHASH value (RFC 8489 §14.4): `SHA-256(username ":" realm)`. */
export function userHash(username: string, realm: string): Buffer {
  if (typeof username !== 'string' || typeof realm !== 'string') throw new InvalidArgumentError('username and realm must be strings');
  return createHash('sha256').update(`${username}:${realm}`, 'utf8').digest();
}
