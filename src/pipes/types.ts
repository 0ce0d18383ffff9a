/**
 * Shared types and limits of the pipe layer.
 * @module
 */
import type { Endpoint, EndpointLike, Family } from '../interfaces/endpoint.js';
import type { AbortOptions } from '../util/abort.js';
import type { Pipe } from './pipe.js';

/** Transport protocol of a pipe. */
export type Proto = 'tcp' | 'udp';

/**
 * TCP message framing.
 * - `'raw'`: every chunk the OS delivers is a message; interoperable with any TCP peer.
 * - `'length'`: each message is prefixed by its length as a big-endian u32.
 * - `'line'`: messages are separated by `\n` (the newline is not part of the message).
 */
export type Framing = 'raw' | 'length' | 'line';

/** One received message. */
export interface Message {
  /** The payload (one datagram, one frame, or one raw TCP chunk). */
  readonly data: Buffer;
  /** Who sent it. For TCP this is the connection's remote endpoint. */
  readonly from: Endpoint;
  /** The pipe it arrived on (for TCP servers: the accepted client's pipe). */
  readonly pipe: Pipe;
}

/**
 * What a subscription matches in the payload:
 * a `RegExp` (tested against the payload decoded as UTF-8), a `string` (the payload contains it),
 * bytes (the payload starts with them) or a predicate.
 */
export type Pattern = RegExp | string | Uint8Array | ((data: Buffer, from: Endpoint) => boolean);

/** Source filter of a subscription: an omitted/empty host or port `0` means any. */
export interface SubSource {
  /** Source IP address (no zone); omitted or `''` = any host. */
  host?: string;
  /** Source port; omitted or `0` = any port. */
  port?: number;
}

/**
 * A subscription: messages matching `pattern` (if given) from `source` (if given).
 * Subscriptions are compared by identity: keep the object to `recv({ sub })` or unsubscribe.
 */
export interface Sub {
  /** Payload pattern; omitted = any payload. */
  readonly pattern?: Pattern;
  /** Source filter; omitted = any source. */
  readonly source?: SubSource;
}

/** The subscription that matches every message. */
export const SUB_ALL: Sub = Object.freeze({});

/** Default maximum number of messages queued per subscription. */
export const DEFAULT_MAX_QUEUE = 1024;
/** Default maximum bytes queued per subscription. */
export const DEFAULT_MAX_QUEUE_BYTES = 8 * 1024 * 1024;
/** Default maximum message size for `'length'` framing (bytes). */
export const DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024;
/** Largest message size that can be configured for `'length'` framing. */
export const MAX_MESSAGE_SIZE_LIMIT = 256 * 1024 * 1024;
/** Default maximum line length for `'line'` framing (bytes, without the newline). */
export const DEFAULT_MAX_LINE = 64 * 1024;
/**
 * Largest UDP payload that can be sent over IPv4 (65535 − 8 − 20). A UDP pipe's `send` rejects
 * a larger payload with `MessageTooBigError` before sending, over IPv6 too; received datagrams
 * are delivered whole whatever their size (an IPv6 peer can send up to 65 527 bytes).
 */
export const MAX_UDP_PAYLOAD = 65507;
/** Default connect timeout (ms) when the caller gives none. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000;
/** How long a graceful TCP close waits for the peer's FIN, once our data is flushed, before resetting (ms). */
export const CLOSE_TIMEOUT = 2_000;
/** Default time a graceful TCP close waits for our queued data to reach the kernel before resetting (ms). */
export const CLOSE_FLUSH_TIMEOUT = 10_000;
/** Maximum async `onMessage` callbacks in flight per TCP pipe before reading pauses. */
export const MAX_INFLIGHT_CALLBACKS = 256;
/** Default size of a TCP server's queue of accepted pipes awaiting `accept()`. */
export const DEFAULT_MAX_ACCEPT_QUEUE = 1024;
/**
 * Default cap on a TCP server's live accepted connections (`maxConnections`): each holds a
 * file descriptor and its queues, so a flood of connections must not exhaust the process.
 */
export const DEFAULT_MAX_SERVER_CONNECTIONS = 16_384;

/** Queue limits of a subscription or pipe. */
export interface QueueLimits {
  /** Max messages per subscription queue. @default DEFAULT_MAX_QUEUE (1024) */
  maxQueue?: number;
  /** Max bytes per subscription queue. @default DEFAULT_MAX_QUEUE_BYTES (8 MiB) */
  maxQueueBytes?: number;
  /**
   * Every matching subscription receives its own copy of the payload: the first matching
   * subscription (and the `onMessage` callbacks) get the received bytes, each further one a
   * copy, so a consumer that changes `msg.data` in place cannot change what another
   * subscription sees. `false` shares one payload among them all (treat it as read-only):
   * it saves a copy per extra matching subscription.
   * @default true
   */
  copyPayloads?: boolean;
}

