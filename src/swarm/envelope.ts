/**
 * Signed swarm messages (directed DATA and broadcast BCAST frames).
 *
 * ## Frame layout (big-endian)
 * ```
 * u8  frame type: 3 DATA, 4 BCAST
 * ── routing header, rewritten by relays, NOT signed ──
 * u8  hops (incremented per relay, ≤ MAX_HOPS)
 * u8  mode: 0 = greedy (DATA) / tree (BCAST), 1 = flood
 * u16 limit: BCAST tree — first XOR bucket this receiver is responsible for (0..256)
 * ── signed by the origin ──
 * u8  kind: 0 = application; other values belong to built-in services (e.g. 1 = synced dict)
 * u8  flags (0)
 * 32  origin Ed25519 public key (origin id = SHA-256 of it)
 * 32  target node id (DATA); all zero (BCAST)
 * 16  message id (random)
 * u64 timestamp, ms since epoch
 * u8  n, n × 32 excluded node ids (BCAST only; they relay but do not deliver)
 * u32 payload length, payload
 * 64  Ed25519 signature over "p2pd/swarm/msg/v1\0" ‖ protocol hash ‖ frame type ‖ the signed bytes
 * ```
 * A relay verifies the signature and the timestamp window before forwarding, so a modified
 * or forged message dies at the first honest node.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { DecodeError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { Reader, Writer } from './codec.js';
import { ENVELOPE_OVERHEAD, MAX_CLOCK_SKEW, MAX_EXCLUDE, MAX_FRAME_SIZE, MAX_HOPS, MAX_MESSAGE_AGE } from './constants.js';
import { nodeIdOf, signingInput, verifySignature } from './protocol.js';

/** Frame type of a directed message. */
export const FRAME_DATA = 3;
/** Frame type of a broadcast. */
export const FRAME_BCAST = 4;
/** Routing mode: greedy XOR routing (DATA) or bucket tree (BCAST). */
export const MODE_NORMAL = 0;
/** Routing mode: flood to every link (fallback when the normal mode has no way forward). */
export const MODE_FLOOD = 1;
/** Message kind of application data. */
export const KIND_USER = 0;

const MSG_DOMAIN = Buffer.from('p2pd/swarm/msg/v1\0', 'latin1');
const ZERO_ID = Buffer.alloc(32);
/** Offset of the signed part in a frame. */
const SIGNED_START = 5;
/** Bytes of a frame besides payload and excluded ids. */
export const FRAME_FIXED = ENVELOPE_OVERHEAD;

/** A decoded DATA/BCAST frame. Byte fields are views into `raw`. */
export interface Envelope {
  /** Frame type: DATA (directed) or BCAST. */
  readonly type: typeof FRAME_DATA | typeof FRAME_BCAST;
  /** Relays so far (routing header, not signed). */
  hops: number;
  /** Routing mode: greedy / tree, or flood (routing header, not signed). */
  mode: number;
  /** BCAST tree: first XOR bucket this receiver is responsible for (routing header, not signed). */
  limit: number;
  /** Message kind: 0 application, others built-in services. */
  readonly kind: number;
  /** The origin's Ed25519 public key. */
  readonly originKey: Buffer;
  /** Target node id (DATA); all zero (BCAST). */
  readonly target: Buffer;
  /** Random 16-byte message id. */
  readonly msgId: Buffer;
  /** Origin time, ms since epoch. */
  readonly timestamp: number;
  /** Node ids that relay but do not deliver (BCAST). */
  readonly exclude: readonly Buffer[];
  /** The payload. */
  readonly payload: Buffer;
  /** The origin's Ed25519 signature. */
  readonly signature: Buffer;
  /** The signed bytes. */
  readonly signed: Buffer;
  /** The whole frame as received or built. */
  readonly raw: Buffer;
}

/** What {@link buildEnvelope} needs. */
export interface EnvelopeInit {
  /** Frame type: directed (DATA) or broadcast (BCAST). */
  type: typeof FRAME_DATA | typeof FRAME_BCAST;
  /** Application message kind. */
  kind: number;
  /** Target node id (DATA). @default all zero */
  target?: Buffer;
  /** Node ids that relay but do not deliver (BCAST). @default [] */
  exclude?: readonly Uint8Array[];
  /** The payload. */
  payload: Uint8Array;
  /** Origin time, Unix ms. */
  timestamp: number;
  /** 16-byte message id. @default random */
  msgId?: Buffer;
}

