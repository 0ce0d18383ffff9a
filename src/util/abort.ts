/**
 * Cancellation helpers shared by every layer: one place that turns `{ signal, timeout }`
 * into typed errors and cleans up after itself.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, InvalidArgumentError, TimeoutError } from '../errors.js';

/** The longest delay a Node.js timer takes (2^31 − 1 ms, about 24.8 days); longer ones are chained. */
export const MAX_TIMER_MS = 2_147_483_647;

/** The options accepted by every async operation in p2pd. */
export interface AbortOptions {
  /**
   * Cancels the operation; it rejects with {@link AbortError}. Anything that is not an
   * `AbortSignal` (`undefined` aside) is an `InvalidArgumentError`, as a bad `timeout` is.
   */
  signal?: AbortSignal;
  /**
   * Milliseconds before the operation rejects with {@link TimeoutError}. `0`, `Infinity` or
   * `undefined` = no timeout of its own; anything else that is not a non-negative number (a
   * negative number, `NaN`, a string) is an `InvalidArgumentError`, never a silent "forever".
   */
  timeout?: number;
}

/**
 * The `InvalidArgumentError` for a `timeout` option that is not a non-negative number, or
 * `undefined` when it is fine (`undefined` included).
 */
export function badTimeout(timeout: unknown): InvalidArgumentError | undefined {
  if (timeout === undefined || (typeof timeout === 'number' && timeout >= 0)) return undefined;
  const shown = typeof timeout === 'string' ? JSON.stringify(timeout) : typeof timeout === 'number' ? String(timeout) : typeof timeout;
  return new InvalidArgumentError(`timeout must be a non-negative number of milliseconds (0 = none), got ${shown}`);
}

/**
 * The `InvalidArgumentError` for a `signal` option that is not an `AbortSignal` (anything
 * without a boolean `aborted` and an `addEventListener` method), or `undefined` when it is fine
 * (`undefined` included).
 */
