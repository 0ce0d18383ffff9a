/**
 * AcceptQueue (src/pipes/accept-queue.ts): FIFO hand-over, waiters, the bound, cancellation,
 * close, async iteration.
 */
import { describe, expect, it } from 'vitest';
import { AbortError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { AcceptQueue } from '../src/pipes/accept-queue.js';
import { rejection } from './helpers/pipes.js';

describe('AcceptQueue', () => {
  it('queued items come out in order; take() waits for the next push', async () => {
    const q = new AcceptQueue<number>();
    q.push(1);
    q.push(2);
    expect(q.length).toBe(2);
    expect(await q.take()).toBe(1);
    expect(q.tryTake()).toBe(2);
    expect(q.tryTake()).toBeUndefined();
    const a = q.take();
    const b = q.take();
    expect(q.waiting).toBe(2);
    q.push(3);
    q.push(4);
    expect(await a).toBe(3); // oldest waiter first
    expect(await b).toBe(4);
    expect(q.waiting).toBe(0);
    expect(q.length).toBe(0); // handed over, never queued
  });

  it('beyond the limit the oldest is dropped and handed to onDrop', () => {
    const dropped: number[] = [];
    const q = new AcceptQueue<number>({ limit: 2, onDrop: (n) => dropped.push(n) });
    for (let i = 1; i <= 5; i++) q.push(i);
    expect(dropped).toEqual([1, 2, 3]);
    expect(q.dropped).toBe(3);
    expect(q.clear()).toEqual([4, 5]);
    expect(q.length).toBe(0);
  });

  it('timeout and abort reject with typed errors and remove the waiter', async () => {
    const q = new AcceptQueue<string>({ what: 'accept test' });
    const t = await rejection(q.take({ timeout: 10 }));
    expect(t).toBeInstanceOf(TimeoutError);
    expect((t as Error).message).toContain('accept test');
    expect(q.waiting).toBe(0);
    const ac = new AbortController();
    const p = q.take({ signal: ac.signal });
    expect(q.waiting).toBe(1);
    ac.abort();
    expect(await rejection(p)).toBeInstanceOf(AbortError);
    expect(q.waiting).toBe(0);
    expect(await rejection(q.take({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    // An item pushed after the waiters gave up is queued, not lost.
    q.push('x');
    expect(q.length).toBe(1);
    expect(await q.take()).toBe('x');
  });

  it('close() rejects waiters and later takes on an empty queue; queued items stay takeable', async () => {
    const q = new AcceptQueue<number>({ closedMessage: 'gone' });
    const w = q.take();
    q.close();
    const e = await rejection(w);
    expect(e).toBeInstanceOf(PipeClosedError);
    expect((e as Error).message).toBe('gone');
    expect(q.closed).toBe(true);
    q.push(7);
    expect(await q.take()).toBe(7);
    expect(await rejection(q.take())).toBeInstanceOf(PipeClosedError);
    q.close(); // idempotent
  });

  it('async iteration yields every item and ends when closed', async () => {
    const q = new AcceptQueue<number>();
    q.push(1);
    const got: number[] = [];
    const loop = (async () => {
      for await (const n of q) got.push(n);
      return 'ended';
    })();
    q.push(2);
    await new Promise((r) => setTimeout(r, 5));
    q.push(3);
    await new Promise((r) => setTimeout(r, 5));
    q.close();
    expect(await loop).toBe('ended');
    expect(got).toEqual([1, 2, 3]);
  });

  it('items() honours an abort signal', async () => {
    const q = new AcceptQueue<number>();
    const ac = new AbortController();
    const it = q.items({ signal: ac.signal });
    const next = it.next();
    ac.abort();
    expect(await rejection(next)).toBeInstanceOf(AbortError);
    expect(q.waiting).toBe(0);
  });

  it('rejects a bad limit or onDrop', () => {
    expect(() => new AcceptQueue({ limit: 0 })).toThrow(InvalidArgumentError);
    expect(() => new AcceptQueue({ limit: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => new AcceptQueue({ onDrop: 3 as never })).toThrow(InvalidArgumentError);
  });
});
