/**
 * Public types of the P2P node.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { Endpoint, EndpointLike } from '../interfaces/endpoint.js';
import type { Interface, Interfaces } from '../interfaces/interfaces.js';
import type { Pipe } from '../pipes/pipe.js';
import type { AbortOptions } from '../util/abort.js';
import type { AddrEndpointKind } from './address.js';

/** How a connection was made. */
export type Strategy = 'direct' | 'reverse' | 'punch' | 'relay';
/** Every strategy, in the default order. */
export const STRATEGIES: readonly Strategy[] = Object.freeze(['direct', 'reverse', 'punch', 'relay'] as const);

/** Which path a pipe took. */
export interface PipePath {
  /** The strategy that made it; `'inbound'` for a connection the peer made to us on its own. */
  strategy: Strategy | 'inbound';
  /** The transport under the encryption: `'tcp'`, `'udp'` (punched), `'turn'` (relayed). */
  transport: 'tcp' | 'udp' | 'turn';
  /** Our end (for a relay: our relayed address). */
  local: Endpoint;
  /** The peer's end (for a relay: the peer's relayed address). */
  remote: Endpoint;
  /** The TURN server, for relayed pipes. */
  server?: Endpoint;
  /** Milliseconds from `connect()` to the authenticated pipe (outbound pipes). */
  ms?: number;
}

/**
 * A pipe to a peer: encrypted and authenticated (Noise XX; `remoteId` is the peer's proven
 * node id), reliable and ordered, one `send` = one message. A `Pipe` like any other
 * (`send`, `recv`, `onMessage`, `for await`, `close`).
 */
export type NodePipe = Pipe & {
  /** Which strategy and transport carry it. */
  readonly path: PipePath;
  /** The peer's authenticated node id (32 bytes). */
  readonly remoteId: Buffer;
  /** {@link remoteId} in hex. */
  readonly remoteIdHex: string;
};

/** The user's protocol handler: every message from every peer. May be async. */
export type NodeMessageCallback = (msg: Buffer, pipe: NodePipe) => void | Promise<void>;

/** A TURN server the node may allocate relays on. */
export interface TurnServerConfig {
  /** `'host:port'`, `'[v6]:port'`, an IP (port 3478) or `{ host, port? }`. */
  server: EndpointLike | { host: string; port?: number };
  /** Long-term credential user. */
  username: string;
  /** Long-term credential password. */
  password: string;
  /** Transport to the server. @default 'udp' */
  proto?: 'udp' | 'tcp';
}

/** Signalling configuration. */
export interface SignallingConfig {
  /** MQTT brokers to use (`mqtt://host:port`, `mqtts://…`, `ws://…`). They go into the address. */
  brokers?: string[];
  /**
   * Run an MQTT broker in the process (aedes) and advertise it, so that peers need no outside
   * server. `true` = all interfaces, a free port; `maxConnectionsPerHost` caps the clients
   * from one address, loopback included (see `BrokerOptions.maxConnectionsPerHost`, default
   * `MAX_BROKER_CONNECTIONS_PER_HOST`). @default true when no `brokers` are given
   */
  embedded?: boolean | { host?: string; port?: number; maxConnectionsPerHost?: number };
  /** Time allowed to connect to a broker (ms). @default 2000 */
  connectTimeout?: number;
  /**
   * Signalling message ids remembered against replay (see `SignallingOptions.replayCacheSize`).
   * @default DEFAULT_REPLAY_CACHE_SIZE (65 536)
   */
  replayCacheSize?: number;
}

/** Timeouts (ms). */
export interface NodeTimeouts {
  /** `connect()` as a whole, unless the call gives its own. @default 15 000 */
  connect?: number;
  /** One direct TCP attempt (connect + handshake). @default 2000 */
  direct?: number;
  /** Reverse connect: from the request to the peer's connection. @default 4000 */
  reverse?: number;
  /** Hole punching, signalling included. @default 6000 */
  punch?: number;
  /** TURN relay, allocation and signalling included. @default 10 000 */
  relay?: number;
  /** The secure handshake. @default 5000 */
  handshake?: number;
  /** NAT detection at start. @default 2500 */
  nat?: number;
}

