/**
 * Typed TURN errors. Every protocol failure is a {@link StunError} (code `ERR_STUN`) whose
 * `errorCode`/`reason` carry the server's ERROR-CODE; rejected credentials are the subclass
 * {@link TurnAuthError} (code `ERR_TURN_AUTH`) so that callers can tell "wrong password"
 * apart from every other failure without looking at numbers.
 * @module
 */
import { StunError, type StunErrorOptions } from '../../errors.js';
import { ERROR_CODE, ERROR_REASON, METHOD } from '../stun/constants.js';

/** Names of the TURN methods, for messages. */
const METHOD_NAMES: Readonly<Record<number, string>> = {
  [METHOD.ALLOCATE]: 'Allocate',
  [METHOD.REFRESH]: 'Refresh',
  [METHOD.CREATE_PERMISSION]: 'CreatePermission',
  [METHOD.CHANNEL_BIND]: 'ChannelBind',
};

/** Human name of a STUN/TURN method, e.g. `'Allocate'`. */
export function methodName(method: number): string {
  return METHOD_NAMES[method] ?? `method 0x${method.toString(16)}`;
}

/**
 * The server rejected the credentials: a second 401 after an authenticated request (wrong
 * username or password, or wrong realm), or 441 Wrong Credentials. Code `ERR_TURN_AUTH`;
 * `errorCode` is the STUN code (401 or 441).
 */
export class TurnAuthError extends StunError {
  constructor(message: string, options?: StunErrorOptions) {
    super(message, options);
    (this as { code: string }).code = 'ERR_TURN_AUTH';
  }
}

/**
 * Builds the error for an error response with code `code` to request `method`. 401 and 441
 * become {@link TurnAuthError}; everything else a {@link StunError} whose message names the
 * method, the code and the reason (the server's phrase, or the RFC's when it sent none).
 */
export function turnError(method: number, code: number | undefined, reason: string | undefined, server: string): StunError {
  const what = `TURN ${methodName(method)} to ${server}`;
  if (code === undefined) return new StunError(`${what} failed: error response without ERROR-CODE`);
  const phrase = reason || ERROR_REASON[code] || '';
  const opts: StunErrorOptions = { errorCode: code, reason: phrase };
  if (code === ERROR_CODE.UNAUTHENTICATED) {
    return new TurnAuthError(`${what} rejected the credentials (401 ${phrase}): wrong username, password or realm`, opts);
  }
  if (code === ERROR_CODE.WRONG_CREDENTIALS) {
    return new TurnAuthError(`${what} rejected the credentials (441 ${phrase}): they differ from those of the allocation`, opts);
  }
  const hint = HINTS[code];
  return new StunError(`${what} failed: ${code} ${phrase}${hint ? ` (${hint})` : ''}`, opts);
}

const HINTS: Readonly<Record<number, string>> = {
  [ERROR_CODE.FORBIDDEN]: 'the server refuses this request, e.g. a peer address it does not relay to',
  [ERROR_CODE.ALLOCATION_MISMATCH]: 'the allocation does not exist (expired) or already exists on this 5-tuple',
  [ERROR_CODE.UNSUPPORTED_TRANSPORT]: 'the server cannot relay this transport',
  [ERROR_CODE.PEER_ADDRESS_FAMILY_MISMATCH]: 'the peer address family differs from the relayed address family',
  [ERROR_CODE.ALLOCATION_QUOTA_REACHED]: 'too many allocations for this user',
  [ERROR_CODE.INSUFFICIENT_CAPACITY]: 'the server has no relay ports or channels left',
  [ERROR_CODE.TRY_ALTERNATE]: 'redirect not followed',
};