/** Options of {@link Pipe.recv}. */
export interface RecvOptions extends AbortOptions {
  /** Which subscription to take from. @default SUB_ALL */
  sub?: Sub;
}

/** Where to bind a pipe. */
export interface BindOptions {
  /** Local IP address to bind (may carry `%zone`). @default the wildcard address of the family */
  host?: string;
  /** Local port. @default 0 (any free port) */
  port?: number;
  /** Interface name: bind to this NIC's address of the pipe's family (link-local if it has no other v6). */
  iface?: string;
}

/** Callback receiving messages. May return a promise; errors go to `onError` handlers. */
export type MessageCallback = (msg: Message) => void | Promise<void>;

/** Options of `pipeOpen`. */
export interface PipeOptions extends AbortOptions, QueueLimits {
  /**
   * Bound of the open (ms; `TimeoutError`): a TCP client's connect, or a server's / UDP pipe's
   * bind. `0` or `Infinity` = none; negative or `NaN`: `InvalidArgumentError`.
   * @default DEFAULT_CONNECT_TIMEOUT (10 000) for a TCP connect, none for a bind
   */
  timeout?: number;
  /** Local binding (address, port or interface). */
  bind?: BindOptions | EndpointLike;
  /** Address family when it cannot be inferred from `dest`/`bind`. @default 4, or the family of dest/bind */
  family?: Family;
  /** Message callback registered before any data can arrive; suppresses the default `SUB_ALL` subscription. */
  onMessage?: MessageCallback;
  /**
   * TCP framing. UDP pipes check the value (an unknown one rejects with
   * `InvalidArgumentError`) and otherwise ignore it: one datagram is one message.
   * @default 'raw'
   */
  framing?: Framing;
  /**
   * Max message size for `'length'` framing and max line for `'line'` (TCP). UDP pipes check
   * the value (not an integer 1..`MAX_MESSAGE_SIZE_LIMIT`: `InvalidArgumentError`) and
   * otherwise ignore it: datagrams are neither capped nor refused by it (see `MAX_UDP_PAYLOAD`).
   * @default DEFAULT_MAX_MESSAGE_SIZE / DEFAULT_MAX_LINE
   */
  maxMessageSize?: number;
  /** Disable Nagle's algorithm on TCP. @default true */
  noDelay?: boolean;
  /** TCP listen backlog for servers. @default 511 */
  backlog?: number;
  /** UDP receive buffer size (SO_RCVBUF) in bytes. @default the OS default */
  recvBufferSize?: number;
  /** UDP send buffer size (SO_SNDBUF) in bytes. @default the OS default */
  sendBufferSize?: number;
  /** Allow several sockets on the same UDP address (SO_REUSEADDR). @default false */
  reuseAddr?: boolean;
  /**
   * IPv6 sockets only accept IPv6 (no v4-mapped). A dual-stack socket (`false`) sees IPv4 peers
   * as `::ffff:a.b.c.d` in `msg.from`. @default `true` for every IPv6 TCP server (bound to `::`
   * or to a specific address); for UDP, `true` only for a server whose family alone says IPv6
   * (`{ family: 6 }` or `{ bind: { port }, family: 6 }`, no `host`): a UDP socket bound to an
   * explicit `'[::]:port'` / `{ host: '::' }` is dual-stack, as are UDP clients.
   */
  ipv6Only?: boolean;
  /** TCP: how long `close()` waits for already-sent data to reach the kernel before resetting (ms). @default CLOSE_FLUSH_TIMEOUT (10 000) */
  flushTimeout?: number;
  /**
   * Max accepted pipes waiting for `accept()`; beyond it the oldest is left to the callbacks
   * that took it on arrival (`onConnection`, server message callbacks or subscriptions), or
   * reset when none did. @default 1024
   */
  maxAcceptQueue?: number;
  /**
   * TCP servers: max live accepted connections; a connection beyond it is closed at once
   * (counted in `TcpServer.refusedConnections`). @default DEFAULT_MAX_SERVER_CONNECTIONS (16 384)
   */
  maxConnections?: number;
}

/** Counters of a pipe; cheap to read. */
export interface PipeStats {
  /** Messages received (after framing). */
  messagesIn: number;
  /** Bytes received (payload bytes). */
  bytesIn: number;
  /** Messages sent. */
  messagesOut: number;
  /** Bytes sent (payload bytes). */
  bytesOut: number;
  /** Messages that matched no subscription and had no callback. */
  unmatched: number;
  /** Messages dropped because a subscription queue was full (UDP: oldest dropped). */
  dropped: number;
}
