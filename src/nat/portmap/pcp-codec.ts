/**
 * PCP (RFC 6887) wire codec: pure functions, no sockets.
 *
 * Request header (24 bytes, §7.1):
 * ```
 * | version=2 |R=0| opcode(7) | reserved(16) |
 * | requested lifetime(32) |
 * | PCP client's IP address (128, IPv4 as ::ffff:a.b.c.d) |
 * ```
 * Response header (24 bytes, §7.2):
 * ```
 * | version=2 |R=1| opcode(7) | reserved(8) | result code(8) |
 * | lifetime(32) | epoch time(32) | reserved(96) |
 * ```
 * then the opcode-specific data — MAP (§11.1, 36 bytes): nonce(96) | protocol(8) |
 * reserved(24) | internal port(16) | suggested/assigned external port(16) |
 * suggested/assigned external address(128); PEER (§12.1, 56 bytes): the MAP fields then
 * remote peer port(16) | reserved(16) | remote peer address(128); ANNOUNCE: none — and
 * options (§7.3): code(8) | reserved(8) | length(16) | data, padded to 4 bytes.
 *
 * Messages are at most 1100 bytes and a multiple of 4. Decoders throw only
 * {@link DecodeError}; encoders throw {@link InvalidArgumentError} (bad fields) or
 * {@link MessageTooBigError} (over 1100 bytes).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { DecodeError, InvalidArgumentError, MessageTooBigError } from '../../errors.js';
import {
  PORTMAP_CLIENT_PORT,
  PORTMAP_SERVER_PORT,
  bytes16ToIp,
  canonicalIp,
  checkBytes,
  checkU16,
  checkU32,
  checkU8,
  ipToBytes16,
  rdBytes,
  rdU16,
  rdU32,
  wrU16,
  wrU32,
} from './wire.js';

/** PCP version number. */
export const PCP_VERSION = 2;
/** Server port requests go to. */
export const PCP_SERVER_PORT = PORTMAP_SERVER_PORT;
/** Client port unsolicited ANNOUNCE responses go to. */
export const PCP_CLIENT_PORT = PORTMAP_CLIENT_PORT;
/** Multicast groups unsolicited ANNOUNCE responses are sent to (RFC 6887 §14.1.3). */
export const PCP_ANNOUNCE_ADDRESSES = ['224.0.0.1', 'ff02::1'] as const;
/** Largest PCP message, bytes (RFC 6887 §7). */
export const PCP_MAX_MESSAGE_SIZE = 1100;
/** Common header size of requests and responses, bytes. */
export const PCP_HEADER_SIZE = 24;
/** Size of the MAP opcode-specific data, bytes. */
export const PCP_MAP_DATA_SIZE = 36;
/** Size of the PEER opcode-specific data, bytes. */
export const PCP_PEER_DATA_SIZE = 56;
/** Size of a mapping nonce, bytes. */
export const PCP_NONCE_SIZE = 12;
/** The R bit of the second byte: set on responses. */
export const PCP_RESPONSE_BIT = 0x80;

/** Opcodes (RFC 6887 §19.2). */
export const PcpOpcode = {
  ANNOUNCE: 0,
  MAP: 1,
  PEER: 2,
} as const;

/** Result codes (RFC 6887 §7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

/** Option codes (RFC 6887 §13). Codes 128-255 are optional-to-process. */
export const PcpOptionCode = {
  THIRD_PARTY: 1,
  PREFER_FAILURE: 2,
  FILTER: 3,
} as const;

/** IANA protocol numbers commonly used in MAP/PEER (`0` = all protocols). */
export const PcpProtocolNumber = {
  ALL: 0,
  TCP: 6,
  UDP: 17,
} as const;

const RESULT_NAMES = Object.fromEntries(Object.entries(PcpResult).map(([k, v]) => [v, k])) as Record<number, string>;
const OPTION_NAMES = Object.fromEntries(Object.entries(PcpOptionCode).map(([k, v]) => [v, k])) as Record<number, string>;

