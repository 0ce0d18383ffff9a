/**
 * Keeps a TURN allocation alive: sends Refresh before the granted lifetime runs out
 * (RFC 8656 §8), retries transient failures while the allocation has not expired, and
 * reports the allocation as lost otherwise.
 * @module
 */
import { StunError } from '../../errors.js';
import { MAX_TIMER_MS } from '../../util/abort.js';
import { TURN_MAX_REFRESH_DELAY, TURN_MIN_REFRESH_DELAY, TURN_REFRESH_MARGIN, TURN_REFRESH_RETRY } from './constants.js';

/**
 * When to refresh an allocation granted for `lifetime` seconds: `lifetime − 60 s` for
 * lifetimes over two minutes, half the lifetime for shorter ones. Returns milliseconds, within
 * [`TURN_MIN_REFRESH_DELAY`, `TURN_MAX_REFRESH_DELAY`] whatever the server granted.
 */
export function refreshDelay(lifetime: number): number {
  const s = lifetime > 2 * TURN_REFRESH_MARGIN ? lifetime - TURN_REFRESH_MARGIN : lifetime / 2;
  const ms = Math.round(s * 1000);
  return Number.isFinite(ms) ? Math.min(TURN_MAX_REFRESH_DELAY, Math.max(TURN_MIN_REFRESH_DELAY, ms)) : TURN_MAX_REFRESH_DELAY;
}

/** Options of {@link AllocationRefresher}. */
export interface RefresherOptions {
  /** Sends one Refresh and resolves with the lifetime (seconds) the server granted. */
  refresh: () => Promise<number>;
  /** Called once when the allocation is lost (refresh refused, or it expired while retrying). */
  lost: (err: Error) => void;
  /** Called after each successful refresh with the new lifetime (seconds). */
  refreshed?: (lifetime: number) => void;
  /** Delay before retrying a timed-out refresh (ms). @default TURN_REFRESH_RETRY */
  retry?: number;
}

/**
 * The allocation's refresh timer. Its timers are unref'd (an idle allocation does not keep
 * the process alive) and {@link AllocationRefresher.stop} clears them.
 */
export class AllocationRefresher {
  readonly #opts: RefresherOptions;
  #timer: NodeJS.Timeout | undefined;
  #expiresAt = 0;
  #stopped = false;
  /** Refreshes that succeeded. */
  count = 0;

  constructor(opts: RefresherOptions) {
    this.#opts = opts;
  }

  /** Time (ms since the epoch) at which the allocation expires unless refreshed. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /**
   * (Re)starts the schedule for an allocation just granted/refreshed for `lifetime` seconds.
   * A lifetime of 0 means the server deleted the allocation (RFC 8656 §7): it is reported lost.
   */
  start(lifetime: number): void {
    if (this.#stopped) return;
    if (!(lifetime > 0)) {
      this.stop();
      this.#opts.lost(new StunError('the TURN server granted a lifetime of 0: the allocation is deleted'));
      return;
    }
    this.#expiresAt = Date.now() + lifetime * 1000;
    this.#arm(refreshDelay(lifetime));
  }

  #arm(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#fire(), Math.min(ms, MAX_TIMER_MS)); // longer: fired after 1 ms
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.#opts.refresh().then(
      (lifetime) => {
        if (this.#stopped) return;
        this.count++;
        this.start(lifetime);
        this.#opts.refreshed?.(lifetime);
      },
      (e: unknown) => {
        if (this.#stopped) return;
        const err = e instanceof Error ? e : new Error(String(e));
        // An error response (437 Allocation Mismatch, 401, ...) is final; silence may be loss.
        const retry = this.#opts.retry ?? TURN_REFRESH_RETRY;
        if (!(err instanceof StunError) && Date.now() + retry < this.#expiresAt) {
          this.#arm(retry);
          return;
        }
        this.stop();
        this.#opts.lost(err);
      },
    );
  }

  /** Stops refreshing; idempotent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
