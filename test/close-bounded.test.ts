/**
 * `close({ signal, timeout })` on every closable object: the graceful close is bounded by the
 * caller; when the signal aborts or the timeout passes first, the object is torn down at once
 * (TCP: reset), the promise rejects with `AbortError` / `TimeoutError` after everything is
 * closed, and nothing is left open. Without options the close stays graceful.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { connectSecure, listenSecure } from '../src/crypto/index.js';
import { AbortError, StateError, TimeoutError } from '../src/errors.js';
import { METHOD, StunClient, startStunServer } from '../src/nat/stun/index.js';
import { startDhtNode } from '../src/dht/index.js';
import { turnAllocate } from '../src/nat/turn/index.js';
import { startP2pNode } from '../src/node/index.js';
import { CLOSE_TIMEOUT, Daemon, pipeOpen, type TcpPipe } from '../src/pipes/index.js';
import { SwarmPeer } from '../src/swarm/index.js';
import { guardUnhandled, rawConnect, rejection, useCleanup, waitFor, within } from './helpers/pipes.js';
import { FakeTurnServer } from './turn-fake-server.js';

guardUnhandled();
const cleanup = useCleanup();

/** A node:net server that keeps every connection half-open: it reads but never ends its side. */
async function halfOpenServer(): Promise<{ server: Server; port: number; sockets: Socket[]; next(): Promise<Socket> }> {
  const sockets: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.resume();
    sockets.push(s);
    server.emit('accepted', s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup.add(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return {
    server,
    port: (server.address() as { port: number }).port,
    sockets,
    next: async () => sockets.at(-1) ?? ((await once(server, 'accepted')) as [Socket])[0],
  };
}

/** How the peer's socket ended: `'reset'` (ECONNRESET) or `'fin'` (graceful end). */
function ending(s: Socket): Promise<'reset' | 'fin'> {
  return new Promise((resolve) => {
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' ? 'reset' : 'fin'));
    s.once('close', () => resolve('fin'));
  });
}

describe('TCP pipe close({ signal, timeout })', () => {
  it('a peer that never finishes its side: close({ timeout }) resets and rejects with TimeoutError, long before CLOSE_TIMEOUT', async () => {
    const srv = await halfOpenServer();
    const pipe = cleanup.track(await pipeOpen('tcp', { host: '127.0.0.1', port: srv.port }));
    await srv.next();
    const err = await within(rejection(pipe.close({ timeout: 100 })), CLOSE_TIMEOUT - 500, 'bounded close');
    expect(err).toBeInstanceOf(TimeoutError);
    expect(pipe.closed).toBe(true);
    // Our FIN is out, so the socket is released (destroyed); the peer keeps its half until it writes.
    expect((pipe as TcpPipe).socket.destroyed).toBe(true);
  });

  it('without options the same close waits for the peer (graceful), and a later bounded call can cut it short', async () => {
    const srv = await halfOpenServer();
    const pipe = await pipeOpen('tcp', { host: '127.0.0.1', port: srv.port });
    await srv.next();
    let settled = false;
    const graceful = pipe.close().then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 150));
    expect(settled).toBe(false); // still waiting for the peer's FIN
    const err = await rejection(pipe.close({ signal: AbortSignal.timeout(50) }));
    expect(err).toBeInstanceOf(AbortError);
    await graceful; // the first call resolves too, once the pipe is closed
    expect((pipe as TcpPipe).socket.destroyed).toBe(true);
  });

  it('an already-aborted signal closes at once (reset) and rejects with AbortError; close() afterwards resolves', async () => {
    const srv = await halfOpenServer();
    const pipe = await pipeOpen('tcp', { host: '127.0.0.1', port: srv.port });
    const peerEnd = ending(await srv.next());
    const err = await rejection(pipe.close({ signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
    expect(pipe.closed).toBe(true);
    expect(await peerEnd).toBe('reset');
    await pipe.close(); // idempotent: the close is done
  });

  it('a close that completes in time resolves: the timeout never fires and the peer sees a graceful FIN', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const pipe = await pipeOpen('tcp', server.local);
    const accepted = await server.accept({ timeout: 2000 });
    const peerClosed = new Promise<Error | undefined>((r) => accepted.onClose((e) => r(e)));
    await pipe.close({ timeout: 5000, signal: new AbortController().signal });
    expect(await peerClosed).toBeUndefined();
  });

  it('TCP server: close({ timeout }) resets half-open clients and rejects with TimeoutError; the port is free again', async () => {
    const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' });
    const port = server.local.port;
    const client = cleanup.socket(new (await import('node:net')).Socket({ allowHalfOpen: true }));
    client.on('error', () => undefined);
    client.connect(port, '127.0.0.1');
    await once(client, 'connect');
    client.resume();
    const accepted = (await server.accept({ timeout: 2000 })) as TcpPipe;
    const err = await within(rejection(server.close({ timeout: 100 })), CLOSE_TIMEOUT - 500, 'bounded server close');
    expect(err).toBeInstanceOf(TimeoutError);
    expect(accepted.closed && accepted.socket.destroyed).toBe(true);
    const again = await pipeOpen('tcp', undefined, { bind: { host: '127.0.0.1', port } });
    await again.close();
  });

  it('UDP pipe: close() completes at once; an aborted signal still closes the socket and reports AbortError', async () => {
    const udp = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    const port = udp.local.port;
    expect(await rejection(udp.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(udp.closed).toBe(true);
    const again = await pipeOpen('udp', undefined, { bind: { host: '127.0.0.1', port } });
    await again.close({ timeout: 1000 });
  });
});

describe('secure pipe and server close({ signal, timeout })', () => {
  it('a peer that stopped reading: close({ timeout }) resets instead of waiting, and rejects with TimeoutError', async () => {
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate(), maxQueue: 1 });
    cleanup.add(() => server.close({ timeout: 1000 }).catch(() => undefined));
    const client = await connectSecure(server.local, { identity: Identity.generate() });
    const accepted = await server.accept({ timeout: 2000 });
    // Nobody reads the accepted pipe's one-message queue: it pauses its socket, so our CLOSE
    // frame and FIN are never read and the peer never closes its side.
    for (let i = 0; i < 64; i++) await client.send(Buffer.alloc(16 * 1024, i));
    await waitFor(() => accepted.queued() >= 1, 'the peer queue to fill');
    const err = await within(rejection(client.close({ timeout: 150 })), CLOSE_TIMEOUT - 500, 'bounded secure close');
    expect(err).toBeInstanceOf(TimeoutError);
    expect(client.closed).toBe(true);
    expect(client.inner.socket.destroyed).toBe(true);
  });

  it('SecureServer: close({ signal }) aborted resets its pipes and rejects with AbortError', async () => {
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate() });
    const client = cleanup.track(await connectSecure(server.local, { identity: Identity.generate() }));
    await server.accept({ timeout: 2000 });
    const clientClosed = new Promise<Error | undefined>((r) => client.onClose((e) => r(e)));
    expect(await rejection(server.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(server.closed).toBe(true);
    await within(clientClosed, 3000, 'client pipe closes');
  });
});

describe('daemon, TURN, swarm and node close({ signal, timeout })', () => {
  it('Daemon: close({ signal }) aborted closes every socket and rejects with AbortError; the ports are free again', async () => {
    const d = new Daemon(() => undefined);
    const tcp = await d.listen({ proto: 'tcp', host: '127.0.0.1', port: 0 });
    const port = tcp.local.port;
    await d.listen({ proto: 'udp', host: '127.0.0.1', port });
    const raw = await rawConnect('127.0.0.1', port);
    cleanup.socket(raw);
    expect(await rejection(d.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    const d2 = new Daemon(() => undefined);
    await d2.listen({ proto: 'tcp', host: '127.0.0.1', port });
    await d2.listen({ proto: 'udp', host: '127.0.0.1', port });
    await d2.close();
  });

  it('TURN: close({ timeout }) stops waiting for a deallocation the server never answers (TimeoutError, pipe closed)', async () => {
    const s = await FakeTurnServer.start({ proto: 'tcp', hook: (r) => (r.msg.method === METHOD.REFRESH ? 'drop' : undefined) });
    cleanup.add(() => s.close());
    const relay = await turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto: 'tcp', closeTimeout: 10_000 });
    const err = await within(rejection(relay.close({ timeout: 100 })), 3000, 'bounded TURN close');
    expect(err).toBeInstanceOf(TimeoutError);
    expect(relay.closed).toBe(true);
    expect(s.count(METHOD.REFRESH)).toBeGreaterThanOrEqual(1); // the deletion was asked for
    await relay.close(); // idempotent once closed
  });

  it('TURN: refresh() takes { signal, timeout }', async () => {
    const s = await FakeTurnServer.start({ proto: 'udp', hook: (r) => (r.msg.method === METHOD.REFRESH ? 'drop' : undefined) });
    cleanup.add(() => s.close());
    const relay = await turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto: 'udp', closeTimeout: 200 });
    cleanup.add(() => relay.close());
    expect(await rejection(relay.refresh(600, { signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(await within(rejection(relay.refresh(600, { timeout: 150 })), 3000, 'bounded refresh')).toBeInstanceOf(TimeoutError);
  });

  it('SwarmPeer: close({ signal }) aborted leaves at once, rejects with AbortError; the other member sees the link go', async () => {
    const a = new SwarmPeer();
    await a.bind('127.0.0.1', 0);
    cleanup.add(() => a.close());
    const b = new SwarmPeer();
    await b.bind('127.0.0.1', 0);
    await b.connect(a.endpoint.host, a.endpoint.port, { timeout: 5000 });
    await waitFor(() => a.peers.length === 1, 'a sees b');
    expect(await rejection(b.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(b.closed).toBe(true);
    await waitFor(() => a.peers.length === 0, 'a drops the link to b');
  });

  it('P2pNode: close({ signal }) aborted rejects with AbortError once everything is closed; its listener is gone', async () => {
    const n = await startP2pNode({ listen: 'loopback', portMapping: false, signalling: false });
    const m = await startP2pNode({ listen: 'loopback', portMapping: false, signalling: false });
    cleanup.add(() => m.close());
    const pipe = await m.connect(n.addr, { timeout: 5000 });
    const closed = new Promise<Error | undefined>((r) => pipe.onClose((e) => r(e)));
    const port = n.listenPort;
    expect(await rejection(n.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(await rejection(n.connect(m.addr, { timeout: 1000 }))).toBeInstanceOf(StateError);
    await within(closed, 3000, 'the peer pipe closes');
    const refused = await rejection(pipeOpen('tcp', { host: '127.0.0.1', port }, { timeout: 2000 }));
    expect((refused as { code?: string }).code).toBe('ERR_CONNECTION_REFUSED');
  });

  it('STUN server and client: close({ signal }) aborted closes every socket (TCP connections reset) and rejects with AbortError', async () => {
    const server = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], protos: ['udp', 'tcp'], rateLimit: false });
    const client = await StunClient.open({ server: server.primary, proto: 'tcp', timeout: 2000 });
    await client.binding({ timeout: 2000 });
    expect(await rejection(client.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(await rejection(client.binding({ timeout: 500 }))).toBeInstanceOf(Error);
    const port = server.primary.port;
    expect(await rejection(server.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    const again = await startStunServer({ addresses: ['127.0.0.1'], ports: [port], protos: ['udp', 'tcp'], rateLimit: false });
    await again.close({ timeout: 2000 });
  });

  it('standalone DHT node: close({ signal }) aborted resets its links and rejects with AbortError; close({ timeout }) in time resolves', async () => {
    const a = await startDhtNode({ identity: Identity.generate(), bind: '127.0.0.1:0' });
    const b = await startDhtNode({ identity: Identity.generate(), bind: '127.0.0.1:0', bootstrap: [a.contactString] });
    await b.set('k', 'v');
    expect(await rejection(b.close({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(b.closed).toBe(true);
    await a.close({ timeout: 5000 });
    expect(a.closed).toBe(true);
  });
});
