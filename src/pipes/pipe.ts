/**
 * The `Pipe` base class: what every TCP/UDP (and later relay or encrypted) pipe offers.
 * @module
 */
import { toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { bounded, type AbortOptions } from '../util/abort.js';
import { MessageHub } from './hub.js';
import type { Framing, Message, Proto, QueueLimits } from './types.js';

/** Data accepted by `send`: bytes or a string (sent as UTF-8). */
export type SendData = string | Uint8Array;

/**
 * One pipe: a TCP connection, a TCP server, or a UDP socket (client or server).
 *
 * Receive with callbacks (`onMessage`), pull mode (`await recv()`), or `for await`.
 * Send with `await send(data)`; it resolves once the data was handed to the kernel.
 */
export abstract class Pipe extends MessageHub {
  /** `'tcp'` or `'udp'` (relay and secure pipes report the transport they present). */
  abstract readonly proto: Proto;
  /** Framing of a TCP pipe; `'raw'` for UDP (one datagram = one message). */
  abstract readonly framing: Framing;
  /** Local endpoint (a server opened on port 0 reports the port it got). */
  abstract readonly local: Endpoint;
  /** Remote endpoint of a client or accepted connection; `undefined` for servers. */
  abstract readonly remote: Endpoint | undefined;
  /** True for listening pipes (TCP server, UDP server). */
  abstract readonly isServer: boolean;

  constructor(limits: QueueLimits) {
    super(limits);
  }

  /**
   * Sends one message. `dest` is required for UDP servers (reply to `msg.from`) and for
   * TCP servers (the client's endpoint); clients send to their `remote` by default.
   * Resolves once handed to the kernel (waits while the socket is over its buffer limit).
   * Rejects with `PipeClosedError` after close. `opts.signal` / `opts.timeout` bound that
   * wait (`AbortError` / `TimeoutError`); a message already accepted is not taken back (a byte
   * stream cannot drop it from the middle): it stays queued in order and may still be
   * delivered; `close()` or `reset()` the pipe to give up on it. A rejected promise that nobody
   * awaits never becomes an unhandled rejection.
   */
  abstract send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void>;

  /**
   * Closes the pipe. TCP: data already sent is flushed (up to `CLOSE_FLUSH_TIMEOUT`), then a
   * graceful FIN; the connection is reset if the peer does not finish within `CLOSE_TIMEOUT`.
   * Queued messages stay readable with `recv()`. Idempotent (a later call waits for the same
   * close, and may bound it with its own options).
   *
   * `opts` bounds the graceful part: when `opts.signal` aborts (or is already aborted) or
   * `opts.timeout` passes before the close completes, the pipe is torn down at once (TCP: reset)
   * and the promise rejects with `AbortError` / `TimeoutError` after it is closed. The pipe is
   * closed either way.
   */
  abstract close(opts?: AbortOptions): Promise<void>;

  /**
   * @internal Counts one received message and hands it to the subscriptions and callbacks;
   * a message nobody takes counts as unmatched. Returns whether anything took it.
   */
  protected receive(data: Buffer, from: Endpoint): boolean {
    const st = this.stats;
    st.messagesIn++;
    st.bytesIn += data.length;
    const m: Message = { data, from, pipe: this };
    if (this.dispatch(m)) return true;
    st.unmatched++;
    return false;
  }

  /** `await using pipe = await pipeOpen(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * An it-pipe compatible duplex: `source` yields received payloads (SUB_ALL), `sink`
   * sends each chunk it consumes (awaiting backpressure) and resolves when the source ends.
   * `signal` ends the source; `timeout` (ms) bounds its wait for each payload (`TimeoutError`).
   */
  duplex(opts: AbortOptions = {}): {
    source: AsyncGenerator<Uint8Array, void, undefined>;
    sink: (source: AsyncIterable<SendData> | Iterable<SendData>) => Promise<void>;
  } {
    const self = this;
    async function* source(): AsyncGenerator<Uint8Array, void, undefined> {
      for await (const m of self.messages({ ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}) })) yield m.data;
    }
    const sink = async (src: AsyncIterable<SendData> | Iterable<SendData>): Promise<void> => {
      for await (const chunk of src) await self.send(chunk, undefined, { signal: opts.signal });
    };
    return { source: source(), sink };
  }
}

/** @internal `dest` as an Endpoint: an Endpoint object as it is (e.g. `msg.from`), anything else parsed. */
export function destEndpoint(dest: EndpointLike): Endpoint {
  return typeof dest === 'object' && 'family' in dest ? (dest as Endpoint) : toEndpoint(dest);
}

/** @internal `p` bounded by the `signal`/`timeout` of a send's options (see {@link Pipe.send}), marked handled. */
export function boundSend(p: Promise<void>, opts: AbortOptions | undefined): Promise<void> {
  return opts === undefined ? p : handled(bounded(p, opts, 'send'));
}

/** @internal A resolved promise to return from hot paths. */
export const RESOLVED: Promise<void> = Promise.resolve();

/** @internal Marks a promise as handled (so an un-awaited rejection is not fatal) and returns it. */
export function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(noop);
  return p;
}

function noop(): void {}
