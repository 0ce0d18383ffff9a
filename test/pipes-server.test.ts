/**
 * Servers: TCP accept()/clients()/onConnection, server-level callbacks and subscriptions
 * that see every client's messages, server.send to a client endpoint, closing, and UDP
 * servers replying to msg.from.
 */
import { describe, expect, it } from 'vitest';
import { AbortError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { formatEndpoint } from '../src/interfaces/endpoint.js';
import { SUB_ALL, pipeOpen, type Message, type TcpPipe } from '../src/pipes/index.js';
import { LOOPBACKS, closedWith, guardUnhandled, rawConnect, rejection, useCleanup, waitFor, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

describe.each(LOOPBACKS)('TCP server over $name', ({ host }) => {
  it('accept() returns connections in order; pending accept resolves on the next connection', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const pending = server.accept();
    const c1 = cleanup.track(await pipeOpen('tcp', server.local));
    const a1 = cleanup.track(await within(pending, 5_000, 'accept'));
    expect(a1.remote).toEqual(c1.local);
    const c2 = cleanup.track(await pipeOpen('tcp', server.local));
    const c3 = cleanup.track(await pipeOpen('tcp', server.local));
    // both are queued: order of connection
    const a2 = cleanup.track(await server.accept({ timeout: 5_000 }));
    const a3 = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(a2.remote).toEqual(c2.local);
    expect(a3.remote).toEqual(c3.local);
    expect(server.connections.size).toBe(3);
  });

  it('clients() yields each connection and ends when the server closes', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const seen: TcpPipe[] = [];
    const loop = (async () => {
      for await (const c of server.clients()) {
        seen.push(c);
        const m = await c.recv({ timeout: 5_000 });
        await c.send(Buffer.concat([Buffer.from('hi '), m.data]));
      }
      return 'ended';
    })();
    for (const name of ['a', 'b', 'c']) {
      const client = cleanup.track(await pipeOpen('tcp', server.local));
      await client.send(name);
      expect((await client.recv({ timeout: 5_000 })).data.toString()).toBe(`hi ${name}`);
    }
    expect(seen).toHaveLength(3);
    await server.close();
    expect(await within(loop, 5_000, 'clients() end')).toBe('ended');
  });

  it('accept: timeout → TimeoutError, abort → AbortError, close → PipeClosedError (pending and later)', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    expect(await rejection(server.accept({ timeout: 20 }))).toBeInstanceOf(TimeoutError);
    const ac = new AbortController();
    const aborted = server.accept({ signal: ac.signal });
    ac.abort();
    expect(await rejection(aborted)).toBeInstanceOf(AbortError);
    expect(await rejection(server.accept({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    // the aborted waiters are gone: a new connection goes to the next accept
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.remote).toEqual(client.local);
    const pending = rejection(server.accept()); // handler attached before close() rejects it
    await server.close();
    expect(await pending).toBeInstanceOf(PipeClosedError);
    expect(await rejection(server.accept())).toBeInstanceOf(PipeClosedError);
  });

  it('server.onMessage sees messages of all clients with msg.pipe = the client', async () => {
    const got: Message[] = [];
    let notify: () => void = () => undefined;
    const server = cleanup.track(
      await pipeOpen('tcp', undefined, {
        bind: { host, port: 0 },
        framing: 'line',
        onMessage: (m) => {
          got.push(m);
          notify();
        },
      }),
    );
    const done = new Promise<void>((r) => (notify = () => got.length === 4 && r()));
    const a = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line' }));
    const b = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line' }));
    await a.send('a1');
    await b.send('b1');
    await a.send('a2');
    await b.send('b2');
    await within(done, 5_000, '4 messages');
    const byClient = (c: TcpPipe): string[] =>
      got.filter((m) => m.from.port === c.local.port).map((m) => m.data.toString());
    expect(byClient(a)).toEqual(['a1', 'a2']);
    expect(byClient(b)).toEqual(['b1', 'b2']);
    for (const m of got) {
      expect(m.pipe).not.toBe(server);
      expect(server.connections.has(m.pipe as TcpPipe)).toBe(true);
      expect(m.pipe.remote).toEqual(m.from);
    }
    // the accepted pipes have no default subscription: nothing piles up there
    for (const c of server.connections) {
      expect(c.isSubscribed(SUB_ALL)).toBe(false);
      expect(c.stats.unmatched).toBe(0);
    }
    expect(server.stats.unmatched).toBe(0);
  });

  it('server-level subscriptions and recv() see every client', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing: 'length' }));
    server.subscribe(SUB_ALL);
    const a = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const b = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    await a.send('from a');
    const m1 = await server.recv({ timeout: 5_000 });
    await b.send('from b');
    const m2 = await server.recv({ timeout: 5_000 });
    expect([m1.data.toString(), m2.data.toString()]).toEqual(['from a', 'from b']);
    expect(m1.from).toEqual(a.local);
    expect(m2.from).toEqual(b.local);
    // reply through the message's pipe
    await m2.pipe.send('to b');
    expect((await b.recv({ timeout: 5_000 })).data.toString()).toBe('to b');
  });

  it('server.send(data, clientEndpoint) reaches exactly that client', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing: 'length' }));
    const a = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const b = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    cleanup.track(await server.accept({ timeout: 5_000 }));
    cleanup.track(await server.accept({ timeout: 5_000 }));
    await server.send('for b', b.local);
    await server.send('for a', formatEndpoint(a.local)); // string form
    await server.send('for b again', { host: b.local.host, port: b.local.port });
    expect((await a.recv({ timeout: 5_000 })).data.toString()).toBe('for a');
    expect((await b.recv({ timeout: 5_000 })).data.toString()).toBe('for b');
    expect((await b.recv({ timeout: 5_000 })).data.toString()).toBe('for b again');
    expect(a.tryRecv()).toBeUndefined();

    const noDest = await rejection(server.send('x'));
    expect(noDest).toBeInstanceOf(InvalidArgumentError);
    const unknown = await rejection(server.send('x', { host, port: 1 }));
    expect(unknown).toBeInstanceOf(PipeClosedError);
    expect(unknown.message).toContain(':1');
  });

  it('close() stops listening and closes every accepted connection', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const clients = [
      cleanup.track(await pipeOpen('tcp', server.local)),
      cleanup.track(await pipeOpen('tcp', server.local)),
    ];
    const conns = [await server.accept({ timeout: 5_000 }), await server.accept({ timeout: 5_000 })];
    const clientClosed = clients.map((c) => closedWith(c));
    const serverClosed = closedWith(server);
    await server.close();
    expect(await within(serverClosed, 5_000, 'server onClose')).toBeUndefined();
    for (const p of clientClosed) expect(await within(p, 5_000, 'client onClose')).toBeUndefined();
    for (const c of conns) expect(c.closed).toBe(true);
    expect(server.connections.size).toBe(0);
    expect(server.server.listening).toBe(false);
    const err = await rejection(pipeOpen('tcp', server.local, { timeout: 5_000 }));
    expect((err as { code?: string }).code).toBe('ERR_CONNECTION_REFUSED');
  });

  it('close() with connections nobody accepted: accept() and clients() hand out none of them (closed)', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const clientClosed = closedWith(client);
    await waitFor(() => server.connections.size === 1, 'the connection to arrive');
    const queued = [...server.connections][0] as TcpPipe;
    await server.close();
    expect(queued.closed).toBe(true);
    expect(await within(clientClosed, 5_000, 'client onClose')).toBeUndefined();
    expect(await rejection(server.accept())).toBeInstanceOf(PipeClosedError);
    const seen: TcpPipe[] = [];
    for await (const c of server.clients()) seen.push(c);
    expect(seen).toEqual([]);
  });

  it('connections leave server.connections when they close', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const conn = await server.accept({ timeout: 5_000 });
    expect(server.connections.has(conn)).toBe(true);
    const closed = closedWith(conn);
    await client.close();
    await within(closed, 5_000, 'conn close');
    expect(server.connections.has(conn)).toBe(false);
    expect(server.closed).toBe(false);
  });
});

