/**
 * NAT-PMP (RFC 6886) wire codec: pure functions, no sockets.
 *
 * Requests (client → gateway port 5351):
 * ```
 * external address (op 0), 2 bytes:   | vers=0 | op=0 |
 * map UDP/TCP (op 1/2), 12 bytes:     | vers=0 | op | reserved(16) | internal port(16) |
 *                                     | suggested external port(16) | requested lifetime(32) |
 * ```
 * Responses (op + 128); every response starts with
 * `| vers=0 | op | result code(16) | seconds since start of epoch(32) |` (8 bytes), followed by
 * the external IPv4 address (op 128, 12 bytes total) or
 * `| internal port(16) | mapped external port(16) | lifetime(32) |` (op 129/130, 16 bytes).
 * Error responses may stop after those 8 bytes (gateways send exactly that for unsupported
 * version/opcode): they decode as `kind: 'header-only'`.
 *
 * Decoders throw only {@link DecodeError}; encoders throw {@link InvalidArgumentError} on
 * out-of-range fields.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../../errors.js';
import {
  PORTMAP_CLIENT_PORT,
  PORTMAP_SERVER_PORT,
  bytesToIpv4,
  checkBytes,
  checkU16,
  checkU32,
  checkU8,
  ipv4ToBytes,
  rdU16,
  rdU32,
  wrU16,
  wrU32,
} from './wire.js';

/** NAT-PMP version number. */
export const NATPMP_VERSION = 0;
/** Gateway port requests go to. */
export const NATPMP_SERVER_PORT = PORTMAP_SERVER_PORT;
/** Client port announcements go to (RFC 6886 §3.2.1). */
export const NATPMP_CLIENT_PORT = PORTMAP_CLIENT_PORT;
/** Multicast group external-address announcements are sent to (RFC 6886 §3.2.1). */
export const NATPMP_ANNOUNCE_ADDRESS = '224.0.0.1';
/** Added to a request opcode to form its response opcode. */
export const NATPMP_RESPONSE_BIT = 0x80;
/** Lifetime RFC 6886 §3.3 recommends for mappings, seconds (two hours). */
export const NATPMP_RECOMMENDED_LIFETIME = 7200;

/** Request opcodes (responses are these + 128). */
export const NatPmpOp = {
  EXTERNAL_ADDRESS: 0,
  MAP_UDP: 1,
  MAP_TCP: 2,
} as const;

/** Message sizes in bytes. */
export const NatPmpSize = {
  EXTERNAL_ADDRESS_REQUEST: 2,
  MAP_REQUEST: 12,
  /** Version, opcode, result code, epoch: all an error response needs to carry. */
  RESPONSE_HEADER: 8,
  EXTERNAL_ADDRESS_RESPONSE: 12,
  MAP_RESPONSE: 16,
} as const;

/** Result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  NO_RESOURCES: 4,
  UNSUPP_OPCODE: 5,
} as const;

const RESULT_NAMES: readonly string[] = ['SUCCESS', 'UNSUPP_VERSION', 'NOT_AUTHORIZED', 'NETWORK_FAILURE', 'NO_RESOURCES', 'UNSUPP_OPCODE'];
const RESULT_MESSAGES: readonly string[] = [
  'success',
  'unsupported version',
  'not authorized/refused (NAT-PMP may be disabled on the gateway)',
  'network failure (the gateway may not have an external address yet)',
  'out of resources (no ports left or too many mappings)',
  'unsupported opcode',
];

/** Symbolic name of a NAT-PMP result code, e.g. `'NO_RESOURCES'`; `'UNKNOWN_<n>'` otherwise. */
export function natPmpResultName(code: number): string {
  return RESULT_NAMES[code] ?? `UNKNOWN_${code}`;
}

/** Human-readable description of a NAT-PMP result code. */
export function natPmpResultMessage(code: number): string {
  return RESULT_MESSAGES[code] ?? `unknown result code ${code}`;
}

/** Transport protocol of a NAT-PMP mapping. */
export type NatPmpProtocol = 'udp' | 'tcp';