/** Symbolic name of a PCP result code, e.g. `'NO_RESOURCES'`; `'UNKNOWN_<n>'` otherwise. */
export function pcpResultName(code: number): string {
  return RESULT_NAMES[code] ?? `UNKNOWN_${code}`;
}

/** Symbolic name of a PCP option code, e.g. `'FILTER'`; `'UNKNOWN_<n>'` otherwise. */
export function pcpOptionName(code: number): string {
  return OPTION_NAMES[code] ?? `UNKNOWN_${code}`;
}

// ---------------------------------------------------------------------------------------
// Options.

/** THIRD_PARTY (code 1, §13.1): the internal address the request is made on behalf of. */
export interface PcpThirdPartyOption {
  type: 'third-party';
  internalAddress: string;
}
/** PREFER_FAILURE (code 2, §13.2): fail rather than map a port other than the suggested one. */
export interface PcpPreferFailureOption {
  type: 'prefer-failure';
}
/** FILTER (code 3, §13.3): only let `remotePeerAddress/prefixLength`:`remotePeerPort` in. */
export interface PcpFilterOption {
  type: 'filter';
  /** Prefix length over the 128-bit (IPv4-mapped) address, 0-128; 0 removes all filters. */
  prefixLength: number;
  /** Remote port, 0 = all ports. */
  remotePeerPort: number;
  remotePeerAddress: string;
}
/** Any other option, kept as raw data (its length is `data.length`, padding excluded). */
export interface PcpUnknownOption {
  type: 'unknown';
  code: number;
  data: Uint8Array;
}
/** A PCP option. */
export type PcpOption = PcpThirdPartyOption | PcpPreferFailureOption | PcpFilterOption | PcpUnknownOption;

const OPTION_DATA_LEN: Record<number, number> = { 1: 16, 2: 0, 3: 20 };

function optionWireSize(o: PcpOption): number {
  const len = o.type === 'third-party' ? 16 : o.type === 'prefer-failure' ? 0 : o.type === 'filter' ? 20 : o.data.length;
  return 4 + ((len + 3) & ~3);
}

function checkOption(o: PcpOption): void {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('PCP option must be an object');
  switch (o.type) {
    case 'third-party':
      ipToBytes16(o.internalAddress);
      return;
    case 'prefer-failure':
      return;
    case 'filter':
      if (checkU8(o.prefixLength, 'FILTER prefix length') > 128) throw new InvalidArgumentError(`invalid FILTER prefix length ${o.prefixLength} (max 128)`);
      checkU16(o.remotePeerPort, 'FILTER remote peer port');
      ipToBytes16(o.remotePeerAddress);
      return;
    case 'unknown':
      checkU8(o.code, 'option code');
      if (OPTION_DATA_LEN[o.code] !== undefined) {
        throw new InvalidArgumentError(`option code ${o.code} (${pcpOptionName(o.code)}) must use its typed form`);
      }
      if (!(o.data instanceof Uint8Array)) throw new InvalidArgumentError('unknown PCP option data must be a Uint8Array');
      if (o.data.length > PCP_MAX_MESSAGE_SIZE) throw new MessageTooBigError(`PCP option data of ${o.data.length} bytes is too big`);
      return;
    default:
      throw new InvalidArgumentError(`invalid PCP option type: ${String((o as { type: unknown }).type)}`);
  }
}

function writeOption(buf: Uint8Array, off: number, o: PcpOption): number {
  let code: number;
  let data: Uint8Array;
  switch (o.type) {
    case 'third-party':
      code = PcpOptionCode.THIRD_PARTY;
      data = ipToBytes16(o.internalAddress);
      break;
    case 'prefer-failure':
      code = PcpOptionCode.PREFER_FAILURE;
      data = new Uint8Array(0);
      break;
    case 'filter':
      code = PcpOptionCode.FILTER;
      data = new Uint8Array(20);
      data[1] = o.prefixLength;
      wrU16(data, 2, o.remotePeerPort);
      data.set(ipToBytes16(o.remotePeerAddress), 4);
      break;
    default:
      code = o.code;
      data = o.data;
  }
  buf[off] = code;
  buf[off + 1] = 0;
  wrU16(buf, off + 2, data.length);
  buf.set(data, off + 4);
  return off + 4 + ((data.length + 3) & ~3);
}

