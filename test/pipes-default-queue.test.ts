/**
 * The default `SUB_ALL` queue of a pipe opened without a callback: in callback mode or filter
 * mode nobody reads it, so once it fills up unread it is dropped (counted) instead of pausing
 * the connection for good; a queue that has been read keeps its backpressure and loses nothing.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { SUB_ALL, pipeOpen, type Pipe } from '../src/pipes/index.js';
import { guardUnhandled, useCleanup, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

const N = 3000;
const MAX_QUEUE = 64;

/** A length-framed TCP server whose first client is returned with the client pipe. */
async function pair(): Promise<{ client: Pipe; conn: Pipe }> {
  const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
  const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length', maxQueue: MAX_QUEUE }));
  const conn = cleanup.track(await server.accept({ timeout: 5000 }));
  return { client, conn };
}

async function sendMany(p: Pipe, n: number, text: (i: number) => string): Promise<void> {
  for (let i = 0; i < n; i++) await p.send(text(i));
}

describe('the default SUB_ALL queue', () => {
  it('callback mode: a callback added after opening gets every message; the unread default queue is dropped, not a stall', async () => {
    const { client, conn } = await pair();
    const got: string[] = [];
    let all!: () => void;
    const done = new Promise<void>((r) => (all = r));
    client.onMessage((m) => {
      got.push(m.data.toString());
      if (got.length === N) all();
    });
    await sendMany(conn, N, (i) => `m${i}`);
    await within(done, 20_000, 'callback saw every message');
    expect(got).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    // The default queue held MAX_QUEUE + 1 messages when it went (they had all reached the callback).
    expect(client.stats.dropped).toBe(MAX_QUEUE + 1);
    expect(client.isSubscribed(SUB_ALL)).toBe(false);
    const err = await client.recv({ timeout: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/default SUB_ALL queue was dropped/);
    // Subscribing again queues again.
    client.subscribe(SUB_ALL);
    await conn.send('after');
    expect((await client.recv({ timeout: 5000 })).data.toString()).toBe('after');
  });

  it('filter mode: a pattern subscription read with recv({ sub }) gets every message while SUB_ALL is never read', async () => {
    const { client, conn } = await pair();
    const sub = { pattern: 'ping' };
    client.subscribe(sub);
    const sending = sendMany(conn, N, (i) => `ping ${i}`);
    for (let i = 0; i < N; i++) expect((await client.recv({ sub, timeout: 10_000 })).data.toString()).toBe(`ping ${i}`);
    await sending;
    expect(client.isSubscribed(SUB_ALL)).toBe(false);
    expect(client.isSubscribed(sub)).toBe(true);
  });

  it('a default queue that has been read keeps its backpressure: the pipe pauses, then every message arrives, none dropped', async () => {
    const { client, conn } = await pair();
    await conn.send('first');
    expect((await client.recv({ timeout: 5000 })).data.toString()).toBe('first');
    const seen: number[] = [];
    client.onMessage((m) => void seen.push(m.data.readUInt32BE(0)));
    // 24 MiB: more than the kernel buffers hold, so a paused reader stalls the sender.
    const big = Buffer.alloc(8192);
    let sent = 0;
    const sending = (async () => {
      for (let i = 0; i < N; i++) {
        big.writeUInt32BE(i, 0);
        await conn.send(big);
        sent++;
      }
    })();
    let last = -1;
    await within(
      (async () => {
        for (;;) {
          await new Promise((r) => setTimeout(r, 300));
          const q = client.queued(SUB_ALL);
          if (q > MAX_QUEUE && q === last) return;
          last = q;
        }
      })(),
      20_000,
      'queue filled and stopped growing',
    );
    expect(client.isSubscribed(SUB_ALL)).toBe(true);
    expect(sent).toBeLessThan(N); // the sender is held up: the pipe paused
    expect(seen).toHaveLength(client.queued(SUB_ALL)); // the callback waits with the queue
    for (let i = 0; i < N; i++) expect((await client.recv({ timeout: 10_000 })).data.readUInt32BE(0)).toBe(i);
    await sending;
    expect(client.stats.dropped).toBe(0);
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i));
  });

  it('a pipe with only its default queue keeps backpressure even if never read (nothing else takes the messages)', async () => {
    const { client, conn } = await pair();
    const sending = sendMany(conn, 500, (i) => `m${i}`);
    await within(
      (async () => {
        while (client.queued(SUB_ALL) <= MAX_QUEUE) await new Promise((r) => setTimeout(r, 10));
      })(),
      10_000,
      'queue filled',
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(client.isSubscribed(SUB_ALL)).toBe(true);
    expect(client.stats.dropped).toBe(0);
    for (let i = 0; i < 500; i++) expect((await client.recv({ timeout: 10_000 })).data.toString()).toBe(`m${i}`);
    await sending;
  });
});
