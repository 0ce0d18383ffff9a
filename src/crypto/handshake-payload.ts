/**
 * The p2pd payload carried (encrypted) in Noise XX messages 2 and 3. It proves that the
 * sender's node {@link Identity} owns the Noise static key the message carries.
 *
 * Layout (all sizes in bytes, integers big-endian), nothing before or after:
 * ```
 *  0   1   version             PAYLOAD_VERSION (1)
 *  1   32  identity key        raw Ed25519 public key; node id = sha256(identity key)
 * 33   64  signature           Ed25519( "p2pd-noise-static:" || noise static public key )
 * 97   2   extensions length   L ≤ MAX_PAYLOAD_EXTENSIONS
 * 99   L   extensions          opaque bytes for future use (empty today)
 * ```
 * The extensions are not covered by the signature but are authenticated by the Noise
 * handshake itself (they travel encrypted under keys bound to the sender's static key).
 * @module
 */
import { HandshakeError, InvalidArgumentError } from '../errors.js';
import { ED25519_KEY_LENGTH, ED25519_SIGNATURE_LENGTH, Identity, idFromPublicKey } from './identity.js';
import { DH_LEN } from './noise-constants.js';
import { generateX25519KeyPair, type X25519KeyPair } from './x25519.js';

/** The only payload version this code speaks. */
export const PAYLOAD_VERSION = 1;
/** Domain-separation prefix of the signed message. */
export const STATIC_KEY_SIGNATURE_PREFIX = 'p2pd-noise-static:';
/** Largest extensions field accepted or produced. */
export const MAX_PAYLOAD_EXTENSIONS = 1024;
/** Size of a payload without extensions. */
export const PAYLOAD_FIXED_SIZE = 1 + ED25519_KEY_LENGTH + ED25519_SIGNATURE_LENGTH + 2;
/** Largest encoded payload. */
export const MAX_PAYLOAD_SIZE = PAYLOAD_FIXED_SIZE + MAX_PAYLOAD_EXTENSIONS;

const PREFIX = Buffer.from(STATIC_KEY_SIGNATURE_PREFIX, 'latin1');

/** A decoded handshake payload. */
export interface HandshakePayload {
  /** Payload version. */
  version: number;
  /** Raw Ed25519 identity public key (32 bytes). */
  identityKey: Buffer;
  /** Ed25519 signature over `"p2pd-noise-static:" || noise static key` (64 bytes). */
  signature: Buffer;
  /** Extension bytes (possibly empty). */
  extensions: Buffer;
}

/** What a verified payload tells about the peer. */
export interface VerifiedPeer {
  /** The peer's node id (sha256 of its identity key). */
  id: Buffer;
  /** The peer's raw Ed25519 identity public key. */
  identityKey: Buffer;
  /** The peer's extension bytes. */
  extensions: Buffer;
}

/** The message an identity signs to vouch for a Noise static key. */
export function staticKeySignedData(noiseStaticKey: Uint8Array): Buffer {
  return Buffer.concat([PREFIX, noiseStaticKey]);
}

/** Encodes a payload. @throws {@link InvalidArgumentError} on wrong field sizes. */
export function encodeHandshakePayload(p: {
  version?: number;
  identityKey: Uint8Array;
  signature: Uint8Array;
  extensions?: Uint8Array;
}): Buffer {
  const version = p.version ?? PAYLOAD_VERSION;
  if (!Number.isInteger(version) || version < 0 || version > 255) throw new InvalidArgumentError('bad payload version');
  if (!(p.identityKey instanceof Uint8Array) || p.identityKey.length !== ED25519_KEY_LENGTH) {
    throw new InvalidArgumentError('identity key must be 32 bytes');
  }
  if (!(p.signature instanceof Uint8Array) || p.signature.length !== ED25519_SIGNATURE_LENGTH) {
    throw new InvalidArgumentError('signature must be 64 bytes');
  }
  const ext = p.extensions ?? Buffer.alloc(0);
  if (!(ext instanceof Uint8Array) || ext.length > MAX_PAYLOAD_EXTENSIONS) {
    throw new InvalidArgumentError(`extensions must be at most ${MAX_PAYLOAD_EXTENSIONS} bytes`);
  }
  const out = Buffer.allocUnsafe(PAYLOAD_FIXED_SIZE + ext.length);
  out[0] = version;
  out.set(p.identityKey, 1);
  out.set(p.signature, 1 + ED25519_KEY_LENGTH);
  out.writeUInt16BE(ext.length, 1 + ED25519_KEY_LENGTH + ED25519_SIGNATURE_LENGTH);
  out.set(ext, PAYLOAD_FIXED_SIZE);
  return out;
}

/**
 * Decodes a payload strictly: exact length, known version, bounded extensions.
 * The result's buffers are copies. @throws {@link HandshakeError} on anything malformed.
 */
