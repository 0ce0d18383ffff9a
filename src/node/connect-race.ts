/**
 * The schedule of `node.connect()`: strategies start in order, each at its own delay after
 * the call or as soon as every earlier one has failed, several run at once, and the first
 * success wins (later successes are closed).
 * @module
 */
import { errorOf } from './hello.js';
import type { StrategyFailure } from './errors.js';
import type { Strategy } from './types.js';

/** When each strategy starts if the earlier ones are still running (ms after `connect()`). */
export const START_AFTER: Readonly<Record<Strategy, number>> = Object.freeze({ direct: 0, reverse: 150, punch: 400, relay: 1_500 });

/** What a race needs. */
export interface RaceHooks<T> {
  /** Strategies in order. */
  plan: readonly Strategy[];
  /** Delay (ms) before strategy `s` starts on its own. */
  startAfter(s: Strategy): number;
  /** Runs strategy `s`. */
  run(s: Strategy): Promise<T>;
  /** Disposes of a result that lost the race. */
  discard(r: T): void;
  /** A strategy started. */
  onStart?(s: Strategy): void;
  /** A strategy won. */
  onWin?(s: Strategy, r: T): void;
  /** A strategy failed (also after the race is decided). */
  onFail?(s: Strategy, e: Error): void;
}

/**
 * Runs the race; calls `resolve` with the first success or `reject` with the failures once
 * every strategy has failed. Returns the cleanup (clears the timers; results still coming are
 * discarded), as `cancellable()` expects.
 */
export function raceStrategies<T>(h: RaceHooks<T>, resolve: (r: T) => void, reject: (failures: StrategyFailure[]) => void, failures: StrategyFailure[]): () => void {
  let done = false;
  let running = 0;
  let next = 0;
  const timers: NodeJS.Timeout[] = [];
  const launch = (): void => {
    if (done || next >= h.plan.length) return;
    const s = h.plan[next++] as Strategy;
    running++;
    h.onStart?.(s);
    h.run(s).then(
      (r) => {
        running--;
        if (done) return h.discard(r);
        done = true;
        h.onWin?.(s, r);
        resolve(r);
      },
      (e: unknown) => {
        running--;
        const err = errorOf(e);
        failures.push({ strategy: s, error: err });
        h.onFail?.(s, err);
        if (done) return;
        if (next < h.plan.length) launch();
        else if (running === 0) {
          done = true;
          reject(failures);
        }
      },
    );
  };
  launch();
  for (let i = 1; i < h.plan.length; i++) {
    const t = setTimeout(() => {
      // Start strategy i if it has not started yet (earlier failures start it sooner).
      while (next <= i && !done) launch();
    }, h.startAfter(h.plan[i] as Strategy));
    t.unref();
    timers.push(t);
  }
  return () => {
    done = true;
    for (const t of timers) clearTimeout(t);
  };
}
