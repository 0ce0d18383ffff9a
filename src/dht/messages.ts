/**
 * DHT RPC wire codec: compact binary, strict decoding with limits.
 *
 * ## Frame (big-endian)
 * ```
 * u8  version (1)   u8 type   u32 txid (correlation id chosen by the transport; 0 if unused)
 * body by type:
 *  0x01 PING        sender?
 *  0x02 FIND_NODE   sender?  32 target id
 *  0x03 FIND_VALUE  sender?  32 key id (SHA-256 of the key)
 *  0x04 STORE       sender?  record
 *  0x05 DELETE      sender?  record (must be a tombstone)
 *  0x81 PONG        32 responder id
 *  0x82 NODES       32 responder id  u8 n (≤ MAX_CONTACTS)  n × contact
 *  0x83 VALUE       32 responder id  u8 has-record (0/1)  [record]  u8 n  n × contact
 *  0x84 STORED      32 responder id  u8 status
 *  0xFF ERROR       32 responder id  u8 code  u16 length (≤ MAX_ERROR_TEXT_BYTES)  UTF-8 text
 * sender?  = u8 present (0/1) [contact]
 * contact  = u8 flags (bit0: has public key)  32 id  u8 family (4|6)  4|16 address  u16 port (≥1)
 *            [32 Ed25519 public key]
 * record   = see `record.ts`
 * ```
 * Decoding rejects (with {@link DecodeError}) unknown versions/types/flags, out-of-range
 * lengths and counts, truncation, trailing bytes and frames over {@link MAX_MESSAGE_BYTES}.
 * Semantic checks (signatures, public key ↔ id) are left to the node.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../errors.js';
import { bytesToIp, ipToBytes } from '../interfaces/scope.js';
import { PUBLIC_KEY_BYTES, type Contact } from './contact.js';
import { ID_BYTES, type DhtId } from './id.js';
import { MAX_RECORD_BYTES, readRecord, encodeRecord, type DhtRecord } from './record.js';
import { DEFAULT_K } from './routing-table.js';
import { WireReader, WireWriter } from './wire.js';

/** Wire format version. */
export const MESSAGE_VERSION = 1;
/** Most contacts in one NODES/VALUE reply (= k). */
export const MAX_CONTACTS = DEFAULT_K;
/** Encoded size of the largest contact, bytes. */
export const MAX_CONTACT_BYTES = 1 + ID_BYTES + 1 + 16 + 2 + PUBLIC_KEY_BYTES;
/** Longest ERROR text, bytes. */
export const MAX_ERROR_TEXT_BYTES = 256;
/** Largest frame accepted by {@link decodeMessage}, bytes (a full VALUE reply fits). */
export const MAX_MESSAGE_BYTES = 6 + ID_BYTES + 1 + MAX_RECORD_BYTES + 1 + MAX_CONTACTS * MAX_CONTACT_BYTES;
/** Largest txid. */
export const MAX_TXID = 0xffffffff;

/** Result of a STORE/DELETE at one node. */
export type StoreStatus = 'ok' | 'stale' | 'not-owner' | 'invalid' | 'full';
/** Code of an ERROR reply. */
export type RpcErrorCode = 'bad-request' | 'internal' | 'overloaded' | 'closed';