describe('TCP server details', () => {
  it('onConnection callbacks run for each connection; remover works; a throwing one goes to onError', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const errors: Error[] = [];
    server.onError((e) => errors.push(e));
    const seen: TcpPipe[] = [];
    const rm = server.onConnection((p) => seen.push(p));
    server.onConnection(() => {
      throw new Error('conn cb');
    });
    cleanup.track(await pipeOpen('tcp', server.local));
    const a = await server.accept({ timeout: 5_000 });
    expect(seen).toEqual([a]);
    expect(errors.map((e) => e.message)).toEqual(['conn cb']);
    rm();
    cleanup.track(await pipeOpen('tcp', server.local));
    await server.accept({ timeout: 5_000 });
    expect(seen).toHaveLength(1);
  });

  it("errors of async server callbacks go to the server's onError, not the client pipe's", async () => {
    const server = cleanup.track(
      await pipeOpen('tcp', undefined, {
        bind: '127.0.0.1:0',
        framing: 'line',
        onMessage: async (m) => {
          await Promise.resolve();
          throw new Error(`bad ${m.data.toString()}`);
        },
      }),
    );
    const serverErrors: Error[] = [];
    const got = new Promise<void>((resolve) =>
      server.onError((e) => {
        serverErrors.push(e);
        resolve();
      }),
    );
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const connErrors: Error[] = [];
    conn.onError((e) => connErrors.push(e));
    await client.send('x');
    await within(got, 5_000, 'server onError');
    expect(serverErrors.map((e) => e.message)).toEqual(['bad x']);
    expect(connErrors).toEqual([]);
  });

  it('the accept queue is bounded: beyond maxAcceptQueue the oldest is dropped from it but keeps working', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', maxAcceptQueue: 2, framing: 'line' }));
    const all: TcpPipe[] = [];
    server.onConnection((p) => all.push(p));
    const clients: TcpPipe[] = [];
    for (let i = 0; i < 4; i++) clients.push(cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line' })));
    await within(
      (async () => {
        while (all.length < 4) await new Promise((r) => setImmediate(r));
      })(),
      5_000,
      '4 connections',
    );
    expect(server.acceptOverflow).toBe(2);
    const a = await server.accept();
    const b = await server.accept();
    expect([a.remote, b.remote]).toEqual([clients[2]?.local, clients[3]?.local]);
    // a connection that fell out of the accept queue still works
    const first = all[0] as TcpPipe;
    await clients[0]?.send('still alive');
    expect((await first.recv({ timeout: 5_000 })).data.toString()).toBe('still alive');
  });

  it('a raw connection is an ordinary accepted pipe', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.remote.port).toBe(sock.localPort);
    expect(conn.framing).toBe('raw');
  });
});

describe.each(LOOPBACKS)('UDP server over $name', ({ host }) => {
  it('replies to msg.from of several clients, each getting its own answer', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    server.onMessage((m) => m.pipe.send(`re:${m.data.toString()}`, m.from));
    server.unsubscribe(SUB_ALL);
    const clients = await Promise.all([0, 1, 2].map(async () => cleanup.track(await pipeOpen('udp', server.local))));
    await Promise.all(clients.map((c, i) => c.send(`c${i}`)));
    for (const [i, c] of clients.entries()) {
      const m = await c.recv({ timeout: 5_000 });
      expect(m.data.toString()).toBe(`re:c${i}`);
      expect(m.from.port).toBe(server.local.port);
    }
    expect(server.stats.messagesIn).toBe(3);
    expect(server.stats.messagesOut).toBe(3);
  });

  it('send without dest on a UDP server → InvalidArgumentError; malformed dest → EndpointError', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    expect(await rejection(server.send('x'))).toBeInstanceOf(InvalidArgumentError);
    const bad = await rejection(server.send('x', 'nonsense'));
    expect((bad as { code?: string }).code).toBe('ERR_BAD_ENDPOINT');
    expect(server.stats.messagesOut).toBe(0);
  });
});
