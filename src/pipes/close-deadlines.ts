/**
 * Close deadlines of TCP sockets: a gracefully closing socket that is not closed by its
 * deadline is destroyed. All deadlines share one coarse ({@link SWEEP_MS}) unref'd interval,
 * running only while any are pending: a timer per close costs more than the close.
 * @module
 */
import type { Socket } from 'node:net';

/** Closing sockets and when to reset them; checked by one interval while any are pending. */
const deadlines = new Map<Socket, number>();
let sweeper: NodeJS.Timeout | undefined;
/** Granularity of close deadlines (ms). */
export const SWEEP_MS = 100;

/** Destroys `s` once `ms` have passed (within {@link SWEEP_MS}); replaces an earlier deadline of `s`. */
export function closeDeadline(s: Socket, ms: number): void {
  deadlines.set(s, Date.now() + ms);
  if (sweeper === undefined) {
    sweeper = setInterval(sweep, SWEEP_MS);
    sweeper.unref(); // the closing sockets keep the loop alive themselves
  }
}

/** Drops the deadline of `s` (it closed in time). */
export function clearCloseDeadline(s: Socket): void {
  deadlines.delete(s);
}

function sweep(): void {
  if (deadlines.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
    return;
  }
  const now = Date.now();
  for (const [s, t] of deadlines) {
    if (t <= now) {
      deadlines.delete(s);
      s.destroy();
    }
  }
}