/** `PING`: are you alive? */
export interface PingRequest {
  /** Message type. */
  type: 'PING';
  /** The requester's advertised contact; absent for clients that store nothing. */
  sender?: Contact;
}
/** `FIND_NODE`: the k contacts you know closest to `target`. */
export interface FindNodeRequest {
  /** Message type. */
  type: 'FIND_NODE';
  /** The requester's advertised contact; absent for clients that store nothing. */
  sender?: Contact;
  /** The id to find the closest contacts to (32 bytes). */
  target: DhtId;
}
/** `FIND_VALUE`: the record for `keyId` if you hold one, plus your k closest contacts to it. */
export interface FindValueRequest {
  /** Message type. */
  type: 'FIND_VALUE';
  /** The requester's advertised contact; absent for clients that store nothing. */
  sender?: Contact;
  /** The key id looked up: SHA-256 of the record key (32 bytes). */
  keyId: DhtId;
}
/** `STORE`: keep this record (records and tombstones alike; used for republishing). */
export interface StoreRequest {
  /** Message type. */
  type: 'STORE';
  /** The requester's advertised contact; absent for clients that store nothing. */
  sender?: Contact;
  /** The signed record (or tombstone) to keep. */
  record: DhtRecord;
}
/** `DELETE`: replace the record with this signed tombstone. */
export interface DeleteRequest {
  /** Message type. */
  type: 'DELETE';
  /** The requester's advertised contact; absent for clients that store nothing. */
  sender?: Contact;
  /** The signed tombstone that replaces the record. */
  record: DhtRecord;
}
/** Any request. `sender` is the requester's advertised contact (absent for clients that store nothing). */
export type DhtRequest = PingRequest | FindNodeRequest | FindValueRequest | StoreRequest | DeleteRequest;

/** Reply to PING. */
export interface PongResponse {
  /** Message type. */
  type: 'PONG';
  /** The answering node's id. */
  responder: DhtId;
}
/** Reply to FIND_NODE. */
export interface NodesResponse {
  /** Message type. */
  type: 'NODES';
  /** The answering node's id. */
  responder: DhtId;
  /** The responder's closest known contacts to the target (at most {@link MAX_CONTACTS}). */
  contacts: Contact[];
}
/** Reply to FIND_VALUE. */
export interface ValueResponse {
  /** Message type. */
  type: 'VALUE';
  /** The answering node's id. */
  responder: DhtId;
  /** The record held for the key id; absent if the responder has none. */
  record?: DhtRecord;
  /** The responder's closest known contacts to the key id (at most {@link MAX_CONTACTS}). */
  contacts: Contact[];
}
/** Reply to STORE/DELETE. */
export interface StoredResponse {
  /** Message type. */
  type: 'STORED';
  /** The answering node's id. */
  responder: DhtId;
  /** Outcome of the STORE/DELETE at the responder. */
  status: StoreStatus;
}
/** Reply to a request that could not be served. */
export interface ErrorResponse {
  /** Message type. */
  type: 'ERROR';
  /** The answering node's id. */
  responder: DhtId;
  /** Why the request was not served. */
  code: RpcErrorCode;
  /** Human-readable detail; encoding truncates it to {@link MAX_ERROR_TEXT_BYTES} UTF-8 bytes. */
  message: string;
}
/** Any response. `responder` is the answering node's id. */
export type DhtResponse = PongResponse | NodesResponse | ValueResponse | StoredResponse | ErrorResponse;

/** Any DHT message. */
export type DhtMessage = DhtRequest | DhtResponse;

/** A decoded frame. */
export interface DhtFrame {
  /** Correlation id. */
  txid: number;
  /** The decoded request or response. */
  message: DhtMessage;
}

const TYPE_CODES = {
  PING: 0x01, FIND_NODE: 0x02, FIND_VALUE: 0x03, STORE: 0x04, DELETE: 0x05,
  PONG: 0x81, NODES: 0x82, VALUE: 0x83, STORED: 0x84, ERROR: 0xff,
} as const satisfies Record<DhtMessage['type'], number>;
const TYPE_BY_CODE = new Map<number, DhtMessage['type']>(
  Object.entries(TYPE_CODES).map(([k, v]) => [v, k as DhtMessage['type']]),
);
const STORE_STATUSES: readonly StoreStatus[] = ['ok', 'stale', 'not-owner', 'invalid', 'full'];
const ERROR_CODES: readonly RpcErrorCode[] = ['bad-request', 'internal', 'overloaded', 'closed'];
const CONTACT_HAS_KEY = 0x01;

/** The response type that answers a request type. */
export function responseTypeFor(req: DhtRequest['type']): DhtResponse['type'] {
  switch (req) {
    case 'PING': return 'PONG';
    case 'FIND_NODE': return 'NODES';
    case 'FIND_VALUE': return 'VALUE';
    default: return 'STORED';
  }
}

