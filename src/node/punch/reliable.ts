/**
 * `openReliable(pipe, remote, opts)`: a reliable, ordered byte stream to `remote` over a
 * datagram pipe (a `UdpPipe` after a hole punch, or a `TurnPipe` relay), as a
 * {@link ReliablePipe}.
 *
 * **Semantics: TCP.** A `ReliablePipe` *is* a `TcpPipe` (`proto: 'tcp'`, framing `'raw'` by
 * default, `'length'`/`'line'` on request) whose "socket" is a {@link ReliableSocket} instead
 * of a kernel TCP connection: same `send()` (resolves once the data is accepted into the send
 * buffer; waits while it is full), same receiving, same `close()` (FIN after the data, then
 * wait for the peer's FIN) and `reset()` (RST; the peer gets `ConnectionResetError`). So it
 * goes wherever a connected TCP pipe goes, `secure()` included:
 *
 * ```ts
 * const { remote, rtt } = await punch({ pipe: udp, peerCandidates, nonce, startAt });
 * const stream = await openReliable(udp, remote, { initiator: iAmTheCaller, rtt });
 * const enc = await secure(stream, { identity, remoteId, initiator: iAmTheCaller });
 * ```
 *
 * `secure()` needs `initiator` spelled out here (its default guesses from whether a TCP
 * server accepted the connection): use the same role as the stream's, or `punch()`'s
 * `controlling`.
 *
 * Several streams can share one datagram pipe (each has a random conversation id), next to
 * STUN/TURN traffic and punch probes. The pipe's other users see the stream's packets too
 * (first byte 0xD2): a UDP pipe's default `SUB_ALL` queue should be unsubscribed or filtered.
 * @module
 */
import type { Socket } from 'node:net';
import { InvalidArgumentError, PipeClosedError } from '../../errors.js';
import { toEndpoint, type EndpointLike } from '../../interfaces/endpoint.js';
import { checkMaxMessageSize } from '../../pipes/framing.js';
import { Pipe } from '../../pipes/pipe.js';
import { TcpPipe } from '../../pipes/tcp.js';
import type { Framing, MessageCallback, QueueLimits } from '../../pipes/types.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { ReliableSocket } from './reliable-stream.js';
import type { ReliableStats } from './reliable-types.js';
import { MAX_RELIABLE_PAYLOAD, MIN_MSS } from './reliable-wire.js';

/** Default payload bytes per packet (fits a 1280-byte IPv6 path with room for TURN). */
export const DEFAULT_RELIABLE_MTU = 1200;
/** Default send buffer and receive window (segments). */
export const DEFAULT_RELIABLE_BUFFER = 256;
/** Default handshake bound (ms). */
export const DEFAULT_RELIABLE_TIMEOUT = 10_000;
/** Default interval of keep-alive PINGs when nothing else was sent (ms). */
export const DEFAULT_RELIABLE_KEEPALIVE = 15_000;
/** Default idle timeout: nothing received for this long closes the stream (ms). */
export const DEFAULT_RELIABLE_IDLE = 60_000;
/** Default minimum retransmission timeout (ms). */
export const DEFAULT_MIN_RTO = 50;
/** Default maximum retransmission timeout (ms). */
export const DEFAULT_MAX_RTO = 10_000;
/** Default number of consecutive retransmission timeouts before the peer is declared gone. */
export const DEFAULT_MAX_RETRIES = 10;
/** Default time a cleanly closed conversation still answers retransmitted FINs (ms). */
export const DEFAULT_RELIABLE_LINGER = 2_000;

/** Options of {@link openReliable}. */
export interface OpenReliableOptions extends AbortOptions, QueueLimits {
  /** Whether this side sends the SYN. Exactly one side must be the initiator. */
  initiator: boolean;
  /** Conversation id (1..2³²−1). Initiator: @default random. Responder: @default the first SYN from `remote` with an unused id. */
  conversationId?: number;
  /** Handshake bound (ms): `TimeoutError`. `signal` also only cancels the handshake. @default DEFAULT_RELIABLE_TIMEOUT (10 s) */
  timeout?: number;
  /** Payload bytes per packet at most (the smaller of both ends' is used). @default DEFAULT_RELIABLE_MTU (1200) */
  mtu?: number;
  /** Send buffer (segments): `send()` waits while it is full. @default 256 */
  sendBuffer?: number;
  /** Receive window (segments). @default 256 */
  receiveBuffer?: number;
  /** PING after this long without sending (ms); keeps NAT bindings open. @default 15 000 */
  keepAlive?: number;
  /** Close with `TimeoutError` after this long without any packet from the peer (ms). @default 60 000 */
  idleTimeout?: number;
  /** RTT of the path if known (ms), e.g. `punch()`'s: a better first retransmission timeout. */
  rtt?: number;
  /** Minimum retransmission timeout (ms). @default 50 */
  minRto?: number;
  /** Maximum retransmission timeout (ms). @default 10 000 */
  maxRto?: number;
  /** Consecutive retransmission timeouts before the stream fails with `TimeoutError`. @default 10 */
  maxRetries?: number;
  /** After a clean close, answer the peer's retransmitted FIN for this long (ms). @default 2 000 */
  linger?: number;
  /** Framing of the pipe's messages. @default 'raw' (a byte stream, like TCP) */
  framing?: Framing;
  /**
   * Largest message for `'length'` framing / longest line (without the newline) for `'line'`
   * framing (bytes, 1..MAX_MESSAGE_SIZE_LIMIT); unused with `'raw'`.
   * @default DEFAULT_MAX_MESSAGE_SIZE (4 MiB) for `'length'`, DEFAULT_MAX_LINE (64 KiB) for `'line'`
   */
  maxMessageSize?: number;
  /** `close()` waits this long for sent data to be acknowledged before resetting (ms). @default 10 000 */
  flushTimeout?: number;
  /** Message callback registered before any data can arrive (no default `SUB_ALL` subscription then). */
  onMessage?: MessageCallback;
}

