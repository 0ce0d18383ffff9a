/**
 * PCP (RFC 6887) numbers: version, ports, sizes, opcodes, result and option codes, and their
 * names. Part of the PCP codec (`pcp-codec.ts`).
 * @module
 */
import { PORTMAP_CLIENT_PORT, PORTMAP_SERVER_PORT } from './wire.js';

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
