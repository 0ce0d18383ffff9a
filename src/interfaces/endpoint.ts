/**
 * Endpoints: `{ host, port, family, scopeId? }`, and parsing/formatting of the textual forms
 * `host:port`, `[v6]:port` and `[fe80::1%eth0]:port`.
 * @module
 */
import { isIP } from 'node:net';
import { EndpointError } from '../errors.js';
import { describeInput as describe } from '../util/describe.js';
import { unmapIPv4 } from './ip.js';

/** IP address family. */
export type Family = 4 | 6;

/** A transport endpoint. `host` is a literal IP address (no zone); `scopeId` carries the zone. */
export interface Endpoint {
  /** IP address literal, without `%zone` and without brackets. */
  host: string;
  /** Port, 0–65535. */
  port: number;
  /** Address family of `host`. */
  family: Family;
  /** IPv6 zone (interface name or numeric index) of a link-local address, e.g. `'eth0'`. */
  scopeId?: string;
}

/** Anything {@link toEndpoint} accepts: `'host:port'`, `'[v6]:port'`, or `{ host, port }`. */
export type EndpointLike = string | { host: string; port: number; scopeId?: string | number };

/** Longest textual endpoint accepted (a full v6 literal, a zone and a port fit easily). */
export const MAX_ENDPOINT_LENGTH = 128;

const ZONE_RE = /^[A-Za-z0-9_.\-:@]{1,64}$/;

/** Validates a port number; throws {@link EndpointError}. */
export function checkPort(port: unknown, what = 'port'): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new EndpointError(`invalid ${what}: ${typeof port === 'number' ? String(port) : describe(port)} (must be an integer 0-65535)`);
  }
  return port;
}

/**
 * Splits `addr` into an IP literal and an optional zone; throws on anything that is not an
 * IP literal (hostnames are not resolved here: p2pd never does DNS behind your back).
 */
export function parseHost(addr: string): { host: string; family: Family; scopeId?: string } {
  if (typeof addr !== 'string' || addr.length === 0 || addr.length > MAX_ENDPOINT_LENGTH) {
    throw new EndpointError(`invalid host: ${describe(addr)}`);
  }
  let host = addr;
  let scopeId: string | undefined;
  const bracketed = host.startsWith('[') && host.endsWith(']');
  if (bracketed) host = host.slice(1, -1);
  const pct = host.indexOf('%');
  if (pct >= 0) {
    scopeId = host.slice(pct + 1);
    host = host.slice(0, pct);
    if (!ZONE_RE.test(scopeId)) throw new EndpointError(`invalid IPv6 zone in ${JSON.stringify(addr)}`);
  }
  const v = isIP(host);
  if (v === 0) throw new EndpointError(`not an IP address: ${JSON.stringify(addr)}`);
  if (v === 4 && scopeId !== undefined) throw new EndpointError(`IPv4 address cannot have a zone: ${JSON.stringify(addr)}`);
  if (v === 4 && bracketed) throw new EndpointError(`IPv4 address must not be bracketed: ${JSON.stringify(addr)}`);
  const out: { host: string; family: Family; scopeId?: string } = { host: host.toLowerCase(), family: v as Family };
  if (scopeId !== undefined) out.scopeId = scopeId;
  return out;
}

/**
 * Parses `host:port`, `[v6]:port`, `[fe80::1%eth0]:port` or `{ host, port, scopeId? }` into
 * an {@link Endpoint}. Throws {@link EndpointError} with a clear message on anything else.
 */
export function toEndpoint(e: EndpointLike): Endpoint {
  if (typeof e === 'string') return parseEndpoint(e);
  if (e === null || typeof e !== 'object' || typeof e.host !== 'string') {
    throw new EndpointError(`invalid endpoint: expected "host:port" or { host, port }`);
  }
  const h = parseHost(e.host);
  const port = checkPort(e.port);
  const out: Endpoint = { host: h.host, port, family: h.family };
  if (typeof e.scopeId === 'number' && !(Number.isInteger(e.scopeId) && e.scopeId >= 0)) {
    throw new EndpointError(`invalid scopeId ${String(e.scopeId)}: a numeric zone is a non-negative interface index`);
  }
  if (e.scopeId !== undefined && typeof e.scopeId !== 'number' && typeof e.scopeId !== 'string') {
    throw new EndpointError(`invalid scopeId: expected a string or number, got ${describe(e.scopeId)}`);
  }
  const zone = e.scopeId !== undefined && e.scopeId !== '' ? String(e.scopeId) : h.scopeId;
  if (zone !== undefined) {
    if (h.family !== 6 || !ZONE_RE.test(zone)) throw new EndpointError(`invalid scopeId ${JSON.stringify(zone)} for ${h.host}`);
    out.scopeId = zone;
  }
  return out;
}