/** Builds and signs a frame (hops 0, normal mode, limit 0). */
export function buildEnvelope(identity: Identity, protocolHash: Buffer, init: EnvelopeInit): Envelope {
  const exclude = init.exclude ?? [];
  const size = FRAME_FIXED + exclude.length * 32 + init.payload.length;
  const w = new Writer(size);
  w.u8(init.type).u8(0).u8(MODE_NORMAL).u16(0);
  w.u8(init.kind).u8(0).bytes(identity.publicKey).bytes(init.target ?? ZERO_ID).bytes(init.msgId ?? randomBytes(16)).u64(init.timestamp);
  w.u8(exclude.length);
  for (const e of exclude) w.bytes(e);
  w.u32(init.payload.length).bytes(init.payload);
  const signedEnd = w.pos;
  const signed = w.buf.subarray(SIGNED_START, signedEnd);
  w.bytes(identity.sign(toSign(protocolHash, init.type, signed)));
  return decodeEnvelope(w.done());
}

function toSign(protocolHash: Buffer, type: number, signed: Buffer): Buffer {
  return signingInput(MSG_DOMAIN, protocolHash, Buffer.concat([Buffer.from([type]), signed]));
}

/** Decodes a DATA/BCAST frame (structure and limits only). @throws {@link DecodeError} */
export function decodeEnvelope(raw: Buffer): Envelope {
  if (raw.length > MAX_FRAME_SIZE) throw new DecodeError(`swarm message of ${raw.length} bytes exceeds ${MAX_FRAME_SIZE}`);
  const r = new Reader(raw, 'swarm message');
  const type = r.u8('type');
  if (type !== FRAME_DATA && type !== FRAME_BCAST) throw new DecodeError(`swarm message: bad frame type ${type}`);
  const hops = r.u8('hops');
  if (hops > MAX_HOPS) throw new DecodeError('swarm message: too many hops');
  const mode = r.u8('mode');
  if (mode !== MODE_NORMAL && mode !== MODE_FLOOD) throw new DecodeError('swarm message: bad mode');
  const limit = r.u16('limit');
  if (limit > 256) throw new DecodeError('swarm message: bad limit');
  const kind = r.u8('kind');
  if (r.u8('flags') !== 0) throw new DecodeError('swarm message: unknown flags');
  const originKey = r.bytes(32, 'origin');
  const target = r.bytes(32, 'target');
  const msgId = r.bytes(16, 'message id');
  const timestamp = r.u64('timestamp');
  const nEx = r.u8('exclude count');
  if (nEx > MAX_EXCLUDE || (type === FRAME_DATA && nEx !== 0)) throw new DecodeError('swarm message: bad exclude list');
  if (type === FRAME_BCAST && !target.equals(ZERO_ID)) throw new DecodeError('swarm message: broadcast with a target');
  const exclude: Buffer[] = [];
  for (let i = 0; i < nEx; i++) exclude.push(r.bytes(32, 'excluded id'));
  const len = r.u32('payload length');
  const payload = r.bytes(len, 'payload');
  const signed = raw.subarray(SIGNED_START, r.pos);
  const signature = r.bytes(64, 'signature');
  r.end();
  return { type, hops, mode, limit, kind, originKey, target, msgId, timestamp, exclude, payload, signature, signed, raw };
}

/** Why a message was rejected, or `undefined` if its signature and timestamp are good. */
export function envelopeProblem(e: Envelope, protocolHash: Buffer, now: number): string | undefined {
  if (e.timestamp > now + MAX_CLOCK_SKEW) return 'timestamp in the future';
  if (e.timestamp < now - MAX_MESSAGE_AGE) return 'message too old';
  if (!verifySignature(e.originKey, toSign(protocolHash, e.type, e.signed), e.signature)) return 'bad signature';
  return undefined;
}

/** The frame to forward: a copy of `e.raw` with a new routing header. */
export function relayFrame(e: Envelope, hops: number, mode: number, limit: number): Buffer {
  const out = Buffer.from(e.raw);
  out[1] = hops;
  out[2] = mode;
  out.writeUInt16BE(limit, 3);
  return out;
}

/** Origin node id of a message. */
export function originId(e: Envelope): Buffer {
  return nodeIdOf(e.originKey);
}
