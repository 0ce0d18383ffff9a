/**
 * No leaks over repeated lifecycles, pipe layer up to NAT traversal: TCP and UDP pipes, TCP
 * servers in pull and callback mode, recv()/accept() with one reused AbortSignal, the Daemon,
 * secure pipes (including failed handshakes), the STUN client against our own server and the
 * TURN client against the fake server. Each test runs its cycle many times and checks
 * (test/helpers/leaks.ts): resources back to the baseline, no more live timers, every closed
 * socket collectable, no process warning, no 'abort' listener left on long-lived signals, flat
 * listener counts on the long-lived servers, bounded heap growth.
 *
 * Bounded caches that are expected to fill (and are not leaks): the verified-signature and
 * static-key caches of the handshake, the static-key hints by host, the ephemeral key pool
 * (two pre-generated pairs, refilled through an unref'd immediate) — identities are reused so
 * that they stay small.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { connectSecure, listenSecure } from '../src/crypto/index.js';
import { AbortError, ConnectionRefusedError, PeerIdMismatchError, TimeoutError } from '../src/errors.js';
import { StunClient, startStunServer, stunGetMapping } from '../src/nat/stun/index.js';
import { turnAllocate } from '../src/nat/turn/index.js';
import { Daemon, pipeOpen, type MessageCallback, type TcpServer } from '../src/pipes/index.js';
import { expectResourcesBack, resources, useLeakProbe } from './helpers/leaks.js';
import { freeTcpPort, guardUnhandled, rejection } from './helpers/pipes.js';
import { FakeTurnServer } from './turn-fake-server.js';

guardUnhandled();
const probe = useLeakProbe();

const N = 40;
const OPTS = { timeout: 60_000 };

describe('pipes: repeated lifecycles leave nothing behind', () => {
  it('TCP client ↔ server: connect, accept(), send/recv both ways, close', OPTS, async () => {
    const outer = resources();
    const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' });
    const signal = new AbortController().signal;
    await probe.cycles(N, async (i) => {
      const client = await pipeOpen('tcp', server.local, { signal });
      const conn = await server.accept({ signal, timeout: 5000 });
      await client.send(`ping ${i}`, undefined, { signal });
      expect((await conn.recv({ signal, timeout: 5000 })).data.toString()).toBe(`ping ${i}`);
      await conn.send('pong', undefined, { signal, timeout: 5000 });
      expect((await client.recv({ signal, timeout: 5000 })).data.toString()).toBe('pong');
      await client.close();
      await conn.close();
    }, { signal, emitters: [server.server] });
    expect(server.connections.size).toBe(0);
    await server.close();
    await expectResourcesBack(outer);
  });

  it('TcpServer accept loop (for await … of clients()) serving many clients per cycle', OPTS, async () => {
    const outer = resources();
    const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line' });
    let served = 0;
    const loop = (async () => {
      for await (const c of server.clients()) {
        served++;
        void (async () => {
          for await (const m of c) await c.send(m.data);
        })().catch(() => undefined);
      }
    })();
    try {
      await probe.cycles(N, async (i) => {
        const clients = await Promise.all(Array.from({ length: 8 }, () => pipeOpen('tcp', server.local, { framing: 'line' })));
        await Promise.all(clients.map(async (c, k) => {
          await c.send(`${i}/${k}`);
          expect((await c.recv({ timeout: 5000 })).data.toString()).toBe(`${i}/${k}`);
          await c.close();
        }));
        while (server.connections.size > 0) await new Promise((r) => setTimeout(r, 5));
        // The suspended clients() generator still holds the pipe it yielded last (one, not one
        // per cycle) until the next connection arrives.
      }, { emitters: [server.server], retained: 1 });
      expect(served).toBe(8 * (N + 2));
    } finally {
      await server.close();
      await loop;
    }
    await expectResourcesBack(outer);
  });

  it('TCP server in callback mode (onConnection), many clients per cycle: closed connections are not kept for accept()', OPTS, async () => {
    const outer = resources();
    const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line' });
    server.onConnection((p) => p.onMessage((m) => p.send(m.data)));
    try {
      await probe.cycles(N, async () => {
        const clients = await Promise.all(Array.from({ length: 5 }, () => pipeOpen('tcp', server.local, { framing: 'line' })));
        await Promise.all(clients.map(async (c, k) => {
          await c.send(`hello ${k}`);
          expect((await c.recv({ timeout: 5000 })).data.toString()).toBe(`hello ${k}`);
          await c.close();
        }));
        while (server.connections.size > 0) await new Promise((r) => setTimeout(r, 5));
      }, { emitters: [server.server] });
    } finally {
      await server.close();
    }
    await expectResourcesBack(outer);
  });

  it('UDP client/server: open, send, reply to msg.from, close', OPTS, async () => {
    const outer = resources();
    const server = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    const signal = new AbortController().signal;
    await probe.cycles(N, async (i) => {
      const client = await pipeOpen('udp', server.local);
      await client.send(`q${i}`, undefined, { signal });
      const m = await server.recv({ signal, timeout: 5000 });
      expect(m.data.toString()).toBe(`q${i}`);
      await server.send(`a${i}`, m.from, { signal });
      expect((await client.recv({ signal, timeout: 5000 })).data.toString()).toBe(`a${i}`);
      await client.close();
    }, { signal, emitters: [server.socket] });
    await server.close();
    await expectResourcesBack(outer);
  });

  it('recv()/accept() with one AbortSignal reused across many calls, resolved and timed out', OPTS, async () => {
    const a = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    const b = await pipeOpen('udp', a.local, { bind: '127.0.0.1:0' });
    const tcp = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' });
    const signal = new AbortController().signal;
    try {
      await probe.cycles(N * 2, async (i) => {
        await b.send(`m${i}`);
        expect((await a.recv({ signal })).data.toString()).toBe(`m${i}`); // resolved, signal only
        expect(await rejection(a.recv({ signal, timeout: 5 }))).toBeInstanceOf(TimeoutError);
        expect(await rejection(tcp.accept({ signal, timeout: 5 }))).toBeInstanceOf(TimeoutError);
        const mine = new AbortController();
        const pending = a.recv({ signal: AbortSignal.any([signal, mine.signal]) });
        mine.abort();
        expect(await rejection(pending)).toBeInstanceOf(AbortError);
      }, { signal, emitters: [a.socket, b.socket, tcp.server] });
    } finally {
      await Promise.all([a.close(), b.close(), tcp.close()]);
    }
  });

  it('Daemon: listen TCP + UDP on one port, serve, close — and a long-lived daemon serving many clients', OPTS, async () => {
    const outer = resources();
    const echo: MessageCallback = (m) => m.pipe.send(m.data, m.from);
    await probe.cycles(N / 2, async (i) => {
      const d = new Daemon(echo, { framing: 'line' });
      const tcp = await d.listen({ proto: 'tcp', host: '127.0.0.1', port: 0 });
      await d.listen({ proto: 'udp', host: '127.0.0.1', port: tcp.local.port });
      const c = await pipeOpen('tcp', tcp.local, { framing: 'line' });
      await c.send(`t${i}`);
      expect((await c.recv({ timeout: 5000 })).data.toString()).toBe(`t${i}`);
      const u = await pipeOpen('udp', tcp.local);
      await u.send(`u${i}`);
      expect((await u.recv({ timeout: 5000 })).data.toString()).toBe(`u${i}`);
      await Promise.all([c.close(), u.close()]);
      await d.close();
    });
    await expectResourcesBack(outer);

    const d = new Daemon(echo, { framing: 'line' });
    const tcp = await d.listen({ proto: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      await probe.cycles(N, async (i) => {
        const c = await pipeOpen('tcp', tcp.local, { framing: 'line' });
        await c.send(`x${i}`);
        expect((await c.recv({ timeout: 5000 })).data.toString()).toBe(`x${i}`);
        await c.close();
      }, { emitters: [(tcp as TcpServer).server] });
    } finally {
      await d.close();
    }
    await expectResourcesBack(outer);
  });

  it('secure pipes: connectSecure/listenSecure, a wrong remoteId (PeerIdMismatchError), a refused connection', OPTS, async () => {
    const outer = resources();
    const serverId = Identity.generate();
    const clientId = Identity.generate();
    const stranger = Identity.generate();
    const server = await listenSecure('127.0.0.1:0', { identity: serverId });
    const closedPort = await freeTcpPort('127.0.0.1');
    const signal = new AbortController().signal;
    await probe.cycles(N, async (i) => {
      const client = await connectSecure(server.local, { identity: clientId, remoteId: serverId.id, signal });
      const conn = await server.accept({ signal, timeout: 5000 });
      await client.send(`s${i}`, undefined, { signal });
      expect((await conn.recv({ signal, timeout: 5000 })).data.toString()).toBe(`s${i}`);
      await conn.send('ok');
      expect((await client.recv({ signal, timeout: 5000 })).data.toString()).toBe('ok');
      await client.close();
      await conn.close();
      expect(await rejection(connectSecure(server.local, { identity: clientId, remoteId: stranger.id, signal }))).toBeInstanceOf(PeerIdMismatchError);
      expect(await rejection(connectSecure({ host: '127.0.0.1', port: closedPort }, { identity: clientId, signal }))).toBeInstanceOf(ConnectionRefusedError);
    }, { signal, emitters: [server.server.server] });
    // The rejected handshakes reached the server (and failed there too) without leaving anything open.
    expect(server.stats.failures).toBeGreaterThanOrEqual(N);
    expect(server.connections.size).toBe(0);
    expect(server.pendingHandshakes).toBe(0);
    await server.close();
    await expectResourcesBack(outer);
  });

  it('TURN (fake server, UDP and TCP): allocate, permissions for many peers at once, close', OPTS, async () => {
    const outer = resources();
    for (const proto of ['udp', 'tcp'] as const) {
      const server = await FakeTurnServer.start({ proto });
      try {
        await probe.cycles(N / 4, async () => {
          const relay = await turnAllocate({ server: server.address, username: 'alice', password: 'secret', proto });
          // More transactions in flight at once than an emitter's default listener limit (10).
          await relay.permit(Array.from({ length: 16 }, (_, k) => `127.0.0.${k + 2}`), { timeout: 5000 });
          await relay.close();
        });
      } finally {
        await server.close();
      }
    }
    await expectResourcesBack(outer);
  });

  it('STUN client (UDP and TCP) against our own server on 127.0.0.1', OPTS, async () => {
    const outer = resources();
    const server = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], protos: ['udp', 'tcp'], rateLimit: false });
    const signal = new AbortController().signal;
    try {
      await probe.cycles(N, async () => {
        for (const proto of ['udp', 'tcp'] as const) {
          const client = await StunClient.open({ server: server.primary, proto, timeout: 5000, signal });
          const m = await client.binding({ signal, timeout: 5000 });
          expect(m.mapped).toMatchObject({ host: '127.0.0.1', port: client.local.port });
          // More bindings in flight at once than an emitter's default listener limit (10).
          const burst = await Promise.all(Array.from({ length: 16 }, () => client.binding({ timeout: 5000 })));
          expect(burst.every((b) => b.mapped.port === client.local.port)).toBe(true);
          await client.close();
        }
        const once = await stunGetMapping({ server: server.primary, proto: 'tcp', timeout: 5000, signal });
        expect(once.mapped.host).toBe('127.0.0.1');
      }, { signal });
      expect(server.stats.success).toBeGreaterThanOrEqual(35 * N);
    } finally {
      await server.close();
    }
    await expectResourcesBack(outer);
  });
});