/**
 * Decodes the options in `buf[off..end)`. Each option must fit (with its padding), and
 * THIRD_PARTY / PREFER_FAILURE / FILTER must have their fixed lengths (16 / 0 / 20).
 * Padding and reserved bytes are ignored.
 */
export function decodePcpOptions(buf: Uint8Array, off = 0, end = buf.length): PcpOption[] {
  checkBytes(buf, 'PCP options');
  if (end > buf.length || off < 0 || off > end) throw new DecodeError('PCP options: bad range');
  const out: PcpOption[] = [];
  const what = 'PCP option';
  while (off < end) {
    if (end - off < 4) throw new DecodeError(`PCP option header truncated: ${end - off} bytes left`);
    const code = buf[off] as number;
    const len = rdU16(buf, off + 2, what);
    const padded = (len + 3) & ~3;
    if (off + 4 + padded > end) {
      throw new DecodeError(`PCP option ${pcpOptionName(code)} (length ${len}) runs past the end of the message`);
    }
    const fixed = OPTION_DATA_LEN[code];
    if (fixed !== undefined && len !== fixed) {
      throw new DecodeError(`PCP option ${pcpOptionName(code)} must have length ${fixed}, got ${len}`);
    }
    const d = off + 4;
    switch (code) {
      case PcpOptionCode.THIRD_PARTY:
        out.push({ type: 'third-party', internalAddress: bytes16ToIp(buf, d) });
        break;
      case PcpOptionCode.PREFER_FAILURE:
        out.push({ type: 'prefer-failure' });
        break;
      case PcpOptionCode.FILTER: {
        const prefixLength = buf[d + 1] as number;
        if (prefixLength > 128) throw new DecodeError(`PCP FILTER prefix length ${prefixLength} exceeds 128`);
        out.push({ type: 'filter', prefixLength, remotePeerPort: rdU16(buf, d + 2, what), remotePeerAddress: bytes16ToIp(buf, d + 4) });
        break;
      }
      default:
        out.push({ type: 'unknown', code, data: rdBytes(buf, d, len, what) });
    }
    off = d + padded;
  }
  return out;
}

/** Encodes a list of options (each padded to 4 bytes). */
export function encodePcpOptions(options: readonly PcpOption[]): Buffer {
  if (!Array.isArray(options)) throw new InvalidArgumentError('PCP options must be an array');
  for (const o of options) checkOption(o);
  const size = options.reduce((n, o) => n + optionWireSize(o), 0);
  if (size > PCP_MAX_MESSAGE_SIZE - PCP_HEADER_SIZE) throw new MessageTooBigError(`PCP options take ${size} bytes, too many for a 1100-byte message`);
  const buf = Buffer.alloc(size);
  let off = 0;
  for (const o of options) off = writeOption(buf, off, o);
  return buf;
}

// ---------------------------------------------------------------------------------------
// Messages.

/** Opcode-specific fields of MAP (and the first part of PEER). */
export interface PcpMapFields {
  /** 12-byte mapping nonce; renewals and deletions MUST reuse the one of the mapping. */
  nonce: Uint8Array;
  /** IANA protocol number (6 = TCP, 17 = UDP, 0 = all). */
  protocol: number;
  /** Internal port (0 = all ports, with protocol 0). */
  internalPort: number;
  /** Request: suggested external port (0 = none). Response: assigned external port. */
  externalPort: number;
  /**
   * Request: suggested external address (`'0.0.0.0'` / `'::'` = none for IPv4 / IPv6).
   * Response: assigned external address. IPv4 is carried IPv4-mapped on the wire.
   */
  externalAddress: string;
}

/** Opcode-specific fields of PEER. */
export interface PcpPeerFields extends PcpMapFields {
  remotePeerPort: number;
  remotePeerAddress: string;
}

