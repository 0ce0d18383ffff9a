/**
 * Cancellation helpers shared by every layer: one place that turns `{ signal, timeout }`
 * into typed errors and cleans up after itself.
 * @module
 */
import { AbortError, TimeoutError } from '../errors.js';

/** The options accepted by every async operation in p2pd. */
export interface AbortOptions {
  /** Cancels the operation; it rejects with {@link AbortError}. */
  signal?: AbortSignal;
  /** Milliseconds before the operation rejects with {@link TimeoutError}. `0`/`undefined` = no timeout of its own. */
  timeout?: number;
}

/** Throws an {@link AbortError} if `signal` is already aborted. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw toAbortError(signal);
}

/** Converts an aborted signal's reason into an {@link AbortError} (a TimeoutError reason is kept). */
export function toAbortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof TimeoutError || reason instanceof AbortError) return reason;
  return new AbortError('operation aborted', { cause: reason });
}

/**
 * Runs `start(resolve, reject)` with `signal`/`timeout` wired to `reject` and a single
 * cleanup: the timer and the abort listener are removed however the operation ends,
 * and `cleanup` (if given) runs exactly once.
 *
 * @param what - Short description used in the timeout message, e.g. `'connect to 1.2.3.4:5'`.
 */
export function cancellable<T>(
  opts: AbortOptions | undefined,
  what: string,
  start: (resolve: (v: T) => void, reject: (e: unknown) => void) => void | (() => void),
): Promise<T> {
  const signal = opts?.signal;
  if (signal?.aborted) return Promise.reject(toAbortError(signal));
  return new Promise<T>((resolve, reject) => {
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    let cleanup: void | (() => void);
    const onAbort = (): void => fail(toAbortError(signal as AbortSignal));
    const done = (): void => {
      finished = true;
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (cleanup) {
        const c = cleanup;
        cleanup = undefined;
        c();
      }
    };
    const ok = (v: T): void => {
      if (finished) return;
      done();
      resolve(v);
    };
    const fail = (e: unknown): void => {
      if (finished) return;
      done();
      reject(e);
    };
    if (opts?.timeout && opts.timeout > 0 && Number.isFinite(opts.timeout)) {
      timer = setTimeout(() => fail(new TimeoutError(`${what} timed out after ${opts.timeout} ms`)), opts.timeout);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      cleanup = start(ok, fail);
      if (finished && cleanup) {
        const c = cleanup;
        cleanup = undefined;
        c();
      }
    } catch (e) {
      fail(e);
    }
  });
}

/**
 * Bounds the wait for `p` by `opts`: the result rejects with {@link AbortError} when
 * `opts.signal` aborts, or {@link TimeoutError} when `opts.timeout` passes, before `p`
 * settles (the operation behind `p` is not undone). Without a signal or a timeout, `p` itself.
 */
export function bounded<T>(p: Promise<T>, opts: AbortOptions | undefined, what: string): Promise<T> {
  if (opts === undefined || (opts.signal === undefined && !(opts.timeout && opts.timeout > 0))) return p;
  return cancellable<T>(opts, what, (resolve, reject) => {
    p.then(resolve, reject);
  });
}

/** Resolves after `ms` milliseconds, or rejects when `signal` aborts. */
export function sleep(ms: number, opts?: { signal?: AbortSignal }): Promise<void> {
  return cancellable<void>(opts, 'sleep', (resolve) => {
    const t = setTimeout(resolve, ms);
    return () => clearTimeout(t);
  });
}
