/**
 * Flow control: a slow TCP consumer bounds the receiver's queue and memory and stalls the
 * sender (kernel buffers fill), then everything arrives in order; server-level queues pause
 * every client; async callbacks in flight pause reading; UDP queues drop the oldest.
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MAX_INFLIGHT_CALLBACKS, SUB_ALL, pipeOpen, type Pipe } from '../src/pipes/index.js';
import { guardUnhandled, useCleanup, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function mem(): { rss: number; ab: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, ab: m.arrayBuffers };
}

const MiB = 1024 * 1024;

/** Resolves once `get()` stops changing for `quietMs` (for "nothing moves any more" states, which have no event). */
async function quiescent(get: () => number, what: string, quietMs = 500, timeoutMs = 30_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last = get();
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 25));
    const v = get();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return v;
    if (Date.now() > end) throw new Error(`${what} never became quiescent`);
  }
}

/** Resolves after `n` more messages were dispatched on `p`. */
function arrivals(p: Pipe, n: number, ms = 10_000): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      let seen = 0;
      const rm = p.onMessage(() => {
        if (++seen === n) {
          rm();
          resolve();
        }
      });
    }),
    ms,
    `${n} arrivals`,
  );
}

describe('TCP backpressure with a slow consumer', () => {
  it('200 MiB with length framing: bounded queue and memory, sender stalls, then every byte arrives in order', async () => {
    const MSG = 64 * 1024;
    const TOTAL = 200 * MiB;
    const N = TOTAL / MSG;
    const MAX_QUEUE = 16;
    const templates = Array.from({ length: 17 }, () => randomBytes(MSG));

    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxQueue: MAX_QUEUE }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const before = mem();

    let sent = 0;
    let sendPending = false;
    let maxQueued = 0;
    const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, conn.queued())), 1);
    cleanup.add(() => clearInterval(sampler));
    const sender = (async () => {
      for (let seq = 0; seq < N; seq++) {
        const buf = Buffer.allocUnsafe(MSG);
        (templates[seq % templates.length] as Buffer).copy(buf);
        buf.writeUInt32BE(seq, 0);
        sendPending = true;
        await client.send(buf);
        sendPending = false;
        sent++;
      }
    })();

    // Phase 1: the receiver never reads. The sender must stall well before the end.
    const stalledAt = await quiescent(() => sent, 'sender');
    const during = mem();
    expect(stalledAt).toBeLessThan(N / 2); // kernel buffers hold a few MiB, not 100
    expect(sendPending).toBe(true); // a send promise is stuck waiting for the kernel
    expect(conn.queued()).toBeLessThanOrEqual(MAX_QUEUE + 2); // + at most one 64 KiB chunk's frames
    expect(maxQueued).toBeLessThanOrEqual(MAX_QUEUE + 2);
    expect(conn.stats.messagesIn).toBe(conn.queued());
    expect(conn.stats.dropped).toBe(0);
    const abGrowth = during.ab - before.ab;
    const rssGrowth = during.rss - before.rss;
    if (process.env.P2PD_TEST_VERBOSE) {
      console.log(`stalled after ${((stalledAt * MSG) / MiB).toFixed(1)} MiB; queued ${conn.queued()}; arrayBuffers +${(abGrowth / MiB).toFixed(1)} MiB; rss +${(rssGrowth / MiB).toFixed(1)} MiB`);
    }
    expect(abGrowth).toBeLessThan(48 * MiB);
    expect(rssGrowth).toBeLessThan(96 * MiB);

    // Phase 2: drain everything, checking order and content.
    let bytes = 0;
    for (let seq = 0; seq < N; seq++) {
      const m = await conn.recv({ timeout: 10_000 });
      if (m.data.length !== MSG || m.data.readUInt32BE(0) !== seq || !m.data.subarray(4).equals((templates[seq % templates.length] as Buffer).subarray(4))) {
        throw new Error(`message ${seq}: got seq ${m.data.readUInt32BE(0)}, length ${m.data.length}`);
      }
      bytes += m.data.length;
    }
    await within(sender, 10_000, 'sender done');
    clearInterval(sampler);
    expect(bytes).toBe(TOTAL);
    expect(sent).toBe(N);
    expect(conn.stats.bytesIn).toBe(TOTAL);
    expect(conn.stats.messagesIn).toBe(N);
    expect(client.stats.bytesOut).toBe(TOTAL);
    expect(conn.tryRecv()).toBeUndefined();
    expect(maxQueued).toBeLessThanOrEqual(MAX_QUEUE + 2);
  }, 120_000);

  it('maxQueueBytes bounds the queue by size as well', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxQueueBytes: 256 * 1024 }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const N = 2000;
    const sender = (async () => {
      for (let i = 0; i < N; i++) await client.send(Buffer.alloc(32 * 1024, i & 0xff));
    })();
    await quiescent(() => conn.stats.messagesIn, 'receiver');
    // 256 KiB of 32 KiB messages = 8, plus at most one 64 KiB chunk's worth
    expect(conn.queued()).toBeLessThanOrEqual(8 + 3);
    expect(conn.stats.messagesIn).toBeLessThan(N);
    for (let i = 0; i < N; i++) {
      const m = await conn.recv({ timeout: 10_000 });
      expect(m.data[0]).toBe(i & 0xff);
    }
    await within(sender, 10_000, 'sender');
  }, 60_000);

  it('a full server-level queue pauses every client; draining resumes them all, per-client order kept', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxQueue: 8 }));
    server.subscribe(SUB_ALL);
    const a = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const b = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const N = 3000;
    const MSG = 8 * 1024;
    const send = (p: typeof a, tag: number): Promise<void> =>
      (async () => {
        for (let i = 0; i < N; i++) {
          const buf = Buffer.alloc(MSG, tag);
          buf.writeUInt32BE(i, 0);
          await p.send(buf);
        }
      })();
    const senders = [send(a, 1), send(b, 2)];
    const total = (): number => [...server.connections].reduce((s, c) => s + c.stats.messagesIn, 0);
    await quiescent(total, 'server receive');
    expect(total()).toBeLessThan(2 * N);
    expect(server.queued()).toBeLessThanOrEqual(8 + 2 * 8); // + one 64 KiB chunk (8 frames) per client
    const next = { 1: 0, 2: 0 } as Record<number, number>;
    for (let i = 0; i < 2 * N; i++) {
      const m = await server.recv({ timeout: 10_000 });
      const tag = m.data[MSG - 1] as number;
      expect(m.data.readUInt32BE(0)).toBe(next[tag]);
      next[tag] = (next[tag] as number) + 1;
      expect(m.from.port).toBe(tag === 1 ? a.local.port : b.local.port);
    }
    await within(Promise.all(senders), 10_000, 'senders');
    expect(next).toEqual({ 1: N, 2: N });
  }, 60_000);

  it.each(['server', 'client'] as const)('with two %s-level subscriptions, a slow one stays bounded while the other is drained', async (level) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxQueue: 8 }));
    const fast = { pattern: () => true };
    const slow = { pattern: () => true };
    if (level === 'server') {
      server.subscribe(fast);
      server.subscribe(slow);
    }
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const hub: Pipe = level === 'server' ? server : conn;
    if (level === 'client') {
      conn.unsubscribe(SUB_ALL);
      conn.subscribe(fast);
      conn.subscribe(slow);
    }
    const N = 2000;
    const sending = (async () => {
      for (let i = 0; i < N; i++) await client.send(Buffer.alloc(8 * 1024, i & 0xff));
    })();
    // both fill up and reading pauses; then only `fast` gets a consumer
    await quiescent(() => conn.stats.messagesIn, 'receiver (nobody reads)');
    expect(hub.queued(fast)).toBeGreaterThan(8);
    let drained = 0;
    let maxSlow = 0;
    const drainer = (async () => {
      while (drained < N) {
        await hub.recv({ sub: fast });
        drained++;
        maxSlow = Math.max(maxSlow, hub.queued(slow));
      }
    })();
    await quiescent(() => conn.stats.messagesIn, 'receiver (fast drained)');
    // the slow subscription holds everything up: it never grows past its limit (+ one chunk)
    expect(maxSlow).toBeLessThanOrEqual(8 + 8);
    expect(hub.queued(slow)).toBeLessThanOrEqual(8 + 8);
    expect(conn.stats.messagesIn).toBeLessThan(N);
    // draining the slow one lets everything through, in order
    for (let i = 0; i < N; i++) expect((await hub.recv({ sub: slow, timeout: 10_000 })).data[0]).toBe(i & 0xff);
    await within(sending, 10_000, 'sender');
    await within(drainer, 10_000, 'fast drained');
    expect(drained).toBe(N);
  }, 60_000);

  it.each(['server', 'client'] as const)(
    `async onMessage callbacks (%s-level): reading pauses at ${MAX_INFLIGHT_CALLBACKS} in flight and resumes when they settle`,
    async (level) => {
      const N = 3000;
      let release: (() => void) | undefined;
      const gate = new Promise<void>((r) => (release = r));
      let calls = 0;
      const onMessage = async (): Promise<void> => {
        calls++;
        await gate;
      };
      const server = cleanup.track(
        await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', ...(level === 'server' ? { onMessage } : {}) }),
      );
      const sender = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
      const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
      if (level === 'client') {
        conn.unsubscribe(SUB_ALL);
        conn.onMessage(onMessage);
      }
      const sending = (async () => {
        for (let i = 0; i < N; i++) await sender.send(Buffer.alloc(1024, 1));
      })();
      const paused = await quiescent(() => calls, 'callbacks');
      expect(paused).toBeGreaterThanOrEqual(MAX_INFLIGHT_CALLBACKS);
      expect(paused).toBeLessThanOrEqual(MAX_INFLIGHT_CALLBACKS + 64); // + one 64 KiB chunk of 1 KiB frames
      expect(conn.stats.messagesIn).toBe(paused);
      const done = arrivals(conn, N - paused, 20_000);
      release?.();
      await done;
      await within(sending, 10_000, 'sender');
      expect(calls).toBe(N);
    },
    60_000,
  );
});

