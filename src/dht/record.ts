/**
 * Signed DHT records.
 *
 * A record binds `{ key, value, writer, seq, timestamp, deleted }` under the writer's
 * Ed25519 signature. Keys are writer-agnostic (`'color'` is one key network-wide) and owned
 * by their first writer: a stored record is replaced only by a record signed by the same
 * writer with a higher `seq` (equal `seq` and different content: the larger signature wins,
 * so replicas converge), and deleted only by a tombstone (`deleted: true`, empty value)
 * signed by that writer; the tombstone keeps the ownership. Records whose `timestamp` is more
 * than the allowed clock skew in the future are rejected.
 *
 * ## Wire format (big-endian)
 * ```
 * u8  version (1)
 * u8  flags: bit0 deleted, bits1-2 value type (0 bytes, 1 UTF-8, 2 JSON); other bits 0
 * u16 key length (1..MAX_KEY_BYTES)      key
 * 32  writer Ed25519 public key
 * u64 seq          u64 timestamp (ms since epoch); both ≤ 2^53-1
 * u32 value length (0..MAX_VALUE_BYTES; 0 for tombstones)   value
 * 64  Ed25519 signature over "p2pd/dht/record/v1\0" ‖ all the bytes above
 * ```
 * @module
 */
import { createPublicKey, generateKeyPairSync, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { DecodeError, InvalidArgumentError, RecordError } from '../errors.js';
import { PUBLIC_KEY_BYTES } from './contact.js';
import { compareIds, keyBytes, keyToId } from './id.js';
import { WireReader, WireWriter } from './wire.js';

/** Longest key, bytes. */
export const MAX_KEY_BYTES = 256;
/** Largest value, bytes (64 KiB). */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Default tolerated clock skew for record timestamps, ms (5 min). */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Length of an Ed25519 signature, bytes. */
export const SIGNATURE_BYTES = 64;
/** Record format version. */
export const RECORD_VERSION = 1;
/** Largest encoded record, bytes. */
export const MAX_RECORD_BYTES = 2 + 2 + MAX_KEY_BYTES + PUBLIC_KEY_BYTES + 16 + 4 + MAX_VALUE_BYTES + SIGNATURE_BYTES;

const SIGN_DOMAIN = new Uint8Array(Buffer.from('p2pd/dht/record/v1\0', 'utf8'));
const FLAG_DELETED = 0x01;
const TYPE_SHIFT = 1;
const TYPE_MASK = 0x06;
/** DER prefix of an SPKI Ed25519 public key; followed by the 32 raw key bytes. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** Most Ed25519 `KeyObject`s cached by {@link ed25519PublicKey}; the oldest is evicted first. */
const KEY_CACHE_LIMIT = 1024;

/** How a record's value bytes are to be interpreted. */
export type ValueType = 'bytes' | 'utf8' | 'json';
const VALUE_TYPES: readonly ValueType[] = ['bytes', 'utf8', 'json'];

/** A value the DHT stores: bytes, a string, or anything JSON can represent. */
export type DhtValue = Uint8Array | string | number | boolean | null | DhtValue[] | { [key: string]: DhtValue };

/** A DHT key: a string (UTF-8) or bytes. */
export type DhtKey = string | Uint8Array;

/** Something that signs with an Ed25519 key (e.g. the crypto `Identity`). */
export interface Signer {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Ed25519 signature (64 bytes) of `data`. */
  sign(data: Uint8Array): Uint8Array;
}

/** A signed DHT record. */
export interface DhtRecord {
  /** The key bytes (1..{@link MAX_KEY_BYTES}). */
  readonly key: Uint8Array;
  /** The value bytes (≤ {@link MAX_VALUE_BYTES}; empty for tombstones). */
  readonly value: Uint8Array;
  /** How to interpret `value`. */
  readonly valueType: ValueType;
  /** Raw Ed25519 public key of the writer (the key's owner). */
  readonly writer: Uint8Array;
  /** Version; higher replaces lower. */
  readonly seq: number;
  /** Writer's clock when signed, ms since the epoch. */
  readonly timestamp: number;
  /** True for a tombstone (the key was deleted by its owner). */
  readonly deleted: boolean;
  /** Ed25519 signature, 64 bytes. */
  readonly signature: Uint8Array;
}

/** Fields of a record before signing. */
export interface RecordInit {
  /** The key (the record is stored under its key id). */
  key: DhtKey;
  /** Encoded with {@link encodeValue}; ignored for tombstones. @default null */
  value?: DhtValue;
  /** Sequence number: a higher one replaces a lower one of the same writer and key. */
  seq: number;
  /** Creation time, Unix ms. */
  timestamp: number;
  /** True for a tombstone. @default false */
  deleted?: boolean;
}

/**
 * Converts a value to bytes + type: `Uint8Array` → bytes, string → UTF-8, anything else →
 * JSON. @throws InvalidArgumentError if JSON cannot represent it.
 */
export function encodeValue(value: DhtValue): { bytes: Uint8Array; type: ValueType } {
  if (value instanceof Uint8Array) return { bytes: value, type: 'bytes' };
  if (typeof value === 'string') return { bytes: new Uint8Array(Buffer.from(value, 'utf8')), type: 'utf8' };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (e) {
    throw new InvalidArgumentError('DHT value is not JSON-serialisable', { cause: e });
  }
  if (json === undefined) throw new InvalidArgumentError('DHT value is not JSON-serialisable');
  return { bytes: new Uint8Array(Buffer.from(json, 'utf8')), type: 'json' };
}

/** The value of a record, typed as it was set. @throws RecordError on invalid JSON. */
export function decodeValue(r: DhtRecord): DhtValue {
  if (r.valueType === 'bytes') return r.value;
  const text = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength).toString('utf8');
  if (r.valueType === 'utf8') return text;
  try {
    return JSON.parse(text) as DhtValue;
  } catch (e) {
    throw new RecordError('record value is not valid JSON', { cause: e });
  }
}

