/**
 * The transport a {@link DhtNode} runs over (and, re-exported from `util/abort.ts` where it
 * lives, the helper that combines cancellation sources).
 *
 * The DHT core never touches sockets: it asks its transport to deliver one request to a
 * contact and resolve with the decoded response, and it serves incoming requests through the
 * handler it registers. An implementation over real pipes encodes frames with
 * `encodeMessage` (choosing a `txid` to correlate concurrent requests on one connection),
 * decodes with `decodeMessage`, drops frames that fail to decode (and may disconnect a peer
 * that keeps sending them), and fills {@link DhtRequestContext.remoteId} when the channel
 * authenticates the peer (Noise): the node then refuses requests whose `sender.id` differs.
 * @module
 */
import type { Family } from '../interfaces/endpoint.js';
import type { Contact } from './contact.js';
import type { DhtId } from './id.js';
import type { DhtRequest, DhtResponse } from './messages.js';

/** Per-request options: cancel via `signal`, give up after `timeout` ms. */
export interface DhtRequestOptions {
  /** Cancels the request; it rejects with the signal's reason / an `AbortError`. */
  signal?: AbortSignal;
  /** Milliseconds before the request rejects with `TimeoutError`. */
  timeout?: number;
}

/** What the transport knows about the origin of an incoming request. */
export interface DhtRequestContext {
  /** The requester's id as authenticated by the channel (e.g. the Noise handshake), if any. */
  remoteId?: DhtId;
  /** The address the request came from, if known. */
  remoteAddress?: { host: string; port: number; family: Family };
}

/**
 * Serves one incoming request. Resolving `undefined` means "drop it, send nothing" (the
 * requester times out), used for requests that must not be answered.
 */
export type DhtRequestHandler = (req: DhtRequest, ctx: DhtRequestContext) => Promise<DhtResponse | undefined>;

/** The transport a DHT node runs over. */
export interface DhtTransport {
  /**
   * Sends `req` to `to` and resolves with its response. Rejects on timeout
   * (`TimeoutError`), cancellation (`AbortError`), an unreachable peer, or a response that
   * does not decode (`DecodeError`).
   */
  request(to: Contact, req: DhtRequest, opts: DhtRequestOptions): Promise<DhtResponse>;
  /** Installs (or, with `undefined`, removes) the handler for incoming requests. */
  onRequest(handler: DhtRequestHandler | undefined): void;
}

export { linkSignals, type LinkedSignal } from '../util/abort.js';
