/**
 * Receiving: subscriptions (pattern kinds, source filters, copies, unmatched counting,
 * unsubscribe), recv with timeout/abort, tryRecv, callbacks (sync, async, throwing,
 * removers), close callbacks on FIN and RST, async iteration and it-pipe duplexes.
 */
import { pipe as itPipe } from 'it-pipe';
import { describe, expect, it } from 'vitest';
import { AbortError, ConnectionResetError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { SUB_ALL, pipeOpen, type Message, type Sub, type TcpPipe, type TcpServer, type UdpPipe } from '../src/pipes/index.js';
import {
  closedWith,
  guardUnhandled,
  hostPort,
  lengthFrame,
  nextWarning,
  rawConnect,
  rawServer,
  rawUdp,
  rejection,
  thrown,
  useCleanup,
  within,
} from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

const END_MARK = '<<END>>';
const END: Sub = { pattern: (d) => d.toString() === END_MARK };

/** A UDP server on 127.0.0.1 and a client sending to it. */
async function udpPair(opts: { copyPayloads?: boolean } = {}): Promise<{ server: UdpPipe; client: UdpPipe }> {
  const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', ...opts }));
  const client = cleanup.track(await pipeOpen('udp', server.local, { bind: '127.0.0.1:0' }));
  return { server, client };
}

/** A TCP server with a length-framed client, and the accepted pipe. */
async function tcpPair(opts: { framing?: 'raw' | 'length' | 'line' } = {}): Promise<{ server: TcpServer; client: TcpPipe; conn: TcpPipe }> {
  const framing = opts.framing ?? 'length';
  const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing }));
  const client = cleanup.track(await pipeOpen('tcp', server.local, { framing }));
  const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
  return { server, client, conn };
}

/** Sends `msgs` and then the END marker; resolves once the marker arrived (UDP keeps order on loopback). */
async function sendThenEnd(from: UdpPipe, to: UdpPipe, msgs: (string | Uint8Array)[]): Promise<void> {
  to.subscribe(END);
  for (const m of msgs) await from.send(m);
  await from.send(END_MARK);
  await to.recv({ sub: END, timeout: 5_000 });
}

function drain(p: UdpPipe | TcpPipe, sub: Sub): string[] {
  const out: string[] = [];
  for (let m = p.tryRecv(sub); m; m = p.tryRecv(sub)) out.push(m.data.toString());
  return out;
}