/** Fields every request carries. */
export interface PcpRequestCommon {
  /** Requested lifetime, seconds (0 = delete; ANNOUNCE: 0). */
  lifetime: number;
  /** The client's own address as it sent the request (used for ADDRESS_MISMATCH detection). */
  clientAddress: string;
  /** Options, in wire order. Decoded requests always have the array (maybe empty). */
  options?: readonly PcpOption[];
}
/** ANNOUNCE request (opcode 0): discovers the server / its epoch. */
export interface PcpAnnounceRequest extends PcpRequestCommon {
  kind: 'announce';
}
/** MAP request (opcode 1). */
export interface PcpMapRequest extends PcpRequestCommon, PcpMapFields {
  kind: 'map';
}
/** PEER request (opcode 2). */
export interface PcpPeerRequest extends PcpRequestCommon, PcpPeerFields {
  kind: 'peer';
}
/** A PCP request. */
export type PcpRequest = PcpAnnounceRequest | PcpMapRequest | PcpPeerRequest;

/** Fields every response carries. */
export interface PcpResponseCommon {
  /** Version byte: 2, except in an UNSUPP_VERSION response (the server's supported version). */
  version: number;
  /** Result code, see {@link PcpResult}. */
  resultCode: number;
  /** Success: mapping lifetime, s. Error: how long the same error is expected to persist, s. */
  lifetime: number;
  /** Server epoch time, s (RFC 6887 §8.5). */
  epoch: number;
  /** Options, in wire order. */
  options: readonly PcpOption[];
}
/** ANNOUNCE response — solicited, or unsolicited to 224.0.0.1 / ff02::1 port 5350. */
export interface PcpAnnounceResponse extends PcpResponseCommon {
  kind: 'announce';
}
/** MAP response. */
export interface PcpMapResponse extends PcpResponseCommon, PcpMapFields {
  kind: 'map';
}
/** PEER response. */
export interface PcpPeerResponse extends PcpResponseCommon, PcpPeerFields {
  kind: 'peer';
}
/**
 * An error response without (complete) opcode-specific data: unknown opcode, a version
 * other than 2 (UNSUPP_VERSION), or a server that did not copy the request's data.
 * `options` is always empty (they cannot be located).
 */
export interface PcpHeaderOnlyResponse extends PcpResponseCommon {
  kind: 'header-only';
  opcode: number;
}
/** A PCP response. */
export type PcpResponse = PcpAnnounceResponse | PcpMapResponse | PcpPeerResponse | PcpHeaderOnlyResponse;

const KIND_OPCODE = { announce: PcpOpcode.ANNOUNCE, map: PcpOpcode.MAP, peer: PcpOpcode.PEER } as const;
const KIND_DATA_SIZE = { announce: 0, map: PCP_MAP_DATA_SIZE, peer: PCP_PEER_DATA_SIZE } as const;
type KnownKind = keyof typeof KIND_OPCODE;

function kindOf(x: { kind: unknown }, what: string): KnownKind {
  const k = x.kind;
  if (k === 'announce' || k === 'map' || k === 'peer') return k;
  throw new InvalidArgumentError(`invalid PCP ${what} kind: ${String(k)}`);
}

/** The opcode of a request or response. */
export function pcpOpcodeOf(msg: PcpRequest | PcpResponse): number {
  return msg.kind === 'header-only' ? msg.opcode : KIND_OPCODE[msg.kind];
}

/** A fresh random 12-byte mapping nonce (RFC 6887 §11.1). */
export function generatePcpNonce(): Uint8Array {
  return new Uint8Array(randomBytes(PCP_NONCE_SIZE));
}

function checkNonce(n: unknown): Uint8Array {
  if (!(n instanceof Uint8Array) || n.length !== PCP_NONCE_SIZE) {
    throw new InvalidArgumentError(`PCP nonce must be a ${PCP_NONCE_SIZE}-byte Uint8Array`);
  }
  return n;
}