function writeBody(w: WireWriter, r: Omit<DhtRecord, 'signature'>): void {
  const flags = (r.deleted ? FLAG_DELETED : 0) | (VALUE_TYPES.indexOf(r.valueType) << TYPE_SHIFT);
  w.u8(RECORD_VERSION).u8(flags).u16(r.key.length).bytes(r.key).bytes(r.writer);
  w.u64(r.seq).u64(r.timestamp).u32(r.value.length).bytes(r.value);
}

/** The bytes a record's signature covers (domain-separated). */
export function recordSigningData(r: Omit<DhtRecord, 'signature'>): Uint8Array {
  const w = new WireWriter(SIGN_DOMAIN.length + 64 + r.key.length + r.value.length);
  w.bytes(SIGN_DOMAIN);
  writeBody(w, r);
  return w.finish();
}

/**
 * Checks a key and a value length against the limits.
 * @throws RecordError for an empty key, a key over {@link MAX_KEY_BYTES} or a value over
 *   {@link MAX_VALUE_BYTES}.
 */
export function checkRecordLimits(key: Uint8Array, valueLength: number): void {
  if (key.length === 0) throw new RecordError('DHT key must not be empty');
  if (key.length > MAX_KEY_BYTES) throw new RecordError(`DHT key is ${key.length} bytes; limit ${MAX_KEY_BYTES}`);
  if (valueLength > MAX_VALUE_BYTES) throw new RecordError(`DHT value is ${valueLength} bytes; limit ${MAX_VALUE_BYTES}`);
}

/**
 * Builds and signs a record.
 * @throws RecordError when the key/value exceed {@link MAX_KEY_BYTES}/{@link MAX_VALUE_BYTES};
 *   InvalidArgumentError for a bad seq/timestamp or signer.
 */
