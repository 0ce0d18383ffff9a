/**
 * Overall deadlines of the NAT toolkit's multi-step operations (`detectNat`, `detectDelta`,
 * `mapPort`, `getExternalAddress`): the `timeout` option checked as every p2pd `timeout` is
 * (`0`, `Infinity`, `undefined` = none; anything else that is not a non-negative number is an
 * `InvalidArgumentError`), and a timer that also works beyond Node's 2^31 − 1 ms limit (a
 * plain `setTimeout` fires such a delay after 1 ms).
 * @module
 */
import { TimeoutError } from '../errors.js';
import { badSignal, badTimeout, longTimer } from '../util/abort.js';


/**
 * Throws the `InvalidArgumentError` of a bad `timeout` or `signal` option (see
 * `AbortOptions`): before anything is opened or sent.
 */
export function checkTimeoutAndSignal(opts: { timeout?: unknown; signal?: unknown }): void {
  const bad = badTimeout(opts.timeout) ?? badSignal(opts.signal);
  if (bad) throw bad;
}

/** True when `timeout` (already checked) asks for a deadline: a positive finite number. */
export function hasDeadline(timeout: number | undefined): timeout is number {
  return timeout !== undefined && timeout > 0 && Number.isFinite(timeout);
}

/**
 * Aborts `ac` with a {@link TimeoutError} (`what timed out after N ms`) once `timeout` passes,
 * when `timeout` asks for a deadline. Returns the function that cancels the timer.
 */
export function abortAfter(ac: AbortController, timeout: number | undefined, what: string): () => void {
  if (!hasDeadline(timeout)) return () => undefined;
  return longTimer(timeout, () => ac.abort(new TimeoutError(`${what} timed out after ${timeout} ms`)));
}
