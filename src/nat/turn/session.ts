/**
 * `TurnSession`: authenticated TURN transactions with one server over one {@link StunTransport}.
 * It signs requests with the long-term credentials, answers 401 challenges and 438 Stale Nonce
 * with a bounded number of retries, checks MESSAGE-INTEGRITY of success responses, maps error
 * responses to typed errors, and cancels everything in flight when the underlying pipe closes.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { PipeClosedError, StunError, TimeoutError } from '../../errors.js';
import { formatEndpoint, type Endpoint } from '../../interfaces/endpoint.js';
import { whenAborted, throwIfAborted, toAbortError, type AbortOptions } from '../../util/abort.js';
import type { StunAttribute } from '../stun/attributes.js';
import { ATTR, CLASS, ERROR_CODE } from '../stun/constants.js';
import { encodeStun, getAttr, newTransactionId, verifyIntegrity, type DecodedStunMessage } from '../stun/message.js';
import { MAX_PENDING_TRANSACTIONS, type StunTransport } from '../stun/transport.js';
import type { TurnAuth } from './auth.js';
import { TURN_MAX_AUTH_ROUNDS } from './constants.js';
import { methodName, turnError } from './errors.js';

/** Options of {@link TurnSession.request}. */
export interface TurnRequestOptions extends AbortOptions {
  /** Error codes whose response is returned instead of thrown (e.g. `[300]` for Allocate redirects). */
  acceptErrors?: readonly number[];
  /** Initial retransmission timeout over UDP (ms). @default STUN_RTO */
  rto?: number;
  /** Requests sent before giving up over UDP. @default STUN_MAX_TRIES */
  maxTries?: number;
}

/**
 * Runs authenticated requests against one TURN server. Does not own the transport; call
 * {@link TurnSession.abort} to cancel what is in flight when the session ends.
 */
export class TurnSession {
  /** The transport (and through it the pipe) to the server. */
  readonly transport: StunTransport;
  /** The server's endpoint. */
  readonly server: Endpoint;
  /** Credential state (realm, nonce, key). */
  readonly auth: TurnAuth;
  /** `host:port` of the server, for messages. */
  readonly serverText: string;
  readonly #master = new AbortController();
  readonly #offClose: () => void;
  readonly #offError: () => void;
  /** Last error the transport reported on the pipe (e.g. a stream framing error before it closed it). */
  lastError: Error | undefined;

  constructor(transport: StunTransport, server: Endpoint, auth: TurnAuth) {
    this.transport = transport;
    this.server = server;
    this.auth = auth;
    this.serverText = formatEndpoint(server);
    // Each request in flight listens on it until it ends: concurrent requests are no leak.
    setMaxListeners(MAX_PENDING_TRANSACTIONS, this.#master.signal);
    this.#offError = transport.pipe.onError((e) => {
      this.lastError = e;
    });
    this.#offClose = transport.pipe.onClose((err) => {
      const cause = err ?? this.lastError;
      const msg = `connection to TURN server ${this.serverText} closed${cause ? `: ${cause.message}` : ''}`;
      this.abort(new PipeClosedError(msg, cause ? { cause } : undefined));
    });
  }

  /** True once {@link abort} was called or the pipe closed. */
  get aborted(): boolean {
    return this.#master.signal.aborted;
  }

  /** Cancels every request in flight (and every later one) with `reason`. Idempotent. */
  abort(reason: Error = new PipeClosedError('TURN session closed')): void {
    if (this.#master.signal.aborted) return;
    this.#offClose();
    this.#offError();
    this.#master.abort(reason);
  }

  /**
   * Sends a `method` request with `attributes` (credentials are added) and resolves with the
   * success response (or an error response listed in `acceptErrors`). Rejects with
   * {@link TurnAuthError} (bad credentials), {@link StunError} (other error responses, failed
   * integrity, too many auth rounds), `TimeoutError`, `AbortError` or `PipeClosedError`.
   */
  async request(method: number, attributes: StunAttribute[], opts: TurnRequestOptions = {}): Promise<DecodedStunMessage> {
    throwIfAborted(opts.signal);
    const deadline = opts.timeout && opts.timeout > 0 ? Date.now() + opts.timeout : Infinity;
    const what = `TURN ${methodName(method)} to ${this.serverText}`;
    for (let round = 1; ; round++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new TimeoutError(`${what} timed out after ${opts.timeout} ms`);
      const signed = this.auth.ready;
      const key = this.auth.key;
      const tid = newTransactionId();
      const req = encodeStun(
        { method, cls: CLASS.REQUEST, transactionId: tid, attributes: [...attributes, ...this.auth.attributes()] },
        { ...(signed && key ? { integrity: { key } } : {}), fingerprint: true },
      );
      const msg = await this.#transact(req, tid, remaining === Infinity ? undefined : remaining, opts);
      if (msg.method !== method) throw new StunError(`${what}: the response is for ${methodName(msg.method)}`);
      if (msg.cls === CLASS.SUCCESS) {
        if (signed && key && !verifyIntegrity(msg, key)) {
          throw new StunError(`${what}: success response failed the MESSAGE-INTEGRITY check (wrong server or forged response)`);
        }
        if (msg.unknownRequired.length > 0) {
          throw new StunError(`${what}: response has unknown comprehension-required attributes ${msg.unknownRequired.map((t) => `0x${t.toString(16)}`).join(', ')}`);
        }
        return msg;
      }
      if (msg.cls !== CLASS.ERROR) throw new StunError(`${what}: unexpected response class ${msg.cls}`);
      const ec = getAttr(msg, ATTR.ERROR_CODE);
      const code = ec?.code;
      if (code === ERROR_CODE.UNAUTHENTICATED || code === ERROR_CODE.STALE_NONCE) {
        if (this.auth.challenge(msg, code, signed) === 'fail') throw turnError(method, code, ec?.reason, this.serverText);
        if (round >= TURN_MAX_AUTH_ROUNDS) {
          throw new StunError(`${what}: gave up after ${round} authentication rounds (last answer ${code})`, { errorCode: code, reason: ec?.reason ?? '' });
        }
        continue;
      }
      if (code !== undefined && opts.acceptErrors?.includes(code)) return msg;
      throw turnError(method, code, ec?.reason, this.serverText);
    }
  }

  /** One transaction, cancelled by the caller's signal or the session's; surfaces the session's reason. */
  async #transact(req: Buffer, tid: Uint8Array, timeout: number | undefined, opts: TurnRequestOptions): Promise<DecodedStunMessage> {
    const master = this.#master.signal;
    if (master.aborted) throw master.reason as Error;
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(opts.signal?.aborted ? opts.signal.reason : master.reason);
    master.addEventListener('abort', onAbort, { once: true });
    const offUser = opts.signal ? whenAborted(opts.signal, onAbort) : undefined;
    if (opts.signal?.aborted) onAbort();
    try {
      const r = await this.transport.request(req, tid, {
        server: this.server,
        signal: ac.signal,
        ...(timeout !== undefined ? { timeout } : {}),
        ...(opts.rto !== undefined ? { rto: opts.rto } : {}),
        ...(opts.maxTries !== undefined ? { maxTries: opts.maxTries } : {}),
      });
      return r.msg;
    } catch (e) {
      if (opts.signal?.aborted) throw toAbortError(opts.signal);
      if (master.aborted) throw master.reason as Error;
      throw e;
    } finally {
      master.removeEventListener('abort', onAbort);
      offUser?.();
    }
  }
}