export function createRecord(signer: Signer, init: RecordInit): DhtRecord {
  const key = keyBytes(init.key);
  const deleted = init.deleted === true;
  const enc = deleted ? { bytes: new Uint8Array(0), type: 'bytes' as const } : encodeValue(init.value ?? null);
  checkRecordLimits(key, enc.bytes.length);
  for (const [n, v] of [['seq', init.seq], ['timestamp', init.timestamp]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`${n} must be a safe non-negative integer`);
  }
  if (!(signer.publicKey instanceof Uint8Array) || signer.publicKey.length !== PUBLIC_KEY_BYTES) {
    throw new InvalidArgumentError('signer.publicKey must be 32 raw Ed25519 bytes');
  }
  const body = {
    key: Uint8Array.from(key),
    value: Uint8Array.from(enc.bytes),
    valueType: enc.type,
    writer: Uint8Array.from(signer.publicKey),
    seq: init.seq,
    timestamp: init.timestamp,
    deleted,
  };
  const signature = Uint8Array.from(signer.sign(recordSigningData(body)));
  if (signature.length !== SIGNATURE_BYTES) throw new InvalidArgumentError('signer returned a non-Ed25519 signature');
  return { ...body, signature };
}

/** Encodes a record (see the module doc for the layout). */
export function encodeRecord(r: DhtRecord, w = new WireWriter(128 + r.key.length + r.value.length)): Uint8Array {
  writeBody(w, r);
  w.bytes(r.signature);
  return w.finish();
}

/** Reads one record from `rd` (for embedding in messages). Throws only {@link DecodeError}. */
export function readRecord(rd: WireReader): DhtRecord {
  const version = rd.u8('record version');
  if (version !== RECORD_VERSION) throw new DecodeError(`record: unsupported version ${version}`);
  const flags = rd.u8('record flags');
  if (flags & ~(FLAG_DELETED | TYPE_MASK)) throw new DecodeError('record: unknown flag bits');
  const valueType = VALUE_TYPES[(flags & TYPE_MASK) >> TYPE_SHIFT];
  if (valueType === undefined) throw new DecodeError('record: unknown value type');
  const deleted = (flags & FLAG_DELETED) !== 0;
  const keyLen = rd.u16('key length');
  if (keyLen === 0 || keyLen > MAX_KEY_BYTES) throw new DecodeError(`record: key length ${keyLen} out of range`);
  const key = rd.bytes(keyLen, 'key');
  const writer = rd.bytes(PUBLIC_KEY_BYTES, 'writer');
  const seq = rd.u64('seq');
  const timestamp = rd.u64('timestamp');
  const valueLen = rd.u32('value length');
  if (valueLen > MAX_VALUE_BYTES) throw new DecodeError(`record: value length ${valueLen} over limit`);
  if (deleted && (valueLen !== 0 || valueType !== 'bytes')) throw new DecodeError('record: tombstone with a value');
  const value = rd.bytes(valueLen, 'value');
  const signature = rd.bytes(SIGNATURE_BYTES, 'signature');
  return { key, value, valueType, writer, seq, timestamp, deleted, signature };
}

/** Decodes a standalone record. Throws only {@link DecodeError} (trailing bytes included). */
export function decodeRecord(buf: Uint8Array): DhtRecord {
  if (!(buf instanceof Uint8Array)) throw new DecodeError('record: not bytes');
  if (buf.length > MAX_RECORD_BYTES) throw new DecodeError('record: too large');
  const rd = new WireReader(buf, 'record');
  const r = readRecord(rd);
  rd.end();
  return r;
}

const keyCache = new Map<string, KeyObject>();

/** A `KeyObject` for a raw 32-byte Ed25519 public key (cached). @throws RecordError if unusable. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  const hex = Buffer.from(raw).toString('hex');
  let k = keyCache.get(hex);
  if (k) return k;
  if (raw.length !== PUBLIC_KEY_BYTES) throw new RecordError('writer key must be 32 bytes');
  try {
    k = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  } catch (e) {
    throw new RecordError('writer key is not a valid Ed25519 public key', { cause: e });
  }
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(hex, k);
  return k;
}

/** Options of {@link verifyRecord}. */
export interface VerifyRecordOptions {
  /** Current time, ms. @default `Date.now()` */
  now?: number;
  /** Tolerated future skew of `timestamp`, ms. @default {@link MAX_CLOCK_SKEW_MS} */
  maxClockSkew?: number;
  /** If given, the record's key must hash to this id. */
  keyId?: Uint8Array;
  /** If given (> 0), a record signed this long ago or earlier (ms) is expired: `RecordError`. */
  maxAge?: number;
}

