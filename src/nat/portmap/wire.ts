/**
 * Wire helpers shared by the NAT-PMP and PCP codecs: bounds-checked big-endian readers,
 * argument checks for encoders, IPv4 / IPv6 / IPv4-mapped address conversion, the common
 * first two bytes of both protocols, and the response source-address check.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../../errors.js';
import { bytesToIp, ipFamily, ipToBytes } from '../../interfaces/ip.js';
import { describeInput } from '../../util/describe.js';

/** UDP port a NAT-PMP / PCP server listens on (RFC 6886 §3, RFC 6887 §19.1). */
export const PORTMAP_SERVER_PORT = 5351;
/** UDP port clients listen on for NAT-PMP announcements / PCP ANNOUNCE (RFC 6886 §3.2.1, RFC 6887 §19.1). */
export const PORTMAP_CLIENT_PORT = 5350;

// ---------------------------------------------------------------------------------------
// Readers (inputs are pre-checked; these still throw DecodeError, never RangeError).

/** Reads a byte; throws {@link DecodeError} past the end. @internal */
export function rdU8(buf: Uint8Array, off: number, what: string): number {
  const v = buf[off];
  if (v === undefined) throw new DecodeError(`${what}: truncated at offset ${off}`);
  return v;
}

/** Reads a big-endian uint16. @internal */
export function rdU16(buf: Uint8Array, off: number, what: string): number {
  if (off < 0 || off + 2 > buf.length) throw new DecodeError(`${what}: truncated at offset ${off}`);
  return ((buf[off] as number) << 8) | (buf[off + 1] as number);
}

/** Reads a big-endian uint32 (as a non-negative number). @internal */
export function rdU32(buf: Uint8Array, off: number, what: string): number {
  if (off < 0 || off + 4 > buf.length) throw new DecodeError(`${what}: truncated at offset ${off}`);
  return (
    (buf[off] as number) * 0x1000000 +
    (((buf[off + 1] as number) << 16) | ((buf[off + 2] as number) << 8) | (buf[off + 3] as number))
  );
}

/** Copies `len` bytes out of `buf` (never a view into it). @internal */
export function rdBytes(buf: Uint8Array, off: number, len: number, what: string): Uint8Array {
  if (off < 0 || off + len > buf.length) throw new DecodeError(`${what}: truncated at offset ${off}`);
  return new Uint8Array(buf.subarray(off, off + len)); // a plain Uint8Array copy, even from a Buffer
}

/** Ensures `buf` is a byte array; throws {@link DecodeError} otherwise. @internal */
export function checkBytes(buf: unknown, what: string): asserts buf is Uint8Array {
  if (!(buf instanceof Uint8Array)) throw new DecodeError(`${what}: expected a Uint8Array`);
}

// ---------------------------------------------------------------------------------------
// Encoder argument checks (InvalidArgumentError).

function checkUint(v: unknown, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`invalid ${what}: ${String(v)} (must be an integer 0-${max})`);
  }
  return v;
}
/** @internal */
export const checkU8 = (v: unknown, what: string): number => checkUint(v, 0xff, what);
/** @internal */
export const checkU16 = (v: unknown, what: string): number => checkUint(v, 0xffff, what);
/** @internal */
export const checkU32 = (v: unknown, what: string): number => checkUint(v, 0xffffffff, what);

/** Writes a big-endian uint16. @internal */
export function wrU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

/** Writes a big-endian uint32. @internal */
export function wrU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

// ---------------------------------------------------------------------------------------
// Addresses: PCP / NAT-PMP views of the one converter in src/interfaces/ip.ts.

/** Parses a dotted-quad IPv4 literal into 4 bytes; throws {@link InvalidArgumentError}. */
export function ipv4ToBytes(addr: string): Uint8Array {
  if (ipFamily(addr) !== 4 || addr.includes('%')) throw new InvalidArgumentError(`not an IPv4 address: ${describeInput(addr, 64)}`);
  return ipToBytes(addr);
}

/** Throws {@link DecodeError} unless `len` bytes from `off` lie inside `buf`. */
function checkAddressBounds(buf: Uint8Array, off: number, len: number): void {
  if (off < 0 || off + len > buf.length) throw new DecodeError(`IPv${len === 4 ? 4 : 6} address truncated at offset ${off}`);
}

