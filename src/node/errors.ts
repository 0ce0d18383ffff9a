/**
 * Typed errors of the P2P node layer. Each is a {@link P2pdError} with a stable `code`.
 * @module
 */
import { ConnectError, P2pdError, type P2pdErrorOptions } from '../errors.js';
import { peerReason } from '../util/describe.js';

/**
 * A peer address could not be parsed or failed validation (bad encoding, unknown version,
 * a field out of range, a bad signature). Code `ERR_BAD_ADDRESS`. `field` names the field
 * that was rejected, when there is one.
 */
export class AddressError extends P2pdError {
  /** The field that was rejected (`'encoding'`, `'version'`, `'endpoint'`, `'signature'`, …). */
  readonly field: string;
  constructor(field: string, message: string, options?: P2pdErrorOptions) {
    super('ERR_BAD_ADDRESS', `invalid peer address (${field}): ${message}`, options);
    this.field = field;
  }
}

/** Why a signalling message was dropped; see {@link SignalError}. */
export type SignalRejection =
  | 'malformed'
  | 'signature'
  | 'not-for-us'
  | 'expired'
  | 'ttl'
  | 'replay'
  | 'decrypt'
  | 'unexpected-sender'
  | 'no-broker'
  | 'not-connected'
  | 'timeout'
  | 'closed';

/**
 * Signalling failed: a message was rejected (bad signature, expired, replayed, not
 * decryptable, malformed), or could not be sent (no common broker, broker down, timeout).
 * Code `ERR_SIGNAL`; `reason` says which.
 */
export class SignalError extends P2pdError {
  /** What went wrong. */
  readonly reason: SignalRejection;
  constructor(reason: SignalRejection, message: string, options?: P2pdErrorOptions) {
    super('ERR_SIGNAL', message, options);
    this.reason = reason;
  }
}

/** One strategy's failure inside a {@link P2pConnectError}. */
export interface StrategyFailure {
  /** The strategy (`'direct'`, `'reverse'`, `'punch'`, `'relay'`). */
  strategy: string;
  /** Why it failed (or `'skipped: …'`). */
  error: Error;
}

/**
 * `node.connect()` found no path: every strategy failed, was skipped, or the caller's
 * timeout/signal ended the attempt. Code `ERR_CONNECT`. `attempts` lists each strategy's
 * error in the order they ended.
 */
export class P2pConnectError extends ConnectError {
  /** Each strategy and why it failed. */
  readonly attempts: readonly StrategyFailure[];
  constructor(message: string, attempts: readonly StrategyFailure[], options?: P2pdErrorOptions) {
    const detail = attempts.map((a) => `${a.strategy}: ${a.error.message}`).join('; ');
    super(detail ? `${message} (${detail})` : message, options);
    this.attempts = attempts;
  }
}

/** Why a peer refused a request; see {@link PeerRefusedError}. */
export type RefusalReason = 'busy' | 'refused';

/**
 * A peer answered one of our signalling requests (`'reverse'`, `'punch'`, `'relay'`) with a
 * refusal. Code `ERR_PEER_REFUSED`. `reason` is `'busy'` when the peer already serves as many
 * requests as it allows (from us, or from everyone), `'refused'` for any other refusal (the
 * peer's own words are in the message).
 */
export class PeerRefusedError extends ConnectError {
  /** The request that was refused. */
  readonly request: string;
  /** Why. */
  readonly reason: RefusalReason;
  constructor(request: string, reason: RefusalReason, message: string, options?: P2pdErrorOptions) {
    super(message, options, 'ERR_PEER_REFUSED');
    this.request = request;
    this.reason = reason;
  }
}

/** The refusal in a peer's answer to our `request` (any answer but the expected one), as a {@link PeerRefusedError}. */
export function refusalOf(request: string, reply: { type: string; body: Record<string, unknown> }, what: string): PeerRefusedError {
  const reason: RefusalReason = reply.body.reason === 'busy' ? 'busy' : 'refused';
  return new PeerRefusedError(request, reason, `${what}: ${peerReason(reply.body.error ?? reply.type)}`);
}