describe('subscriptions', () => {
  it('pattern kinds: RegExp, string, bytes prefix and predicate', async () => {
    const { server, client } = await udpPair();
    server.unsubscribe(SUB_ALL);
    const re: Sub = { pattern: /^GET \/\w+$/g }; // the g flag must not make matching stateful
    const str: Sub = { pattern: 'needle' };
    const bytes: Sub = { pattern: new Uint8Array([0x01, 0x02]) };
    const pred: Sub = { pattern: (d, from) => d.length === 3 && from.port === client.local.port };
    for (const s of [re, str, bytes, pred]) expect(server.subscribe(s)).toBe(s);
    await sendThenEnd(client, server, [
      'GET /a',
      'GET /b',
      'POST /a',
      'xxneedlexx',
      'needl',
      Buffer.from([1, 2, 3]),
      Buffer.from([0, 1, 2]),
      Buffer.from([1]),
      'abc',
      'abcd',
    ]);
    expect(drain(server, re)).toEqual(['GET /a', 'GET /b']);
    expect(drain(server, str)).toEqual(['xxneedlexx']);
    expect(drain(server, bytes)).toEqual([Buffer.from([1, 2, 3]).toString()]);
    expect(drain(server, pred)).toEqual([Buffer.from([1, 2, 3]).toString(), Buffer.from([0, 1, 2]).toString(), 'abc']);
    // 'POST /a', 'needl', [1], 'abcd' matched nothing (END is matched by its own sub)
    expect(server.stats.unmatched).toBe(4);
    expect(server.stats.messagesIn).toBe(11);
  });

  it('source filter: exact host+port, host only (port 0 = any), port only (host omitted = any)', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const a = cleanup.track(await pipeOpen('udp', server.local, { bind: '127.0.0.1:0' }));
    const b = cleanup.track(await pipeOpen('udp', server.local, { bind: '127.0.0.2:0' }));
    const fromA: Sub = { source: { host: '127.0.0.1', port: a.local.port } };
    const hostB: Sub = { source: { host: '127.0.0.2', port: 0 } };
    const portA: Sub = { source: { port: a.local.port } };
    const anyHost: Sub = { source: { host: '' } };
    const combined: Sub = { pattern: 'x', source: { host: '127.0.0.2' } };
    const nobody: Sub = { source: { host: '127.0.0.1', port: b.local.port } };
    for (const s of [fromA, hostB, portA, anyHost, combined, nobody]) server.subscribe(s);
    await a.send('a1');
    await b.send('b1');
    await b.send('bx');
    await a.send('ax');
    // wait for all four without polling: SUB_ALL sees them in arrival order per sender
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push((await server.recv({ timeout: 5_000 })).data.toString());
    expect(seen.sort()).toEqual(['a1', 'ax', 'b1', 'bx']);
    expect(drain(server, fromA)).toEqual(['a1', 'ax']);
    expect(drain(server, portA)).toEqual(['a1', 'ax']);
    expect(drain(server, hostB)).toEqual(['b1', 'bx']);
    expect(drain(server, anyHost).sort()).toEqual(['a1', 'ax', 'b1', 'bx']);
    expect(drain(server, combined)).toEqual(['bx']);
    expect(drain(server, nobody)).toEqual([]);
  });

  it('source hosts are compared as addresses: IPv4-mapped IPv6, other IPv6 spellings, zones; garbage is an InvalidArgumentError', async () => {
    // A dual-stack server: IPv4 senders show up as ::ffff:a.b.c.d.
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host: '::', port: 0 }, ipv6Only: false }));
    const v4 = cleanup.track(await pipeOpen('udp', { host: '127.0.0.1', port: server.local.port }, { bind: '127.0.0.1:0' }));
    const v6 = cleanup.track(await pipeOpen('udp', { host: '::1', port: server.local.port }));
    const plain4: Sub = { source: { host: '127.0.0.1' } };
    const long6: Sub = { source: { host: '0:0:0:0:0:0:0:1' } };
    const zoned: Sub = { source: { host: '::1%nosuchzone' } };
    for (const x of [plain4, long6, zoned]) server.subscribe(x);
    await v4.send('four');
    await v6.send('six');
    for (let i = 0; i < 2; i++) await server.recv({ timeout: 5_000 });
    expect(drain(server, plain4)).toEqual(['four']);
    expect(drain(server, long6)).toEqual(['six']);
    expect(drain(server, zoned)).toEqual([]); // a zone must match the message's
    for (const bad of ['not-an-ip', '1.2.3', '::1%bad zone']) expect(() => server.subscribe({ source: { host: bad } })).toThrow(InvalidArgumentError);
  });

  it('with copyPayloads: false, a message matching two subscriptions lands in both with one shared payload', async () => {
    const { server, client } = await udpPair({ copyPayloads: false });
    const s1: Sub = { pattern: 'hello' };
    const s2: Sub = { pattern: new Uint8Array(Buffer.from('he')) };
    server.subscribe(s1);
    server.subscribe(s2);
    await client.send('hello');
    const m0 = await server.recv({ timeout: 5_000 });
    const m1 = server.tryRecv(s1) as Message;
    const m2 = server.tryRecv(s2) as Message;
    for (const m of [m0, m1, m2]) expect(m.data.toString()).toBe('hello');
    expect(m1.data).toBe(m2.data);
    expect(server.tryRecv(s1)).toBeUndefined();
    expect(server.tryRecv(s2)).toBeUndefined();
    expect(server.stats.messagesIn).toBe(1);
  });

  it('by default a message matching two subscriptions lands in both, each with its own copy of the bytes', async () => {
    const { server, client } = await udpPair();
    const s1: Sub = { pattern: 'hello' };
    const s2: Sub = { pattern: new Uint8Array(Buffer.from('he')) };
    server.subscribe(s1);
    server.subscribe(s2);
    await client.send('hello');
    const m0 = await server.recv({ timeout: 5_000 });
    const m1 = server.tryRecv(s1) as Message;
    const m2 = server.tryRecv(s2) as Message;
    expect(m1.data.toString()).toBe('hello');
    expect(m2.data.toString()).toBe('hello');
    expect(m1.data).not.toBe(m2.data);
    expect(m0.data).not.toBe(m1.data);
    m1.data[0] = 0x4a;
    expect(m2.data.toString()).toBe('hello');
    expect(m0.data.toString()).toBe('hello');
    expect(m1.from).toEqual(m2.from);
    expect(server.stats.messagesIn).toBe(1);
  });

  it('copies of many messages (carved from a shared slab) are Buffers that never overlap', async () => {
    const { server, client } = await udpPair();
    const s1: Sub = { pattern: 'msg' };
    server.subscribe(s1);
    const n = 200; // 200 × 700 B spans three 64 KiB slabs
    const body = (i: number): string => `msg${String(i).padStart(4, '0')}`.padEnd(700, String.fromCharCode(97 + (i % 26)));
    const copies: Buffer[] = [];
    for (let i = 0; i < n; i += 20) {
      // In batches, so that the socket's receive buffer never overflows.
      for (let j = i; j < i + 20; j++) await client.send(body(j));
      for (let j = i; j < i + 20; j++) copies.push((await server.recv({ sub: s1, timeout: 5_000 })).data);
    }
    expect(copies).toHaveLength(n);
    copies.forEach((c, i) => {
      expect(Buffer.isBuffer(c)).toBe(true);
      expect(c.length).toBe(700);
      expect(c.toString()).toBe(body(i));
    });
    // Writing to every copy must not change any other copy or the SUB_ALL originals.
    for (const c of copies) c.fill(0x21);
    for (let i = 0; i < n; i++) expect((await server.recv({ timeout: 5_000 })).data.toString()).toBe(body(i));
  });

  it('unmatched messages are dropped and counted in stats.unmatched', async () => {
    const { client, conn } = await tcpPair();
    conn.unsubscribe(SUB_ALL);
    const only: Sub = { pattern: /^keep/ };
    conn.subscribe(only);
    for (const m of ['drop1', 'keep1', 'drop2', 'keep2']) await client.send(m);
    expect((await conn.recv({ sub: only, timeout: 5_000 })).data.toString()).toBe('keep1');
    expect((await conn.recv({ sub: only, timeout: 5_000 })).data.toString()).toBe('keep2');
    expect(conn.stats.unmatched).toBe(2);
    expect(conn.stats.messagesIn).toBe(4);
    // subscribing later does not resurrect dropped messages
    conn.subscribe(SUB_ALL);
    expect(conn.tryRecv()).toBeUndefined();
  });

  it('unsubscribe rejects a pending recv with AbortError (the pipe stays open) and drops what was queued', async () => {
    const { server, client } = await udpPair();
    const sub: Sub = { pattern: 'q' };
    server.subscribe(sub);
    await client.send('q1');
    await server.recv({ timeout: 5_000 }); // SUB_ALL copy: q1 is now in `sub` too
    expect(server.queued(sub)).toBe(1);
    server.unsubscribe(sub);
    expect(server.isSubscribed(sub)).toBe(false);
    server.subscribe(sub);
    expect(server.queued(sub)).toBe(0);
    const pending = server.recv({ sub });
    server.unsubscribe(sub);
    const err = await rejection(pending);
    expect(err).toBeInstanceOf(AbortError);
    expect(server.closed).toBe(false);
    expect((err as AbortError).code).toBe('ABORT_ERR');
    server.unsubscribe(sub); // unknown sub: no-op
    // the pipe itself is fine
    expect(server.closed).toBe(false);
    await client.send('after');
    expect((await server.recv({ timeout: 5_000 })).data.toString()).toBe('after');
  });

  it('recv / tryRecv / queued on a subscription that is not subscribed → InvalidArgumentError', async () => {
    const { server } = await udpPair();
    const sub: Sub = { pattern: 'x' };
    const err = await rejection(server.recv({ sub }));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARG');
    expect(thrown(() => server.tryRecv(sub))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.queued(sub))).toBeInstanceOf(InvalidArgumentError);
    // subscriptions compare by identity: an equal-looking object is a different sub
    server.subscribe(sub);
    expect(await rejection(server.recv({ sub: { pattern: 'x' } }))).toBeInstanceOf(InvalidArgumentError);
    // subscribing twice is a no-op
    server.subscribe(sub);
    server.unsubscribe(sub);
    expect(server.isSubscribed(sub)).toBe(false);
  });

  it('invalid subscriptions throw InvalidArgumentError', async () => {
    const { server } = await udpPair();
    expect(thrown(() => server.subscribe({ pattern: 42 as unknown as string }))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.subscribe({ source: { port: 70000 } }))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.subscribe({ source: { port: -1 } }))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.subscribe(null as unknown as Sub))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.subscribe({}, { maxQueue: 0 }))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.onMessage('x' as unknown as () => void))).toBeInstanceOf(InvalidArgumentError);
    expect(thrown(() => server.onClose(undefined as unknown as () => void))).toBeInstanceOf(InvalidArgumentError);
  });

  it('client pipes subscribe SUB_ALL by default unless onMessage is given', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const plain = cleanup.track(await pipeOpen('tcp', server.local));
    const withCb = cleanup.track(await pipeOpen('tcp', server.local, { onMessage: () => undefined }));
    const udp = cleanup.track(await pipeOpen('udp', '127.0.0.1:9'));
    const udpCb = cleanup.track(await pipeOpen('udp', '127.0.0.1:9', { onMessage: () => undefined }));
    expect(plain.isSubscribed(SUB_ALL)).toBe(true);
    expect(udp.isSubscribed(SUB_ALL)).toBe(true);
    expect(withCb.isSubscribed(SUB_ALL)).toBe(false);
    expect(udpCb.isSubscribed(SUB_ALL)).toBe(false);
    expect(await rejection(withCb.recv())).toBeInstanceOf(InvalidArgumentError);
    // accepted pipes of a server without callbacks/subscriptions get SUB_ALL too
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.isSubscribed(SUB_ALL)).toBe(true);
    // …but not when the server has a callback: the server sees their messages
    const server2 = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', onMessage: () => undefined }));
    cleanup.track(await pipeOpen('tcp', server2.local));
    const conn2 = cleanup.track(await server2.accept({ timeout: 5_000 }));
    expect(conn2.isSubscribed(SUB_ALL)).toBe(false);
  });
});