function writeOpcodeData(buf: Uint8Array, off: number, kind: KnownKind, m: Partial<PcpPeerFields>): void {
  if (kind === 'announce') return;
  buf.set(checkNonce(m.nonce), off);
  buf[off + 12] = checkU8(m.protocol, 'protocol');
  // off+13..15 reserved
  wrU16(buf, off + 16, checkU16(m.internalPort, 'internal port'));
  wrU16(buf, off + 18, checkU16(m.externalPort, 'external port'));
  buf.set(ipToBytes16(m.externalAddress as string), off + 20);
  if (kind === 'peer') {
    wrU16(buf, off + 36, checkU16(m.remotePeerPort, 'remote peer port'));
    // off+38..39 reserved
    buf.set(ipToBytes16(m.remotePeerAddress as string), off + 40);
  }
}

function readOpcodeData(buf: Uint8Array, off: number, kind: 'map' | 'peer', what: string): PcpPeerFields | PcpMapFields {
  const map: PcpMapFields = {
    nonce: rdBytes(buf, off, PCP_NONCE_SIZE, what),
    protocol: buf[off + 12] as number,
    internalPort: rdU16(buf, off + 16, what),
    externalPort: rdU16(buf, off + 18, what),
    externalAddress: bytes16ToIp(buf, off + 20),
  };
  if (kind === 'map') return map;
  return { ...map, remotePeerPort: rdU16(buf, off + 36, what), remotePeerAddress: bytes16ToIp(buf, off + 40) };
}

function assemble(size: number, what: string): Buffer {
  if (size > PCP_MAX_MESSAGE_SIZE) throw new MessageTooBigError(`PCP ${what} would be ${size} bytes (max ${PCP_MAX_MESSAGE_SIZE})`);
  return Buffer.alloc(size);
}

/** Encodes a request (24 + opcode data + options bytes, at most 1100). */
export function encodePcpRequest(req: PcpRequest): Buffer {
  if (req === null || typeof req !== 'object') throw new InvalidArgumentError('PCP request must be an object');
  const kind = kindOf(req, 'request');
  const opts = encodePcpOptions(req.options ?? []);
  const dataLen = KIND_DATA_SIZE[kind];
  const buf = assemble(PCP_HEADER_SIZE + dataLen + opts.length, 'request');
  buf[0] = PCP_VERSION;
  buf[1] = KIND_OPCODE[kind];
  wrU32(buf, 4, checkU32(req.lifetime, 'lifetime'));
  buf.set(ipToBytes16(req.clientAddress), 8);
  writeOpcodeData(buf, PCP_HEADER_SIZE, kind, req as Partial<PcpPeerFields>);
  buf.set(opts, PCP_HEADER_SIZE + dataLen);
  return buf;
}

function checkFraming(buf: Uint8Array, what: string): void {
  const len = buf.length;
  if (len < PCP_HEADER_SIZE) throw new DecodeError(`PCP ${what} too short: ${len} bytes (min ${PCP_HEADER_SIZE})`);
  if (len > PCP_MAX_MESSAGE_SIZE) throw new DecodeError(`PCP ${what} oversized: ${len} bytes (max ${PCP_MAX_MESSAGE_SIZE})`);
  if (len % 4 !== 0) throw new DecodeError(`PCP ${what} length ${len} is not a multiple of 4`);
}

/**
 * Decodes a request (for a test server). Strict: 24-1100 bytes, multiple of 4, version 2,
 * R bit clear, opcode ANNOUNCE/MAP/PEER with its full data, well-formed options.
 */
export function decodePcpRequest(buf: Uint8Array): PcpRequest {
  checkBytes(buf, 'PCP request');
  if (buf.length >= 2 && (buf[1] as number) & PCP_RESPONSE_BIT) throw new DecodeError('PCP message has the R bit set: a response, not a request');
  checkFraming(buf, 'request');
  const version = buf[0] as number;
  if (version !== PCP_VERSION) throw new DecodeError(`PCP request has version ${version}, expected ${PCP_VERSION}`);
  const opcode = (buf[1] as number) & 0x7f;
  const kind: KnownKind | undefined = opcode === 0 ? 'announce' : opcode === 1 ? 'map' : opcode === 2 ? 'peer' : undefined;
  if (kind === undefined) throw new DecodeError(`unsupported PCP opcode ${opcode}`);
  const what = 'PCP request';
  const dataLen = KIND_DATA_SIZE[kind];
  if (buf.length < PCP_HEADER_SIZE + dataLen) throw new DecodeError(`PCP ${kind} request truncated: ${buf.length} bytes, need ${PCP_HEADER_SIZE + dataLen}`);
  const common = {
    lifetime: rdU32(buf, 4, what),
    clientAddress: bytes16ToIp(buf, 8),
    options: decodePcpOptions(buf, PCP_HEADER_SIZE + dataLen),
  };
  if (kind === 'announce') return { kind, ...common };
  if (kind === 'map') return { kind, ...common, ...(readOpcodeData(buf, PCP_HEADER_SIZE, kind, what) as PcpMapFields) };
  return { kind, ...common, ...(readOpcodeData(buf, PCP_HEADER_SIZE, kind, what) as PcpPeerFields) };
}

