/**
 * IP address literals ⇄ network-order bytes: the one converter every layer uses (STUN address
 * attributes, NAT-PMP / PCP wire fields, address scopes, peer addresses, DHT contacts).
 *
 * Parsing accepts exactly what Node.js `net.isIP` accepts (the `%zone` suffix of an IPv6
 * literal is ignored) and throws {@link InvalidArgumentError} on anything else. Formatting follows RFC 5952: lowercase
 * hex, no leading zeros, the longest run of two or more zero groups shortened to `::` (the
 * first one on a tie, never a single group), and IPv4-mapped addresses printed with a dotted
 * tail, `::ffff:1.2.3.4` (RFC 5952 §5, and the way Node.js reports dual-stack peers).
 *
 * Only literals are handled; nothing here resolves names or touches the network.
 * @module
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { describeInput as describe } from '../util/describe.js';
import type { Family } from './endpoint.js';

/** Longest string {@link ipToBytes} looks at (a 45-char IPv6 literal plus a 64-char zone, with slack). */
export const MAX_IP_LITERAL_LENGTH = 128;

/** Length of an IPv4 address in bytes. */
export const IPV4_BYTES = 4;
/** Length of an IPv6 address in bytes. */
export const IPV6_BYTES = 16;

const IPV6_GROUPS = 8;
/** Bytes 0-11 of an IPv4-mapped IPv6 address (`::ffff:0:0/96`, RFC 4291 §2.5.5.2). */
const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] as const;

/** Removes a trailing `%zone` (IPv6 scope) from an address literal. */
export function stripZone(ip: string): string {
  const pct = ip.indexOf('%');
  return pct >= 0 ? ip.slice(0, pct) : ip;
}

/**
 * Address family of an IP literal (an IPv6 literal may carry a `%zone` suffix), or `undefined`
 * if it is not one. Never throws; `ipFamily(x) !== undefined` exactly when {@link ipToBytes}`(x)`
 * succeeds.
 */
export function ipFamily(ip: string): Family | undefined {
  if (typeof ip !== 'string' || ip.length === 0 || ip.length > MAX_IP_LITERAL_LENGTH) return undefined;
  const bare = stripZone(ip);
  const v = isIP(bare);
  if (v === 6) return 6;
  return v === 4 && bare.length === ip.length ? 4 : undefined; // IPv4 has no zones
}

/** The 16-bit groups of one side of a `::` (or of a whole uncompressed address). */
function groupsOf(part: string): number[] {
  if (part === '') return [];
  return part.split(':').flatMap((g) => {
    if (!g.includes('.')) return [parseInt(g, 16)];
    const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number); // an embedded IPv4 tail
    return [(a << 8) | b, (c << 8) | d];
  });
}

/**
 * Converts an IP address literal to its network-order bytes: 4 bytes for IPv4, 16 for IPv6
 * (including the embedded-IPv4 forms `::ffff:1.2.3.4` and `::1.2.3.4`). The `%zone` suffix of
 * an IPv6 literal is ignored. Always returns a fresh array.
 *
 * @throws InvalidArgumentError when `ip` is not an IPv4 or IPv6 literal (as `net.isIP` decides)
 *   or is longer than {@link MAX_IP_LITERAL_LENGTH}.
 */
export function ipToBytes(ip: string): Uint8Array {
  const family = ipFamily(ip);
  if (family === undefined) throw new InvalidArgumentError(`not an IP address: ${describe(ip)}`);
  const text = stripZone(ip);
  // `text` passed net.isIP, so from here on it is well formed.
  if (family === 4) return Uint8Array.from(text.split('.').map(Number));
  const dbl = text.indexOf('::');
  const head = groupsOf(dbl >= 0 ? text.slice(0, dbl) : text);
  const tail = dbl >= 0 ? groupsOf(text.slice(dbl + 2)) : [];
  const groups = [...head, ...new Array<number>(IPV6_GROUPS - head.length - tail.length).fill(0), ...tail];
  const out = new Uint8Array(IPV6_BYTES);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** True when `bytes` is a 16-byte IPv4-mapped IPv6 address (`::ffff:a.b.c.d`). */
export function isMappedIPv4(bytes: Uint8Array): boolean {
  return bytes.length === IPV6_BYTES && MAPPED_PREFIX.every((x, i) => bytes[i] === x);
}

/**
 * How {@link bytesToIp} prints an IPv4-mapped IPv6 address (`::ffff:0:0/96`):
 *
 * - `'dotted'` (default): `::ffff:1.2.3.4`, RFC 5952 §5 and Node.js.
 * - `'hex'`: `::ffff:102:304`, all hex groups, as the WHATWG URL parser normalises it.
 * - `'unmap'`: `1.2.3.4`, the embedded IPv4 address on its own.
 */
export type MappedIPv4Format = 'dotted' | 'hex' | 'unmap';

/** Options of {@link bytesToIp}. */
export interface BytesToIpOptions {
  /** How to print an IPv4-mapped IPv6 address. @default 'dotted' */
  mapped?: MappedIPv4Format;
}

function dottedQuad(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 §4 text of 8 groups: lowercase, longest zero run (≥ 2 groups, first on a tie) as `::`. */
function formatGroups(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never compressed
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: readonly number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/**
 * Formats network-order bytes as an address literal: a dotted quad for 4 bytes, RFC 5952
 * canonical text for 16 bytes (IPv4-mapped addresses as `options.mapped` says, by default
 * `::ffff:a.b.c.d`). Inverse of {@link ipToBytes}: `ipToBytes(bytesToIp(b))` equals `b`.
 *
 * @throws InvalidArgumentError when `bytes` is not a `Uint8Array` of 4 or 16 bytes.
 */
export function bytesToIp(bytes: Uint8Array, options?: BytesToIpOptions): string {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError(`an IP address is a Uint8Array, got ${describe(bytes)}`);
  if (bytes.length === IPV4_BYTES) return dottedQuad(bytes, 0);
  if (bytes.length !== IPV6_BYTES) {
    throw new InvalidArgumentError(`an IP address is 4 or 16 bytes, got ${bytes.length}`);
  }
  const mapped = options?.mapped ?? 'dotted';
  if (mapped !== 'hex' && isMappedIPv4(bytes)) {
    return mapped === 'unmap' ? dottedQuad(bytes, 12) : `::ffff:${dottedQuad(bytes, 12)}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) groups.push(((bytes[2 * i] as number) << 8) | (bytes[2 * i + 1] as number));
  return formatGroups(groups);
}

/**
 * Returns the embedded IPv4 address of an IPv4-mapped IPv6 address (`::ffff:1.2.3.4` or
 * `::ffff:102:304` → `'1.2.3.4'`), as dual-stack sockets report IPv4 peers. Any other
 * input, valid or not, is returned unchanged. Never throws.
 */
export function unmapIPv4(ip: string): string {
  if (ipFamily(ip) !== 6) return ip;
  const b = ipToBytes(ip);
  return isMappedIPv4(b) ? dottedQuad(b, 12) : ip;
}
