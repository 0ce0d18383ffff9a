/**
 * Typed STUN/TURN attribute values and their strict encoders/decoders. Every decoder checks the
 * exact length its RFC prescribes and throws {@link DecodeError} (only) on a malformed value;
 * every encoder validates its input and throws {@link InvalidArgumentError}.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../../errors.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import {
  ADDRESS_FAMILY, ATTR, CHANGE_IP_FLAG, CHANGE_PORT_FLAG, INTEGRITY_SHA1_SIZE, INTEGRITY_SHA256_MIN_SIZE,
  INTEGRITY_SHA256_SIZE, MAX_TEXT_BYTES, MAX_TEXT_CHARS, MAX_USERNAME_BYTES,
} from './constants.js';
import { bytesToIp, ipToBytes } from '../../interfaces/ip.js';

/** ERROR-CODE value: `code` 300–699 and a UTF-8 reason phrase. */
export interface StunErrorValue {
  /** Numeric error code, e.g. 401. */
  code: number;
  /** Human-readable reason phrase (may be empty). */
  reason: string;
}

/** CHANGE-REQUEST value (RFC 5780 §7.2 / RFC 3489 §11.2.4). */
export interface ChangeRequest {
  /** Ask the server to answer from its other IP address. */
  changeIp: boolean;
  /** Ask the server to answer from its other port. */
  changePort: boolean;
}

/** EVEN-PORT value (RFC 8656 §18.8). */
export interface EvenPort {
  /** R bit: also reserve the next-higher port. */
  reserve: boolean;
}

/** The value type of every attribute the codec understands, keyed by attribute type. */
export interface StunAttributeValues {
  [ATTR.MAPPED_ADDRESS]: Endpoint;
  [ATTR.RESPONSE_ADDRESS]: Endpoint;
  [ATTR.CHANGE_REQUEST]: ChangeRequest;
  [ATTR.SOURCE_ADDRESS]: Endpoint;
  [ATTR.CHANGED_ADDRESS]: Endpoint;
  [ATTR.USERNAME]: string;
  [ATTR.PASSWORD]: Uint8Array;
  [ATTR.MESSAGE_INTEGRITY]: Uint8Array;
  [ATTR.ERROR_CODE]: StunErrorValue;
  [ATTR.UNKNOWN_ATTRIBUTES]: number[];
  [ATTR.REFLECTED_FROM]: Endpoint;
  [ATTR.CHANNEL_NUMBER]: number;
  [ATTR.LIFETIME]: number;
  [ATTR.XOR_PEER_ADDRESS]: Endpoint;
  [ATTR.DATA]: Uint8Array;
  [ATTR.REALM]: string;
  [ATTR.NONCE]: string;
  [ATTR.XOR_RELAYED_ADDRESS]: Endpoint;
  [ATTR.REQUESTED_ADDRESS_FAMILY]: 4 | 6;
  [ATTR.EVEN_PORT]: EvenPort;
  [ATTR.REQUESTED_TRANSPORT]: number;
  [ATTR.DONT_FRAGMENT]: true;
  [ATTR.MESSAGE_INTEGRITY_SHA256]: Uint8Array;
  [ATTR.USERHASH]: Uint8Array;
  [ATTR.XOR_MAPPED_ADDRESS]: Endpoint;
  [ATTR.RESERVATION_TOKEN]: Uint8Array;
  [ATTR.PRIORITY]: number;
  [ATTR.USE_CANDIDATE]: true;
  [ATTR.PADDING]: Uint8Array;
  [ATTR.RESPONSE_PORT]: number;
  [ATTR.CONNECTION_ID]: number;
  [ATTR.ADDITIONAL_ADDRESS_FAMILY]: 4 | 6;
  [ATTR.SOFTWARE]: string;
  [ATTR.ALTERNATE_SERVER]: Endpoint;
  [ATTR.CACHE_TIMEOUT]: number;
  [ATTR.FINGERPRINT]: number;
  [ATTR.ICE_CONTROLLED]: bigint;
  [ATTR.ICE_CONTROLLING]: bigint;
  [ATTR.RESPONSE_ORIGIN]: Endpoint;
  [ATTR.OTHER_ADDRESS]: Endpoint;
}

/** An attribute type the codec has a typed codec for. */
export type KnownAttributeType = keyof StunAttributeValues;

/** A typed attribute: `{ type: ATTR.SOFTWARE, value: 'p2pd' }`. */
export type KnownStunAttribute = {
  [K in KnownAttributeType]: { type: K; value: StunAttributeValues[K]; raw?: false };
}[KnownAttributeType];

/**
 * An attribute carried as opaque bytes: any type without a typed codec when decoding, or any
 * type at all when encoding (the bytes are sent verbatim; padding is added).
 */
