/**
 * The Noise DH functions for X25519 (`GENERATE_KEYPAIR()`, `DH()`), on `node:crypto`: key
 * pairs from fresh randomness or raw private keys, import of raw public keys (with a small
 * cache for peers' static keys), and the DH itself, rejecting low-order keys.
 * @module
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { HandshakeError, InvalidArgumentError } from '../errors.js';
import { asBuffer, isBytes } from './bytes.js';
import { generateX25519Sync, type X25519KeyPair } from './ephemeral.js';
import { DH_LEN } from './noise-constants.js';

/** DER prefix of a PKCS#8 X25519 private key; followed by the 32 raw bytes. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export type { X25519KeyPair } from './ephemeral.js';

function rawPublicFromKeyObject(key: KeyObject): Buffer {
  // JWK export is ~50x faster than DER export in Node 20 (no OpenSSL encoder lookup).
  const jwk = key.export({ format: 'jwk' });
  const x = Buffer.from(String(jwk.x), 'base64url');
  if (x.length !== DH_LEN) throw new HandshakeError('unexpected X25519 public key encoding');
  return x;
}

/**
 * Generates a fresh X25519 key pair (Noise `GENERATE_KEYPAIR()`), synchronously.
 *
 * `generateKeyPairSync` encodes the public key itself (JWK): on Node 20, exporting a freshly
 * generated public `KeyObject` with `export({ format: 'jwk' })` can deadlock the process when a
 * GC finalizes an earlier key-generation job at the same moment (seen within seconds in a loop
 * of handshakes). Asking for the encoding up front avoids that and is faster.
 * Handshakes take their ephemeral keys from a pool generated ahead of time instead
 * (`takeEphemeralKeyPair` in `ephemeral.ts`).
 */
export function generateX25519KeyPair(): X25519KeyPair {
  return generateX25519Sync();
}

/**
 * Builds an X25519 key pair from a raw 32-byte private key (for test vectors and stored keys;
 * slow-ish, ~0.3 ms, so not for the hot path).
 * @throws {@link InvalidArgumentError} if `raw` is not 32 bytes.
 */
export function x25519KeyPairFromPrivate(raw: Uint8Array): X25519KeyPair {
  if (!isBytes(raw) || raw.length !== DH_LEN) throw new InvalidArgumentError('X25519 private key must be 32 bytes');
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  return { publicKey: rawPublicFromKeyObject(createPublicKey(privateKey)), privateKey };
}

/** Imports a raw 32-byte X25519 public key. Throws {@link HandshakeError} on a bad key. */
export function importX25519Public(raw: Buffer): KeyObject {
  if (raw.length !== DH_LEN) throw new HandshakeError('X25519 public key must be 32 bytes');
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch (e) {
    throw new HandshakeError('invalid X25519 public key', { cause: e });
  }
}

/** Imported remote static keys, by raw bytes: peers reconnect with the same static key. */
const STATIC_KEY_CACHE_SIZE = 256;
const staticKeyCache = new Map<string, KeyObject>();

/** {@link importX25519Public} for a long-lived (static) key, through a small LRU cache. */
export function importStaticPublic(raw: Buffer): KeyObject {
  const id = raw.toString('latin1');
  let k = staticKeyCache.get(id);
  if (k !== undefined) {
    staticKeyCache.delete(id); // refresh its LRU position
  } else {
    k = importX25519Public(raw);
    if (staticKeyCache.size >= STATIC_KEY_CACHE_SIZE) {
      const oldest = staticKeyCache.keys().next().value;
      if (oldest !== undefined) staticKeyCache.delete(oldest);
    }
  }
  staticKeyCache.set(id, k);
  return k;
}

/**
 * Noise `DH(key_pair, public_key)`. A low-order remote key (all-zero shared secret) is
 * rejected with {@link HandshakeError}, as the spec allows.
 */
export function x25519(privateKey: KeyObject, remotePublic: Uint8Array | KeyObject): Buffer {
  const publicKey = isBytes(remotePublic) ? importX25519Public(asBuffer(remotePublic)) : remotePublic;
  try {
    return diffieHellman({ privateKey, publicKey });
  } catch (e) {
    throw new HandshakeError('X25519 failed (invalid or low-order public key)', { cause: e });
  }
}