/** Request for the gateway's external IPv4 address (opcode 0). */
export interface NatPmpExternalAddressRequest {
  kind: 'external-address';
}

/**
 * Create/renew (lifetime > 0) or delete (lifetime 0) a mapping (opcode 1 = UDP, 2 = TCP).
 * Deleting all the client's mappings of a protocol: internal port, external port and
 * lifetime all 0 (RFC 6886 §3.4).
 */
export interface NatPmpMapRequest {
  kind: 'map';
  protocol: NatPmpProtocol;
  /** Port on the client. */
  internalPort: number;
  /** Suggested external port (0 = no preference; must be 0 when deleting). */
  externalPort: number;
  /** Requested lifetime in seconds (0 = delete). */
  lifetime: number;
}

/** A NAT-PMP request. */
export type NatPmpRequest = NatPmpExternalAddressRequest | NatPmpMapRequest;

/** Fields every NAT-PMP response carries. */
export interface NatPmpResponseCommon {
  /** Result code, see {@link NatPmpResult}. */
  resultCode: number;
  /** Seconds since the gateway's port-mapping state started (RFC 6886 §3.6). */
  epoch: number;
}

/**
 * Response to an external-address request (opcode 128); also the format of the gratuitous
 * announcement sent to 224.0.0.1:5350. `externalAddress` is meaningless (zero) when
 * `resultCode` is not 0.
 */
export interface NatPmpExternalAddressResponse extends NatPmpResponseCommon {
  kind: 'external-address';
  externalAddress: string;
}

/** Response to a map request (opcode 129 = UDP, 130 = TCP). */
export interface NatPmpMapResponse extends NatPmpResponseCommon {
  kind: 'map';
  protocol: NatPmpProtocol;
  /** Echo of the request's internal port. */
  internalPort: number;
  /** The external port actually mapped (0 after a deletion). */
  externalPort: number;
  /** Lifetime granted, seconds. */
  lifetime: number;
}

/**
 * An error response that stops after the 8-byte common header (what gateways send for
 * unsupported version/opcode). `op` is the response opcode (request opcode + 128).
 */
export interface NatPmpHeaderOnlyResponse extends NatPmpResponseCommon {
  kind: 'header-only';
  op: number;
}

/** A NAT-PMP response. */
export type NatPmpResponse = NatPmpExternalAddressResponse | NatPmpMapResponse | NatPmpHeaderOnlyResponse;

function protocolOp(p: unknown): number {
  if (p === 'udp') return NatPmpOp.MAP_UDP;
  if (p === 'tcp') return NatPmpOp.MAP_TCP;
  throw new InvalidArgumentError(`invalid NAT-PMP protocol: ${String(p)} (must be 'udp' or 'tcp')`);
}

/** The request opcode of `req` (0, 1 or 2). */
export function natPmpRequestOp(req: NatPmpRequest): number {
  return req.kind === 'external-address' ? NatPmpOp.EXTERNAL_ADDRESS : protocolOp(req.protocol);
}

/** The response opcode of `res` (128, 129, 130, or a header-only response's `op`). */
export function natPmpResponseOp(res: NatPmpResponse): number {
  if (res.kind === 'header-only') return res.op;
  if (res.kind === 'external-address') return NATPMP_RESPONSE_BIT | NatPmpOp.EXTERNAL_ADDRESS;
  return NATPMP_RESPONSE_BIT | protocolOp(res.protocol);
}

/** Encodes a request (2 or 12 bytes). */
export function encodeNatPmpRequest(req: NatPmpRequest): Buffer {
  if (req === null || typeof req !== 'object') throw new InvalidArgumentError('NAT-PMP request must be an object');
  if (req.kind === 'external-address') return Buffer.from([NATPMP_VERSION, NatPmpOp.EXTERNAL_ADDRESS]);
  if (req.kind !== 'map') throw new InvalidArgumentError(`invalid NAT-PMP request kind: ${String((req as { kind: unknown }).kind)}`);
  const op = protocolOp(req.protocol);
  const buf = Buffer.alloc(NatPmpSize.MAP_REQUEST);
  buf[0] = NATPMP_VERSION;
  buf[1] = op;
  // bytes 2-3 reserved, zero
  wrU16(buf, 4, checkU16(req.internalPort, 'internal port'));
  wrU16(buf, 6, checkU16(req.externalPort, 'suggested external port'));
  wrU32(buf, 8, checkU32(req.lifetime, 'lifetime'));
  return buf;
}