describe('UDP queue limits drop the oldest', () => {
  it('more datagrams than maxQueue with no consumer: stats.dropped counts them, recv returns the newest', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', maxQueue: 10 }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const arrived = arrivals(server, 50);
    for (let i = 0; i < 50; i++) await client.send(`d${i}`);
    await arrived;
    expect(server.stats.messagesIn).toBe(50);
    expect(server.stats.dropped).toBe(40);
    expect(server.queued()).toBe(10);
    const got: string[] = [];
    for (let i = 0; i < 10; i++) got.push((await server.recv()).data.toString());
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `d${40 + i}`));
    expect(server.tryRecv()).toBeUndefined();
    // the queue works normally afterwards
    await client.send('fresh');
    expect((await server.recv({ timeout: 5_000 })).data.toString()).toBe('fresh');
    expect(server.stats.dropped).toBe(40);
  });

  it('maxQueueBytes drops the oldest too, but always keeps the newest datagram', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', maxQueueBytes: 1000 }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const arrived = arrivals(server, 11);
    for (let i = 0; i < 10; i++) await client.send(Buffer.alloc(300, i));
    await client.send(Buffer.alloc(5000, 99)); // alone above the limit
    await arrived;
    expect(server.queued()).toBe(1);
    expect(server.stats.dropped).toBe(10);
    const m = await server.recv();
    expect(m.data.length).toBe(5000);
    expect(m.data[0]).toBe(99);
  });

  it('per-subscription limits: a small sub drops while SUB_ALL keeps everything', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const small = server.subscribe({ pattern: 'm' }, { maxQueue: 3 });
    const arrived = arrivals(server, 20);
    for (let i = 0; i < 20; i++) await client.send(`m${i}`);
    await arrived;
    expect(server.queued()).toBe(20);
    expect(server.queued(small)).toBe(3);
    expect(server.stats.dropped).toBe(17);
    expect((await server.recv({ sub: small })).data.toString()).toBe('m17');
  });

  it('a waiting receiver gets datagrams directly; nothing is dropped when consumed as they come', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', maxQueue: 1 }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    for (let i = 0; i < 20; i++) {
      const p = server.recv({ timeout: 5_000 });
      await client.send(`x${i}`);
      expect((await p).data.toString()).toBe(`x${i}`);
    }
    expect(server.stats.dropped).toBe(0);
  });
});
