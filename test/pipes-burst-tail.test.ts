/**
 * Burst tails on TCP_NODELAY pipes: the first send of a tick leaves at once; the rest of the
 * tick's sends leave together with Nagle switched on (the kernel holds them until the peer
 * acknowledges the head), and TCP_NODELAY comes back on with the next tick's first send or
 * after BURST_TAIL_HOLD_MS. TCP_NODELAY itself is set at a pipe's first send (deferred: Nagle
 * cannot hold anything before data flows), so every spied call list starts with that `true`.
 * Checked through the socket's setNoDelay calls and the data: every message arrives, in order,
 * also when the peer never answers.
 */
import { describe, expect, it } from 'vitest';
import { BURST_TAIL_HOLD_MS } from '../src/pipes/tcp.js';
import { pipeOpen, type Message, type TcpPipe } from '../src/pipes/index.js';
import { guardUnhandled, useCleanup, waitFor } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

async function pair(noDelay?: boolean): Promise<{ client: TcpPipe; peer: TcpPipe; got: string[]; calls: boolean[] }> {
  const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line', ...(noDelay === undefined ? {} : { noDelay }) }));
  const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line', ...(noDelay === undefined ? {} : { noDelay }) }));
  const peer = cleanup.track((await server.accept()) as TcpPipe);
  const got: string[] = [];
  peer.onMessage((m: Message) => void got.push(m.data.toString()));
  const calls: boolean[] = [];
  const orig = client.socket.setNoDelay.bind(client.socket);
  client.socket.setNoDelay = (v?: boolean) => {
    calls.push(v !== false);
    return orig(v);
  };
  return { client, peer, got, calls };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('burst tails', () => {
  it('a burst: head at once, tail under Nagle, TCP_NODELAY back on after the hold; all arrive in order with no reply', async () => {
    const { client, got, calls } = await pair();
    const sends = Array.from({ length: 10 }, (_, i) => client.send(`m${i}`));
    await Promise.all(sends);
    expect(calls).toEqual([true, false]); // TCP_NODELAY at the first send, Nagle on for the tail
    await waitFor(() => calls.length === 3, 'TCP_NODELAY back on', 2_000);
    expect(calls).toEqual([true, false, true]);
    await waitFor(() => got.length === 10, '10 messages', 5_000);
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(BURST_TAIL_HOLD_MS).toBeGreaterThan(0);
  });

  it("the next tick's first send turns TCP_NODELAY back on before it is written", async () => {
    const { client, got, calls } = await pair();
    void client.send('a');
    void client.send('b');
    await tick();
    expect(calls).toEqual([true, false]);
    await client.send('c'); // a new tick: pushes the held tail, then goes out at once
    expect(calls).toEqual([true, false, true]);
    await waitFor(() => got.length === 3, '3 messages', 5_000);
    expect(got).toEqual(['a', 'b', 'c']);
  });

  it('one message per tick sets TCP_NODELAY once (at the first send) and never toggles it', async () => {
    const { client, got, calls } = await pair();
    for (let i = 0; i < 5; i++) await client.send(`x${i}`);
    await waitFor(() => got.length === 5, '5 messages', 5_000);
    expect(calls).toEqual([true]);
  });

  it('TCP_NODELAY is deferred to the first send: a pipe that never sends never sets it (client and accepted end)', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const spied: boolean[] = [];
    server.onConnection((p) => {
      const orig = p.socket.setNoDelay.bind(p.socket);
      p.socket.setNoDelay = (v?: boolean) => (spied.push(v !== false), orig(v));
    });
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const peer = cleanup.track((await server.accept()) as TcpPipe);
    const calls: boolean[] = [];
    const orig = client.socket.setNoDelay.bind(client.socket);
    client.socket.setNoDelay = (v?: boolean) => (calls.push(v !== false), orig(v));
    await client.send('hello');
    expect(calls).toEqual([true]); // set just before the first write
    expect((await peer.recv({ timeout: 5000 })).data.toString()).toBe('hello');
    expect(spied).toEqual([]); // the accepted end has not sent
    await peer.send('back');
    expect(spied).toEqual([true]);
    client.ensureNoDelay(); // already set: no second call
    expect(calls).toEqual([true]);
    await client.close();
    expect(calls).toEqual([true]);
  });

  it('a pipe opened with noDelay: false is left to Nagle throughout', async () => {
    const { client, got, calls } = await pair(false);
    for (let i = 0; i < 10; i++) void client.send(`n${i}`);
    await waitFor(() => got.length === 10, '10 messages', 5_000);
    expect(calls).toEqual([]);
  });

  it('close() right after a burst pushes the tail and the FIN at once', async () => {
    const { client, peer, got, calls } = await pair();
    for (let i = 0; i < 4; i++) void client.send(`z${i}`);
    await tick();
    await client.close();
    expect(calls).toEqual([true, false, true]);
    await waitFor(() => peer.closed, 'peer sees the close', 5_000);
    expect(got).toEqual(['z0', 'z1', 'z2', 'z3']);
  });
});

describe('deferred TCP_NODELAY under secure()', () => {
  it('secure() sets TCP_NODELAY when it takes the pipe over, before its first handshake write', async () => {
    const { Identity, listenSecure, secure } = await import('../src/crypto/index.js');
    const srv = await listenSecure('127.0.0.1:0', { identity: Identity.generate() });
    try {
      const plain = cleanup.track(await pipeOpen('tcp', srv.local));
      const calls: boolean[] = [];
      const writesBefore: number[] = [];
      const origNd = plain.socket.setNoDelay.bind(plain.socket);
      plain.socket.setNoDelay = (v?: boolean) => (calls.push(v !== false), writesBefore.push(plain.socket.bytesWritten), origNd(v));
      const sp = await secure(plain, { identity: Identity.generate(), timeout: 5000 });
      expect(calls).toEqual([true]);
      expect(writesBefore).toEqual([0]); // before handshake message 1
      const peer = await srv.accept({ timeout: 5000 });
      await sp.send('over noise');
      expect((await peer.recv({ timeout: 5000 })).data.toString()).toBe('over noise');
      await Promise.all([sp.close(), peer.close()]);
    } finally {
      await srv.close();
    }
  });
});
