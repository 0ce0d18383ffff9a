/**
 * STUN server settings: defaults, the options of `startStunServer` and the counters of a
 * `StunServer` (see `server.ts`).
 * @module
 */
import type { Proto } from '../../pipes/types.js';
import type { AbortOptions } from '../../util/abort.js';

/** Default alternate port of an RFC 5780 server. */
export const STUN_ALT_PORT = 3479;
/** Default largest request accepted (bytes); larger datagrams are dropped, larger TCP frames close the connection. */
export const DEFAULT_MAX_REQUEST_SIZE = 2048;
/** Default per-source-address rate limit: requests per second, and burst. */
export const DEFAULT_STUN_RATE_LIMIT = { rate: 500, burst: 1000 } as const;
/** Default most concurrent TCP connections per listening socket. */
export const DEFAULT_MAX_STUN_CONNECTIONS = 256;
/**
 * Default idle time (ms) after which a TCP connection is closed: the time allowed between
 * whole requests (bytes that never complete one, trickled to look busy, do not count).
 */
export const DEFAULT_STUN_TCP_IDLE = 30_000;
/**
 * Most answer bytes a TCP connection may leave unsent (queued in the process because the client
 * does not read them) before it is reset: a client that pipelines requests and never reads
 * cannot make the server buffer answers without bound.
 */
export const MAX_STUN_TCP_UNSENT = 64 * 1024;
/** Most source addresses the rate limiter tracks at once (the table is reset beyond it). */
export const MAX_RATE_ENTRIES = 65_536;

/** Options of `startStunServer`. */
export interface StunServerOptions extends AbortOptions {
  /**
   * The addresses to listen on: `[primary]` or `[primary, alternate]` (one family). With two,
   * the server is RFC 5780 capable (CHANGE-REQUEST, OTHER-ADDRESS); both must then be
   * specific addresses. A single wildcard address (`'0.0.0.0'`, `'::'`) is allowed.
   * @default ['0.0.0.0']
   */
  addresses?: string[];
  /** `[primary]` or `[primary, alternate]` ports; `0` picks free ones. @default [3478, 3479] */
  ports?: number[];
  /** Protocols to serve. @default ['udp'] */
  protos?: Proto[];
  /** SOFTWARE attribute; `false` sends none. @default 'p2pd' */
  software?: string | false;
  /** Add FINGERPRINT to RFC 8489 responses. @default true */
  fingerprint?: boolean;
  /**
   * Also add MAPPED-ADDRESS to RFC 8489 responses (RFC 3489 classic requests always get
   * MAPPED-ADDRESS, and no XOR-MAPPED-ADDRESS). @default false
   */
  mappedAddress?: boolean;
  /** Per-source-IP token bucket; `false` disables it. @default DEFAULT_STUN_RATE_LIMIT */
  rateLimit?: { rate: number; burst: number } | false;
  /** Largest request in bytes. @default DEFAULT_MAX_REQUEST_SIZE (2048) */
  maxRequestSize?: number;
  /**
   * Most concurrent TCP connections per listening socket. Beyond it a new connection is reset,
   * unless its source (IPv4 address, IPv6 /64) holds at least two fewer than the source holding
   * the most: then that source's oldest connection is reset instead. @default 256
   */
  maxConnections?: number;
  /** Idle timeout of TCP connections (ms): a connection that completes no request within it is closed. @default 30 000 */
  tcpIdleTimeout?: number;
}

/** Counters of a `StunServer`. */
export interface StunServerStats {
  /** Binding requests answered with a success response. */
  success: number;
  /** Requests answered with an error response. */
  errors: number;
  /** Packets dropped: not STUN, malformed, not a request, bad FINGERPRINT, too big. */
  ignored: number;
  /** Requests dropped by the rate limiter. */
  rateLimited: number;
  /** TCP connections refused over `maxConnections` or closed for a framing error, idleness or unread answers ({@link MAX_STUN_TCP_UNSENT}). */
  tcpDropped: number;
}
