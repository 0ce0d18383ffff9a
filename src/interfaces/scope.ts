/**
 * Address scopes: classifies an IP address literal as loopback, link-local, private (RFC 1918),
 * unique-local (IPv6 ULA), carrier-grade NAT or global, plus the byte-level helpers that
 * classification needs (`ipToBytes`, `bytesToIp`, `unmapIPv4`).
 *
 * Only literals are handled; nothing here resolves names or touches the network.
 * @module
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import type { Family } from './endpoint.js';

/**
 * Where an address is reachable from.
 *
 * - `loopback`: this host only — `127.0.0.0/8`, `::1`, and also the unspecified / "this network"
 *   addresses `0.0.0.0/8` and `::` (see {@link ipScope}).
 * - `link-local`: the attached link only — `169.254.0.0/16`, `fe80::/10`.
 * - `private`: RFC 1918 — `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
 * - `ula`: IPv6 unique local addresses — `fc00::/7`.
 * - `cgnat`: RFC 6598 shared address space used by carrier-grade NAT — `100.64.0.0/10`.
 * - `global`: everything else (including multicast, documentation and benchmark ranges).
 */
export type AddressScope = 'loopback' | 'link-local' | 'private' | 'ula' | 'cgnat' | 'global';

/** Every {@link AddressScope}, from the narrowest reach to the widest. */
export const ADDRESS_SCOPES: readonly AddressScope[] = Object.freeze([
  'loopback',
  'link-local',
  'private',
  'ula',
  'cgnat',
  'global',
] as const);

/** Longest string {@link ipToBytes} looks at (a 45-char IPv6 literal plus a 64-char zone, with slack). */
export const MAX_IP_LITERAL_LENGTH = 128;

const IPV4_BYTES = 4;
const IPV6_BYTES = 16;
const IPV6_WORDS = 8;

function describe(ip: unknown): string {
  return typeof ip === 'string' ? JSON.stringify(ip.slice(0, 80)) : typeof ip;
}

/** Removes a trailing `%zone` (IPv6 scope) from an address literal. */
function stripZone(ip: string): string {
  const pct = ip.indexOf('%');
  return pct >= 0 ? ip.slice(0, pct) : ip;
}

function v4Bytes(s: string): number[] {
  return s.split('.').map((p) => Number(p));
}

