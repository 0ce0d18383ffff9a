/**
 * STUN messages (RFC 8489, RFC 3489 classic): header, strict decoding, encoding with
 * MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256 / FINGERPRINT, and their verification.
 *
 * {@link decodeStun} throws {@link DecodeError} and nothing else on any malformed input: it
 * checks the header bits, that the length field is a multiple of 4 and matches the buffer,
 * every attribute length against the buffer, at most {@link MAX_STUN_ATTRIBUTES} attributes,
 * the RFC length of every typed attribute, and that FINGERPRINT comes last. As RFC 8489 §14.5
 * and §14.6 prescribe, attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256
 * and FINGERPRINT (and after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT) are framed-checked
 * but ignored. Unknown comprehension-required attributes do not fail decoding; they are
 * listed in `unknownRequired` so a server can answer 420 (with UNKNOWN-ATTRIBUTES) and a
 * client can fail the transaction (RFC 8489 §6.3).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { DecodeError, InvalidArgumentError, MessageTooBigError, StunError } from '../../errors.js';
import {
  decodeAttribute, encodeAttributeValue, type AttrContext, type KnownAttributeType, type StunAttribute,
  type StunAttributeValues,
} from './attributes.js';
import {
  ATTR, ATTR_HEADER_SIZE, CLASS, CLASSIC_TRANSACTION_ID_SIZE, ERROR_REASON, MAGIC_COOKIE, MAX_METHOD,
  MAX_STUN_ATTRIBUTES, MAX_STUN_MESSAGE_SIZE, STUN_HEADER_SIZE, TRANSACTION_ID_SIZE, isComprehensionRequired,
  type StunClass,
} from './constants.js';
import { fingerprintOf, hmac, macEquals, type StunKey } from './integrity.js';

/** A STUN message as the codec sees it. */
export interface StunMessage {
  /** Method, 0–0xFFF; see `METHOD`. */
  method: number;
  /** Class; see `CLASS`. */
  cls: StunClass;
  /** 12 bytes (RFC 8489), or 16 bytes when `cookie` is false (RFC 3489 classic). */
  transactionId: Uint8Array;
  /** Attributes in wire order. */
  attributes: StunAttribute[];
  /** Whether the header carries the magic cookie (RFC 5389+). Default `true` when encoding. */
  cookie?: boolean;
}

/** Byte offsets (in `raw`) of the attributes that protect a decoded message. */
export interface ProtectionOffsets {
  /** Start of the MESSAGE-INTEGRITY attribute header. */
  integrity?: number;
  /** Start of the MESSAGE-INTEGRITY-SHA256 attribute header. */
  integritySha256?: number;
  /** Start of the FINGERPRINT attribute header. */
  fingerprint?: number;
}

/** The result of {@link decodeStun}. Byte-valued attributes and `raw` are views into the input. */
export interface DecodedStunMessage extends StunMessage {
  cookie: boolean;
  /** The whole message as received (needed to verify integrity). */
  raw: Buffer;
  /** Unknown comprehension-required attribute types, de-duplicated, in wire order. */
  unknownRequired: number[];
  /** Where MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT sit in `raw`. */
  offsets: ProtectionOffsets;
}

/** Options of {@link encodeStun}. */
export interface EncodeStunOptions {
  /**
   * Append MESSAGE-INTEGRITY keyed with `key`: the SHA-1 attribute (`sha256` unset or `false`),
   * MESSAGE-INTEGRITY-SHA256 (`sha256: true`) or both (`'both'`). Not allowed on classic (RFC 3489) messages.
   * @default undefined (no integrity attribute)
   */
  integrity?: { key: StunKey; sha256?: boolean | 'both' };
  /** Append FINGERPRINT (last). @default false */
  fingerprint?: boolean;
}

const PROTECTION = new Set<number>([ATTR.MESSAGE_INTEGRITY, ATTR.MESSAGE_INTEGRITY_SHA256, ATTR.FINGERPRINT]);

/** Packs a method and class into the 14-bit message type (RFC 8489 §5). */
export function messageType(method: number, cls: StunClass): number {
  return (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7);
}

/** Splits a 14-bit message type into method and class. */
export function parseMessageType(type: number): { method: number; cls: StunClass } {
  const method = (type & 0x000f) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0f80);
  const cls = (((type >> 4) & 1) | ((type >> 7) & 2)) as StunClass;
  return { method, cls };
}