/** True for request messages. */
export function isRequest(m: DhtMessage): m is DhtRequest {
  return TYPE_CODES[m.type] < 0x80;
}

const V4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** IPv4 fast path; other forms go through the general parser. */
function hostBytes(host: string): Uint8Array {
  const m = V4_RE.exec(host);
  if (m) {
    const b = [m[1], m[2], m[3], m[4]].map(Number);
    if (b.every((x) => x <= 255) && !/(^|\.)0\d/.test(host)) return Uint8Array.from(b);
  }
  return ipToBytes(host);
}

function writeContact(w: WireWriter, c: Contact): void {
  const addr = hostBytes(c.host);
  if (addr.length !== (c.family === 4 ? 4 : 16)) throw new InvalidArgumentError(`contact host ${c.host} is not IPv${c.family}`);
  if (c.id.length !== ID_BYTES) throw new InvalidArgumentError('contact id must be 32 bytes');
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 0xffff) throw new InvalidArgumentError('contact port must be 1–65535');
  const pk = c.publicKey;
  if (pk !== undefined && pk.length !== PUBLIC_KEY_BYTES) throw new InvalidArgumentError('contact public key must be 32 bytes');
  w.u8(pk ? CONTACT_HAS_KEY : 0).bytes(c.id).u8(c.family).bytes(addr).u16(c.port);
  if (pk) w.bytes(pk);
}

function readContact(rd: WireReader): Contact {
  const flags = rd.u8('contact flags');
  if (flags & ~CONTACT_HAS_KEY) throw new DecodeError('contact: unknown flag bits');
  const id = rd.bytes(ID_BYTES, 'contact id');
  const family = rd.u8('contact family');
  if (family !== 4 && family !== 6) throw new DecodeError(`contact: bad family ${family}`);
  const host = bytesToIp(rd.bytes(family === 4 ? 4 : 16, 'contact address'));
  const port = rd.u16('contact port');
  if (port === 0) throw new DecodeError('contact: port 0');
  if (flags & CONTACT_HAS_KEY) return { id, host, port, family, publicKey: rd.bytes(PUBLIC_KEY_BYTES, 'public key') };
  return { id, host, port, family };
}

function writeContacts(w: WireWriter, cs: readonly Contact[]): void {
  if (cs.length > MAX_CONTACTS) throw new InvalidArgumentError(`at most ${MAX_CONTACTS} contacts per reply`);
  w.u8(cs.length);
  for (const c of cs) writeContact(w, c);
}

function readContacts(rd: WireReader): Contact[] {
  const n = rd.u8('contact count');
  if (n > MAX_CONTACTS) throw new DecodeError(`${n} contacts exceeds ${MAX_CONTACTS}`);
  const out: Contact[] = [];
  for (let i = 0; i < n; i++) out.push(readContact(rd));
  return out;
}

function checkId(id: Uint8Array, what: string): void {
  if (!(id instanceof Uint8Array) || id.length !== ID_BYTES) throw new InvalidArgumentError(`${what} must be 32 bytes`);
}

/**
 * Encodes a message into a frame.
 * @throws InvalidArgumentError for messages that break the limits (too many contacts, bad
 *   ids or hosts, a DELETE without a tombstone).
 */
