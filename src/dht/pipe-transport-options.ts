/**
 * Options, counters, defaults and the secure-layer contract of `PipeDhtTransport`
 * (see `pipe-transport.ts`).
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { EndpointLike } from '../interfaces/endpoint.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpPipe } from '../pipes/tcp.js';
import type { BindOptions } from '../pipes/types.js';
import type { DhtId } from './id.js';
import { MAX_MESSAGE_BYTES } from './messages.js';

/** Default most pooled outgoing connections. */
export const DEFAULT_MAX_CONNECTIONS = 64;
/** Default most accepted connections (handshakes in progress included). */
export const DEFAULT_MAX_INBOUND = 256;
/** Default time a link may stay idle before it is closed, ms. */
export const DEFAULT_IDLE_TIMEOUT = 60_000;
/** Default TCP connect timeout, ms (a request's own timeout bounds it too). */
export const DEFAULT_DHT_CONNECT_TIMEOUT = 5_000;
/** Default time a peer has to complete the secure handshake, ms. */
export const DEFAULT_DHT_HANDSHAKE_TIMEOUT = 10_000;
/** Largest DHT frame a link sends or accepts (one DHT message). */
export const MAX_DHT_FRAME = MAX_MESSAGE_BYTES;

/** What the secure layer hands back: the pipe DHT frames travel on and the peer's authenticated id. */
export interface UpgradedLink {
  /** The pipe DHT frames travel on (one frame per message). */
  pipe: Pipe;
  /** The id the peer proved. */
  remoteId: DhtId;
}

/** Options given to a {@link LinkUpgrade}. */
export interface LinkUpgradeOptions {
  /** `true` on the connecting side. */
  initiator: boolean;
  /** The id the peer must prove (outgoing links). */
  remoteId?: DhtId;
  /** Aborts the handshake (the transport closes). */
  signal: AbortSignal;
  /** Handshake timeout, ms. */
  timeout: number;
  /** Receives every DHT frame of the upgraded pipe, from the first one on. */
  onFrame(data: Buffer): void;
}

/**
 * The secure layer: runs a handshake over a raw (unframed) TCP pipe. Rejects (closing `raw`)
 * if the handshake fails, or `remoteId` is given and the peer proves another id.
 */
export type LinkUpgrade = (raw: TcpPipe, opts: LinkUpgradeOptions) => Promise<UpgradedLink>;

/** Options of `PipeDhtTransport.listen`. */
export interface PipeDhtTransportOptions {
  /**
   * Our node identity: gives our id and public key, and authenticates us in secure mode.
   * Without it `id` is required and only plain mode is possible.
   */
  identity?: Identity;
  /** Our node id when no `identity` is given (plain mode). */
  id?: DhtId;
  /** Run the Noise handshake on every link. @default `true` with an `identity`, else `false` */
  secure?: boolean;
  /** Where to listen: `'host:port'`, `{ host, port }` or `{ host?, port?, iface? }`. @default `0.0.0.0:0` */
  bind?: EndpointLike | BindOptions;
  /**
   * Host put in our contact (what other nodes connect to).
   * @default the bound address; for a wildcard bind, the first non-internal address of the family, else loopback
   */
  publicHost?: string;
  /** Port put in our contact. @default the bound port */
  publicPort?: number;
  /** Most pooled outgoing connections. @default {@link DEFAULT_MAX_CONNECTIONS} */
  maxConnections?: number;
  /** Most accepted connections. @default {@link DEFAULT_MAX_INBOUND} */
  maxInbound?: number;
  /** Idle links are closed after this many ms; `0` = never. @default {@link DEFAULT_IDLE_TIMEOUT} */
  idleTimeout?: number;
  /** TCP connect timeout, ms. @default {@link DEFAULT_DHT_CONNECT_TIMEOUT} */
  connectTimeout?: number;
  /** Secure handshake timeout, ms. @default {@link DEFAULT_DHT_HANDSHAKE_TIMEOUT} */
  handshakeTimeout?: number;
  /** Malformed frames tolerated per link before it is closed. @default 3 */
  maxMalformed?: number;
  /** Requests in flight per link. @default 256 */
  maxPending?: number;
  /** Incoming requests served at once per link. @default 64 */
  maxServing?: number;
  /** The secure layer. @default `secure()` of `src/crypto/secure-pipe.ts` with our identity */
  upgrade?: LinkUpgrade;
}

/** Counters of a `PipeDhtTransport`. */
export interface PipeDhtTransportStats {
  /** Outgoing links established (handshake included). */
  connects: number;
  /** Outgoing connection attempts that failed (connect or handshake). */
  connectFailures: number;
  /** Requests retried on a fresh connection after their pooled link failed. */
  reconnects: number;
  /** Accepted connections that became links. */
  accepted: number;
  /** Accepted connections reset because `maxInbound` was reached. */
  refused: number;
  /** Secure handshakes that failed (either direction; `PeerIdMismatchError` included). */
  handshakeFailures: number;
  /** Links closed for malformed, oversized or truncated frames (or, secure, undecryptable ones). */
  misbehaving: number;
  /** Links closed to make room (pool or inbound limit). */
  evicted: number;
  /** Links closed for being idle. */
  idleClosed: number;
}