/**
 * Decodes a request (for a test gateway). Strict: version 0, opcode 0/1/2, exact length.
 * The reserved field of map requests is ignored, as RFC 6886 says.
 */
export function decodeNatPmpRequest(buf: Uint8Array): NatPmpRequest {
  checkBytes(buf, 'NAT-PMP request');
  if (buf.length < 2) throw new DecodeError(`NAT-PMP request too short: ${buf.length} bytes`);
  const version = buf[0] as number;
  const op = buf[1] as number;
  if (version !== NATPMP_VERSION) throw new DecodeError(`NAT-PMP request has version ${version}, expected 0`);
  if (op & NATPMP_RESPONSE_BIT) throw new DecodeError(`NAT-PMP opcode ${op} is a response, not a request`);
  if (op === NatPmpOp.EXTERNAL_ADDRESS) {
    if (buf.length !== NatPmpSize.EXTERNAL_ADDRESS_REQUEST) {
      throw new DecodeError(`NAT-PMP external-address request must be 2 bytes, got ${buf.length}`);
    }
    return { kind: 'external-address' };
  }
  if (op !== NatPmpOp.MAP_UDP && op !== NatPmpOp.MAP_TCP) throw new DecodeError(`unsupported NAT-PMP opcode ${op}`);
  if (buf.length !== NatPmpSize.MAP_REQUEST) throw new DecodeError(`NAT-PMP map request must be 12 bytes, got ${buf.length}`);
  const what = 'NAT-PMP map request';
  return {
    kind: 'map',
    protocol: op === NatPmpOp.MAP_UDP ? 'udp' : 'tcp',
    internalPort: rdU16(buf, 4, what),
    externalPort: rdU16(buf, 6, what),
    lifetime: rdU32(buf, 8, what),
  };
}

/** Encodes a response (for a test gateway): 12, 16, or 8 bytes for `'header-only'`. */
export function encodeNatPmpResponse(res: NatPmpResponse): Buffer {
  if (res === null || typeof res !== 'object') throw new InvalidArgumentError('NAT-PMP response must be an object');
  const resultCode = checkU16(res.resultCode, 'result code');
  const epoch = checkU32(res.epoch, 'epoch');
  let buf: Buffer;
  if (res.kind === 'header-only') {
    const op = checkU8(res.op, 'response opcode');
    if (!(op & NATPMP_RESPONSE_BIT)) throw new InvalidArgumentError(`response opcode must be >= 128, got ${op}`);
    if (resultCode === NatPmpResult.SUCCESS) throw new InvalidArgumentError('a header-only NAT-PMP response must carry an error result code');
    buf = Buffer.alloc(NatPmpSize.RESPONSE_HEADER);
    buf[1] = op;
  } else if (res.kind === 'external-address') {
    buf = Buffer.alloc(NatPmpSize.EXTERNAL_ADDRESS_RESPONSE);
    buf[1] = NATPMP_RESPONSE_BIT | NatPmpOp.EXTERNAL_ADDRESS;
    buf.set(ipv4ToBytes(res.externalAddress), 8);
  } else if (res.kind === 'map') {
    buf = Buffer.alloc(NatPmpSize.MAP_RESPONSE);
    buf[1] = NATPMP_RESPONSE_BIT | protocolOp(res.protocol);
    wrU16(buf, 8, checkU16(res.internalPort, 'internal port'));
    wrU16(buf, 10, checkU16(res.externalPort, 'external port'));
    wrU32(buf, 12, checkU32(res.lifetime, 'lifetime'));
  } else {
    throw new InvalidArgumentError(`invalid NAT-PMP response kind: ${String((res as { kind: unknown }).kind)}`);
  }
  buf[0] = NATPMP_VERSION;
  wrU16(buf, 2, resultCode);
  wrU32(buf, 4, epoch);
  return buf;
}

