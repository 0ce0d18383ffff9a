/** The examples are run by the tests so they cannot rot. */
import { describe, expect, it } from 'vitest';
import { main as echo } from '../examples/echo.js';

describe('examples', () => {
  it('echo.ts: two peers echo over TCP and UDP, IPv4 and IPv6', async () => {
    const lines: string[] = [];
    const r = await echo((l) => lines.push(l));
    expect(r.replies.length).toBeGreaterThanOrEqual(2);
    for (const x of r.replies) expect(x.got).toBe('EM OHCE');
    expect(new Set(r.replies.map((x) => x.proto))).toEqual(new Set(['tcp', 'udp']));
    expect(lines.at(-1)).toMatch(/^done: \d+ round trips/);
  });
});
