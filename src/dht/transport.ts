/**
 * The transport a {@link DhtNode} runs over, and a helper to combine cancellation sources.
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
import { setMaxListeners } from 'node:events';
import { AbortError, TimeoutError } from '../errors.js';
import type { Family } from '../interfaces/endpoint.js';
import type { AbortOptions } from '../util/abort.js';
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

/** A combined cancellation source; call `done()` when the operation ends. */
export interface LinkedSignal {
  readonly signal: AbortSignal;
  done(): void;
}

/**
 * One signal that aborts when any of `parents` aborts (reason kept) or after `opts.timeout`
 * (reason `TimeoutError`), also aborting when `opts.signal` does. `done()` removes the
 * listeners and the timer.
 */
export function linkSignals(opts: AbortOptions | undefined, parents: readonly AbortSignal[], what: string): LinkedSignal {
  const ctrl = new AbortController();
  setMaxListeners(0, ctrl.signal); // one listener per in-flight RPC
  const sources = [...parents, ...(opts?.signal ? [opts.signal] : [])];
  const listeners: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;
  const abort = (reason: unknown): void => {
    if (!ctrl.signal.aborted) ctrl.abort(reason);
  };
  for (const s of sources) {
    if (s.aborted) {
      abort(s.reason ?? new AbortError());
      break;
    }
    const l = (): void => abort(s.reason ?? new AbortError());
    s.addEventListener('abort', l, { once: true });
    listeners.push(() => s.removeEventListener('abort', l));
  }
  const t = opts?.timeout;
  if (!ctrl.signal.aborted && t !== undefined && t > 0 && Number.isFinite(t)) {
    timer = setTimeout(() => abort(new TimeoutError(`${what} timed out after ${t} ms`)), t);
  }
  return {
    signal: ctrl.signal,
    done(): void {
      if (timer) clearTimeout(timer);
      for (const l of listeners) l();
      listeners.length = 0;
    },
  };
}
