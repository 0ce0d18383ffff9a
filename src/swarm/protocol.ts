/**
 * Protocol identity of a swarm (name, version, encryption on/off), the plaintext preamble
 * both ends of a new connection exchange before anything else, and signature helpers.
 *
 * ## Preamble (both directions, before the Noise handshake)
 * ```
 * u32 length of the rest (≤ MAX_PREAMBLE_SIZE)
 * 8   magic "P2PDSWRM"     u8 preamble version (1)     u8 flags: bit0 = encrypted
 * 16  random nonce (makes every connection's transcript unique)
 * u8 n, name (UTF-8)       u8 n, version (UTF-8)
 * ```
 * The initiator sends its preamble and waits; the responder answers with its own (even when
 * they do not match, so both ends can report the mismatch) and waits. Then, when both match,
 * the Noise handshake runs with a prologue that hashes both preambles, so a tampered
 * preamble fails the handshake.
 * @module
 */
import { createHash, createPublicKey, randomBytes, verify as edVerify, type KeyObject } from 'node:crypto';
import { DecodeError, InvalidArgumentError, type ProtocolDescriptor } from '../errors.js';
import { Reader, Writer } from './codec.js';
import { DEFAULT_PROTOCOL_NAME, DEFAULT_PROTOCOL_VERSION, MAX_PREAMBLE_SIZE, MAX_PROTOCOL_NAME, MAX_PROTOCOL_VERSION } from './constants.js';

/** Protocol identity given by the user; peers with a different one are refused. */
export interface SwarmProtocol {
  /** Protocol (network) name. @default 'p2pd-swarm' */
  name?: string;
  /** Version; compared as a string. @default '1' */
  version?: string | number;
  /**
   * Encrypted links (Noise XX). `false` = plaintext links, possible only when both ends opt in;
   * messages are still signed by their origin and link peers still prove their identity.
   * @default true
   */
  encrypted?: boolean;
}

/** A validated protocol identity with its hash (mixed into every signature). */
export interface ResolvedProtocol extends ProtocolDescriptor {
  /** SHA-256 over name, version and encryption flag: separates the signatures of different swarms. */
  readonly hash: Buffer;
}

const MAGIC = Buffer.from('P2PDSWRM', 'latin1');
const PREAMBLE_VERSION = 1;
const FLAG_ENCRYPTED = 0x01;
/** Bytes of the preamble nonce. */
export const NONCE_SIZE = 16;

/** Validates a user protocol identity. @throws {@link InvalidArgumentError} */
export function resolveProtocol(p: SwarmProtocol = {}): ResolvedProtocol {
  if (p === null || typeof p !== 'object') throw new InvalidArgumentError('protocol must be an object { name?, version?, encrypted? }');
  const name = p.name ?? DEFAULT_PROTOCOL_NAME;
  const version = String(p.version ?? DEFAULT_PROTOCOL_VERSION);
  const encrypted = p.encrypted ?? true;
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > MAX_PROTOCOL_NAME) {
    throw new InvalidArgumentError(`protocol name must be a non-empty string of at most ${MAX_PROTOCOL_NAME} bytes`);
  }
  if (version.length === 0 || Buffer.byteLength(version) > MAX_PROTOCOL_VERSION) {
    throw new InvalidArgumentError(`protocol version must be 1..${MAX_PROTOCOL_VERSION} bytes`);
  }
  if (typeof encrypted !== 'boolean') throw new InvalidArgumentError('protocol.encrypted must be a boolean');
  const n = Buffer.from(name, 'utf8');
  const v = Buffer.from(version, 'utf8');
  const hash = createHash('sha256')
    .update('p2pd/swarm/protocol/v1\0')
    .update(Buffer.from([n.length]))
    .update(n)
    .update(Buffer.from([v.length]))
    .update(v)
    .update(Buffer.from([encrypted ? 1 : 0]))
    .digest();
  return { name, version, encrypted, hash };
}

/** Same name, version and encryption mode. */
export function sameProtocol(a: ProtocolDescriptor, b: ProtocolDescriptor): boolean {
  return a.name === b.name && a.version === b.version && a.encrypted === b.encrypted;
}

/** `name/version (encrypted|plaintext)` for messages. */
export function describeProtocol(p: ProtocolDescriptor): string {
  return `${JSON.stringify(p.name)} v${JSON.stringify(p.version)} (${p.encrypted ? 'encrypted' : 'plaintext'})`;
}