/** Parses the textual form; see {@link toEndpoint}. */
export function parseEndpoint(s: string): Endpoint {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_ENDPOINT_LENGTH) {
    throw new EndpointError(`invalid endpoint: ${describe(s)}`);
  }
  let hostPart: string;
  let portPart: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') throw new EndpointError(`invalid endpoint ${JSON.stringify(s)}: expected "[v6]:port"`);
    hostPart = s.slice(1, close);
    portPart = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) throw new EndpointError(`invalid endpoint ${JSON.stringify(s)}: missing ":port"`);
    hostPart = s.slice(0, colon);
    portPart = s.slice(colon + 1);
    if (hostPart.includes(':')) throw new EndpointError(`invalid endpoint ${JSON.stringify(s)}: IPv6 addresses need brackets, "[v6]:port"`);
  }
  if (!/^[0-9]{1,5}$/.test(portPart)) throw new EndpointError(`invalid port in ${JSON.stringify(s)}`);
  const h = parseHost(hostPart);
  if (h.family === 4 && s.startsWith('[')) throw new EndpointError(`IPv4 address must not be bracketed: ${JSON.stringify(s)}`);
  const out: Endpoint = { host: h.host, port: checkPort(Number(portPart)), family: h.family };
  if (h.scopeId !== undefined) out.scopeId = h.scopeId;
  return out;
}

/** Host as Node.js socket APIs expect it: `fe80::1%eth0` for scoped addresses. */
export function nodeHost(e: { host: string; scopeId?: string }): string {
  return e.scopeId ? `${e.host}%${e.scopeId}` : e.host;
}

/** An IPv6 literal in `fe80::/10` (its first group is fe80–febf). */
const LINK_LOCAL_V6_RE = /^fe[89ab][0-9a-f]:/i;

/**
 * The {@link EndpointError} for sending to or connecting to `e` when `e` is an IPv6
 * link-local address (`fe80::/10`) without a zone and the local socket names no interface
 * either (`localZone`): the kernel would reject it (TCP) or pick an interface on its own
 * (UDP). `undefined` when the endpoint is fine.
 */
export function missingZone(e: { host: string; family: Family; scopeId?: string; port: number }, localZone?: string): EndpointError | undefined {
  if (e.family !== 6 || e.scopeId || localZone || !LINK_LOCAL_V6_RE.test(e.host)) return undefined;
  return new EndpointError(
    `${e.host} is an IPv6 link-local address: say which interface reaches it, e.g. [${e.host}%eth0]:${e.port} (or bind to a link-local address of that interface)`,
  );
}

/**
 * Formats an endpoint: `1.2.3.4:5`, `[::1]:5`, `[fe80::1%eth0]:5`. It does not validate
 * (error messages format what they were given): only a non-object or a missing string `host`
 * throws {@link EndpointError}; check untrusted input with {@link toEndpoint} first.
 */
export function formatEndpoint(e: { host: string; port: number; scopeId?: string; family?: Family }): string {
  if (e === null || typeof e !== 'object' || typeof e.host !== 'string') throw new EndpointError(`cannot format ${describe(e)} as an endpoint (needs { host, port })`);
  const v6 = e.family === 6 || e.host.includes(':');
  return v6 ? `[${nodeHost(e)}]:${e.port}` : `${e.host}:${e.port}`;
}

/** Builds an endpoint from what Node.js reports (`address` may carry `%zone`). */
export function endpointFromNode(address: string, port: number): Endpoint {
  const pct = address.indexOf('%');
  const host = pct >= 0 ? address.slice(0, pct) : address;
  const family: Family = host.includes(':') ? 6 : 4;
  const out: Endpoint = { host, port, family };
  if (pct >= 0) out.scopeId = address.slice(pct + 1);
  return out;
}

/**
 * {@link unmapIPv4} with a fast path for hot code: `::ffff:1.2.3.4` (the form sockets report)
 * → `1.2.3.4` without parsing; any other address starting `::ffff:` goes through
 * `unmapIPv4`; everything else is returned unchanged.
 */
export function unmapHost(host: string): string {
  if (!host.startsWith('::ffff:')) return host;
  return host.includes('.') ? host.slice(7) : unmapIPv4(host);
}

/**
 * True when two endpoints name the same host and port (zone ignored when either lacks one;
 * an IPv4-mapped IPv6 address equals its IPv4 address).
 */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (a.port !== b.port) return false;
  if (a.host !== b.host && unmapHost(a.host) !== unmapHost(b.host)) return false;
  return !a.scopeId || !b.scopeId || a.scopeId === b.scopeId;
}
