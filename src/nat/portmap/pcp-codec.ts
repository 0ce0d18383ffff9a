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
  PCP_HEADER_SIZE, PCP_MAP_DATA_SIZE, PCP_MAX_MESSAGE_SIZE, PCP_NONCE_SIZE, PCP_PEER_DATA_SIZE, PCP_RESPONSE_BIT, PCP_VERSION,
  PcpOpcode, PcpResult, pcpResultName,
} from './pcp-constants.js';
import { decodePcpOptions, encodePcpOptions, type PcpOption } from './pcp-options.js';
import { bytes16ToIp, canonicalIp, checkBytes, checkU16, checkU32, checkU8, ipToBytes16, rdBytes, rdU16, rdU32, wrU16, wrU32 } from './wire.js';

export * from './pcp-constants.js';
export * from './pcp-options.js';

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
  /** Remote peer port. */
  remotePeerPort: number;
  /** Remote peer address (IPv4 or IPv6). */
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
  /** Discriminant. */
  kind: 'announce';
}
/** MAP request (opcode 1). */
export interface PcpMapRequest extends PcpRequestCommon, PcpMapFields {
  /** Discriminant. */
  kind: 'map';
}
/** PEER request (opcode 2). */
export interface PcpPeerRequest extends PcpRequestCommon, PcpPeerFields {
  /** Discriminant. */
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
  /** Discriminant. */
  kind: 'announce';
}
/** MAP response. */
export interface PcpMapResponse extends PcpResponseCommon, PcpMapFields {
  /** Discriminant. */
  kind: 'map';
}
/** PEER response. */
export interface PcpPeerResponse extends PcpResponseCommon, PcpPeerFields {
  /** Discriminant. */
  kind: 'peer';
}
/**
 * An error response without (complete) opcode-specific data: unknown opcode, a version
 * other than 2 (UNSUPP_VERSION), or a server that did not copy the request's data.
 * `options` is always empty (they cannot be located).
 */
export interface PcpHeaderOnlyResponse extends PcpResponseCommon {
  /** Discriminant. */
  kind: 'header-only';
  /** The opcode of the response (7 bits). */
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