/** A decoded preamble. */
export interface Preamble {
  readonly protocol: ProtocolDescriptor;
  readonly nonce: Buffer;
  /** The encoded preamble including its length prefix (hashed into the transcript). */
  readonly raw: Buffer;
}

/** Encodes our preamble with a fresh nonce. */
export function encodePreamble(p: ProtocolDescriptor): Buffer {
  const n = Buffer.from(p.name, 'utf8');
  const v = Buffer.from(p.version, 'utf8');
  const body = MAGIC.length + 2 + NONCE_SIZE + 1 + n.length + 1 + v.length;
  return new Writer(4 + body)
    .u32(body)
    .bytes(MAGIC)
    .u8(PREAMBLE_VERSION)
    .u8(p.encrypted ? FLAG_ENCRYPTED : 0)
    .bytes(randomBytes(NONCE_SIZE))
    .u8(n.length)
    .bytes(n)
    .u8(v.length)
    .bytes(v)
    .done();
}

/**
 * Bytes a complete preamble needs, from its first 4 bytes; throws {@link DecodeError} when the
 * length is impossible (the peer is not a swarm peer).
 */
export function preambleLength(head: Buffer): number {
  const n = head.readUInt32BE(0);
  if (n < MAGIC.length + 2 + NONCE_SIZE + 2 || n > MAX_PREAMBLE_SIZE) throw new DecodeError('not a p2pd swarm preamble (bad length)');
  return 4 + n;
}

/** Decodes a complete preamble (length prefix included). @throws {@link DecodeError} */
export function decodePreamble(raw: Buffer): Preamble {
  const r = new Reader(raw, 'swarm preamble');
  const len = r.u32('length');
  if (len !== raw.length - 4) throw new DecodeError('swarm preamble: length mismatch');
  if (!r.bytes(MAGIC.length, 'magic').equals(MAGIC)) throw new DecodeError('not a p2pd swarm preamble (bad magic)');
  const ver = r.u8('version');
  if (ver !== PREAMBLE_VERSION) throw new DecodeError(`unsupported swarm preamble version ${ver}`);
  const flags = r.u8('flags');
  if ((flags & ~FLAG_ENCRYPTED) !== 0) throw new DecodeError('swarm preamble: unknown flags');
  const nonce = Buffer.from(r.bytes(NONCE_SIZE, 'nonce'));
  const name = r.str8(MAX_PROTOCOL_NAME, 'name');
  const version = r.str8(MAX_PROTOCOL_VERSION, 'version');
  r.end();
  if (name.length === 0 || version.length === 0) throw new DecodeError('swarm preamble: empty name or version');
  return { protocol: { name, version, encrypted: (flags & FLAG_ENCRYPTED) !== 0 }, nonce, raw: Buffer.from(raw) };
}

/** Transcript hash of a connection: binds both preambles (initiator's first). Used as Noise prologue and in the hello signature. */
export function transcriptHash(initiatorPreamble: Buffer, responderPreamble: Buffer): Buffer {
  return createHash('sha256').update('p2pd/swarm/transcript/v1\0').update(initiatorPreamble).update(responderPreamble).digest();
}

// ---------------------------------------------------------------------------- signatures --

/** DER prefix of an SPKI Ed25519 public key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** Most Ed25519 `KeyObject`s cached by {@link verifySignature}; the oldest is evicted first. */
const KEY_CACHE_LIMIT = 4096;
const keyCache = new Map<string, KeyObject>();

function publicKeyObject(pub: Uint8Array): KeyObject | undefined {
  if (pub.length !== 32) return undefined;
  const k = Buffer.from(pub.buffer, pub.byteOffset, 32).toString('latin1');
  let ko = keyCache.get(k);
  if (ko) return ko;
  try {
    ko = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(k, ko);
  return ko;
}

/** Verifies an Ed25519 signature; never throws (bad keys or signatures give `false`). Keys are cached. */
export function verifySignature(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  const ko = publicKeyObject(publicKey);
  if (!ko) return false;
  try {
    return edVerify(null, data, ko, signature);
  } catch {
    return false;
  }
}

/** `domain ‖ protocol hash ‖ body`: what swarm signatures cover. */
export function signingInput(domain: Buffer, protocolHash: Buffer, body: Uint8Array): Buffer {
  return Buffer.concat([domain, protocolHash, body]);
}

/** SHA-256 of a public key: the node id. */
export function nodeIdOf(publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(publicKey).digest();
}
