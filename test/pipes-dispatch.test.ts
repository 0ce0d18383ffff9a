/**
 * Hot-path details of the pipe layer: a subscription queue's waiting receivers (order,
 * cancellation, close), short and long byte-prefix patterns, the per-source `from` cache of
 * UDP pipes, batched UDP dispatch, and TCP write coalescing (order, every send resolving, flushing before FIN).
 */
import { once } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { AbortError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { SUB_ALL, pipeOpen, type Message, type TcpPipe } from '../src/pipes/index.js';
import { SHORT_PREFIX, SubQueue, compileSub, type QueueOwner } from '../src/pipes/sub-queue.js';
import type { UdpPipe } from '../src/pipes/udp.js';
import { guardUnhandled, rawServer, rawUdp, rejection, useCleanup, waitFor, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

/** A queue owner that records what the queue asked of it. */
function owner(dropOldest = true): QueueOwner & { drops: number } {
  return {
    dropOldest,
    drops: 0,
    queueFull: () => undefined,
    queueDrained: () => undefined,
    countDrop() {
      this.drops++;
    },
  };
}

function msg(s: string): Message {
  return { data: Buffer.from(s), from: { host: '127.0.0.1', port: 1, family: 4 }, pipe: undefined as never };
}

const text = (m: Message): string => m.data.toString();

describe('subscription queue waiters', () => {
  it('several waiting receivers are served in call order, then messages queue', async () => {
    const q = new SubQueue(SUB_ALL, owner());
    const ps = [q.next(), q.next(), q.next()];
    for (const s of ['a', 'b', 'c', 'd']) q.push(msg(s));
    expect((await Promise.all(ps)).map(text)).toEqual(['a', 'b', 'c']);
    expect(q.length).toBe(1);
    expect(text(await q.next())).toBe('d');
  });

  it('bare and cancellable waiters share one order', async () => {
    const q = new SubQueue(SUB_ALL, owner());
    const ac = new AbortController();
    const ps = [q.next(), q.next({ timeout: 5_000 }), q.next({ signal: ac.signal }), q.next()];
    for (const s of ['a', 'b', 'c', 'd']) q.push(msg(s));
    expect((await Promise.all(ps)).map(text)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a cancelled waiter (first, middle or last) gives up its turn without losing a message', async () => {
    for (const which of [0, 1, 2]) {
      const q = new SubQueue(SUB_ALL, owner());
      const acs = [new AbortController(), new AbortController(), new AbortController()];
      const ps = acs.map((ac) => q.next({ signal: ac.signal }));
      (acs[which] as AbortController).abort();
      expect(await rejection(ps[which] as Promise<Message>)).toBeInstanceOf(AbortError);
      q.push(msg('x'));
      q.push(msg('y'));
      const rest = ps.filter((_, i) => i !== which);
      expect((await Promise.all(rest)).map(text)).toEqual(['x', 'y']);
      expect(q.length).toBe(0);
    }
  });

  it('a timed-out waiter is skipped; a later waiter still gets the next message', async () => {
    const q = new SubQueue(SUB_ALL, owner());
    const first = q.next({ timeout: 10 });
    const second = q.next();
    expect(await rejection(first)).toBeInstanceOf(TimeoutError);
    q.push(msg('late'));
    expect(text(await second)).toBe('late');
  });

  it('close rejects every waiter with PipeClosedError; queued messages stay readable', async () => {
    const q = new SubQueue(SUB_ALL, owner());
    const ps = [q.next(), q.next({ timeout: 5_000 }), q.next()];
    q.close(new Error('boom'));
    for (const p of ps) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(PipeClosedError);
      expect(e.message).toContain('boom');
    }
    await expect(q.next()).rejects.toBeInstanceOf(PipeClosedError);
  });

  it('waiters of different queues do not mix', async () => {
    const a = new SubQueue(SUB_ALL, owner());
    const b = new SubQueue({ pattern: 'b' }, owner());
    const pa = a.next();
    const pb = b.next();
    b.push(msg('b1'));
    a.push(msg('a1'));
    expect(text(await pa)).toBe('a1');
    expect(text(await pb)).toBe('b1');
  });
});

describe('byte-prefix patterns', () => {
  const match = (prefix: Uint8Array, data: string | Buffer): boolean => {
    const m = compileSub({ pattern: prefix });
    if (!m) throw new Error('expected a matcher');
    return m(Buffer.isBuffer(data) ? data : Buffer.from(data), { host: '127.0.0.1', port: 1, family: 4 });
  };

  it('short prefixes (byte loop) match exactly the payloads starting with them', () => {
    const p = Buffer.from('BENCH');
    expect(match(p, 'BENCH')).toBe(true);
    expect(match(p, 'BENCHMARK')).toBe(true);
    expect(match(p, 'BENCX')).toBe(false);
    expect(match(p, 'XBENCH')).toBe(false);
    expect(match(p, 'BENC')).toBe(false); // shorter than the prefix
    expect(match(p, '')).toBe(false);
    expect(match(Uint8Array.of(0, 255), Buffer.from([0, 255, 1]))).toBe(true);
    expect(match(Uint8Array.of(0, 255), Buffer.from([0, 254, 1]))).toBe(false);
  });

  it('prefixes at and beyond SHORT_PREFIX bytes behave the same', () => {
    for (const n of [SHORT_PREFIX, SHORT_PREFIX + 1, 200]) {
      const p = Buffer.alloc(n, 0x61);
      expect(match(p, Buffer.alloc(n, 0x61))).toBe(true);
      expect(match(p, Buffer.concat([Buffer.alloc(n, 0x61), Buffer.from('tail')]))).toBe(true);
      const off = Buffer.alloc(n, 0x61);
      off[n - 1] = 0x62;
      expect(match(p, off)).toBe(false);
      expect(match(p, Buffer.alloc(n - 1, 0x61))).toBe(false);
    }
  });

  it('the prefix is copied: mutating the caller’s bytes later changes nothing', () => {
    const p = Buffer.from('abc');
    const m = compileSub({ pattern: p });
    p[0] = 0x7a;
    expect(m?.(Buffer.from('abcd'), { host: '127.0.0.1', port: 1, family: 4 })).toBe(true);
  });
});

describe('UDP from endpoints', () => {
  it('alternating and changing sources each get their own from', async () => {
    const server: UdpPipe = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const a = cleanup.socket(await rawUdp('127.0.0.1'));
    const b = cleanup.socket(await rawUdp('127.0.0.1'));
    const order = [a, b, b, a, b, a, a];
    for (const [i, s] of order.entries()) {
      s.send(`m${i}`, server.local.port, '127.0.0.1');
      const m = await server.recv({ timeout: 5_000 });
      expect(m.data.toString()).toBe(`m${i}`);
      expect(m.from).toEqual({ host: '127.0.0.1', port: s.address().port, family: 4 });
    }
  });

  it('a reused from is frozen, so a consumer cannot corrupt later messages', async () => {
    const server: UdpPipe = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const peer = cleanup.socket(await rawUdp('127.0.0.1'));
    peer.send('one', server.local.port, '127.0.0.1');
    const m1 = await server.recv({ timeout: 5_000 });
    expect(Object.isFrozen(m1.from)).toBe(true);
    expect(() => {
      (m1.from as { port: number }).port = 9;
    }).toThrow(TypeError);
    peer.send('two', server.local.port, '127.0.0.1');
    const m2 = await server.recv({ timeout: 5_000 });
    expect(m2.from.port).toBe(peer.address().port);
    await server.send('reply', m2.from); // a cached from is a valid destination
    const [reply] = (await once(peer, 'message')) as [Buffer];
    expect(reply.toString()).toBe('reply');
  });
});

describe('UDP batched dispatch', () => {
  /** Sends `n` datagrams `d0…` from a raw socket in one burst (one turn of our event loop). */
  async function burst(to: UdpPipe, n: number): Promise<void> {
    const peer = cleanup.socket(await rawUdp('127.0.0.1'));
    await Promise.all(Array.from({ length: n }, (_, i) => new Promise<void>((r) => peer.send(`d${i}`, to.local.port, '127.0.0.1', () => r()))));
  }

  it('a burst reaches three pull consumers and a callback complete and in order', async () => {
    const server: UdpPipe = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const s1 = server.subscribe({ pattern: 'd' });
    const s2 = server.subscribe({ source: { host: '127.0.0.1' } });
    const viaCb: string[] = [];
    server.onMessage((m) => void viaCb.push(m.data.toString()));
    const n = 200;
    const got = [SUB_ALL, s1, s2].map(async (sub) => {
      const out: string[] = [];
      while (out.length < n) out.push((await server.recv({ sub, timeout: 5_000 })).data.toString());
      return out;
    });
    await burst(server, n);
    const want = Array.from({ length: n }, (_, i) => `d${i}`);
    for (const out of await Promise.all(got)) expect(out).toEqual(want);
    expect(viaCb).toEqual(want);
    expect(server.stats.messagesIn).toBe(n);
  });

  it('a callback that closes the pipe stops the rest of the batch from being dispatched', async () => {
    const server: UdpPipe = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' })); // SUB_ALL: batched
    let seen = 0;
    server.onMessage(() => {
      seen++;
      void server.close();
    });
    const closed = new Promise<void>((r) => server.onClose(() => r()));
    await burst(server, 20);
    await within(closed, 5_000, 'close');
    await new Promise((r) => setImmediate(r));
    expect(seen).toBe(1);
    expect(server.stats.messagesIn).toBe(1);
    expect(server.tryRecv()?.data.toString()).toBe('d0');
    expect(server.tryRecv()).toBeUndefined();
  });

  it('fake timers installed after import do not hold back delivery', async () => {
    const server: UdpPipe = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const realTimeout = setTimeout;
    vi.useFakeTimers({ toFake: ['setImmediate', 'setTimeout', 'setInterval'] });
    try {
      const got = server.recv();
      await burst(server, 1);
      const late = new Promise<never>((_, rej) => realTimeout(() => rej(new Error('not delivered within 5 s')), 5_000));
      expect((await Promise.race([got, late])).data.toString()).toBe('d0');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('TCP write coalescing', () => {
  /** A raw TCP server collecting every byte of its first connection. */
  async function collector(): Promise<{ port: number; bytes: () => Buffer; ended: Promise<void> }> {
    const srv = await rawServer('127.0.0.1');
    cleanup.add(() => srv.close());
    const chunks: Buffer[] = [];
    const ended = (async () => {
      const s = await srv.nextSocket();
      s.on('data', (d: Buffer) => chunks.push(d));
      await once(s, 'end');
      s.end();
    })();
    return { port: srv.port, bytes: () => Buffer.concat(chunks), ended };
  }

  it('sends of one tick, of later ticks and large sends arrive in order and all resolve', async () => {
    const c = await collector();
    const p: TcpPipe = cleanup.track(await pipeOpen('tcp', { host: '127.0.0.1', port: c.port }));
    const expected: Buffer[] = [];
    const sends: Promise<void>[] = [];
    const send = (b: Buffer): void => {
      expected.push(b);
      sends.push(p.send(b));
    };
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1 + (round % 7); i++) send(Buffer.from(`r${round}.${i};`));
      if (round % 5 === 0) send(Buffer.alloc(70 * 1024, 0x41 + round)); // past the batch limit
      if (round % 3 === 0) await Promise.resolve();
      else if (round % 3 === 1) await new Promise((r) => setImmediate(r));
    }
    await within(Promise.all(sends), 5_000, 'every send to resolve');
    await p.close();
    await within(c.ended, 5_000, 'the peer to see FIN');
    expect(c.bytes().equals(Buffer.concat(expected))).toBe(true);
  });

  it('send() resolves only once its bytes were handed over, and close() flushes the tick before FIN', async () => {
    const c = await collector();
    const p: TcpPipe = cleanup.track(await pipeOpen('tcp', { host: '127.0.0.1', port: c.port }));
    const resolved: number[] = [];
    const ps = Array.from({ length: 50 }, (_, i) => p.send(`${i},`).then(() => resolved.push(i)));
    const closing = p.close(); // same tick: the sends must still leave, before the FIN
    await within(Promise.all(ps), 5_000, 'sends before close');
    await closing;
    await within(c.ended, 5_000, 'FIN');
    expect(c.bytes().toString()).toBe(Array.from({ length: 50 }, (_, i) => `${i},`).join(''));
    expect(resolved).toHaveLength(50);
    await expect(p.send('late')).rejects.toBeInstanceOf(PipeClosedError);
  });

  it('length framing keeps frame boundaries across coalesced writes', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const want = Array.from({ length: 300 }, (_, i) => 'x'.repeat(i % 37) + String(i));
    for (const [i, s] of want.entries()) {
      void client.send(s);
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    const got: string[] = [];
    while (got.length < want.length) got.push((await conn.recv({ timeout: 5_000 })).data.toString());
    expect(got).toEqual(want);
  });

  it('a reset while sends are pending rejects them with PipeClosedError', async () => {
    const c = await collector();
    const p: TcpPipe = cleanup.track(await pipeOpen('tcp', { host: '127.0.0.1', port: c.port }));
    await p.send('first'); // connected and flushed
    const ps = [p.send('a'), p.send('b'), p.send('c')];
    p.reset();
    const results = await Promise.allSettled(ps);
    // What already reached the kernel may resolve; anything still batched rejects, none hangs.
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PipeClosedError);
    await waitFor(() => p.closed, 'closed');
  });
});