/** Options of {@link P2pNode}. */
export interface P2pNodeOptions {
  /** Interfaces, from `initP2pd()`. @default enumerated at start */
  nics?: Interfaces | readonly Interface[];
  /** The node's identity. @default a new one */
  identity?: Identity;
  /** TCP (and UDP) listen port. @default 0 (a free port) */
  port?: number;
  /** Where to listen: `'all'` interfaces (wildcard, IPv4 and IPv6, link-local included) or `'loopback'` only. @default 'all' */
  listen?: 'all' | 'loopback';
  /** STUN servers (IP literals with optional port): external address, NAT type and delta, reflexive candidates for punching. The node asks over IPv4 only: IPv4 servers are used in their order, an IPv6 one gets a `warning` at start. @default none (no detection) */
  stun?: (string | { host: string; port?: number })[];
  /** Detect the NAT kind and port delta at start (needs `stun`). @default true */
  natDetection?: boolean;
  /** TURN servers for the relay strategy. @default none */
  turn?: TurnServerConfig[];
  /** Use TURN relays (needs `turn`). @default true when a TURN server is configured */
  relay?: boolean;
  /**
   * Punch TCP too (simultaneous open, from a port whose mapping is learned over STUN/TCP), beside
   * UDP; the connecting side prefers a punched TCP connection (kernel TCP carries bulk data faster).
   * @default true when a STUN server is configured
   */
  tcpPunch?: boolean;
  /** Ask the gateway (UPnP / NAT-PMP / PCP) to map the listen port, in the background, and renew it. @default true */
  portMapping?: boolean;
  /** Signalling over MQTT; `false` disables it (direct connections only). @default `{ embedded: true }` */
  signalling?: SignallingConfig | false;
  /** Strategies `connect()` uses by default, in order. @default all of STRATEGIES that are available */
  strategies?: Strategy[];
  /**
   * Timeouts (ms); fields left out keep their defaults (see {@link NodeTimeouts}).
   * @default DEFAULT_TIMEOUTS: connect 15 000, direct 2000, reverse 4000, punch 6000, relay 10 000, handshake 5000, nat 2500
   */
  timeouts?: NodeTimeouts;
  /**
   * Keep-alive interval of idle pipes (ms): TCP keep-alive probes, PINGs on punched and
   * relayed streams. Keep it below the NAT's UDP binding timeout (often 30 s). @default 15 000
   */
  keepAlive?: number;
  /**
   * Most live pipes to peers, inbound and outbound together. An inbound pipe beyond it is
   * closed at once (a `warning` event says so); `connect()` beyond it rejects with
   * `LimitError`. Inbound pipes alone are capped lower, by `maxInboundPeers`.
   * @default DEFAULT_MAX_PEERS (1024)
   */
  maxPeers?: number;
  /**
   * Most live pipes that peers opened to us (including the pipes made to answer their
   * reverse, punch or relay requests); an inbound pipe beyond it is closed at once with a
   * `warning` event. The rest of `maxPeers` stays for our own `connect()`s, so peers that
   * connect in, however many identities they make, cannot stop the node from connecting out.
   * @default three quarters of `maxPeers`, at least 1 (`DEFAULT_INBOUND_SHARE`)
   */
  maxInboundPeers?: number;
  /** Diagnostics: called for strategy starts, failures and wins, and other events. */
  onEvent?: (e: NodeEvent) => void;
}

/** A diagnostic event. */
export interface NodeEvent {
  /**
   * What happened: a `connect()` strategy started, failed or won; an inbound pipe was
   * accepted; a signalling message arrived; or a `warning` (e.g. a refused pipe or request).
   */
  type: 'strategy-start' | 'strategy-fail' | 'strategy-win' | 'inbound' | 'signal' | 'warning';
  /** The strategy concerned (`strategy-*` events). */
  strategy?: Strategy;
  /** The peer's node id in hex (or the signalling sender's id), when there is one. */
  peer?: string;
  /** Milliseconds since the `connect()` began (`strategy-*` events). */
  ms?: number;
  /** Human-readable detail: the error message, the winning/inbound path, the signal type or the warning. */
  detail?: string;
}

/** Options of {@link P2pNode.connect}. */
export interface ConnectOptions extends AbortOptions {
  /** Strategies to try, in order of preference. @default the node's */
  strategies?: Strategy[];
  /** Overall time limit (ms). @default the node's `timeouts.connect` (15 s) */
  timeout?: number;
  /**
   * Queue received messages for `pipe.recv()` / `for await` (they go to the node's message
   * callbacks as well). `true`: a queue you must read (when full it pauses the pipe);
   * `false`: none. @default a queue that, if it fills up without ever being read while the
   * node has message callbacks (`addMsgCb`/`onMessage`, which saw every message), is dropped
   * (counted in `stats.dropped`) instead of pausing the pipe
   */
  queue?: boolean;
  /**
   * Direct strategy only: try just these kinds of the peer's endpoints (e.g. `['link-local']`
   * to insist on IPv6 link-local). @default every kind
   */
  via?: AddrEndpointKind[];
}
