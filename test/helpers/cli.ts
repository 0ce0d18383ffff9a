/**
 * Running the CLI in-process in tests: captured stdout/stderr and a stop signal, a poll for
 * a condition on the output, and its JSON lines.
 */
import { lines } from './json-lines.js';

/** The JSON lines of a command's output (other lines ignored). */
export function jsonLines(s: string): Record<string, unknown>[] {
  return lines(s);
}

/** The I/O a test hands to `run()` / `runNodeCommand()`, and what it captured. */
export interface Captured {
  io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean }; signal: AbortSignal };
  out: () => string;
  err: () => string;
  /** Aborts `io.signal` (the command's Ctrl-C). */
  stop: () => void;
}

/** Fresh captured I/O. */
export function capture(): Captured {
  let o = '';
  let e = '';
  const ac = new AbortController();
  return {
    io: { stdout: { write: (s: string) => ((o += s), true) }, stderr: { write: (s: string) => ((e += s), true) }, signal: ac.signal },
    out: () => o,
    err: () => e,
    stop: () => ac.abort(),
  };
}

/** Polls `f` every 10 ms until it holds; throws after `ms`. */
export async function waitFor(f: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