/**
 * A reliable stream over a datagram pipe: a `TcpPipe` (TCP semantics, `proto: 'tcp'`) whose
 * transport is a {@link ReliableSocket}. `local` is the datagram pipe's endpoint, `remote`
 * the peer's. Closing it leaves the datagram pipe open. `closeError` tells why it ended:
 * `ConnectionResetError` (peer reset), `TimeoutError` (idle, or the peer stopped
 * acknowledging), `PipeClosedError` (the datagram pipe closed).
 */
export class ReliablePipe extends TcpPipe {
  /** The stream under the pipe. */
  readonly stream: ReliableSocket;
  /** The datagram pipe carrying the stream. */
  readonly datagram: Pipe;
  /** The conversation id shared by both ends. */
  readonly conversationId: number;

  /** @internal Use {@link openReliable}. */
  constructor(stream: ReliableSocket, init: ConstructorParameters<typeof TcpPipe>[1]) {
    super(stream as unknown as Socket, init);
    this.stream = stream;
    this.datagram = stream.datagram;
    this.conversationId = stream.conversationId;
  }

  /** ARQ counters: retransmissions, RTT, congestion window, duplicates, invalid packets. */
  get arq(): ReliableStats {
    return this.stream.stats;
  }
}

function num(v: number | undefined, dflt: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER, integer = true): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new InvalidArgumentError(`${name} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max}`);
  }
  return v;
}

/**
 * Opens a reliable stream to `remote` over `pipe` and resolves once the handshake is done.
 * Rejects with `TimeoutError`, `AbortError`, `ConnectionRefusedError` (the peer answered
 * with RST), `PipeClosedError` (the datagram pipe closed, or the conversation id is taken),
 * `InvalidArgumentError` / `EndpointError` (bad arguments).
 */
export function openReliable(pipe: Pipe, remote: EndpointLike, opts: OpenReliableOptions): Promise<ReliablePipe> {
  let sock: ReliableSocket;
  let timeout: number;
  let init: ConstructorParameters<typeof TcpPipe>[1];
  try {
    if (!(pipe instanceof Pipe)) throw new InvalidArgumentError('openReliable() needs a datagram Pipe');
    if (pipe.proto !== 'udp') throw new InvalidArgumentError('openReliable() needs a datagram pipe (proto "udp": a UdpPipe or a TurnPipe)');
    if (opts === null || typeof opts !== 'object' || typeof opts.initiator !== 'boolean') throw new InvalidArgumentError('opts.initiator must be a boolean');
    throwIfAborted(opts.signal);
    if (pipe.closed) throw new PipeClosedError('the datagram pipe is closed');
    const to = toEndpoint(remote);
    if (to.port === 0) throw new InvalidArgumentError('remote port must not be 0');
    const conv = opts.conversationId === undefined ? undefined : num(opts.conversationId, 0, 'conversationId', 1, 0xffffffff);
    timeout = num(opts.timeout, DEFAULT_RELIABLE_TIMEOUT, 'timeout', 0, 2 ** 31 - 1, false);
    const framing = opts.framing ?? 'raw';
    init = {
      framing,
      maxMessageSize: checkMaxMessageSize(framing, opts.maxMessageSize),
      onMessage: opts.onMessage,
      defaultSub: true,
      flushTimeout: num(opts.flushTimeout, 10_000, 'flushTimeout', 0, 2 ** 31 - 1, false),
      maxQueue: opts.maxQueue,
      maxQueueBytes: opts.maxQueueBytes,
    };
    if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw new InvalidArgumentError('onMessage must be a function');
    const minRto = num(opts.minRto, DEFAULT_MIN_RTO, 'minRto', 1, 60_000, false);
    sock = new ReliableSocket({
      pipe,
      remote: to,
      initiator: opts.initiator,
      conv,
      mtu: num(opts.mtu, DEFAULT_RELIABLE_MTU, 'mtu', MIN_MSS, Math.min(0xffff, MAX_RELIABLE_PAYLOAD)),
      sendBuffer: num(opts.sendBuffer, DEFAULT_RELIABLE_BUFFER, 'sendBuffer', 4, 65_535),
      receiveBuffer: num(opts.receiveBuffer, DEFAULT_RELIABLE_BUFFER, 'receiveBuffer', 4, 65_535),
      keepAlive: num(opts.keepAlive, DEFAULT_RELIABLE_KEEPALIVE, 'keepAlive', 10, 2 ** 31 - 1, false),
      idleTimeout: num(opts.idleTimeout, DEFAULT_RELIABLE_IDLE, 'idleTimeout', 10, 2 ** 31 - 1, false),
      minRto,
      maxRto: num(opts.maxRto, Math.max(minRto, DEFAULT_MAX_RTO), 'maxRto', minRto, 600_000, false),
      maxRetries: num(opts.maxRetries, DEFAULT_MAX_RETRIES, 'maxRetries', 1, 100),
      initialRtt: opts.rtt === undefined ? undefined : num(opts.rtt, 0, 'rtt', 0, 60_000, false),
      linger: num(opts.linger, DEFAULT_RELIABLE_LINGER, 'linger', 0, 600_000, false),
    });
  } catch (e) {
    return Promise.reject(e);
  }
  return cancellable<ReliablePipe>({ signal: opts.signal, timeout }, 'reliable stream handshake', (resolve, reject) => {
    sock.start(() => resolve(new ReliablePipe(sock, init)), reject);
    return () => {
      if (!sock.established) sock.destroy();
    };
  });
}