/** A fresh random transaction id: 12 bytes, or 16 for an RFC 3489 classic message. */
export function newTransactionId(classic = false): Buffer {
  if (!classic) return randomBytes(TRANSACTION_ID_SIZE);
  for (;;) {
    const id = randomBytes(CLASSIC_TRANSACTION_ID_SIZE);
    if (id.readUInt32BE(0) !== MAGIC_COOKIE) return id;
  }
}

/**
 * Encodes `msg`. MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT entries in
 * `msg.attributes` are skipped: they are computed from `opts` and appended in RFC order.
 * Throws {@link InvalidArgumentError} on bad input (including integrity on a classic message,
 * whose RFC 3489 HMAC variant is not implemented) and {@link MessageTooBigError} above
 * {@link MAX_STUN_MESSAGE_SIZE}.
 */
export function encodeStun(msg: StunMessage, opts: EncodeStunOptions = {}): Buffer {
  if (msg === null || typeof msg !== 'object') throw new InvalidArgumentError('STUN message must be an object');
  const { method, cls, transactionId: tid } = msg;
  if (!Number.isInteger(method) || method < 0 || method > MAX_METHOD) throw new InvalidArgumentError(`bad STUN method ${String(method)}`);
  if (cls !== CLASS.REQUEST && cls !== CLASS.INDICATION && cls !== CLASS.SUCCESS && cls !== CLASS.ERROR) throw new InvalidArgumentError(`bad STUN class ${String(cls)}`);
  if (!Array.isArray(msg.attributes)) throw new InvalidArgumentError('STUN attributes must be an array');
  const cookie = msg.cookie !== false;
  const header = Buffer.alloc(STUN_HEADER_SIZE);
  header.writeUInt16BE(messageType(method, cls), 0);
  if (!(tid instanceof Uint8Array) || tid.length !== (cookie ? TRANSACTION_ID_SIZE : CLASSIC_TRANSACTION_ID_SIZE)) {
    throw new InvalidArgumentError(`transaction id must be ${cookie ? TRANSACTION_ID_SIZE : CLASSIC_TRANSACTION_ID_SIZE} bytes`);
  }
  if (cookie) {
    header.writeUInt32BE(MAGIC_COOKIE, 4);
    header.set(tid, 8);
  } else {
    header.set(tid, 4);
    if (header.readUInt32BE(4) === MAGIC_COOKIE) throw new InvalidArgumentError('classic transaction id must not start with the magic cookie');
  }
  const ctx: AttrContext = { xorKey: header.subarray(4, 20) };
  const parts: Uint8Array[] = [header];
  let size = STUN_HEADER_SIZE;
  let count = 0;
  const add = (type: number, value: Uint8Array): void => {
    if (value.length > 0xffff) throw new MessageTooBigError(`STUN attribute 0x${type.toString(16)} value exceeds 65535 bytes`);
    if (++count > MAX_STUN_ATTRIBUTES) throw new InvalidArgumentError(`more than ${MAX_STUN_ATTRIBUTES} STUN attributes`);
    const pad = (4 - (value.length % 4)) % 4;
    size += ATTR_HEADER_SIZE + value.length + pad;
    if (size > MAX_STUN_MESSAGE_SIZE) throw new MessageTooBigError(`STUN message exceeds ${MAX_STUN_MESSAGE_SIZE} bytes`);
    const h = Buffer.alloc(ATTR_HEADER_SIZE);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(value.length, 2);
    parts.push(h, value);
    if (pad) parts.push(Buffer.alloc(pad));
  };
  for (const a of msg.attributes) {
    if (a === null || typeof a !== 'object') throw new InvalidArgumentError('STUN attribute must be an object');
    if (PROTECTION.has(a.type)) continue;
    add(a.type, encodeAttributeValue(a, ctx));
  }
  if (opts.integrity) {
    if (!cookie) throw new InvalidArgumentError('MESSAGE-INTEGRITY on RFC 3489 classic messages is not supported');
    const { key, sha256 = false } = opts.integrity;
    if (sha256 !== true) {
      header.writeUInt16BE(size - STUN_HEADER_SIZE + 24, 2);
      add(ATTR.MESSAGE_INTEGRITY, hmac(key, false, ...parts));
    }
    if (sha256) {
      header.writeUInt16BE(size - STUN_HEADER_SIZE + 36, 2);
      add(ATTR.MESSAGE_INTEGRITY_SHA256, hmac(key, true, ...parts));
    }
  }
  if (opts.fingerprint) {
    header.writeUInt16BE(size - STUN_HEADER_SIZE + 8, 2);
    const fp = Buffer.alloc(4);
    fp.writeUInt32BE(fingerprintOf(Buffer.concat(parts, size)), 0);
    add(ATTR.FINGERPRINT, fp);
  }
  header.writeUInt16BE(size - STUN_HEADER_SIZE, 2);
  return Buffer.concat(parts, size);
}

