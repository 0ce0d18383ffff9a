/**
 * Plumbing for {@link DhtNode}: tracked background tasks and timers that all stop on close,
 * and the metrics recorder.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError } from '../errors.js';
import type { LookupResult } from './lookup.js';

/** Fraction of a periodic timer's interval used as random jitter (±). */
export const TIMER_JITTER = 0.1;
/** How many recent lookups the metrics keep for percentiles. */
export const LOOKUP_HISTORY = 1024;

/** Background tasks and unref'd periodic timers, all cancelled by {@link Background.close}. */
export class Background {
  readonly #ctrl = new AbortController();
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor() {
    setMaxListeners(0, this.#ctrl.signal);
  }

  /** Runs `fn` in the background; its errors are swallowed; `close()` aborts its signal and waits for it. */
  run(fn: (signal: AbortSignal) => Promise<unknown>): void {
    if (this.#ctrl.signal.aborted) return;
    const p: Promise<unknown> = Promise.resolve()
      .then(() => fn(this.#ctrl.signal))
      .catch(() => undefined)
      .finally(() => this.#tasks.delete(p));
    this.#tasks.add(p);
  }

  /**
   * Calls `fn` about every `ms` (± {@link TIMER_JITTER}); the next run is scheduled after
   * the previous one settles, so runs never overlap. The timer does not keep the process alive.
   */
  every(ms: number, fn: () => Promise<unknown>): void {
    const arm = (): void => {
      if (this.#ctrl.signal.aborted) return;
      const delay = ms * (1 - TIMER_JITTER + 2 * TIMER_JITTER * Math.random());
      const t = setTimeout(() => {
        this.#timers.delete(t);
        this.run(() => fn().finally(arm));
      }, delay);
      t.unref();
      this.#timers.add(t);
    };
    arm();
  }

  /** Aborts running tasks, clears timers and waits for the tasks to settle. */
  async close(): Promise<void> {
    this.#ctrl.abort(new AbortError('closed'));
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#tasks]);
  }
}

/** A snapshot of a node's counters. */
export interface DhtMetrics {
  /** RPCs sent. */
  readonly requestsSent: number;
  /** RPCs that failed (timeout, unreachable, bad reply). */
  readonly requestsFailed: number;
  /** Requests received. */
  readonly requestsReceived: number;
  /** Records from FIND_VALUE replies that failed verification. */
  readonly rejectedRecords: number;
  /** Lookups run. */
  readonly lookups: number;
  /** RPCs sent by lookups. */
  readonly lookupMessages: number;
  /** `hopHistogram[h]` = lookups that took `h` hops. */
  readonly hopHistogram: readonly number[];
  /** Median hops of the last {@link LOOKUP_HISTORY} lookups (0 if none). */
  readonly medianHops: number;
  /** The most recent lookup, if any. */
  readonly lastLookup: { readonly hops: number; readonly messages: number; readonly failures: number; readonly durationMs: number } | undefined;
  /** Contacts in the routing table. */
  readonly contacts: number;
  /** Records held as a replica. */
  readonly records: number;
}

/** Mutable counters behind {@link DhtMetrics}. */
export class DhtMetricsRecorder {
  sent = 0;
  failed = 0;
  received = 0;
  rejectedRecords = 0;
  #lookups = 0;
  #lookupMessages = 0;
  readonly #hist: number[] = [];
  readonly #recent: number[] = [];
  #last: DhtMetrics['lastLookup'];
  readonly #gauges: () => { contacts: number; records: number };

  constructor(gauges: () => { contacts: number; records: number }) {
    this.#gauges = gauges;
  }

  /** Records one finished lookup. */
  lookup(r: LookupResult): void {
    this.#lookups++;
    this.#last = { hops: r.hops, messages: r.messages, failures: r.failures, durationMs: r.durationMs };
    this.#lookupMessages += r.messages;
    this.#hist[r.hops] = (this.#hist[r.hops] ?? 0) + 1;
    this.#recent.push(r.hops);
    if (this.#recent.length > LOOKUP_HISTORY) this.#recent.shift();
  }

  /** A snapshot. */
  snapshot(): DhtMetrics {
    const sorted = [...this.#recent].sort((a, b) => a - b);
    return {
      requestsSent: this.sent,
      requestsFailed: this.failed,
      requestsReceived: this.received,
      rejectedRecords: this.rejectedRecords,
      lookups: this.#lookups,
      lookupMessages: this.#lookupMessages,
      hopHistogram: Array.from(this.#hist, (x) => x ?? 0),
      medianHops: median(sorted),
      lastLookup: this.#last,
      ...this.#gauges(),
    };
  }
}

/** Median of an ascending array (mean of the middle two for even lengths; 0 if empty). */
export function median(sorted: readonly number[]): number {
  if (sorted.length === 0) return 0;
  const m = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[m] as number) : ((sorted[m - 1] as number) + (sorted[m] as number)) / 2;
}
