/**
 * Typed errors of the P2P node layer. Each is a {@link P2pdError} with a stable `code`.
 * @module
 */
import { ConnectError, P2pdError, type P2pdErrorOptions } from '../errors.js';

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