function v6Words(part: string): number[] {
  if (part === '') return [];
  const words: number[] = [];
  for (const g of part.split(':')) {
    if (g.includes('.')) {
      const b = v4Bytes(g);
      words.push(((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0));
    } else {
      words.push(parseInt(g, 16));
    }
  }
  return words;
}

/**
 * Converts an IP address literal to its network-order bytes: 4 bytes for IPv4, 16 for IPv6.
 * A `%zone` suffix is ignored.
 *
 * @throws InvalidArgumentError when `ip` is not an IPv4 or IPv6 literal.
 */
export function ipToBytes(ip: string): Uint8Array {
  if (typeof ip !== 'string' || ip.length === 0 || ip.length > MAX_IP_LITERAL_LENGTH) {
    throw new InvalidArgumentError(`not an IP address: ${describe(ip)}`);
  }
  const bare = stripZone(ip);
  const v = isIP(bare);
  if (v === 4) return Uint8Array.from(v4Bytes(bare));
  if (v !== 6) throw new InvalidArgumentError(`not an IP address: ${describe(ip)}`);
  const dbl = bare.indexOf('::');
  let words: number[];
  if (dbl >= 0) {
    const head = v6Words(bare.slice(0, dbl));
    const tail = v6Words(bare.slice(dbl + 2));
    words = [...head, ...new Array<number>(IPV6_WORDS - head.length - tail.length).fill(0), ...tail];
  } else {
    words = v6Words(bare);
  }
  const out = new Uint8Array(IPV6_BYTES);
  words.forEach((w, i) => {
    out[2 * i] = (w >> 8) & 0xff;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/**
 * Formats network-order bytes as an address literal: dotted quad for 4 bytes, RFC 5952
 * canonical text (lowercase, longest run of two or more zero groups as `::`) for 16 bytes.
 *
 * @throws InvalidArgumentError when `bytes` is not 4 or 16 bytes long.
 */
export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === IPV4_BYTES) return Array.from(bytes).join('.');
  if (bytes.length !== IPV6_BYTES) {
    throw new InvalidArgumentError(`an IP address is 4 or 16 bytes, got ${bytes.length}`);
  }
  const words: number[] = [];
  for (let i = 0; i < IPV6_WORDS; i++) words.push(((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  // Longest run of zero words (length >= 2; the first one wins a tie).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < IPV6_WORDS; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < IPV6_WORDS && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

function isMappedV4(b: Uint8Array): boolean {
  if (b.length !== IPV6_BYTES) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Returns the embedded IPv4 address of an IPv4-mapped IPv6 address (`::ffff:1.2.3.4` or
 * `::ffff:102:304` → `'1.2.3.4'`), as dual-stack sockets report IPv4 peers. Any other
 * input, valid or not, is returned unchanged.
 */
export function unmapIPv4(ip: string): string {
  if (typeof ip !== 'string' || isIP(stripZone(ip)) !== 6) return ip;
  const b = ipToBytes(ip);
  return isMappedV4(b) ? bytesToIp(b.subarray(12)) : ip;
}

/** True for the unspecified addresses `0.0.0.0` and `::` (also `::ffff:0.0.0.0`). Non-IPs give false. */
export function isUnspecified(ip: string): boolean {
  if (typeof ip !== 'string' || isIP(stripZone(ip)) === 0) return false;
  return ipToBytes(unmapIPv4(ip)).every((x) => x === 0);
}

/** Address family of an IP literal (a `%zone` suffix is allowed), or `undefined` if it is not one. */
export function ipFamily(ip: string): Family | undefined {
  if (typeof ip !== 'string' || ip.length > MAX_IP_LITERAL_LENGTH) return undefined;
  const v = isIP(stripZone(ip));
  return v === 4 || v === 6 ? v : undefined;
}

function v4Scope(b: Uint8Array): AddressScope {
  const [a = 0, c = 0] = b;
  if (a === 127 || a === 0) return 'loopback';
  if (a === 169 && c === 254) return 'link-local';
  if (a === 10 || (a === 172 && (c & 0xf0) === 16) || (a === 192 && c === 168)) return 'private';
  if (a === 100 && (c & 0xc0) === 64) return 'cgnat';
  return 'global';
}

/**
 * Classifies an IP address literal into its {@link AddressScope}. A `%zone` suffix is allowed
 * and ignored. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified by their IPv4 part.
 *
 * The unspecified addresses (`0.0.0.0`, the rest of `0.0.0.0/8`, and `::`) are classified as
 * `loopback`: they are never a valid address for a remote peer, must never be advertised, and
 * connecting to them reaches the local host on Linux and macOS. Use {@link isUnspecified} to
 * tell them apart from `127.0.0.1`/`::1`.
 *
 * Deprecated IPv6 site-local (`fec0::/10`), multicast and documentation ranges are not
 * special-cased and come out as `global`.
 *
 * @throws InvalidArgumentError when `ip` is not an IPv4 or IPv6 literal.
 */
export function ipScope(ip: string): AddressScope {
  const b = ipToBytes(ip);
  if (b.length === IPV4_BYTES) return v4Scope(b);
  if (isMappedV4(b)) return v4Scope(b.subarray(12));
  let zeroPrefix = true;
  for (let i = 0; i < IPV6_BYTES - 1; i++) if (b[i] !== 0) zeroPrefix = false;
  if (zeroPrefix && (b[15] === 0 || b[15] === 1)) return 'loopback'; // `::` and `::1`
  const b0 = b[0] ?? 0;
  const b1 = b[1] ?? 0;
  if (b0 === 0xfe && (b1 & 0xc0) === 0x80) return 'link-local';
  if ((b0 & 0xfe) === 0xfc) return 'ula';
  return 'global';
}
