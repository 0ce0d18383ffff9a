/**
 * {@link TcpPipeInit}: what a `TcpPipe` (see `tcp.ts`) is constructed with — the options
 * `pipeOpen` and `TcpServer` resolve for each connection.
 * @module
 */
import type { Endpoint } from '../interfaces/endpoint.js';
import type { TcpPipe } from './tcp.js';
import type { Framing, Message, MessageCallback, QueueLimits } from './types.js';

/** Options for wrapping a connected socket. */
export interface TcpPipeInit extends QueueLimits {
  /** Framing. */
  framing: Framing;
  /** Max message size for the framing. */
  maxMessageSize: number;
  /** Initial callback; when set no default subscription is made. */
  onMessage?: MessageCallback | undefined;
  /** Subscribe `SUB_ALL` by default. */
  defaultSub: boolean;
  /** Flush timeout of `close()` (ms). */
  flushTimeout?: number | undefined;
  /**
   * TCP_NODELAY socket: let the kernel hold the tail of a burst (Nagle) until the peer
   * acknowledges its head, at most `BURST_TAIL_HOLD_MS` (see `tcp.ts`). Only for real sockets.
   */
  holdBurstTails?: boolean | undefined;
  /** The server that accepted it, which also sees its messages. */
  parent?: { deliverShared(m: Message): boolean; pipeClosed(p: TcpPipe): void } | undefined;
  /**
   * The local endpoint when the opener knows it exactly as the socket would report it (an
   * accepted connection on a listener bound to one address); saves a `getsockname()`.
   */
  knownLocal?: Endpoint | undefined;
  /** The remote endpoint, likewise (a client connected to a canonical IPv4 address); saves a `getpeername()`. */
  knownRemote?: Endpoint | undefined;
  /**
   * TCP_NODELAY is wanted but not set yet: the pipe sets it at its first send (or
   * {@link TcpPipe.ensureNoDelay}). Until data flows Nagle cannot delay anything (nothing is
   * unacknowledged), and a connection that never sends saves the system call.
   */
  deferNoDelay?: boolean | undefined;
}