export function badSignal(signal: unknown): InvalidArgumentError | undefined {
  if (signal === undefined) return undefined;
  const s = signal as { aborted?: unknown; addEventListener?: unknown } | null;
  if (s !== null && typeof s === 'object' && typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function') return undefined;
  return new InvalidArgumentError(`signal must be an AbortSignal, got ${s === null ? 'null' : typeof s}`);
}

interface AbortWatch {
  readonly callbacks: Set<() => void>;
  readonly listener: () => void;
}

const watches = new WeakMap<AbortSignal, AbortWatch>();

/**
 * Calls `cb` once when `signal` aborts; returns a function that removes it. However many
 * operations wait on one signal at a time (a signal shared by every `recv()` of an
 * application, say), the signal carries a single p2pd listener: no `MaxListenersExceededWarning`
 * from Node, and the listener is removed when the last callback is. Callbacks run in the order
 * they were added; one that throws does not stop the others (the error is rethrown on the next
 * tick, as an `EventTarget` listener's would be). A signal that is already aborted never calls
 * `cb` (check `signal.aborted` first).
 */
export function whenAborted(signal: AbortSignal, cb: () => void): () => void {
  let w = watches.get(signal);
  if (w === undefined) {
    const bad = badSignal(signal);
    if (bad) throw bad;
    const callbacks = new Set<() => void>();
    const listener = (): void => {
      watches.delete(signal);
      for (const f of [...callbacks]) {
        try {
          f();
        } catch (e) {
          process.nextTick(() => {
            throw e;
          });
        }
      }
      callbacks.clear();
    };
    w = { callbacks, listener };
    watches.set(signal, w);
    signal.addEventListener('abort', listener, { once: true });
  }
  // A wrapper per registration: the same function added twice is two callbacks, removed one at a time.
  const entry = (): void => cb();
  w.callbacks.add(entry);
  const watch = w;
  return () => {
    if (!watch.callbacks.delete(entry) || watch.callbacks.size > 0) return;
    if (watches.get(signal) === watch) watches.delete(signal);
    signal.removeEventListener('abort', watch.listener);
  };
}

/**
 * Throws what an operation given `opts` would reject with before it starts: an
 * `InvalidArgumentError` for a bad `timeout` or `signal`, an {@link AbortError} for a signal
 * already aborted. For operations with an effect (a send) that must not happen then.
 */
export function checkAbortOptions(opts: AbortOptions): void {
  const bad = badTimeout(opts.timeout) ?? badSignal(opts.signal);
  if (bad) throw bad;
  if (opts.signal?.aborted) throw toAbortError(opts.signal);
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
  const bad = badTimeout(opts?.timeout) ?? badSignal(signal);
  if (bad) return Promise.reject(bad);
  if (signal?.aborted) return Promise.reject(toAbortError(signal));
  return new Promise<T>((resolve, reject) => {
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    let cleanup: void | (() => void);
    let offAbort: (() => void) | undefined;
    const done = (): void => {
      finished = true;
      if (timer) clearTimeout(timer);
      if (offAbort) offAbort();
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
      const ms = opts.timeout;
      const end = Date.now() + ms;
      // Node fires any timer longer than 2^31 − 1 ms after 1 ms: long timeouts are chained.
      const arm = (left: number): void => {
        timer = setTimeout(() => (left > MAX_TIMER_MS ? arm(end - Date.now()) : fail(new TimeoutError(`${what} timed out after ${ms} ms`))), Math.min(left, MAX_TIMER_MS));
      };
      arm(ms);
    }
    if (signal) offAbort = whenAborted(signal, () => fail(toAbortError(signal)));
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
  if (opts === undefined || (opts.signal === undefined && (opts.timeout === undefined || opts.timeout === 0))) return p;
  return cancellable<T>(opts, what, (resolve, reject) => {
    p.then(resolve, reject);
  });
}

/**
 * Calls `fire` after `ms` milliseconds, chaining timers past {@link MAX_TIMER_MS} (a plain
 * `setTimeout` fires such a delay after 1 ms). Returns the function that cancels it. `unref`
 * makes the timers not keep the process alive.
 */
export function longTimer(ms: number, fire: () => void, unref = false): () => void {
  const end = Date.now() + ms;
  let t: NodeJS.Timeout | undefined;
  const arm = (left: number): void => {
    t = setTimeout(() => (left > MAX_TIMER_MS ? arm(end - Date.now()) : fire()), Math.max(0, Math.min(left, MAX_TIMER_MS)));
    if (unref) t.unref();
  };
  arm(ms);
  return () => {
    if (t) clearTimeout(t);
    t = undefined;
  };
}

/** Resolves after `ms` milliseconds, or rejects when `signal` aborts. */
export function sleep(ms: number, opts?: { signal?: AbortSignal }): Promise<void> {
  return cancellable<void>(opts, 'sleep', (resolve) => longTimer(ms, resolve));
}

/**
 * A close bounded by `opts` (the `close({ signal, timeout })` of every closable p2pd object):
 * resolves when `graceful()` (the object's normal close, started here) does. When
 * `opts.signal` aborts or `opts.timeout` passes first, `force()` tears the object down at once
 * (resets, drops what is pending), and the result rejects with {@link AbortError} /
 * {@link TimeoutError} once the object is closed: the caller learns that the close was not
 * graceful, and nothing is left open either way. A signal already aborted forces before the
 * graceful close starts (a TCP connection is then reset rather than finished), and again right
 * after (for what that start opened); `force` must be idempotent. Without a signal or a
 * timeout, just `graceful()`.
 */
export function closeWithin(graceful: () => Promise<void>, opts: AbortOptions | undefined, force: () => void, what = 'close'): Promise<void> {
  const bad = badTimeout(opts?.timeout) ?? badSignal(opts?.signal);
  // A bad timeout or signal is still a close (it is not left half done): closed, then the error.
  if (bad) return graceful().then(() => Promise.reject(bad));
  if (opts === undefined || (opts.signal === undefined && (opts.timeout === undefined || opts.timeout === 0))) return graceful();
  if (opts.signal?.aborted) {
    const reason = toAbortError(opts.signal);
    force();
    const g = graceful();
    force();
    return g.catch(() => undefined).then(() => Promise.reject(reason));
  }
  const g = graceful();
  return bounded(g, opts, what).catch(async (e: unknown) => {
    if (!(e instanceof AbortError) && !(e instanceof TimeoutError)) throw e;
    force();
    await g.catch(() => undefined);
    throw e;
  });
}

/** An already-aborted signal: `x.close({ signal: FORCE })` closes `x` at once (see {@link closeWithin}). */
export function forceSignal(reason: Error): AbortSignal {
  return AbortSignal.abort(reason);
}

/** An `AbortController` whose signal may have any number of listeners (one per child closed with it) without a leak warning. */
export function unlimitedController(): AbortController {
  const c = new AbortController();
  setMaxListeners(0, c.signal);
  return c;
}

/** A combined cancellation source; call `done()` when the operation ends. */
export interface LinkedSignal {
  /** Aborts when any parent does (with its reason), or on the timeout. */
  readonly signal: AbortSignal;
  /** Stops following the parents and clears the timer (idempotent). */
  done(): void;
}

/**
 * One signal that aborts when any of `parents` aborts (reason kept) or after `opts.timeout`
 * (reason `TimeoutError`), also aborting when `opts.signal` does. `done()` removes the
 * listeners and the timer.
 *
 * Use it instead of `AbortSignal.any()` when a parent lives long (a node's or a server's
 * life signal) and operations come and go: on Node 20 every `AbortSignal.any()` leaves an
 * entry on each source signal that is never removed, about 50 bytes per call for as long as
 * the source lives; here the parent carries one shared listener ({@link whenAborted}) that
 * `done()` removes.
 */
export function linkSignals(opts: AbortOptions | undefined, parents: readonly AbortSignal[], what: string): LinkedSignal {
  const ctrl = new AbortController();
  setMaxListeners(0, ctrl.signal); // one listener per in-flight operation below it
  const sources = [...parents, ...(opts?.signal ? [opts.signal] : [])];
  const removers: Array<() => void> = [];
  let stopTimer: (() => void) | undefined;
  const abort = (reason: unknown): void => {
    if (!ctrl.signal.aborted) ctrl.abort(reason);
  };
  for (const s of sources) {
    if (s.aborted) {
      abort(s.reason ?? new AbortError());
      break;
    }
    removers.push(whenAborted(s, () => abort(s.reason ?? new AbortError())));
  }
  const t = opts?.timeout;
  if (!ctrl.signal.aborted && t !== undefined && t > 0 && Number.isFinite(t)) {
    stopTimer = longTimer(t, () => abort(new TimeoutError(`${what} timed out after ${t} ms`)));
  }
  return {
    signal: ctrl.signal,
    done(): void {
      stopTimer?.();
      stopTimer = undefined;
      for (const r of removers) r();
      removers.length = 0;
    },
  };
}