export function decodeHandshakePayload(buf: Uint8Array): HandshakePayload {
  if (!(buf instanceof Uint8Array)) throw new HandshakeError('handshake payload must be bytes');
  if (buf.length < PAYLOAD_FIXED_SIZE) throw new HandshakeError(`handshake payload too short (${buf.length} bytes)`);
  if (buf.length > MAX_PAYLOAD_SIZE) throw new HandshakeError(`handshake payload too long (${buf.length} bytes)`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = b[0] as number;
  if (version !== PAYLOAD_VERSION) throw new HandshakeError(`unsupported handshake payload version ${version}`);
  const extLen = b.readUInt16BE(1 + ED25519_KEY_LENGTH + ED25519_SIGNATURE_LENGTH);
  if (extLen > MAX_PAYLOAD_EXTENSIONS) throw new HandshakeError(`handshake payload extensions too long (${extLen} bytes)`);
  if (b.length !== PAYLOAD_FIXED_SIZE + extLen) throw new HandshakeError('handshake payload length does not match its contents');
  return {
    version,
    identityKey: Buffer.from(b.subarray(1, 1 + ED25519_KEY_LENGTH)),
    signature: Buffer.from(b.subarray(1 + ED25519_KEY_LENGTH, 1 + ED25519_KEY_LENGTH + ED25519_SIGNATURE_LENGTH)),
    extensions: Buffer.from(b.subarray(PAYLOAD_FIXED_SIZE)),
  };
}

// A handshake verifies one Ed25519 signature, the most expensive step (~70 µs). Peers that
// reconnect present the same (identity key, static key, signature) triple every time, so
// remember the triples that verified. Verification is deterministic: caching is sound.
const VERIFIED_CACHE_SIZE = 1024;
const verifiedCache = new Map<string, Buffer>(); // → the node id (sha256 of the identity key)

function cacheKey(identityKey: Buffer, staticKey: Uint8Array, signature: Buffer): string {
  return identityKey.toString('latin1') + Buffer.from(staticKey).toString('latin1') + signature.toString('latin1');
}

/** Forgets every cached signature verification (for benchmarks and tests). */
export function clearVerifiedPayloadCache(): void {
  verifiedCache.clear();
}

/**
 * Checks that `payload`'s identity signed `remoteStaticKey` (the Noise static key the same
 * handshake authenticated). Returns the peer's id.
 * @throws {@link HandshakeError} if the payload is malformed or the signature is invalid.
 */
export function verifyHandshakePayload(payload: Uint8Array | HandshakePayload, remoteStaticKey: Uint8Array): VerifiedPeer {
  const p = payload instanceof Uint8Array ? decodeHandshakePayload(payload) : payload;
  if (!(remoteStaticKey instanceof Uint8Array) || remoteStaticKey.length !== DH_LEN) {
    throw new HandshakeError('remote static key must be 32 bytes');
  }
  const key = cacheKey(p.identityKey, remoteStaticKey, p.signature);
  let id = verifiedCache.get(key);
  if (id !== undefined) {
    verifiedCache.delete(key); // refresh LRU position
  } else {
    if (!Identity.verify(p.identityKey, staticKeySignedData(remoteStaticKey), p.signature)) {
      throw new HandshakeError('peer identity signature over its Noise static key is invalid');
    }
    id = idFromPublicKey(p.identityKey);
    if (verifiedCache.size >= VERIFIED_CACHE_SIZE) {
      const oldest = verifiedCache.keys().next().value;
      if (oldest !== undefined) verifiedCache.delete(oldest);
    }
  }
  verifiedCache.set(key, id);
  return { id: Buffer.from(id), identityKey: p.identityKey, extensions: p.extensions };
}

/** The Noise static key an identity uses, with the identity's signature over it. */
export interface NoiseStaticCredential {
  /** X25519 static key pair. */
  keyPair: X25519KeyPair;
  /** Ed25519 signature of {@link staticKeySignedData}(keyPair.publicKey). */
  signature: Buffer;
}

const credentials = new WeakMap<Identity, NoiseStaticCredential>();

/**
 * The Noise static key pair of `identity`: generated on first use and kept for the life of
 * the `Identity` object (not saved), together with the identity's signature over it, so a
 * handshake costs no key generation or signing for the static key.
 */
export function noiseStaticCredential(identity: Identity): NoiseStaticCredential {
  let c = credentials.get(identity);
  if (!c) {
    const keyPair = generateX25519KeyPair();
    c = { keyPair, signature: identity.sign(staticKeySignedData(keyPair.publicKey)) };
    credentials.set(identity, c);
  }
  return c;
}

/** Builds the encoded payload `identity` sends with its Noise static key (a new buffer). */
export function createHandshakePayload(identity: Identity, extensions?: Uint8Array): Buffer {
  const { signature } = noiseStaticCredential(identity);
  return encodeHandshakePayload({ identityKey: identity.publicKey, signature, ...(extensions ? { extensions } : {}) });
}

/** Encoded payloads without extensions, per identity (the same bytes every handshake). */
const plainPayloads = new WeakMap<Identity, Buffer>();

/**
 * @internal {@link createHandshakePayload} for the handshake itself: without extensions the
 * same buffer is returned every time, so it must be treated as read-only.
 */
export function sharedHandshakePayload(identity: Identity, extensions?: Uint8Array): Buffer {
  if (extensions !== undefined && extensions.length > 0) return createHandshakePayload(identity, extensions);
  let p = plainPayloads.get(identity);
  if (p === undefined) {
    p = createHandshakePayload(identity);
    plainPayloads.set(identity, p);
  }
  return p;
}