type LooseResponse<T> = T extends unknown ? Omit<T, 'version' | 'options'> & { version?: number; options?: readonly PcpOption[] } : never;
/** What {@link encodePcpResponse} accepts: a {@link PcpResponse} whose `version` (default 2) and `options` (default none) may be omitted. */
export type PcpResponseInit = LooseResponse<PcpResponse>;

/** Encodes a response (for a test server). */
export function encodePcpResponse(res: PcpResponseInit): Buffer {
  if (res === null || typeof res !== 'object') throw new InvalidArgumentError('PCP response must be an object');
  const version = checkU8(res.version ?? PCP_VERSION, 'version');
  const resultCode = checkU8(res.resultCode, 'result code');
  const lifetime = checkU32(res.lifetime, 'lifetime');
  const epoch = checkU32(res.epoch, 'epoch');
  let opcode: number;
  let dataLen = 0;
  let opts: Buffer = Buffer.alloc(0);
  let kind: KnownKind | undefined;
  if (res.kind === 'header-only') {
    opcode = checkU8(res.opcode, 'opcode');
    if (opcode > 0x7f) throw new InvalidArgumentError(`PCP opcode ${opcode} exceeds 127`);
    if (resultCode === PcpResult.SUCCESS) throw new InvalidArgumentError('a header-only PCP response must carry an error result code');
    if (res.options !== undefined && res.options.length > 0) throw new InvalidArgumentError('a header-only PCP response cannot carry options');
  } else {
    kind = kindOf(res, 'response');
    opcode = KIND_OPCODE[kind];
    dataLen = KIND_DATA_SIZE[kind];
    opts = encodePcpOptions(res.options ?? []);
  }
  if (version !== PCP_VERSION && !(res.kind === 'header-only' && resultCode === PcpResult.UNSUPP_VERSION)) {
    throw new InvalidArgumentError(`PCP version ${version} is only allowed in a header-only UNSUPP_VERSION response`);
  }
  if (version === 0) throw new InvalidArgumentError('version 0 is NAT-PMP; use encodeNatPmpResponse');
  const buf = assemble(PCP_HEADER_SIZE + dataLen + opts.length, 'response');
  buf[0] = version;
  buf[1] = PCP_RESPONSE_BIT | opcode;
  buf[3] = resultCode;
  wrU32(buf, 4, lifetime);
  wrU32(buf, 8, epoch);
  if (kind !== undefined) writeOpcodeData(buf, PCP_HEADER_SIZE, kind, res as Partial<PcpPeerFields>);
  buf.set(opts, PCP_HEADER_SIZE + dataLen);
  return buf;
}

/**
 * Decodes a response. Strict (RFC 6887 §8.3): 24-1100 bytes, multiple of 4, R bit set.
 * - Version 2: ANNOUNCE/MAP/PEER with full opcode data and well-formed options. An error
 *   response whose opcode is unknown or whose opcode data is missing/short decodes as
 *   `'header-only'`; a success response like that is a {@link DecodeError}.
 * - Version other than 0 and 2: accepted only as a `'header-only'` UNSUPP_VERSION response
 *   (its `version` tells which version the server speaks).
 * - Version 0 is NAT-PMP (a NAT-PMP-only gateway answering a PCP request): a
 *   {@link DecodeError} here; use `peekPortMapHeader` first and the NAT-PMP decoder.
 */
