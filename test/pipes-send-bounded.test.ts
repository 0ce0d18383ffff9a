/**
 * `send(data, dest, { signal, timeout })` bounds the wait for the kernel to take the data: a
 * send blocked by a peer that stops reading rejects with TimeoutError / AbortError on time,
 * the pipe stays usable, and the message is not taken back: once the peer reads again every
 * message arrives, in order. Plain TCP pipes and secure pipes; UDP and an already-aborted
 * signal for completeness.
 */
import { describe, expect, it } from 'vitest';
import { AbortError, TimeoutError } from '../src/errors.js';
import { connectSecure, Identity, listenSecure } from '../src/crypto/index.js';
import { pipeOpen, type Pipe, type TcpPipe } from '../src/pipes/index.js';
import { guardUnhandled, rejection, useCleanup, waitFor } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

const MSG = 1024 * 1024;

/** A message whose bytes say which one it is. */
const msg = (i: number): Buffer => Buffer.alloc(MSG, i & 0xff);

/**
 * Sends until a send stays pending (the peer's socket is paused, kernel buffers are full);
 * returns how many were sent. Each send is awaited for up to 300 ms.
 */
async function fill(p: Pipe): Promise<number> {
  for (let i = 0; i < 1000; i++) {
    const s = p.send(msg(i));
    const done = await Promise.race([s.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 300))]);
    if (!done) return i + 1;
  }
  throw new Error('the peer never pushed back');
}

/** Collects message payload tags (first byte of each 1 MiB message) from a length-framed or secure pipe. */
function collect(p: Pipe): number[] {
  const tags: number[] = [];
  p.onMessage((m) => void tags.push(m.data[0] as number));
  return tags;
}

async function blockedSendRejectsOnTime(client: Pipe, pause: () => void, resume: () => void, received: number[]): Promise<void> {
  pause();
  const n = await fill(client);
  // A send that cannot complete: the timeout fires.
  const t0 = performance.now();
  const e1 = await rejection(client.send(msg(n), undefined, { timeout: 200 }));
  expect(e1).toBeInstanceOf(TimeoutError);
  expect(performance.now() - t0).toBeLessThan(2_000);
  // An abort mid-wait.
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  const e2 = await rejection(client.send(msg(n + 1), undefined, { signal: ac.signal }));
  expect(e2).toBeInstanceOf(AbortError);
  // An already-aborted signal: rejected at once, nothing queued.
  const e3 = await rejection(client.send(msg(99), undefined, { signal: AbortSignal.abort() }));
  expect(e3).toBeInstanceOf(AbortError);
  expect(client.closed).toBe(false);
  // The peer reads again: every accepted message arrives, in order, and the pipe still works.
  resume();
  await client.send(msg(n + 2), undefined, { timeout: 20_000 });
  await waitFor(() => received.length === n + 3, `${n + 3} messages`, 20_000);
  expect(received).toEqual(Array.from({ length: n + 3 }, (_, i) => i & 0xff));
}

describe('bounded sends', () => {
  it('TCP: a send blocked by a stalled reader rejects with TimeoutError / AbortError on time; nothing is lost', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxMessageSize: 2 * MSG }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length', maxMessageSize: 2 * MSG }));
    const peer = cleanup.track((await server.accept()) as TcpPipe);
    const received = collect(peer);
    await blockedSendRejectsOnTime(
      client,
      () => peer.socket.pause(),
      () => peer.socket.resume(),
      received,
    );
  }, 60_000);

  it('secure pipe: the same bounds, and the stream still decrypts in order afterwards', async () => {
    const A = Identity.generate();
    const B = Identity.generate();
    const srv = cleanup.track(await listenSecure('127.0.0.1:0', { identity: A }));
    const [client, peer] = await Promise.all([connectSecure(srv.local, { identity: B, remoteId: A.id }), srv.accept()]);
    cleanup.track(client);
    cleanup.track(peer);
    const received = collect(peer);
    const sock = (peer as unknown as { socket: { pause(): void; resume(): void } }).socket;
    await blockedSendRejectsOnTime(
      client,
      () => sock.pause(),
      () => sock.resume(),
      received,
    );
  }, 60_000);

  it('UDP: a send with a timeout or a live signal resolves as usual; an aborted one rejects', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const got = server.recv({ timeout: 5_000 });
    await client.send('hi', undefined, { timeout: 1_000, signal: new AbortController().signal });
    expect((await got).data.toString()).toBe('hi');
    expect(await rejection(client.send('no', undefined, { signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
  });
});
