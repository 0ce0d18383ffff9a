/** The examples are run by the tests so they cannot rot. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main as echo } from '../examples/echo.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('examples', () => {
  it('echo.ts: two peers echo over TCP and UDP, IPv4 and IPv6', async () => {
    const lines: string[] = [];
    const r = await echo((l) => lines.push(l));
    expect(r.replies.length).toBeGreaterThanOrEqual(2);
    for (const x of r.replies) expect(x.got).toBe('EM OHCE');
    expect(new Set(r.replies.map((x) => x.proto))).toEqual(new Set(['tcp', 'udp']));
    expect(lines.at(-1)).toMatch(/^done: \d+ round trips/);
  });

  it('`npm run demo` as the README gives it: the quickstart script runs to the end on its own', () => {
    const r = spawnSync('npm', ['run', '--silent', 'demo'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout.split('\n');
    expect(out.some((l) => /^A connected via direct over tcp: .* in [\d.]+ ms$/.test(l))).toBe(true);
    expect(out).toContain('A <- B: PONG');
    expect(out.some((l) => /^B -> B \(self-connect via direct\): test send$/.test(l))).toBe(true);
    expect(out.filter(Boolean).at(-1)).toBe('done: both nodes closed');
  }, 70_000);
});