/** Formats 4 bytes at `off` as a dotted-quad IPv4 literal. */
export function bytesToIpv4(buf: Uint8Array, off = 0): string {
  checkAddressBounds(buf, off, 4);
  return bytesToIp(buf.subarray(off, off + 4));
}

/**
 * Converts an IP literal to the 16-byte form PCP uses: IPv6 as is, IPv4 as the
 * IPv4-mapped IPv6 address `::ffff:a.b.c.d` (RFC 6887 §5). Zones (`%eth0`) are rejected.
 * Throws {@link InvalidArgumentError}.
 */
export function ipToBytes16(addr: string): Uint8Array {
  if (ipFamily(addr) === undefined || addr.includes('%')) throw new InvalidArgumentError(`not an IP address: ${describeInput(addr, 64)}`);
  const b = ipToBytes(addr);
  if (b.length === 16) return b;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(b, 12);
  return out;
}

/**
 * Formats 16 bytes at `off` as RFC 5952 IPv6 text with hex groups throughout, including an
 * IPv4-mapped address (`::ffff:102:304`) — the form WHATWG URL normalises to. Use
 * {@link bytes16ToIp} for PCP address fields.
 */
export function formatIpv6(buf: Uint8Array, off = 0): string {
  checkAddressBounds(buf, off, 16);
  return bytesToIp(buf.subarray(off, off + 16), { mapped: 'hex' });
}

/**
 * Formats a 16-byte PCP address: an IPv4-mapped address (`::ffff:a.b.c.d`) becomes the
 * dotted-quad IPv4 literal, anything else an RFC 5952 IPv6 literal. Inverse of {@link ipToBytes16}.
 */
export function bytes16ToIp(buf: Uint8Array, off = 0): string {
  checkAddressBounds(buf, off, 16);
  return bytesToIp(buf.subarray(off, off + 16), { mapped: 'unmap' });
}

/**
 * Canonical text of an IP literal: IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as dual-stack sockets
 * report IPv4 peers) becomes `1.2.3.4`; IPv6 is RFC 5952. Zone suffixes are dropped. Returns
 * `undefined` for anything that is not an IP literal.
 */
export function canonicalIp(addr: string): string | undefined {
  return ipFamily(addr) === undefined ? undefined : bytesToIp(ipToBytes(addr), { mapped: 'unmap' });
}

/**
 * The source-address check of RFC 6886 §3.1/§3.2.1 and RFC 6887 §8.3: true when a datagram
 * received `from` comes from `server` (same IP after canonicalisation, and same port unless
 * `checkPort` is false — NAT-PMP announcements come from the gateway's address, any port).
 */
export function isFromServer(
  from: { host: string; port: number },
  server: { host: string; port: number },
  opts?: { checkPort?: boolean },
): boolean {
  const a = canonicalIp(from.host);
  const b = canonicalIp(server.host);
  if (a === undefined || b === undefined || a !== b) return false;
  return opts?.checkPort === false || from.port === server.port;
}

// ---------------------------------------------------------------------------------------
// Common header.

/** The first two bytes every NAT-PMP and PCP message shares. */
export interface PortMapHeaderPeek {
  /** Version byte: 0 = NAT-PMP, 2 = PCP. */
  version: number;
  /** Top bit of byte 1: set on responses (NAT-PMP opcode + 128, PCP R bit). */
  response: boolean;
  /** Low 7 bits of byte 1: the request opcode. */
  opcode: number;
}

/**
 * Reads the version/opcode bytes common to NAT-PMP and PCP, to pick a decoder (a PCP
 * client talking to a NAT-PMP-only gateway gets a version-0 answer). Throws
 * {@link DecodeError} on fewer than 2 bytes.
 */
export function peekPortMapHeader(buf: Uint8Array): PortMapHeaderPeek {
  checkBytes(buf, 'port-mapping message');
  if (buf.length < 2) throw new DecodeError(`port-mapping message too short: ${buf.length} bytes`);
  const b1 = buf[1] as number;
  return { version: buf[0] as number, response: (b1 & 0x80) !== 0, opcode: b1 & 0x7f };
}