function fail(why: string): never {
  throw new DecodeError(`malformed STUN message: ${why}`);
}

/**
 * Decodes one STUN message that fills `buf` exactly (a datagram, or a frame from the TCP
 * splitter). Accepts RFC 8489/5389 messages and RFC 3489 classic ones (no magic cookie:
 * `cookie: false`, 16-byte transaction id; XOR attributes are then unmasked with those 16
 * bytes). Throws {@link DecodeError}, and only that, on any malformation.
 */
export function decodeStun(buf: Uint8Array): DecodedStunMessage {
  if (!(buf instanceof Uint8Array)) fail('input is not a byte array');
  if (buf.length < STUN_HEADER_SIZE) fail(`${buf.length} bytes, shorter than the header`);
  if (buf.length > MAX_STUN_MESSAGE_SIZE) fail(`${buf.length} bytes, more than ${MAX_STUN_MESSAGE_SIZE}`);
  const raw = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = raw.readUInt16BE(0);
  if (type & 0xc000) fail('the two leading bits are not zero');
  const length = raw.readUInt16BE(2);
  if (length % 4 !== 0) fail(`length ${length} is not a multiple of 4`);
  if (STUN_HEADER_SIZE + length !== raw.length) fail(`length field ${length} but ${raw.length - STUN_HEADER_SIZE} bytes follow the header`);
  const cookie = raw.readUInt32BE(4) === MAGIC_COOKIE;
  const { method, cls } = parseMessageType(type);
  const transactionId = Buffer.from(raw.subarray(cookie ? 8 : 4, STUN_HEADER_SIZE));
  const ctx: AttrContext = { xorKey: raw.subarray(4, STUN_HEADER_SIZE) };
  const attributes: StunAttribute[] = [];
  const unknownRequired: number[] = [];
  const offsets: ProtectionOffsets = {};
  let off = STUN_HEADER_SIZE;
  let count = 0;
  while (off < raw.length) {
    if (raw.length - off < ATTR_HEADER_SIZE) fail('truncated attribute header');
    const t = raw.readUInt16BE(off);
    const l = raw.readUInt16BE(off + 2);
    const next = off + ATTR_HEADER_SIZE + l + ((4 - (l % 4)) % 4);
    if (next > raw.length) fail(`attribute 0x${t.toString(16)} length ${l} overruns the message`);
    if (++count > MAX_STUN_ATTRIBUTES) fail(`more than ${MAX_STUN_ATTRIBUTES} attributes`);
    if (offsets.fingerprint !== undefined) fail('attribute after FINGERPRINT');
    const value = raw.subarray(off + ATTR_HEADER_SIZE, off + ATTR_HEADER_SIZE + l);
    let keep = true;
    if (t === ATTR.FINGERPRINT) offsets.fingerprint = off;
    else if (offsets.integritySha256 !== undefined) keep = false;
    else if (t === ATTR.MESSAGE_INTEGRITY_SHA256) offsets.integritySha256 = off;
    else if (offsets.integrity !== undefined) keep = false;
    else if (t === ATTR.MESSAGE_INTEGRITY) offsets.integrity = off;
    if (keep) {
      const a = decodeAttribute(t, value, ctx);
      if (a.raw === true && isComprehensionRequired(t) && !unknownRequired.includes(t)) unknownRequired.push(t);
      attributes.push(a);
    }
    off = next;
  }
  return { method, cls, transactionId, attributes, cookie, raw, unknownRequired, offsets };
}

/**
 * Cheap check that `buf` looks like one whole STUN message: leading bits 00, length field a
 * multiple of 4 that matches the buffer, and the magic cookie (unless `classic` is set, which
 * also admits RFC 3489 messages). Does not validate attributes.
 */
