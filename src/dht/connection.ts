/**
 * `DhtConnection`: DHT RPC over one message-oriented channel (a framed TCP pipe, a UDP
 * association, a Noise channel). It assigns `txid`s, matches responses to requests, serves
 * incoming requests through a {@link DhtRequestHandler}, and contains bad input:
 *
 * - a frame that does not decode is dropped; after more than `maxMalformed` of them the
 *   connection calls `onMisbehaving` and closes (the owner should then close the pipe);
 * - responses nobody waits for (late, after a timeout) are dropped silently;
 * - at most `maxPending` outgoing requests wait at once (`ERR_DHT_BUSY` beyond), and at most
 *   `maxServing` incoming requests are served at once (an `overloaded` ERROR beyond).
 *
 * A `DhtTransport` over real pipes keeps one `DhtConnection` per peer: `request(to, …)`
 * opens (or reuses) the pipe to `to`, and every received frame goes to `receive()`.
 * @module
 */
import { randomInt } from 'node:crypto';
import { P2pdError, PipeClosedError } from '../errors.js';
import { cancellable } from '../util/abort.js';
import type { DhtId } from './id.js';
import { decodeMessage, encodeMessage, isRequest, MAX_TXID, type DhtRequest, type DhtResponse } from './messages.js';
import type { DhtRequestContext, DhtRequestHandler, DhtRequestOptions } from './transport.js';

/** Default malformed frames tolerated before the connection gives up on the peer. */
export const DEFAULT_CONNECTION_MAX_MALFORMED = 3;
/** Default most outgoing requests awaiting a response. */
export const DEFAULT_MAX_PENDING = 256;
/** Default most incoming requests served concurrently. */
export const DEFAULT_MAX_SERVING = 64;

/** Options of {@link DhtConnection}. */
export interface DhtConnectionOptions {
  /** Sends one frame to the peer. A rejection fails the request that sent it. */
  send(frame: Uint8Array): void | Promise<void>;
  /**
   * Returns the current request handler (a getter, so a transport's `onRequest` can swap it);
   * no handler, or a handler resolving `undefined`, drops the request.
   */
  handler?: () => DhtRequestHandler | undefined;
  /** Our node id, used as `responder` of `overloaded` replies; without it excess requests are dropped. */
  localId?: DhtId;
  /** What the channel knows about the peer (authenticated id, address). */
  context?: DhtRequestContext;
  /** Malformed frames tolerated. @default {@link DEFAULT_CONNECTION_MAX_MALFORMED} */
  maxMalformed?: number;
  /** Outgoing requests in flight. @default {@link DEFAULT_MAX_PENDING} */
  maxPending?: number;
  /** Incoming requests served at once. @default {@link DEFAULT_MAX_SERVING} */
  maxServing?: number;
  /** Called once when the peer sent too many malformed frames (the connection then closes). */
  onMisbehaving?(reason: unknown): void;
}

interface Pending {
  resolve(r: DhtResponse): void;
  reject(e: unknown): void;
}

/** DHT RPC multiplexed over one channel. */
export class DhtConnection {
  readonly #opts: DhtConnectionOptions;
  readonly #pending = new Map<number, Pending>();
  #txid = randomInt(1, MAX_TXID);
  #malformed = 0;
  #serving = 0;
  #closed = false;

  constructor(opts: DhtConnectionOptions) {
    this.#opts = opts;
  }

  /** True after {@link close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Outgoing requests awaiting a response. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Sends `req` and resolves with the matching response. */
  request(req: DhtRequest, opts: DhtRequestOptions = {}): Promise<DhtResponse> {
    if (this.#closed) return Promise.reject(new PipeClosedError('DHT connection is closed'));
    if (this.#pending.size >= (this.#opts.maxPending ?? DEFAULT_MAX_PENDING)) {
      return Promise.reject(new P2pdError('ERR_DHT_BUSY', 'too many DHT requests in flight on this connection'));
    }
    let txid = this.#txid;
    while (this.#pending.has(txid)) txid = txid >= MAX_TXID ? 1 : txid + 1;
    this.#txid = txid >= MAX_TXID ? 1 : txid + 1;
    let frame: Uint8Array;
    try {
      frame = encodeMessage(req, txid);
    } catch (e) {
      return Promise.reject(e);
    }
    return cancellable<DhtResponse>(opts, `DHT ${req.type}`, (resolve, reject) => {
      this.#pending.set(txid, { resolve, reject });
      Promise.resolve()
        .then(() => this.#opts.send(frame))
        .catch(reject);
      return () => this.#pending.delete(txid);
    });
  }

  /** Feeds one received frame (request or response). Never throws. */
  receive(frame: Uint8Array): void {
    if (this.#closed) return;
    let decoded;
    try {
      decoded = decodeMessage(frame);
    } catch (e) {
      this.#strike(e);
      return;
    }
    const { txid, message } = decoded;
    if (!isRequest(message)) {
      this.#pending.get(txid)?.resolve(message);
      return;
    }
    void this.#serve(message, txid);
  }

  async #serve(req: DhtRequest, txid: number): Promise<void> {
    const handler = this.#opts.handler?.();
    if (!handler) return;
    let res: DhtResponse | undefined;
    if (this.#serving >= (this.#opts.maxServing ?? DEFAULT_MAX_SERVING)) {
      const responder = this.#opts.localId;
      res = responder ? { type: 'ERROR', responder, code: 'overloaded', message: 'too many concurrent requests' } : undefined;
    } else {
      this.#serving++;
      try {
        res = await handler(req, this.#opts.context ?? {});
      } catch {
        res = undefined;
      } finally {
        this.#serving--;
      }
    }
    if (res === undefined || this.#closed) return;
    try {
      await this.#opts.send(encodeMessage(res, txid));
    } catch {
      // The channel failed; its owner will notice and close us.
    }
  }

  #strike(reason: unknown): void {
    if (++this.#malformed <= (this.#opts.maxMalformed ?? DEFAULT_CONNECTION_MAX_MALFORMED)) return;
    this.#opts.onMisbehaving?.(reason);
    this.close(reason);
  }

  /** Rejects every pending request with `PipeClosedError` and ignores further frames. */
  close(reason?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = new PipeClosedError('DHT connection closed', reason === undefined ? undefined : { cause: reason });
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
