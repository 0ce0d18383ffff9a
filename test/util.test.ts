/**
^ * Shared helpers. Cancellation: timeouts longer than Node's largest timer (2^31 − 1 ms)
 * must not fire early (Node fires such a timer after 1 ms), and `closeWithin`'s contract.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError, TimeoutError } from '../src/errors.js';
import { MAX_TIMER_MS, cancellable, closeWithin, sleep } from '../src/util/abort.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('timeouts beyond 2^31 - 1 ms', () => {
  it('cancellable: a 2^31 ms timeout fires after 2^31 ms, not after 1 ms', async () => {
    vi.useFakeTimers();
    let err: unknown;
    const p = cancellable({ timeout: 2 ** 31 + 5000 }, 'long wait', () => undefined).catch((e: unknown) => (err = e));
    await vi.advanceTimersByTimeAsync(10);
    expect(err).toBeUndefined();
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(err).toBeUndefined();
    await vi.advanceTimersByTimeAsync(10_000);
    await p;
    expect(err).toBeInstanceOf(TimeoutError);
  });

  it('sleep: a 2^31 ms sleep does not end early', async () => {
    vi.useFakeTimers();
    let done = false;
    const p = sleep(2 ** 31 + 5000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(10_000);
    await p;
    expect(done).toBe(true);
  });

  it('real timers: a pipe-style wait with a 2^31 ms timeout is still pending after 50 ms', async () => {
    let settled = false;
    const ac = new AbortController();
    const p = cancellable({ timeout: 2 ** 31, signal: ac.signal }, 'wait', () => undefined).catch((e: unknown) => {
      settled = true;
      return e;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    ac.abort();
    expect(await p).toBeInstanceOf(AbortError);
  });
});

describe('closeWithin', () => {
  it('no options: the graceful close itself', async () => {
    const force = vi.fn();
    await closeWithin(() => Promise.resolve(), undefined, force);
    expect(force).not.toHaveBeenCalled();
  });

  it('a timeout that passes first forces, then rejects with TimeoutError once the close completed', async () => {
    let finish!: () => void;
    const graceful = new Promise<void>((r) => (finish = r));
    const order: string[] = [];
    const p = closeWithin(() => graceful, { timeout: 20 }, () => {
      order.push('force');
      setTimeout(() => (order.push('closed'), finish()), 10);
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(order).toEqual(['force', 'closed']);
  });

  it('an already-aborted signal forces before and after the graceful close starts, and rejects with AbortError', async () => {
    const order: string[] = [];
    const err = await closeWithin(
      () => (order.push('graceful'), Promise.resolve()),
      { signal: AbortSignal.abort() },
      () => void order.push('force'),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(order).toEqual(['force', 'graceful', 'force']);
  });

  it('a graceful close that fails on its own rejects with its error (no force)', async () => {
    const force = vi.fn();
    const boom = new Error('boom');
    await expect(closeWithin(() => Promise.reject(boom), { timeout: 1000 }, force)).rejects.toBe(boom);
    expect(force).not.toHaveBeenCalled();
  });
});

describe('peerReason (reason texts from the network)', () => {
  it('never throws, whatever JSON a peer sent', async () => {
    const { peerReason } = await import('../src/util/describe.js');
    expect(peerReason('refused')).toBe('refused');
    expect(peerReason('x'.repeat(500)).length).toBe(200);
    expect(peerReason(42)).toBe('42');
    expect(peerReason({ toString: 1 })).toBe('(object)');
    expect(peerReason(JSON.parse('{"toString":1,"valueOf":1}'))).toBe('(object)');
    expect(peerReason(null)).toBe('(null)');
    expect(() => String(JSON.parse('{"toString":1,"valueOf":1}'))).toThrow(TypeError); // what it replaces
  });
});