describe('recv: timeout, abort, tryRecv', () => {
  it('recv times out with TimeoutError (ERR_TIMEOUT) and the next message is not lost', async () => {
    const { client, conn } = await tcpPair();
    const t0 = Date.now();
    const err = await rejection(conn.recv({ timeout: 30 }));
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe('ERR_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    // the timed-out waiter must be gone: the next message goes to the next recv
    await client.send('next');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('next');
  });

  it('recv aborted by a signal rejects with AbortError (ABORT_ERR) carrying the reason', async () => {
    const { client, conn } = await tcpPair();
    const ac = new AbortController();
    const p = conn.recv({ signal: ac.signal });
    const reason = new Error('stop');
    ac.abort(reason);
    const err = await rejection(p);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).code).toBe('ABORT_ERR');
    expect(err.name).toBe('AbortError');
    expect(err.cause).toBe(reason);
    await client.send('after abort');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('after abort');
  });

  it('an already-aborted signal rejects immediately, even with a message queued (which stays queued)', async () => {
    const { client, conn } = await tcpPair();
    const arrived = nextMessages(conn, 1);
    await client.send('queued2');
    await arrived;
    const err = await rejection(conn.recv({ signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
    expect(conn.queued()).toBe(1);
    expect(conn.tryRecv()?.data.toString()).toBe('queued2');
  });

  it('tryRecv returns queued messages synchronously and undefined when empty', async () => {
    const { client, conn } = await tcpPair();
    expect(conn.tryRecv()).toBeUndefined();
    const arrived = nextMessages(conn, 3);
    for (const m of ['1', '2', '3']) await client.send(m);
    await arrived;
    expect(conn.queued()).toBe(3);
    expect([conn.tryRecv(), conn.tryRecv(), conn.tryRecv()].map((m) => m?.data.toString())).toEqual(['1', '2', '3']);
    expect(conn.tryRecv()).toBeUndefined();
    expect(conn.queued()).toBe(0);
  });

  it('concurrent recvs are served in call order', async () => {
    const { client, conn } = await tcpPair();
    const ps = [conn.recv(), conn.recv(), conn.recv()];
    for (const m of ['a', 'b', 'c']) await client.send(m);
    expect((await Promise.all(ps)).map((m) => m.data.toString())).toEqual(['a', 'b', 'c']);
  });
});

/**
 * Resolves once `n` more messages were dispatched on `p` (a temporary callback counts them;
 * callbacks run before queueing, but the promise settles after the dispatch finished).
 */
function nextMessages(p: TcpPipe, n: number): Promise<void> {
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
    5_000,
    `${n} messages`,
  );
}

describe('callbacks', () => {
  it('onMessage sync and async callbacks receive every message; the remover works', async () => {
    const { client, conn } = await tcpPair();
    const sync: string[] = [];
    const asyncSeen: string[] = [];
    const removeSync = conn.onMessage((m) => {
      sync.push(m.data.toString());
      expect(m.pipe).toBe(conn);
      expect(m.from).toEqual(client.local);
    });
    conn.onMessage(async (m) => {
      await new Promise((r) => setImmediate(r));
      asyncSeen.push(m.data.toString());
    });
    await client.send('one');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('one');
    removeSync();
    removeSync(); // idempotent
    await client.send('two');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('two');
    await new Promise((r) => setImmediate(r));
    expect(sync).toEqual(['one']);
    expect(asyncSeen).toEqual(['one', 'two']);
  });

  it('a throwing callback goes to onError; other callbacks and queues still get the message', async () => {
    const { client, conn } = await tcpPair();
    const errors: Error[] = [];
    conn.onError((e) => errors.push(e));
    const boom = new Error('sync boom');
    conn.onMessage(() => {
      throw boom;
    });
    conn.onMessage(async () => {
      throw new Error('async boom');
    });
    conn.onMessage(() => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw 'a string';
    });
    const other: string[] = [];
    conn.onMessage((m) => void other.push(m.data.toString()));
    await client.send('x');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('x');
    await new Promise((r) => setImmediate(r));
    expect(other).toEqual(['x']);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toBe(boom);
    expect(errors.map((e) => e.message).sort()).toEqual(['a string', 'async boom', 'sync boom']);
    expect(conn.closed).toBe(false);
  });

  it('without an onError handler, a throwing callback becomes a process warning (no crash)', async () => {
    const { client, conn } = await tcpPair();
    conn.onMessage(() => {
      throw new Error('nobody listens');
    });
    const warning = nextWarning('P2PD_CALLBACK_ERROR');
    await client.send('x');
    const w = await warning;
    expect(w.code).toBe('P2PD_CALLBACK_ERROR');
    expect(w.message).toContain('nobody listens');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('x');
  });

  it('onError remover works', async () => {
    const { client, conn } = await tcpPair();
    const a: Error[] = [];
    const b: Error[] = [];
    const rmA = conn.onError((e) => a.push(e));
    conn.onError((e) => b.push(e));
    conn.onMessage(() => {
      throw new Error('x');
    });
    rmA();
    await client.send('1');
    await conn.recv({ timeout: 5_000 });
    expect(a).toHaveLength(0);
    expect(b).toHaveLength(1);
  });

  it('onClose fires once without error on a graceful FIN from the peer', async () => {
    const { client, conn } = await tcpPair();
    let calls = 0;
    const closed = new Promise<Error | undefined>((resolve) =>
      conn.onClose((err) => {
        calls++;
        resolve(err);
      }),
    );
    await client.close();
    expect(await within(closed, 5_000, 'onClose')).toBeUndefined();
    expect(conn.closed).toBe(true);
    expect(conn.closeError).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(1);
  });

  it('onClose fires with ConnectionResetError when the raw peer resets (resetAndDestroy)', async () => {
    const raw = cleanup.track(await rawServer('127.0.0.1'));
    const client = cleanup.track(await pipeOpen('tcp', hostPort('127.0.0.1', raw.port), { framing: 'length' }));
    const sock = await raw.nextSocket();
    const closed = closedWith(client);
    sock.resetAndDestroy();
    const err = await within(closed, 5_000, 'onClose');
    expect(err).toBeInstanceOf(ConnectionResetError);
    expect(err).toBeInstanceOf(PipeClosedError);
    expect((err as ConnectionResetError).code).toBe('ERR_CONNECTION_RESET');
    expect(client.closeError).toBe(err);
    const sendErr = await rejection(client.send('x'));
    expect(sendErr).toBeInstanceOf(PipeClosedError);
    expect(sendErr.cause).toBe(err);
  });

  it('pipe.reset() closes at once and the peer sees ConnectionResetError', async () => {
    const { client, conn } = await tcpPair();
    const peerClosed = closedWith(conn);
    const selfClosed = closedWith(client);
    client.reset();
    expect(client.closed).toBe(true);
    expect(await within(peerClosed, 5_000, 'peer onClose')).toBeInstanceOf(ConnectionResetError);
    expect(await within(selfClosed, 5_000, 'own onClose')).toBeUndefined();
  });

  it('onClose remover works; onClose after close runs asynchronously with the close error', async () => {
    const { client, conn } = await tcpPair();
    const removed: unknown[] = [];
    const rm = conn.onClose((e) => removed.push(e));
    rm();
    const closed = closedWith(conn);
    await client.close();
    await within(closed, 5_000, 'onClose');
    expect(removed).toEqual([]);
    let late = false;
    const lateP = new Promise<Error | undefined>((resolve) =>
      conn.onClose((e) => {
        late = true;
        resolve(e);
      }),
    );
    expect(late).toBe(false); // not synchronous
    expect(await lateP).toBeUndefined();
  });

  it('a throwing onClose callback does not stop the others', async () => {
    const { client, conn } = await tcpPair();
    conn.onClose(() => {
      throw new Error('bad close cb');
    });
    const warning = nextWarning('P2PD_CALLBACK_ERROR');
    const closed = closedWith(conn);
    await client.close();
    await within(closed, 5_000, 'second onClose');
    expect((await warning).message).toContain('bad close cb');
  });
});