export function isStun(buf: Uint8Array, opts: { classic?: boolean } = {}): boolean {
  if (!(buf instanceof Uint8Array) || buf.length < STUN_HEADER_SIZE || buf.length > MAX_STUN_MESSAGE_SIZE) return false;
  if (((buf[0] as number) & 0xc0) !== 0) return false;
  const length = ((buf[2] as number) << 8) | (buf[3] as number);
  if (length % 4 !== 0 || length + STUN_HEADER_SIZE !== buf.length) return false;
  if (opts.classic) return true;
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32BE(4) === MAGIC_COOKIE;
}

function asDecoded(msg: DecodedStunMessage | Uint8Array): DecodedStunMessage | undefined {
  if (!(msg instanceof Uint8Array)) return msg;
  try {
    return decodeStun(msg);
  } catch (e) {
    if (e instanceof DecodeError) return undefined;
    throw e;
  }
}

/** Recomputes the MAC of the integrity attribute at `off` and compares it with the received one. */
function checkMac(raw: Buffer, off: number, key: StunKey, sha256: boolean): boolean {
  const len = raw.readUInt16BE(off + 2);
  const prefix = Buffer.from(raw.subarray(0, off));
  prefix.writeUInt16BE(off - STUN_HEADER_SIZE + ATTR_HEADER_SIZE + len, 2);
  return macEquals(raw.subarray(off + ATTR_HEADER_SIZE, off + ATTR_HEADER_SIZE + len), hmac(key, sha256, prefix));
}

/**
 * Verifies MESSAGE-INTEGRITY-SHA256 if present (else MESSAGE-INTEGRITY), or exactly the one
 * named by `opts.algorithm`. Returns false when the attribute is absent, the MAC is wrong, the
 * bytes do not decode, or the message is RFC 3489 classic (unsupported HMAC variant).
 * A truncated MESSAGE-INTEGRITY-SHA256 (16–28 bytes) is checked against the HMAC prefix.
 */
export function verifyIntegrity(msg: DecodedStunMessage | Uint8Array, key: StunKey, opts: { algorithm?: 'sha1' | 'sha256' } = {}): boolean {
  const m = asDecoded(msg);
  if (!m || !m.cookie) return false;
  const { integrity, integritySha256 } = m.offsets;
  const useSha256 = opts.algorithm === 'sha256' || (opts.algorithm === undefined && integritySha256 !== undefined);
  const off = useSha256 ? integritySha256 : integrity;
  return off !== undefined && checkMac(m.raw, off, key, useSha256);
}

/** True if the message carries a FINGERPRINT attribute and its CRC-32 is correct. */
export function verifyFingerprint(msg: DecodedStunMessage | Uint8Array): boolean {
  const m = asDecoded(msg);
  const off = m?.offsets.fingerprint;
  if (m === undefined || off === undefined) return false;
  return fingerprintOf(m.raw.subarray(0, off)) === m.raw.readUInt32BE(off + ATTR_HEADER_SIZE);
}

/** The value of the first typed attribute of `type`, or `undefined`. */
export function getAttr<K extends KnownAttributeType>(msg: StunMessage, type: K): StunAttributeValues[K] | undefined {
  for (const a of msg.attributes) if (a.type === type && a.raw !== true) return a.value as StunAttributeValues[K];
  return undefined;
}

/** The values of all typed attributes of `type`, in order (e.g. several XOR-PEER-ADDRESS). */
export function getAttrs<K extends KnownAttributeType>(msg: StunMessage, type: K): StunAttributeValues[K][] {
  const out: StunAttributeValues[K][] = [];
  for (const a of msg.attributes) if (a.type === type && a.raw !== true) out.push(a.value as StunAttributeValues[K]);
  return out;
}

/**
 * For an error response, a {@link StunError} carrying its ERROR-CODE (`errorCode`, `reason`);
 * `undefined` for any other class. A missing ERROR-CODE gives `errorCode` undefined.
 */
export function stunErrorOf(msg: StunMessage): StunError | undefined {
  if (msg.cls !== CLASS.ERROR) return undefined;
  const e = getAttr(msg, ATTR.ERROR_CODE);
  if (!e) return new StunError('STUN error response without ERROR-CODE');
  const reason = e.reason || ERROR_REASON[e.code] || '';
  return new StunError(`STUN error ${e.code}${reason ? ` ${reason}` : ''}`, { errorCode: e.code, reason });
}