export function decodePcpResponse(buf: Uint8Array): PcpResponse {
  checkBytes(buf, 'PCP response');
  if (buf.length >= 1 && buf[0] === 0) throw new DecodeError('version 0 message is NAT-PMP, not PCP');
  if (buf.length >= 2 && !((buf[1] as number) & PCP_RESPONSE_BIT)) throw new DecodeError('PCP message has the R bit clear: a request, not a response');
  checkFraming(buf, 'response');
  const what = 'PCP response';
  const version = buf[0] as number;
  const opcode = (buf[1] as number) & 0x7f;
  const resultCode = buf[3] as number;
  const common = { version, resultCode, lifetime: rdU32(buf, 4, what), epoch: rdU32(buf, 8, what) };
  const headerOnly = (): PcpHeaderOnlyResponse => ({ kind: 'header-only', opcode, ...common, options: [] });
  if (version !== PCP_VERSION) {
    if (resultCode === PcpResult.UNSUPP_VERSION) return headerOnly();
    throw new DecodeError(`PCP response has version ${version}, expected ${PCP_VERSION}`);
  }
  const kind: KnownKind | undefined = opcode === 0 ? 'announce' : opcode === 1 ? 'map' : opcode === 2 ? 'peer' : undefined;
  const isError = resultCode !== PcpResult.SUCCESS;
  if (kind === undefined) {
    if (isError) return headerOnly();
    throw new DecodeError(`unknown PCP opcode ${opcode} in a success response`);
  }
  const dataLen = KIND_DATA_SIZE[kind];
  if (buf.length < PCP_HEADER_SIZE + dataLen) {
    if (isError) return headerOnly();
    throw new DecodeError(`PCP ${kind} response truncated: ${buf.length} bytes, need ${PCP_HEADER_SIZE + dataLen}`);
  }
  const options = decodePcpOptions(buf, PCP_HEADER_SIZE + dataLen);
  if (kind === 'announce') return { kind, ...common, options };
  if (kind === 'map') return { kind, ...common, options, ...(readOpcodeData(buf, PCP_HEADER_SIZE, kind, what) as PcpMapFields) };
  return { kind, ...common, options, ...(readOpcodeData(buf, PCP_HEADER_SIZE, kind, what) as PcpPeerFields) };
}

/** Constant-time-ish equality of two nonces. */
export function pcpNonceEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

/**
 * True when `res` answers `req` (RFC 6887 §11.4 / §12.3): same opcode; MAP: same nonce,
 * protocol and internal port; PEER: also the same remote peer address and port. A
 * header-only error response matches on the opcode alone (it carries nothing else).
 */
export function pcpResponseMatches(req: PcpRequest, res: PcpResponse): boolean {
  if (pcpOpcodeOf(req) !== pcpOpcodeOf(res)) return false;
  if (res.kind === 'header-only' || req.kind === 'announce' || res.kind === 'announce') return true;
  if (!pcpNonceEquals(req.nonce, res.nonce) || req.protocol !== res.protocol || req.internalPort !== res.internalPort) return false;
  if (req.kind === 'peer' && res.kind === 'peer') {
    return req.remotePeerPort === res.remotePeerPort && canonicalIp(req.remotePeerAddress) === canonicalIp(res.remotePeerAddress);
  }
  return true;
}

/**
 * Decodes an unsolicited ANNOUNCE (RFC 6887 §14.1.3): a successful version-2 ANNOUNCE
 * response. Anything else throws {@link DecodeError}. The epoch it carries tells the client
 * whether to renew (see `checkPcpEpoch`).
 */
export function decodePcpAnnouncement(buf: Uint8Array): PcpAnnounceResponse {
  const res = decodePcpResponse(buf);
  if (res.kind !== 'announce') throw new DecodeError(`PCP announcement must be an ANNOUNCE response, got opcode ${pcpOpcodeOf(res)}`);
  if (res.resultCode !== PcpResult.SUCCESS) throw new DecodeError(`PCP announcement carries result ${pcpResultName(res.resultCode)}`);
  return res;
}
