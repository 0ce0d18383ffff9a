/**
 * JSON-lines output of the processes lab tests start (one JSON object per line, `event` set).
 */
import type { NsProcess } from './lab.js';

/** One output line. */
export type Line = Record<string, unknown> & { event: string };

/** The JSON lines of `text` (other lines are ignored). */
export function lines(text: string): Line[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

/**
 * Waits for an output line of `p` whose event is one of `events`; throws at once when the
 * process reports an `error` event, and after `timeoutMs`.
 */
export async function waitEvent(p: NsProcess, events: string[], timeoutMs = 20_000, pollMs = 20): Promise<Line> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = lines(p.stdout()).find((l) => events.includes(l.event));
    if (hit) return hit;
    const failed = lines(p.stdout()).find((l) => l.event === 'error');
    if (failed) throw new Error(`peer failed: ${JSON.stringify(failed)}\n${p.stderr()}`);
    if (Date.now() > end) throw new Error(`timeout waiting for ${events.join('|')} from ${p.ns}\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
