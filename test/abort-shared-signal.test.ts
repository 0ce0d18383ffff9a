/**
 * One application signal shared by many concurrent operations (the usual "shut everything
 * down" controller): no `MaxListenersExceededWarning`, one listener on the signal however many
 * operations wait, none left once they finish, and every waiter still rejects on abort.
 */
import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AbortError } from '../src/errors.js';
import { pipeOpen } from '../src/pipes/index.js';
import { cancellable, sleep, whenAborted } from '../src/util/abort.js';

let warnings: Error[] = [];
const onWarning = (w: Error): void => void warnings.push(w);
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** Lets Node emit pending process warnings (they are emitted on the next tick). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('a signal shared by many operations', () => {
  it('100 concurrent recv() on one signal: one listener, no warning, all reject with AbortError on abort', async () => {
    const server = await pipeOpen('udp', undefined, { bind: { host: '127.0.0.1', port: 0 } });
    const client = await pipeOpen('udp', server.local);
    try {
      const ac = new AbortController();
      const waits = Array.from({ length: 100 }, () => client.recv({ signal: ac.signal }));
      expect(getEventListeners(ac.signal, 'abort').length).toBe(1);
      ac.abort();
      const results = await Promise.allSettled(waits);
      expect(results.every((r) => r.status === 'rejected' && r.reason instanceof AbortError)).toBe(true);
      await settle();
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('operations that finish remove their callback; the last one removes the listener', async () => {
    const ac = new AbortController();
    const waits = Array.from({ length: 30 }, (_, i) => sleep(5 + (i % 3), { signal: ac.signal }));
    expect(getEventListeners(ac.signal, 'abort').length).toBe(1);
    await Promise.all(waits);
    expect(getEventListeners(ac.signal, 'abort').length).toBe(0);
    // The signal still works for later operations after its listener was removed.
    const late = sleep(60_000, { signal: ac.signal });
    expect(getEventListeners(ac.signal, 'abort').length).toBe(1);
    ac.abort(new Error('shutdown'));
    const e = await late.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect((e as AbortError).cause).toEqual(new Error('shutdown'));
    await settle();
    expect(warnings).toEqual([]);
  });

  it('whenAborted: callbacks run once each, in order; removing one keeps the rest; a throwing callback does not stop the others', async () => {
    const ac = new AbortController();
    const calls: string[] = [];
    const same = (): void => void calls.push('same');
    whenAborted(ac.signal, () => calls.push('a'));
    const offB = whenAborted(ac.signal, () => calls.push('b'));
    whenAborted(ac.signal, same);
    const offSame = whenAborted(ac.signal, same);
    whenAborted(ac.signal, () => {
      throw new Error('callback failure');
    });
    whenAborted(ac.signal, () => calls.push('c'));
    offB();
    offSame();
    offSame(); // idempotent: removes only its own registration
    expect(getEventListeners(ac.signal, 'abort').length).toBe(1);
    const uncaught: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const catcher = (e: unknown): void => void uncaught.push(e);
    process.on('uncaughtException', catcher);
    try {
      ac.abort();
      await settle();
    } finally {
      process.off('uncaughtException', catcher);
      for (const l of listeners) process.on('uncaughtException', l);
    }
    expect(calls).toEqual(['a', 'same', 'c']);
    expect(uncaught).toEqual([new Error('callback failure')]);
    ac.abort(); // aborting again calls nothing
    expect(calls).toEqual(['a', 'same', 'c']);
  });

  it('cancellable() with a timeout and a shared signal cleans up both', async () => {
    const ac = new AbortController();
    const many = Array.from({ length: 20 }, () => cancellable<void>({ signal: ac.signal, timeout: 10 }, 'wait', () => undefined));
    const results = await Promise.allSettled(many);
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'TimeoutError')).toBe(true);
    expect(getEventListeners(ac.signal, 'abort').length).toBe(0);
    await settle();
    expect(warnings).toEqual([]);
  });
});