/**
 * Decodes a response. Strict:
 * - at least 2 bytes, version 0, opcode with the response bit set;
 * - success responses: opcode 128/129/130 and exactly 12/16 bytes;
 * - error responses: either that full size, or exactly the 8-byte header (`'header-only'`,
 *   any response opcode);
 * - anything else, including oversized packets, is a {@link DecodeError}.
 */
export function decodeNatPmpResponse(buf: Uint8Array): NatPmpResponse {
  checkBytes(buf, 'NAT-PMP response');
  const len = buf.length;
  if (len < 2) throw new DecodeError(`NAT-PMP response too short: ${len} bytes`);
  const version = buf[0] as number;
  const op = buf[1] as number;
  if (version !== NATPMP_VERSION) throw new DecodeError(`NAT-PMP response has version ${version}, expected 0`);
  if (!(op & NATPMP_RESPONSE_BIT)) throw new DecodeError(`NAT-PMP opcode ${op} is a request, not a response`);
  if (len < NatPmpSize.RESPONSE_HEADER) throw new DecodeError(`NAT-PMP response truncated: ${len} bytes, need at least 8`);
  const what = 'NAT-PMP response';
  const resultCode = rdU16(buf, 2, what);
  const epoch = rdU32(buf, 4, what);
  const reqOp = op & 0x7f;
  const full =
    reqOp === NatPmpOp.EXTERNAL_ADDRESS
      ? NatPmpSize.EXTERNAL_ADDRESS_RESPONSE
      : reqOp === NatPmpOp.MAP_UDP || reqOp === NatPmpOp.MAP_TCP
        ? NatPmpSize.MAP_RESPONSE
        : undefined;
  if (len === NatPmpSize.RESPONSE_HEADER && resultCode !== NatPmpResult.SUCCESS) {
    return { kind: 'header-only', op, resultCode, epoch };
  }
  if (full === undefined) throw new DecodeError(`unknown NAT-PMP response opcode ${op} (${len} bytes, result ${resultCode})`);
  if (len !== full) {
    throw new DecodeError(`NAT-PMP response opcode ${op} must be ${full} bytes, got ${len}${len < full ? ' (truncated)' : ' (oversized)'}`);
  }
  if (reqOp === NatPmpOp.EXTERNAL_ADDRESS) {
    return { kind: 'external-address', resultCode, epoch, externalAddress: bytesToIpv4(buf, 8) };
  }
  return {
    kind: 'map',
    protocol: reqOp === NatPmpOp.MAP_UDP ? 'udp' : 'tcp',
    resultCode,
    epoch,
    internalPort: rdU16(buf, 8, what),
    externalPort: rdU16(buf, 10, what),
    lifetime: rdU32(buf, 12, what),
  };
}

/**
 * Decodes a gratuitous external-address announcement (RFC 6886 §3.2.1): a successful,
 * 12-byte opcode-128 response. Anything else throws {@link DecodeError}. The caller must
 * still check that it came from the configured gateway (see `isFromServer`).
 */
export function decodeNatPmpAnnouncement(buf: Uint8Array): NatPmpExternalAddressResponse {
  const res = decodeNatPmpResponse(buf);
  if (res.kind !== 'external-address') throw new DecodeError(`NAT-PMP announcement must be opcode 128, got ${natPmpResponseOp(res)}`);
  if (res.resultCode !== NatPmpResult.SUCCESS) {
    throw new DecodeError(`NAT-PMP announcement carries result ${natPmpResultName(res.resultCode)}`);
  }
  return res;
}

/**
 * True when `res` answers `req`: response opcode = request opcode + 128 and, for a full map
 * response, the same internal port (RFC 6886 §3.3). A header-only error response matches
 * on the opcode alone.
 */
export function natPmpResponseMatches(req: NatPmpRequest, res: NatPmpResponse): boolean {
  if (natPmpResponseOp(res) !== (NATPMP_RESPONSE_BIT | natPmpRequestOp(req))) return false;
  if (req.kind === 'map' && res.kind === 'map') return res.internalPort === req.internalPort;
  return true;
}