describe('async iteration and it-pipe', () => {
  it('timeout bounds the wait for each next item: messages(), duplex().source and clients()', async () => {
    const { server, client, conn } = await tcpPair();
    await client.send('one');
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of conn.messages({ timeout: 150 })) got.push(m.data.toString());
    })().catch((e: unknown) => e);
    expect(got).toEqual(['one']);
    expect(err).toBeInstanceOf(TimeoutError);
    const err2 = await (async () => {
      for await (const d of client.duplex({ timeout: 150 }).source) void d;
    })().catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(TimeoutError);
    const err3 = await (async () => {
      for await (const c of server.clients({ timeout: 150 })) void c;
    })().catch((e: unknown) => e);
    expect(err3).toBeInstanceOf(TimeoutError);
  });

  it('for await (const m of pipe) yields every message and ends when the peer closes', async () => {
    const { client, conn } = await tcpPair();
    const msgs = Array.from({ length: 50 }, (_, i) => `msg ${i}`);
    const collected = (async () => {
      const got: string[] = [];
      for await (const m of conn) got.push(m.data.toString());
      return got;
    })();
    for (const m of msgs) await client.send(m);
    await client.close();
    expect(await within(collected, 5_000, 'iteration end')).toEqual(msgs);
  });

  it('messages({ sub }) subscribes on first use; a signal ends it with AbortError; break leaves the pipe open', async () => {
    const { client, conn } = await tcpPair();
    const sub: Sub = { pattern: /^b/ };
    const ac = new AbortController();
    const it = conn.messages({ sub, signal: ac.signal });
    const first = it.next();
    expect(conn.isSubscribed(sub)).toBe(true);
    await client.send('a1');
    await client.send('b1');
    expect((await first).value?.data.toString()).toBe('b1');
    const second = it.next();
    ac.abort();
    expect(await rejection(second)).toBeInstanceOf(AbortError);
    // breaking out of a for-await does not close the pipe
    await client.send('b2');
    for await (const m of conn.messages({ sub })) {
      expect(m.data.toString()).toBe('b2');
      break;
    }
    expect(conn.closed).toBe(false);
    await client.send('b3');
    expect((await conn.recv({ sub, timeout: 5_000 })).data.toString()).toBe('b3');
  });

  it('iteration over a client with onMessage subscribes SUB_ALL lazily', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line' }));
    const cb: string[] = [];
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'line', onMessage: (m) => void cb.push(m.data.toString()) }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const iter = client[Symbol.asyncIterator]();
    const n = iter.next();
    await conn.send('hi');
    expect((await n).value?.data.toString()).toBe('hi');
    expect(cb).toEqual(['hi']);
    await conn.close();
    expect((await within(iter.next(), 5_000, 'end')).done).toBe(true);
  });

  it('it-pipe: an array source through a client duplex comes back from an echo server', async () => {
    const server = cleanup.track(
      await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', onMessage: (m) => m.pipe.send(m.data) }),
    );
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const input = ['alpha', new TextEncoder().encode('beta'), 'gamma', Buffer.alloc(100_000, 0x7a)];
    const echoed = await within(
      itPipe(input, client.duplex(), async (source) => {
        const out: string[] = [];
        for await (const chunk of source) {
          out.push(Buffer.from(chunk).toString());
          if (out.length === input.length) break;
        }
        return out;
      }),
      10_000,
      'it-pipe round trip',
    );
    expect(echoed).toEqual(input.map((x) => Buffer.from(x).toString()));
    expect(client.stats.messagesOut).toBe(4);
  });

  it('it-pipe: a duplex source ends when the pipe closes; the sink reports send errors', async () => {
    const { client, conn } = await tcpPair();
    const got = itPipe(conn.duplex().source, async (src) => {
      const out: string[] = [];
      for await (const c of src) out.push(Buffer.from(c).toString());
      return out;
    });
    await itPipe(['x', 'y'], client.duplex().sink);
    await client.close();
    expect(await within(got, 5_000, 'source end')).toEqual(['x', 'y']);
    const err = await rejection(client.duplex().sink(['after close']));
    expect(err).toBeInstanceOf(PipeClosedError);
  });
});

describe('UDP sources through a plain dgram peer', () => {
  it('from reflects the sender address and port', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const peer = cleanup.socket(await rawUdp('127.0.0.1'));
    peer.send(lengthFrame('x'), server.local.port, '127.0.0.1');
    const m = await server.recv({ timeout: 5_000 });
    expect(m.from).toEqual({ host: '127.0.0.1', port: peer.address().port, family: 4 });
    expect(m.data.equals(lengthFrame('x'))).toBe(true); // UDP never frames
  });

  it('a raw TCP peer counts as one source for subscriptions', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const sub: Sub = { source: { host: '127.0.0.1', port: sock.localPort as number } };
    conn.subscribe(sub);
    sock.write(lengthFrame('from raw'));
    expect((await conn.recv({ sub, timeout: 5_000 })).data.toString()).toBe('from raw');
  });
});