/**
 * Checks a record's limits, key id, timestamp and signature.
 * @throws RecordError describing the first problem.
 */
export function verifyRecord(r: DhtRecord, opts: VerifyRecordOptions = {}): void {
  checkRecordLimits(r.key, r.value.length);
  if (r.deleted && r.value.length !== 0) throw new RecordError('tombstone carries a value');
  if (opts.keyId && compareIds(keyToId(r.key), opts.keyId) !== 0) throw new RecordError('record key does not match the requested id');
  const now = opts.now ?? Date.now();
  const skew = opts.maxClockSkew ?? MAX_CLOCK_SKEW_MS;
  if (r.timestamp > now + skew) throw new RecordError(`record timestamp is ${r.timestamp - now} ms in the future`);
  if (opts.maxAge !== undefined && opts.maxAge > 0 && r.timestamp + opts.maxAge <= now) throw new RecordError('record expired');
  if (r.signature.length !== SIGNATURE_BYTES) throw new RecordError('bad signature length');
  let ok = false;
  try {
    ok = edVerify(null, recordSigningData(r), ed25519PublicKey(r.writer), r.signature);
  } catch (e) {
    if (e instanceof RecordError) throw e;
    throw new RecordError('record signature could not be verified', { cause: e });
  }
  if (!ok) throw new RecordError('bad record signature');
}

/** {@link verifyRecord} as a boolean. */
export function isRecordValid(r: DhtRecord, opts?: VerifyRecordOptions): boolean {
  try {
    verifyRecord(r, opts);
    return true;
  } catch {
    return false;
  }
}

/** True if both records were written by the same key. */
export function sameWriter(a: DhtRecord, b: DhtRecord): boolean {
  return compareIds(a.writer, b.writer) === 0;
}

/**
 * Orders two records of the same writer: positive if `a` supersedes `b`, negative if `b`
 * supersedes `a`, 0 if identical. Higher `seq` wins; equal `seq` → larger signature wins.
 */
export function compareVersions(a: DhtRecord, b: DhtRecord): number {
  if (a.seq !== b.seq) return a.seq > b.seq ? 1 : -1;
  return compareIds(a.signature, b.signature);
}

/** Outcome of offering `incoming` to a store that holds `existing`. */
export type StoreDecision = 'accept' | 'same' | 'stale' | 'not-owner';

/**
 * The ownership rule (both records already verified): no existing record → accept; other
 * writer → not-owner; same writer → accept if newer, same if identical, else stale.
 */
export function decideStore(existing: DhtRecord | undefined, incoming: DhtRecord): StoreDecision {
  if (!existing) return 'accept';
  if (!sameWriter(existing, incoming)) return 'not-owner';
  const c = compareVersions(incoming, existing);
  return c > 0 ? 'accept' : c === 0 ? 'same' : 'stale';
}

/**
 * A throw-away Ed25519 {@link Signer} from `node:crypto` (tests, standalone use). Production
 * nodes pass their `Identity`.
 */
export function generateSigner(): Signer {
  // generateKeyPairSync encodes the public key itself (exporting a fresh KeyObject can deadlock Node 20).
  const { publicKey: spki, privateKey } = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'der' } } as never) as unknown as {
    publicKey: Buffer;
    privateKey: KeyObject;
  };
  const raw = new Uint8Array(spki.subarray(spki.length - PUBLIC_KEY_BYTES));
  return {
    publicKey: raw,
    sign: (data) => new Uint8Array(edSign(null, data, privateKey)),
  };
}