export function encodeMessage(msg: DhtMessage, txid = 0): Uint8Array {
  if (!Number.isInteger(txid) || txid < 0 || txid > MAX_TXID) throw new InvalidArgumentError('txid must be a u32');
  const w = new WireWriter(256);
  w.u8(MESSAGE_VERSION).u8(TYPE_CODES[msg.type]).u32(txid);
  if (isRequest(msg)) {
    if (msg.sender) {
      w.u8(1);
      writeContact(w, msg.sender);
    } else {
      w.u8(0);
    }
  } else {
    checkId(msg.responder, 'responder');
    w.bytes(msg.responder);
  }
  switch (msg.type) {
    case 'PING': case 'PONG': break;
    case 'FIND_NODE': checkId(msg.target, 'target'); w.bytes(msg.target); break;
    case 'FIND_VALUE': checkId(msg.keyId, 'keyId'); w.bytes(msg.keyId); break;
    case 'DELETE':
      if (!msg.record.deleted) throw new InvalidArgumentError('DELETE carries a tombstone');
      encodeRecord(msg.record, w);
      break;
    case 'STORE': encodeRecord(msg.record, w); break;
    case 'NODES': writeContacts(w, msg.contacts); break;
    case 'VALUE':
      if (msg.record) {
        w.u8(1);
        encodeRecord(msg.record, w);
      } else {
        w.u8(0);
      }
      writeContacts(w, msg.contacts);
      break;
    case 'STORED': w.u8(STORE_STATUSES.indexOf(msg.status)); break;
    case 'ERROR': {
      let text = Buffer.from(msg.message, 'utf8');
      if (text.length > MAX_ERROR_TEXT_BYTES) text = text.subarray(0, MAX_ERROR_TEXT_BYTES);
      w.u8(ERROR_CODES.indexOf(msg.code)).u16(text.length).bytes(text);
      break;
    }
  }
  const out = w.finish();
  if (out.length > MAX_MESSAGE_BYTES) throw new InvalidArgumentError('message exceeds MAX_MESSAGE_BYTES');
  return out;
}

/** Decodes a frame. Throws only {@link DecodeError}. */
export function decodeMessage(buf: Uint8Array): DhtFrame {
  if (!(buf instanceof Uint8Array)) throw new DecodeError('DHT frame is not bytes');
  if (buf.length > MAX_MESSAGE_BYTES) throw new DecodeError(`DHT frame of ${buf.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  const rd = new WireReader(buf, 'DHT frame');
  const version = rd.u8('version');
  if (version !== MESSAGE_VERSION) throw new DecodeError(`DHT frame: unsupported version ${version}`);
  const code = rd.u8('type');
  const type = TYPE_BY_CODE.get(code);
  if (type === undefined) throw new DecodeError(`DHT frame: unknown type 0x${code.toString(16)}`);
  const txid = rd.u32('txid');
  let message: DhtMessage;
  if (code < 0x80) {
    const present = rd.u8('sender flag');
    if (present > 1) throw new DecodeError('DHT frame: bad sender flag');
    const sender = present ? readContact(rd) : undefined;
    const base = sender ? { sender } : {};
    switch (type) {
      case 'PING': message = { type, ...base }; break;
      case 'FIND_NODE': message = { type, ...base, target: rd.bytes(ID_BYTES, 'target') }; break;
      case 'FIND_VALUE': message = { type, ...base, keyId: rd.bytes(ID_BYTES, 'key id') }; break;
      case 'STORE': message = { type, ...base, record: readRecord(rd) }; break;
      default: {
        const record = readRecord(rd);
        if (!record.deleted) throw new DecodeError('DELETE without a tombstone');
        message = { type: 'DELETE', ...base, record };
      }
    }
  } else {
    const responder = rd.bytes(ID_BYTES, 'responder');
    switch (type) {
      case 'PONG': message = { type, responder }; break;
      case 'NODES': message = { type, responder, contacts: readContacts(rd) }; break;
      case 'VALUE': {
        const has = rd.u8('record flag');
        if (has > 1) throw new DecodeError('VALUE: bad record flag');
        const record = has ? readRecord(rd) : undefined;
        const contacts = readContacts(rd);
        message = record ? { type, responder, record, contacts } : { type, responder, contacts };
        break;
      }
      case 'STORED': {
        const status = STORE_STATUSES[rd.u8('status')];
        if (status === undefined) throw new DecodeError('STORED: unknown status');
        message = { type, responder, status };
        break;
      }
      default: {
        const ecode = ERROR_CODES[rd.u8('error code')];
        if (ecode === undefined) throw new DecodeError('ERROR: unknown code');
        const len = rd.u16('error length');
        if (len > MAX_ERROR_TEXT_BYTES) throw new DecodeError('ERROR: text too long');
        const text = Buffer.from(rd.bytes(len, 'error text')).toString('utf8');
        message = { type: 'ERROR', responder, code: ecode, message: text };
      }
    }
  }
  rd.end();
  return { txid, message };
}
