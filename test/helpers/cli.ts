/**
 * Running the CLI in-process in tests: captured stdout/stderr and a stop signal, a poll for
 * a condition on the output, and its JSON lines.
 */
import { run } from '../../src/cli/main.js';
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

/** A `p2pd node --loopback --json` run in this process; `addr` once it printed it. Stop it with `c.stop()`. */
export async function startCliNode(extra: string[] = [], ms = 10_000): Promise<{ c: Captured; running: Promise<number>; addr: string }> {
  const c = capture();
  const running = run(['node', '--loopback', '--json', ...extra], c.io);
  await waitFor(() => c.out().includes('"event":"address"'), ms);
  return { c, running, addr: jsonLines(c.out())[0]?.addr as string };
}

/**
 * The one JSON line a command that failed with --json printed (its stdout holds nothing
 * else); throws when stdout is not exactly one `error` event line.
 */
export function errorLine(c: Captured): Record<string, unknown> {
  const out = c.out();
  const all = out.split('\n').filter((l) => l !== '');
  if (all.length !== 1) throw new Error(`expected one line on stdout, got ${JSON.stringify(out)}`);
  const obj = JSON.parse(all[0] as string) as Record<string, unknown>;
  if (obj.event !== 'error') throw new Error(`expected an error event, got ${all[0] as string}`);
  return obj;
}
