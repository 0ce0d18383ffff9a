/**
 * UDP hole punching (src/node/punch/udp-punch.ts) on loopback: two pipes agree on one path
 * among right and wrong candidates; probes with another nonce are ignored; a timeout is a
 * PunchTimeoutError (TimeoutError) with counters, an abort an AbortError; `startAt` delays
 * probing; predicted ports find a peer that never probes; the packet rate is bounded; a
 * reliable stream then runs on the punched path; keepAlive() refreshes the binding.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { AbortError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { keepAlive, openReliable, punch, ReliableMux, PunchTimeoutError, PUNCH_KEEPALIVE, PUNCH_MAGIC, type PunchResult } from '../src/node/punch/index.js';
import { pipeOpen, SUB_ALL, type Message, type UdpPipe } from '../src/pipes/index.js';

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function udp(bind = '127.0.0.1:0'): Promise<UdpPipe> {
  const p = (await pipeOpen('udp', undefined, { bind })) as UdpPipe;
  p.unsubscribe(SUB_ALL);
  cleanup.push(() => p.close());
  return p;
}

/** A port on 127.0.0.1 with nothing listening (bound, then closed). */
async function deadPort(): Promise<number> {
  const p = (await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' })) as UdpPipe;
  const port = p.local.port;
  await p.close();
  return port;
}

describe('punch() on loopback', () => {
  it('both sides agree on the one working path among wrong candidates', async () => {
    const [a, b] = [await udp(), await udp()];
    const nonce = randomBytes(32);
    const wrong = [`127.0.0.1:${await deadPort()}`, `127.0.0.1:${await deadPort()}`, '192.0.2.1:9'];
    const t0 = Date.now();
    const [ra, rb] = await Promise.all([
      punch({ pipe: a, peerCandidates: [...wrong, b.local], nonce, timeout: 5000, linger: 100 }),
      punch({ pipe: b, peerCandidates: [wrong[0] as string, a.local], nonce, timeout: 5000, linger: 100 }),
    ]);
    expect(ra.remote).toEqual(b.local);
    expect(rb.remote).toEqual(a.local);
    expect(ra.controlling).not.toBe(rb.controlling);
    expect(ra.rtt).toBeGreaterThanOrEqual(0);
    expect(ra.rtt).toBeLessThan(500);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(ra.stats.acksReceived + rb.stats.acksReceived).toBeGreaterThan(0);
  });

  it('ignores probes made with another nonce', async () => {
    const [a, b, c] = [await udp(), await udp(), await udp()];
    const nonce = randomBytes(32);
    const other = randomBytes(32);
    const intruder = punch({ pipe: c, peerCandidates: [a.local], nonce: other, timeout: 800, linger: 0 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 150)); // a hears only the intruder for a while
    const [ra, rb] = await Promise.all([
      punch({ pipe: a, peerCandidates: [c.local, b.local], nonce, timeout: 5000, linger: 2000 }), // counters stay live while lingering
      punch({ pipe: b, peerCandidates: [a.local], nonce, timeout: 5000, linger: 0 }),
    ]);
    expect(ra.remote).toEqual(b.local);
    expect(rb.remote).toEqual(a.local);
    const e = await intruder;
    expect(e).toBeInstanceOf(PunchTimeoutError);
    // c's probes failed authentication at a; a's probes failed at c
    expect(ra.stats.ignored).toBeGreaterThan(0);
    expect((e as PunchTimeoutError).stats.ignored).toBeGreaterThan(0);
    expect((e as PunchTimeoutError).stats.acksReceived).toBe(0);
  });

  it('times out with PunchTimeoutError (a TimeoutError) carrying counters', async () => {
    const a = await udp();
    const t0 = performance.now();
    const e = await punch({ pipe: a, peerCandidates: [`127.0.0.1:${await deadPort()}`], nonce: randomBytes(16), timeout: 600 }).catch((x: unknown) => x);
    const ms = performance.now() - t0;
    expect(e).toBeInstanceOf(PunchTimeoutError);
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as PunchTimeoutError).code).toBe('ERR_TIMEOUT');
    expect((e as PunchTimeoutError).stats.probesSent).toBeGreaterThanOrEqual(4); // 0, 50, 100, 200, 400 ms
    expect((e as PunchTimeoutError).stats.probesReceived).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(2500);
    // the pipe is left open and without our listener
    expect(a.closed).toBe(false);
  });

  it('aborts with AbortError; a closed pipe fails with PipeClosedError; bad options are InvalidArgumentError', async () => {
    const a = await udp();
    const ac = new AbortController();
    const p = punch({ pipe: a, peerCandidates: ['127.0.0.1:9'], nonce: randomBytes(16), signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toBeInstanceOf(AbortError);
    const b = await udp();
    const q = punch({ pipe: b, peerCandidates: ['127.0.0.1:9'], nonce: randomBytes(16) });
    setTimeout(() => void b.close(), 50);
    await expect(q).rejects.toBeInstanceOf(PipeClosedError);
    await expect(punch({ pipe: a, peerCandidates: [], nonce: randomBytes(8) })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(punch({ pipe: a, peerCandidates: 'x' as unknown as string[], nonce: randomBytes(16) })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(punch({ pipe: a, peerCandidates: [], nonce: randomBytes(16), signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  });

  it('waits for startAt before probing', async () => {
    const [a, b] = [await udp(), await udp()];
    const nonce = randomBytes(16);
    const startAt = Date.now() + 300;
    let firstProbe = 0;
    b.onMessage((m: Message) => {
      if (m.data[0] === PUNCH_MAGIC && firstProbe === 0) firstProbe = Date.now();
    });
    const [ra] = await Promise.all([
      punch({ pipe: a, peerCandidates: [b.local], nonce, startAt, timeout: 3000, linger: 0 }),
      punch({ pipe: b, peerCandidates: [a.local], nonce, startAt, timeout: 3000, linger: 0 }),
    ]);
    expect(firstProbe).toBeGreaterThanOrEqual(startAt - 5);
    expect(ra.elapsed).toBeGreaterThanOrEqual(280);
  });

  it('finds a silent peer through predicted ports (sequential NAT allocation)', async () => {
    const [a, b] = [await udp(), await udp()];
    const nonce = randomBytes(16);
    const step = 3;
    const stale = { host: '127.0.0.1', port: b.local.port - 4 * step }; // the "mapping" a learned earlier
    if (stale.port <= 0) return; // (ports this low do not happen in practice)
    // b knows no candidate of a: it only answers (and learns a from a's probes)
    const without = await punch({ pipe: a, peerCandidates: [stale], nonce: randomBytes(16), timeout: 400, linger: 0 }).catch((e: unknown) => e);
    expect(without).toBeInstanceOf(PunchTimeoutError);
    const [ra, rb] = await Promise.all([
      punch({ pipe: a, peerCandidates: [stale], nonce, predictDelta: { kind: 'INDEPENDENT', value: step }, timeout: 3000, linger: 0 }),
      punch({ pipe: b, peerCandidates: [], nonce, timeout: 3000, linger: 0 }),
    ]);
    expect(ra.remote).toEqual(b.local);
    expect(rb.remote).toEqual(a.local);
  });

  it('bounds its packet rate', async () => {
    const a = await udp();
    const cands = await Promise.all(Array.from({ length: 16 }, async () => `127.0.0.1:${await deadPort()}`));
    const t0 = performance.now();
    const e = (await punch({ pipe: a, peerCandidates: cands, nonce: randomBytes(16), timeout: 1000, maxRate: 40 }).catch((x: unknown) => x)) as PunchTimeoutError;
    const s = (performance.now() - t0) / 1000;
    expect(e).toBeInstanceOf(PunchTimeoutError);
    // a burst of 16, then 40 per second
    expect(e.stats.probesSent).toBeLessThanOrEqual(16 + Math.ceil(40 * s) + 1);
    expect(e.stats.probesSent).toBeGreaterThanOrEqual(16 + 30);
    expect(e.stats.rateLimited).toBeGreaterThan(0);
    expect(e.stats.destinations).toBe(16);
  });

  it('caps the candidate list', async () => {
    const a = await udp();
    const cands = Array.from({ length: 40 }, (_, i) => `127.0.0.1:${10_000 + i}`);
    const e = (await punch({ pipe: a, peerCandidates: cands, nonce: randomBytes(16), timeout: 200, maxCandidates: 5 }).catch((x: unknown) => x)) as PunchTimeoutError;
    expect(e.stats.destinations).toBe(5);
  });

  it('then carries a reliable stream on the punched path, kept alive with keepAlive()', async () => {
    const [a, b] = [await udp(), await udp()];
    const nonce = randomBytes(32);
    const [ra, rb]: PunchResult[] = await Promise.all([
      punch({ pipe: a, peerCandidates: [b.local], nonce, linger: 200 }),
      punch({ pipe: b, peerCandidates: [a.local], nonce, linger: 200 }),
    ]);
    const [sa, sb] = await Promise.all([
      openReliable(a, ra.remote, { initiator: ra.controlling, rtt: ra.rtt }),
      openReliable(b, rb.remote, { initiator: rb.controlling, rtt: rb.rtt }),
    ]);
    cleanup.push(() => sa.close(), () => sb.close());
    const got = sb.recv({ timeout: 2000 });
    await sa.send('over the hole');
    expect((await got).data.toString()).toBe('over the hole');

    const seen: Buffer[] = [];
    b.onMessage((m: Message) => {
      if (m.data[0] === PUNCH_MAGIC && m.data[1] === PUNCH_KEEPALIVE) seen.push(m.data);
    });
    const stop = keepAlive(a, ra.remote, 30);
    await new Promise((r) => setTimeout(r, 200));
    stop();
    await new Promise((r) => setTimeout(r, 30));
    const n = seen.length;
    expect(n).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.length).toBe(n);
    // the stream did not mind the keep-alives
    const back = sa.recv({ timeout: 1000 });
    await sb.send('fine');
    expect((await back).data.toString()).toBe('fine');
  });

  it('keepAlive stops with its signal and when the pipe closes', async () => {
    const [a, b] = [await udp(), await udp()];
    let n = 0;
    b.onMessage(() => void n++);
    const ac = new AbortController();
    keepAlive(a, b.local, 20, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    await new Promise((r) => setTimeout(r, 30)); // let the last one land
    const k = n;
    expect(k).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(n).toBe(k);
    keepAlive(a, b.local, 20);
    await a.close(); // must not throw or keep sending
    expect(() => keepAlive(a, b.local, 0)).toThrow(InvalidArgumentError);
  });

  it('works over IPv6 (candidates of the other family are skipped)', async () => {
    const [a, b] = [await udp('[::1]:0'), await udp('[::1]:0')];
    const nonce = randomBytes(16);
    const [ra, rb] = await Promise.all([
      punch({ pipe: a, peerCandidates: ['127.0.0.1:9', b.local], nonce, timeout: 3000, linger: 0 }),
      punch({ pipe: b, peerCandidates: [a.local], nonce, timeout: 3000, linger: 0 }),
    ]);
    expect(ra.remote).toEqual(b.local);
    expect(rb.remote).toEqual(a.local);
    expect(ra.stats.destinations).toBe(1);
  });

  it('leaves no timers or listeners behind', async () => {
    // Track every timer created from here on (unref'd timers are invisible to getActiveResourcesInfo).
    const live = new Set<NodeJS.Timeout>();
    const origSet = globalThis.setTimeout;
    const origClear = globalThis.clearTimeout;
    globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t: NodeJS.Timeout = origSet(() => {
        live.delete(t);
        fn(...args);
      }, ms);
      live.add(t);
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t: NodeJS.Timeout | undefined) => {
      if (t) live.delete(t);
      origClear(t);
    }) as typeof clearTimeout;
    try {
      const [a, b] = [await udp(), await udp()];
      const listeners = (a as unknown as { callbacks: unknown[] }).callbacks.length;
      const nonce = randomBytes(16);
      const [ra, rb] = await Promise.all([
        punch({ pipe: a, peerCandidates: [b.local], nonce, linger: 50 }),
        punch({ pipe: b, peerCandidates: [a.local], nonce, linger: 50 }),
      ]);
      const [sa, sb] = await Promise.all([
        openReliable(a, ra.remote, { initiator: ra.controlling, linger: 50 }),
        openReliable(b, rb.remote, { initiator: rb.controlling, linger: 50 }),
      ]);
      const got = sb.recv({ timeout: 1000 });
      await sa.send('x');
      await got;
      expect(live.size).toBeGreaterThan(0);
      await Promise.all([sa.close(), sb.close()]);
      await punch({ pipe: a, peerCandidates: ['127.0.0.1:9'], nonce, timeout: 100 }).catch(() => undefined);
      await openReliable(a, b.local, { initiator: true, timeout: 100 }).catch(() => undefined);
      await new Promise((r) => origSet(r, 150));
      expect(live.size).toBe(0);
      expect((a as unknown as { callbacks: unknown[] }).callbacks.length).toBe(listeners);
      expect(ReliableMux.peek(a)?.size).toBe(0);
    } finally {
      globalThis.setTimeout = origSet;
      globalThis.clearTimeout = origClear;
    }
  });
});