export interface RawStunAttribute {
  /** Attribute type, 0–0xFFFF. */
  type: number;
  /** Value bytes, without padding. */
  value: Uint8Array;
  /** Marks the raw form. */
  raw: true;
}

/** One attribute of a {@link StunMessage}. */
export type StunAttribute = KnownStunAttribute | RawStunAttribute;

/**
 * Per-message context of the value codecs: the 16 header bytes after type and length
 * (magic cookie + transaction id, or the classic 16-byte transaction id), used as the XOR mask
 * of XOR-*-ADDRESS attributes.
 */
export interface AttrContext {
  /** Header bytes 4–19. */
  xorKey: Uint8Array;
}

interface Codec {
  decode(v: Buffer, ctx: AttrContext): unknown;
  encode(v: unknown, ctx: AttrContext): Uint8Array;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bad(type: number, why: string): DecodeError {
  return new DecodeError(`malformed STUN attribute 0x${type.toString(16).padStart(4, '0')}: ${why}`);
}

function arg(type: number, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid value for STUN attribute 0x${type.toString(16).padStart(4, '0')}: ${why}`);
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

function exact(type: number, v: Buffer, n: number): void {
  if (v.length !== n) throw bad(type, `length ${v.length}, expected ${n}`);
}

function addressCodec(type: number, xor: boolean): Codec {
  return {
    decode(v, ctx) {
      if (v.length < 4) throw bad(type, 'too short for an address');
      const fam = v[1];
      const size = fam === ADDRESS_FAMILY.IPV4 ? 4 : fam === ADDRESS_FAMILY.IPV6 ? 16 : -1;
      if (size < 0) throw bad(type, `unknown address family ${fam}`);
      exact(type, v, 4 + size);
      let port = v.readUInt16BE(2);
      const ip = Uint8Array.from(v.subarray(4));
      if (xor) {
        port ^= ((ctx.xorKey[0] as number) << 8) | (ctx.xorKey[1] as number);
        for (let i = 0; i < size; i++) ip[i] = (ip[i] as number) ^ (ctx.xorKey[i] as number);
      }
      return { host: bytesToIp(ip), port, family: size === 4 ? 4 : 6 } satisfies Endpoint;
    },
    encode(value, ctx) {
      const e = value as Partial<Endpoint> | null;
      if (e === null || typeof e !== 'object' || typeof e.host !== 'string') throw arg(type, 'expected { host, port }');
      if (!isUint(e.port, 0xffff)) throw arg(type, `bad port ${String(e.port)}`);
      const ip = ipToBytes(e.host);
      if (e.family !== undefined && e.family !== (ip.length === 4 ? 4 : 6)) throw arg(type, 'family does not match host');
      const out = Buffer.alloc(4 + ip.length);
      out[1] = ip.length === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6;
      out.writeUInt16BE(xor ? e.port ^ (((ctx.xorKey[0] as number) << 8) | (ctx.xorKey[1] as number)) : e.port, 2);
      for (let i = 0; i < ip.length; i++) out[4 + i] = (ip[i] as number) ^ (xor ? (ctx.xorKey[i] as number) : 0);
      return out;
    },
  };
}

function decodeText(type: number, v: Uint8Array, maxBytes: number): string {
  if (v.length > maxBytes) throw bad(type, `${v.length} bytes, at most ${maxBytes} allowed`);
  try {
    return utf8.decode(v);
  } catch {
    throw bad(type, 'not valid UTF-8');
  }
}

function encodeText(type: number, value: unknown, maxBytes: number, maxChars: number): Buffer {
  if (typeof value !== 'string') throw arg(type, 'expected a string');
  const b = Buffer.from(value, 'utf8');
  if (b.length > maxBytes) throw arg(type, `${b.length} bytes, at most ${maxBytes} allowed`);
  if ([...value].length >= maxChars) throw arg(type, `must have fewer than ${maxChars} characters`);
  if (b.toString('utf8') !== value) throw arg(type, 'contains lone surrogates');
  return b;
}

function textCodec(type: number, maxBytes: number, maxChars: number): Codec {
  return {
    decode: (v) => decodeText(type, v, maxBytes),
    encode: (value) => encodeText(type, value, maxBytes, maxChars),
  };
}

function bytesCodec(type: number, min: number, max: number, step = 1): Codec {
  const ok = (n: number): boolean => n >= min && n <= max && (n - min) % step === 0;
  return {
    decode(v) {
      if (!ok(v.length)) throw bad(type, `length ${v.length} not allowed`);
      return v;
    },
    encode(value) {
      if (!(value instanceof Uint8Array)) throw arg(type, 'expected a Uint8Array');
      if (!ok(value.length)) throw arg(type, `length ${value.length} not allowed`);
      return value;
    },
  };
}

/** A fixed-size value: `size` bytes, read/written by `get`/`put`. */
function fixedCodec(type: number, size: number, get: (v: Buffer) => unknown, check: (x: unknown) => boolean, put: (o: Buffer, x: never) => void): Codec {
  return {
    decode(v) {
      exact(type, v, size);
      return get(v);
    },
    encode(value) {
      if (!check(value)) throw arg(type, `bad value of type ${typeof value}`);
      const out = Buffer.alloc(size);
      put(out, value as never);
      return out;
    },
  };
}

const u32 = (type: number): Codec => fixedCodec(type, 4, (v) => v.readUInt32BE(0), (x) => isUint(x, 0xffffffff), (o, x: number) => o.writeUInt32BE(x, 0));
const empty = (type: number): Codec => fixedCodec(type, 0, () => true, (x) => x === true, () => {});
const u64 = (type: number): Codec =>
  fixedCodec(type, 8, (v) => v.readBigUInt64BE(0), (x) => typeof x === 'bigint' && x >= 0n && x < 1n << 64n, (o, x: bigint) => o.writeBigUInt64BE(x, 0));

function familyCodec(type: number): Codec {
  return fixedCodec(
    type, 4,
    (v) => {
      if (v[0] === ADDRESS_FAMILY.IPV4) return 4;
      if (v[0] === ADDRESS_FAMILY.IPV6) return 6;
      throw bad(type, `unknown address family ${v[0]}`);
    },
    (x) => x === 4 || x === 6,
    (o, x: 4 | 6) => { o[0] = x === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6; },
  );
}

const errorCodeCodec: Codec = {
  decode(v) {
    if (v.length < 4) throw bad(ATTR.ERROR_CODE, 'too short');
    const cls = (v[2] as number) & 0x07;
    const num = v[3] as number;
    if (cls < 3 || cls > 6 || num > 99) throw bad(ATTR.ERROR_CODE, `invalid code class ${cls} number ${num}`);
    return { code: cls * 100 + num, reason: decodeText(ATTR.ERROR_CODE, v.subarray(4), MAX_TEXT_BYTES) } satisfies StunErrorValue;
  },
  encode(value) {
    const e = value as Partial<StunErrorValue> | null;
    if (e === null || typeof e !== 'object' || !isUint(e.code, 699) || e.code < 300) throw arg(ATTR.ERROR_CODE, 'code must be an integer 300-699');
    const reason = encodeText(ATTR.ERROR_CODE, e.reason ?? '', MAX_TEXT_BYTES, MAX_TEXT_CHARS);
    const out = Buffer.alloc(4 + reason.length);
    out[2] = Math.floor(e.code / 100);
    out[3] = e.code % 100;
    reason.copy(out, 4);
    return out;
  },
};

const unknownAttributesCodec: Codec = {
  decode(v) {
    if (v.length % 2 !== 0) throw bad(ATTR.UNKNOWN_ATTRIBUTES, 'odd length');
    const out: number[] = [];
    for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i));
    return out;
  },
  encode(value) {
    if (!Array.isArray(value) || value.length > 0x7fff || !value.every((t) => isUint(t, 0xffff))) {
      throw arg(ATTR.UNKNOWN_ATTRIBUTES, 'expected an array of attribute types');
    }
    const out = Buffer.alloc(value.length * 2);
    value.forEach((t: number, i) => out.writeUInt16BE(t, 2 * i));
    return out;
  },
};

const isFlags = (x: unknown): boolean =>
  x !== null && typeof x === 'object' && typeof (x as ChangeRequest).changeIp === 'boolean' && typeof (x as ChangeRequest).changePort === 'boolean';

const CODECS = new Map<number, Codec>();
for (const t of [ATTR.MAPPED_ADDRESS, ATTR.RESPONSE_ADDRESS, ATTR.SOURCE_ADDRESS, ATTR.CHANGED_ADDRESS, ATTR.REFLECTED_FROM,
  ATTR.ALTERNATE_SERVER, ATTR.RESPONSE_ORIGIN, ATTR.OTHER_ADDRESS]) CODECS.set(t, addressCodec(t, false));
for (const t of [ATTR.XOR_MAPPED_ADDRESS, ATTR.XOR_PEER_ADDRESS, ATTR.XOR_RELAYED_ADDRESS]) CODECS.set(t, addressCodec(t, true));
CODECS.set(ATTR.USERNAME, textCodec(ATTR.USERNAME, MAX_USERNAME_BYTES, Infinity));
for (const t of [ATTR.REALM, ATTR.NONCE, ATTR.SOFTWARE]) CODECS.set(t, textCodec(t, MAX_TEXT_BYTES, MAX_TEXT_CHARS));
for (const t of [ATTR.LIFETIME, ATTR.PRIORITY, ATTR.CONNECTION_ID, ATTR.CACHE_TIMEOUT, ATTR.FINGERPRINT]) CODECS.set(t, u32(t));
for (const t of [ATTR.DONT_FRAGMENT, ATTR.USE_CANDIDATE]) CODECS.set(t, empty(t));
for (const t of [ATTR.ICE_CONTROLLED, ATTR.ICE_CONTROLLING]) CODECS.set(t, u64(t));
for (const t of [ATTR.REQUESTED_ADDRESS_FAMILY, ATTR.ADDITIONAL_ADDRESS_FAMILY]) CODECS.set(t, familyCodec(t));
for (const t of [ATTR.DATA, ATTR.PADDING, ATTR.PASSWORD]) CODECS.set(t, bytesCodec(t, 0, 0xffff));
CODECS.set(ATTR.MESSAGE_INTEGRITY, bytesCodec(ATTR.MESSAGE_INTEGRITY, INTEGRITY_SHA1_SIZE, INTEGRITY_SHA1_SIZE));
CODECS.set(ATTR.MESSAGE_INTEGRITY_SHA256, bytesCodec(ATTR.MESSAGE_INTEGRITY_SHA256, INTEGRITY_SHA256_MIN_SIZE, INTEGRITY_SHA256_SIZE, 4));
CODECS.set(ATTR.USERHASH, bytesCodec(ATTR.USERHASH, 32, 32));
CODECS.set(ATTR.RESERVATION_TOKEN, bytesCodec(ATTR.RESERVATION_TOKEN, 8, 8));
CODECS.set(ATTR.ERROR_CODE, errorCodeCodec);
CODECS.set(ATTR.UNKNOWN_ATTRIBUTES, unknownAttributesCodec);
CODECS.set(ATTR.CHANGE_REQUEST, fixedCodec(ATTR.CHANGE_REQUEST, 4,
  (v) => ({ changeIp: ((v[3] as number) & CHANGE_IP_FLAG) !== 0, changePort: ((v[3] as number) & CHANGE_PORT_FLAG) !== 0 }),
  isFlags, (o, x: ChangeRequest) => { o[3] = (x.changeIp ? CHANGE_IP_FLAG : 0) | (x.changePort ? CHANGE_PORT_FLAG : 0); }));
CODECS.set(ATTR.CHANNEL_NUMBER, fixedCodec(ATTR.CHANNEL_NUMBER, 4, (v) => v.readUInt16BE(0), (x) => isUint(x, 0xffff), (o, x: number) => o.writeUInt16BE(x, 0)));
CODECS.set(ATTR.RESPONSE_PORT, fixedCodec(ATTR.RESPONSE_PORT, 4, (v) => v.readUInt16BE(0), (x) => isUint(x, 0xffff), (o, x: number) => o.writeUInt16BE(x, 0)));
CODECS.set(ATTR.REQUESTED_TRANSPORT, fixedCodec(ATTR.REQUESTED_TRANSPORT, 4, (v) => v[0], (x) => isUint(x, 0xff), (o, x: number) => { o[0] = x; }));
CODECS.set(ATTR.EVEN_PORT, fixedCodec(ATTR.EVEN_PORT, 1, (v) => ({ reserve: ((v[0] as number) & 0x80) !== 0 }),
  (x) => x !== null && typeof x === 'object' && typeof (x as EvenPort).reserve === 'boolean', (o, x: EvenPort) => { o[0] = x.reserve ? 0x80 : 0; }));

/** True if the codec has a typed representation for attribute `type`. */
export function isKnownAttribute(type: number): type is KnownAttributeType {
  return CODECS.has(type);
}

/**
 * Decodes one attribute value. Types without a typed codec come back as a
 * {@link RawStunAttribute}. Byte values are views into `value`. Throws {@link DecodeError}.
 */
export function decodeAttribute(type: number, value: Buffer, ctx: AttrContext): StunAttribute {
  const codec = CODECS.get(type);
  if (!codec) return { type, value, raw: true };
  return { type, value: codec.decode(value, ctx) } as StunAttribute;
}

/** Encodes one attribute's value (without header or padding). Throws {@link InvalidArgumentError}. */
export function encodeAttributeValue(attr: StunAttribute, ctx: AttrContext): Uint8Array {
  if (attr === null || typeof attr !== 'object' || !isUint(attr.type, 0xffff)) throw new InvalidArgumentError('STUN attribute needs an integer type 0-0xFFFF');
  const codec = CODECS.get(attr.type);
  if (attr.raw === true || !codec) {
    if (!(attr.value instanceof Uint8Array)) throw arg(attr.type, 'raw attribute value must be a Uint8Array');
    return attr.value;
  }
  return codec.encode(attr.value, ctx);
}
