/**
 * Address scopes: classifies an IP address literal as loopback, link-local, private (RFC 1918),
 * unique-local (IPv6 ULA), carrier-grade NAT or global.
 *
 * The literal ⇄ bytes helpers live in `./ip.ts`; they are re-exported here for the modules
 * that have always imported them from this one.
 *
 * Only literals are handled; nothing here resolves names or touches the network.
 * @module
 */
import { IPV4_BYTES, IPV6_BYTES, ipFamily, ipToBytes, isMappedIPv4 } from './ip.js';

export { MAX_IP_LITERAL_LENGTH, bytesToIp, ipFamily, ipToBytes, unmapIPv4 } from './ip.js';

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

/** True for the unspecified addresses `0.0.0.0` and `::` (also `::ffff:0.0.0.0`). Non-IPs give false. */
export function isUnspecified(ip: string): boolean {
  if (ipFamily(ip) === undefined) return false;
  const b = ipToBytes(ip);
  return (isMappedIPv4(b) ? b.subarray(12) : b).every((x) => x === 0);
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
  if (isMappedIPv4(b)) return v4Scope(b.subarray(12));
  let zeroPrefix = true;
  for (let i = 0; i < IPV6_BYTES - 1; i++) if (b[i] !== 0) zeroPrefix = false;
  if (zeroPrefix && (b[15] === 0 || b[15] === 1)) return 'loopback'; // `::` and `::1`
  const b0 = b[0] ?? 0;
  const b1 = b[1] ?? 0;
  if (b0 === 0xfe && (b1 & 0xc0) === 0x80) return 'link-local';
  if ((b0 & 0xfe) === 0xfc) return 'ula';
  return 'global';
}
