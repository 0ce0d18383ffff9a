/**
 * STUN client settings: the well-known numbers, server parsing, and the options and result
 * types of `StunClient` / `stunGetMapping` (see `client.ts`).
 * @module
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../../errors.js';
import { toEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { BindOptions, Proto } from '../../pipes/types.js';
import { badTimeout, type AbortOptions } from '../../util/abort.js';
import { unmapIPv4 } from '../../interfaces/ip.js';

/** The IANA STUN port (UDP and TCP). */
export const STUN_PORT = 3478;
/** Default SOFTWARE attribute sent by p2pd's client and server. */
export const STUN_SOFTWARE = 'p2pd';
/** How long `StunClient.close` waits for a TCP server to finish the connection before resetting it (ms). */
export const TCP_CLOSE_GRACE = 100;
/** Pre-RFC 5389 attribute number of XOR-MAPPED-ADDRESS, still sent by some old servers. */
export const ATTR_XOR_MAPPED_ADDRESS_OLD = 0x8020;

/**
 * Parses a STUN server given as `'1.2.3.4'`, `'1.2.3.4:3478'`, `'2001:db8::1'`,
 * `'[2001:db8::1]'`, `'[2001:db8::1]:3478'` or `{ host, port? }` into an {@link Endpoint};
 * the port defaults to {@link STUN_PORT}. Host names are not resolved: throws
 * {@link InvalidArgumentError} / `EndpointError` for anything but an IP literal.
 */
export function parseStunServer(server: EndpointLike | { host: string; port?: number }, defaultPort = STUN_PORT): Endpoint {
  if (typeof server === 'string') {
    const s = server.trim();
    if (isIP(s.split('%')[0] ?? '') !== 0) return toEndpoint({ host: s, port: defaultPort });
    if (s.startsWith('[') && s.endsWith(']')) return toEndpoint({ host: s.slice(1, -1), port: defaultPort });
    return toEndpoint(s);
  }
  if (server === null || typeof server !== 'object') throw new InvalidArgumentError('STUN server must be "host[:port]" or { host, port }');
  return toEndpoint({ ...server, port: server.port ?? defaultPort });
}

/** Where a STUN response came from and what it said. */
export interface StunMapping {
  /**
   * Local endpoint of the socket. For a socket bound to the wildcard address the host is the
   * address the kernel routes to the server from (found without sending anything).
   */
  local: Endpoint;
  /** The reflexive (mapped) address the server saw: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS. */
  mapped: Endpoint;
  /** The server the request was sent to. */
  server: Endpoint;
  /** Where the response came from (differs from `server` for CHANGE-REQUEST tests). */
  from: Endpoint;
  /** Transport. */
  proto: Proto;
  /** RESPONSE-ORIGIN (RFC 5780), else SOURCE-ADDRESS (RFC 3489), if present. */
  responseOrigin?: Endpoint;
  /** OTHER-ADDRESS (RFC 5780), else CHANGED-ADDRESS (RFC 3489): the server's alternate address and port. */
  otherAddress?: Endpoint;
  /** Which attribute gave `otherAddress`: `'rfc5780'` (OTHER-ADDRESS) or `'rfc3489'` (CHANGED-ADDRESS). */
  otherKind?: 'rfc5780' | 'rfc3489';
  /** SOFTWARE of the server, if sent. */
  software?: string;
  /** Milliseconds from the first transmission to the response. */
  rtt: number;
  /** True when the exchange used RFC 3489 classic messages (no magic cookie). */
  classic: boolean;
}

/** Options shared by `StunClient.open` and `stunGetMapping`. */
export interface StunClientOptions extends AbortOptions {
  /** The STUN server: an IP literal with optional port (default 3478), or `{ host, port }`. */
  server: EndpointLike | { host: string; port?: number };
  /** `'udp'` or `'tcp'`. @default 'udp' */
  proto?: Proto;
  /** Address family; must match the server's. @default the server's family */
  family?: Family;
  /** Local binding: `{ host?, port?, iface? }` or `'host:port'`. @default any address, any port */
  bind?: BindOptions | EndpointLike;
  /** Use this open pipe instead of opening one (it is not closed by the client). UDP only. */
  pipe?: Pipe;
  /** Send RFC 3489 classic requests (16-byte transaction id, no magic cookie). @default false */
  classic?: boolean;
  /** SOFTWARE attribute of requests (RFC 8489 messages only); `false` sends none. @default 'p2pd' */
  software?: string | false;
  /** Add FINGERPRINT to requests (RFC 8489 messages only). @default true */
  fingerprint?: boolean;
  /** Initial retransmission timeout over UDP (ms), doubled on each try. @default 500 (RFC 8489) */
  rto?: number;
  /** Requests sent before giving up over UDP. @default 7 (RFC 8489) */
  maxTries?: number;
}

/** Options of one `StunClient.binding`. */
export interface BindingOptions extends AbortOptions {
  /** Send to this server instead of the client's (UDP: same socket, so the same local port). @default the client's server */
  server?: EndpointLike | { host: string; port?: number };
  /** CHANGE-REQUEST "change IP" flag (RFC 5780 / 3489 filtering tests). @default false */
  changeIp?: boolean;
  /** CHANGE-REQUEST "change port" flag. @default false */
  changePort?: boolean;
  /**
   * Which sources may answer. For CHANGE-REQUEST tests the answer comes from the server's
   * other address (the 96-bit transaction id still has to match).
   * @default 'server' for plain requests, 'any' for CHANGE-REQUEST tests
   */
  acceptFrom?: 'server' | 'any' | Endpoint | ((from: Endpoint) => boolean);
  /** Overrides the client's `classic` setting for this request. @default the client's */
  classic?: boolean;
  /** Overrides the client's initial RTO (ms). @default the client's */
  rto?: number;
  /** Overrides the client's retransmission count. @default the client's */
  maxTries?: number;
}

/** Checks a `proto` option: `'udp'` or `'tcp'`. */
export function checkProto(proto: unknown): Proto {
  if (proto !== 'udp' && proto !== 'tcp') throw new InvalidArgumentError(`proto must be 'udp' or 'tcp', got ${JSON.stringify(proto)}`);
  return proto;
}

/**
 * Checks a `timeout` option as every p2pd `timeout` is: `0`, `Infinity` or `undefined` = none
 * of its own (UDP transactions still end with the retransmission schedule), anything else must
 * be a non-negative number.
 */
export function checkTimeout(v: unknown): void {
  const bad = badTimeout(v);
  if (bad) throw bad;
}

/** Checks an `acceptFrom` endpoint (`{ host, port }` of an IP literal); returns it with IPv4-mapped IPv6 unmapped. */
export function checkAcceptFrom(v: unknown): Endpoint {
  if (v === null || typeof v !== 'object') throw new InvalidArgumentError(`acceptFrom must be 'server', 'any', an endpoint or a function, got ${JSON.stringify(v) ?? typeof v}`);
  const e = toEndpoint(v as EndpointLike);
  if (e.family !== 6) return e;
  const h = unmapIPv4(e.host);
  return h === e.host ? e : { host: h, port: e.port, family: 4 };
}

/** Checks an optional positive number option. */
export function checkPositive(v: unknown, what: string): void {
  if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new InvalidArgumentError(`${what} must be a positive number`);
}
