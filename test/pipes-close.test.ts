/**
 * Closing and failures: `await using`, send after close, idempotent close, nothing lost on
 * close, peer resets mid-message, connect refused/timeout/abort, address-in-use, and
 * argument validation of pipeOpen/send.
 */
import { describe, expect, it } from 'vitest';
import {
  AbortError,
  BindError,
  ConnectionRefusedError,
  ConnectionResetError,
  EndpointError,
  InvalidArgumentError,
  MessageTooBigError,
  P2pdError,
  PipeClosedError,
  TimeoutError,
} from '../src/errors.js';
import { CLOSE_TIMEOUT, MAX_UDP_PAYLOAD, SUB_ALL, pipeOpen, type Framing, type PipeOptions, type Proto, type TcpPipe } from '../src/pipes/index.js';
import {
  LOOPBACKS,
  closedWith,
  freeTcpPort,
  guardUnhandled,
  hostPort,
  lengthFrame,
  rawServer,
  rawUdp,
  rejection,
  settle,
  stalledListener,
  useCleanup,
  within,
} from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

/** Resolves once `get()` has not changed for 300 ms (a stalled transfer has no event to await). */
async function waitForQuiet(get: () => number): Promise<void> {
  let last = -1;
  let since = Date.now();
  const end = Date.now() + 10_000;
  while (Date.now() - since < 300) {
    if (Date.now() > end) throw new Error('never quiet');
    await new Promise((r) => setTimeout(r, 20));
    const v = get();
    if (v !== last) {
      last = v;
      since = Date.now();
    }
  }
}

describe('close', () => {
  it('await using closes the pipe at the end of the scope (TCP client, TCP server, UDP)', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    let conn: TcpPipe | undefined;
    let escaped: { closed: boolean }[] = [];
    {
      await using client = await pipeOpen('tcp', server.local);
      await using udp = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
      await using srv2 = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' });
      conn = await server.accept({ timeout: 5_000 });
      escaped = [client, udp, srv2];
      expect(escaped.every((p) => !p.closed)).toBe(true);
    }
    expect(escaped.map((p) => p.closed)).toEqual([true, true, true]);
    // the peer saw the FIN
    expect(await within(closedWith(conn), 5_000, 'peer close')).toBeUndefined();
  });

  it.each(LOOPBACKS)('send after close rejects with PipeClosedError (ERR_PIPE_CLOSED) over $name', async ({ host }) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const udp = cleanup.track(await pipeOpen('udp', hostPort(host, 9)));
    await client.close();
    await udp.close();
    await server.close();
    for (const [p, dest] of [
      [client, undefined],
      [udp, undefined],
      [conn, undefined],
      [server, conn.remote],
    ] as const) {
      const err = await rejection(p.send('x', dest));
      expect(err).toBeInstanceOf(PipeClosedError);
      expect((err as PipeClosedError).code).toBe('ERR_PIPE_CLOSED');
    }
    // an un-awaited rejected send is not an unhandled rejection (checked by the guard)
    void client.send('ignored');
    void udp.send('ignored');
  });

  it('close is idempotent; close callbacks run once', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const udp = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    for (const p of [client, udp, server]) {
      let calls = 0;
      p.onClose(() => calls++);
      const a = p.close();
      const b = p.close();
      await Promise.all([a, b]);
      await p.close();
      expect(p.closed).toBe(true);
      expect(calls).toBe(1);
    }
    client.reset(); // reset after close is harmless
  });

  it('queued messages remain readable after the peer closes; then recv rejects with PipeClosedError', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const closed = closedWith(conn);
    const msgs = Array.from({ length: 100 }, (_, i) => `m${i}`);
    for (const m of msgs) void client.send(m);
    await client.close(); // FIN after the queued writes
    await within(closed, 5_000, 'close');
    expect(conn.closed).toBe(true);
    expect(conn.queued()).toBe(100);
    for (const m of msgs) expect((await conn.recv()).data.toString()).toBe(m);
    const err = await rejection(conn.recv());
    expect(err).toBeInstanceOf(PipeClosedError);
    expect(conn.tryRecv()).toBeUndefined();
    // a subscription made after close is closed at once
    const late = conn.subscribe({ pattern: 'x' });
    expect(await rejection(conn.recv({ sub: late }))).toBeInstanceOf(PipeClosedError);
  });

  it('queued messages remain readable after a local close; pending recv rejects', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const two = server.subscribe({ pattern: '2' });
    await client.send('1');
    await client.send('2');
    await server.recv({ sub: two, timeout: 5_000 }); // '2' has arrived (and is in SUB_ALL too)
    expect((await server.recv({ timeout: 5_000 })).data.toString()).toBe('1');
    const sub = server.subscribe({ pattern: 'never' });
    const pending = server.recv({ sub });
    await server.close();
    expect(await rejection(pending)).toBeInstanceOf(PipeClosedError);
    expect(server.tryRecv(SUB_ALL)?.data.toString()).toBe('2');
    expect(await rejection(server.recv())).toBeInstanceOf(PipeClosedError);
  });

  it('a peer that resets mid-message: onClose(err), pending recv rejects with PipeClosedError, no unhandled rejections', async () => {
    const raw = cleanup.track(await rawServer('127.0.0.1'));
    const client = cleanup.track(await pipeOpen('tcp', hostPort('127.0.0.1', raw.port), { framing: 'length' }));
    const sock = await raw.nextSocket();
    const closed = closedWith(client);
    const pending = client.recv();
    const sub = client.subscribe({ pattern: 'x' });
    const pending2 = client.recv({ sub });
    const sendAfter = closed.then(() => client.send('x')); // will reject; must be a handled rejection
    // one complete frame, then half of a frame, then RST
    sock.write(Buffer.concat([lengthFrame('whole'), lengthFrame(Buffer.alloc(1000)).subarray(0, 500)]));
    const first = await pending;
    expect(first.data.toString()).toBe('whole');
    const pending3 = client.recv();
    await new Promise<void>((r) => sock.write(Buffer.alloc(0), () => r()));
    sock.resetAndDestroy();
    const err = await within(closed, 5_000, 'onClose');
    expect(err).toBeInstanceOf(ConnectionResetError);
    for (const p of [pending2, pending3]) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(PipeClosedError);
      expect(e.cause).toBe(err);
    }
    expect(await rejection(sendAfter)).toBeInstanceOf(PipeClosedError);
    expect(client.stats.messagesIn).toBe(1);
  });

  it(`close() gives up after flushTimeout + CLOSE_TIMEOUT when the peer never reads; unflushed sends reject with PipeClosedError`, async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxQueue: 1 }));
    const flushTimeout = 500;
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length', flushTimeout }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    // ~64 MiB: more than loopback kernel buffers hold, so some stays in user space
    const sends = Array.from({ length: 1024 }, () => settle(client.send(Buffer.alloc(64 * 1024))));
    await waitForQuiet(() => conn.stats.messagesIn);
    const t0 = Date.now();
    await within(client.close(), flushTimeout + CLOSE_TIMEOUT + 1_000, 'close');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(flushTimeout - 100);
    const results = await Promise.all(sends);
    const failed = results.filter((r) => !r.ok);
    expect(failed.length).toBeGreaterThan(0);
    for (const r of failed) expect((r as { error: unknown }).error).toBeInstanceOf(PipeClosedError);
    expect(client.closed).toBe(true);
  }, 20_000);

  it('closing a server with a client mid-send leaves no unhandled rejections', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = await server.accept({ timeout: 5_000 });
    conn.reset();
    const closed = closedWith(client);
    // sends racing the reset: each either resolves or rejects with a typed error
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => client.send(Buffer.alloc(10_000))));
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(P2pdError);
    await within(closed, 5_000, 'client close');
    await server.close();
  });
});

describe('connect failures', () => {
  it.each(LOOPBACKS)('refused → ConnectionRefusedError over $name', async ({ host }) => {
    const port = await freeTcpPort(host);
    const err = await rejection(pipeOpen('tcp', hostPort(host, port)));
    expect(err).toBeInstanceOf(ConnectionRefusedError);
    expect((err as ConnectionRefusedError).code).toBe('ERR_CONNECTION_REFUSED');
    expect(err.message).toContain(String(port));
  });

  it.each(LOOPBACKS)('timeout against a listener that never accepts → TimeoutError over $name', async ({ host }) => {
    const stalled = await stalledListener(host);
    cleanup.add(() => stalled.close());
    await stalled.fill();
    const t0 = Date.now();
    const err = await rejection(pipeOpen('tcp', hostPort(host, stalled.port), { timeout: 100 }));
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe('ERR_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
  });

  it('abort mid-connect → AbortError; an already-aborted signal rejects before doing anything', async () => {
    const stalled = await stalledListener('127.0.0.1');
    cleanup.add(() => stalled.close());
    await stalled.fill();
    const ac = new AbortController();
    const p = pipeOpen('tcp', hostPort('127.0.0.1', stalled.port), { signal: ac.signal });
    setImmediate(() => ac.abort());
    const err = await rejection(p);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).code).toBe('ABORT_ERR');
    for (const [proto, dest] of [
      ['tcp', '127.0.0.1:1'],
      ['tcp', undefined],
      ['udp', undefined],
    ] as [Proto, string | undefined][]) {
      const e = await rejection(pipeOpen(proto, dest, { signal: AbortSignal.abort() }));
      expect(e).toBeInstanceOf(AbortError);
    }
  });

  it.each(LOOPBACKS)('TCP listen on a port in use → BindError ERR_ADDRESS_IN_USE naming the address ($name)', async ({ host }) => {
    const a = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const err = await rejection(pipeOpen('tcp', undefined, { bind: { host, port: a.local.port } }));
    expect(err).toBeInstanceOf(BindError);
    expect((err as BindError).code).toBe('ERR_ADDRESS_IN_USE');
    expect((err as BindError).address).toBe(hostPort(host, a.local.port));
    expect(err.message).toContain(hostPort(host, a.local.port));
    // the first server is unaffected
    const c = cleanup.track(await pipeOpen('tcp', a.local));
    expect(c.remote?.port).toBe(a.local.port);
  });

  it.each(LOOPBACKS)('UDP bind on a port in use → BindError ERR_ADDRESS_IN_USE naming the address ($name)', async ({ host }) => {
    const a = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    const err = await rejection(pipeOpen('udp', undefined, { bind: { host, port: a.local.port } }));
    expect(err).toBeInstanceOf(BindError);
    expect((err as BindError).code).toBe('ERR_ADDRESS_IN_USE');
    expect((err as BindError).address).toBe(hostPort(host, a.local.port));
    // also for a client bound to a taken local port
    const err2 = await rejection(pipeOpen('udp', hostPort(host, 9), { bind: { host, port: a.local.port } }));
    expect((err2 as BindError).code).toBe('ERR_ADDRESS_IN_USE');
    // with reuseAddr both can bind
    const r1 = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 }, reuseAddr: true }));
    const r2 = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: r1.local.port }, reuseAddr: true }));
    expect(r2.local.port).toBe(r1.local.port);
  });
});

describe.each(LOOPBACKS)('bind failures over $name', ({ host, family }) => {
  it('a TCP client bound to a local port in use → BindError ERR_ADDRESS_IN_USE naming the local address', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const other = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const err = await rejection(pipeOpen('tcp', server.local, { bind: { host, port: other.local.port } }));
    expect(err).toBeInstanceOf(BindError);
    expect((err as BindError).code).toBe('ERR_ADDRESS_IN_USE');
    expect((err as BindError).address).toBe(hostPort(host, other.local.port));
  });

  it('binding an address this host does not have → BindError ERR_BIND (listen, UDP bind and TCP client)', async () => {
    const foreign = family === 4 ? '203.0.113.7' : '2001:db8::7'; // documentation prefixes: bind fails locally, nothing is sent
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    for (const p of [
      pipeOpen('tcp', undefined, { bind: { host: foreign, port: 0 } }),
      pipeOpen('udp', undefined, { bind: { host: foreign, port: 0 } }),
      pipeOpen('tcp', server.local, { bind: { host: foreign } }),
    ]) {
      const err = await rejection(p);
      expect(err).toBeInstanceOf(BindError);
      expect((err as BindError).code).toBe('ERR_BIND');
      expect((err as BindError).address).toBe(hostPort(foreign, 0));
    }
  });
});

describe('argument validation', () => {
  it('malformed endpoints given to pipeOpen → EndpointError (ERR_BAD_ENDPOINT)', async () => {
    const bad: unknown[] = [
      'nonsense',
      '127.0.0.1',
      '127.0.0.1:',
      '127.0.0.1:99999',
      '127.0.0.1:-1',
      '::1:80',
      '[127.0.0.1]:80',
      '[::1]80',
      'localhost:80',
      'example.com:443',
      '[fe80::1%bad zone]:80',
      '1.2.3.4%eth0:80',
      '',
      'x'.repeat(500),
      { host: 'localhost', port: 80 },
      { host: '127.0.0.1', port: 1.5 },
      { host: '127.0.0.1', port: 70000 },
      { host: '127.0.0.1' },
      { host: 1234, port: 80 },
      { host: '127.0.0.1', port: 80, scopeId: 'eth0' },
      null,
      42,
    ];
    for (const dest of bad) {
      for (const proto of ['tcp', 'udp'] as const) {
        const err = await rejection(pipeOpen(proto, dest as string));
        expect(err, `${proto} ${JSON.stringify(dest)}`).toBeInstanceOf(EndpointError);
        expect((err as EndpointError).code).toBe('ERR_BAD_ENDPOINT');
      }
    }
  });

  it('malformed bind options → EndpointError / InvalidArgumentError', async () => {
    for (const bind of ['nonsense', '127.0.0.1', '[::1]:99999']) {
      expect(await rejection(pipeOpen('tcp', undefined, { bind }))).toBeInstanceOf(EndpointError);
    }
    expect(await rejection(pipeOpen('udp', undefined, { bind: { port: 70000 } }))).toBeInstanceOf(EndpointError);
    expect(await rejection(pipeOpen('udp', undefined, { bind: { host: 'localhost' } }))).toBeInstanceOf(EndpointError);
    expect(await rejection(pipeOpen('tcp', undefined, { bind: 5 as unknown as string }))).toBeInstanceOf(InvalidArgumentError);
  });

  it('bad proto → InvalidArgumentError', async () => {
    for (const proto of ['sctp', 'TCP', '', undefined, null]) {
      const err = await rejection(pipeOpen(proto as Proto, '127.0.0.1:1'));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARG');
    }
  });

  it('bad framing → InvalidArgumentError for clients and servers, and nothing crashes', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    for (const framing of ['bogus', 'LENGTH', 42, ''] as unknown as Framing[]) {
      const c = await rejection(pipeOpen('tcp', server.local, { framing }));
      expect(c).toBeInstanceOf(InvalidArgumentError);
      const s = await rejection(pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing }));
      expect(s).toBeInstanceOf(InvalidArgumentError);
      expect(await rejection(pipeOpen('udp', server.local, { framing }))).toBeInstanceOf(InvalidArgumentError);
    }
    expect(server.connections.size).toBe(0);
  });

  it('bad limits (maxMessageSize, maxQueue, maxQueueBytes) → InvalidArgumentError, and nothing crashes', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const bad: PipeOptions[] = [
      { framing: 'length', maxMessageSize: 0 },
      { framing: 'length', maxMessageSize: 1.5 },
      { framing: 'length', maxMessageSize: 2 ** 40 },
      { maxQueue: 0 },
      { maxQueue: -1 },
      { maxQueue: 1.5 },
      { maxQueueBytes: 0 },
      { maxQueueBytes: Number.NaN },
    ];
    for (const opts of bad) {
      for (const [proto, dest] of [
        ['tcp', server.local],
        ['tcp', undefined],
        ['udp', server.local],
        ['udp', undefined],
      ] as const) {
        const err = await within(rejection(pipeOpen(proto as Proto, dest, { bind: '127.0.0.1:0', ...opts })), 5_000, 'pipeOpen settles');
        expect(err, `${proto} ${dest ? 'client' : 'server'} ${JSON.stringify(opts)}`).toBeInstanceOf(InvalidArgumentError);
      }
    }
  });

  it('message too big for UDP → MessageTooBigError; the largest payload goes through', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('udp', server.local));
    const err = await rejection(client.send(Buffer.alloc(MAX_UDP_PAYLOAD + 1)));
    expect(err).toBeInstanceOf(MessageTooBigError);
    expect((err as MessageTooBigError).code).toBe('ERR_MESSAGE_TOO_BIG');
    expect(client.stats.messagesOut).toBe(0);
    await client.send(Buffer.alloc(MAX_UDP_PAYLOAD, 1));
    expect((await server.recv({ timeout: 5_000 })).data.length).toBe(MAX_UDP_PAYLOAD);
  });

  it('send: bad data type, dest on a TCP client other than its remote, aborted signal', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const client = cleanup.track(await pipeOpen('tcp', server.local));
    const udp = cleanup.track(await pipeOpen('udp', server.local));
    for (const p of [client, udp]) {
      expect(await rejection(p.send(42 as unknown as string))).toBeInstanceOf(InvalidArgumentError);
      expect(await rejection(p.send(null as unknown as string))).toBeInstanceOf(InvalidArgumentError);
      expect(await rejection(p.send('x', undefined, { signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    }
    // a TCP pipe sends only to its remote end (dest may repeat it, e.g. msg.from)
    expect(await rejection(client.send('x', { host: '127.0.0.1', port: 1 }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(client.send('x', 'garbage'))).toBeInstanceOf(EndpointError);
    expect(client.stats.messagesOut).toBe(0);
    expect(udp.stats.messagesOut).toBe(0);
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    await client.send('to remote', server.local);
    const m = await conn.recv({ timeout: 5_000 });
    await conn.send('reply to from', m.from);
    expect((await client.recv({ timeout: 5_000 })).data.toString()).toBe('reply to from');
  });

  it('UDP send to an invalid destination rejects with EndpointError (no raw RangeError, no DNS lookup)', async () => {
    const udp = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const bad = [
      { host: '127.0.0.1', port: 0, family: 4 }, // Endpoint-shaped objects (like msg.from) too
      { host: '127.0.0.1', port: 70000, family: 4 },
      { host: 'localhost', port: 9, family: 4 },
      '127.0.0.1:0',
      { host: '127.0.0.1', port: 0 },
    ];
    for (const dest of bad) {
      const err = await rejection(udp.send('x', dest as never));
      expect(err, JSON.stringify(dest)).toBeInstanceOf(EndpointError);
    }
    expect(udp.stats.messagesOut).toBe(0);
    const client0 = cleanup.track(await pipeOpen('udp', '127.0.0.1:0'));
    expect(await rejection(client0.send('x'))).toBeInstanceOf(EndpointError);
  });

  it('UDP send to an endpoint of the other family fails with a typed error', async () => {
    const udp4 = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const peer6 = cleanup.socket(await rawUdp('::1'));
    const err = await rejection(udp4.send('x', { host: '::1', port: peer6.address().port }));
    expect(err).toBeInstanceOf(P2pdError);
  });
});

describe('reset after close', () => {
  it('reset() after a graceful close() has begun still closes the socket', async () => {
    const { pipeOpen } = await import('../src/index.js');
    const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' });
    const client = await pipeOpen('tcp', server.local);
    const conn = await server.accept({ timeout: 5_000 });
    const closed = new Promise<void>((r) => client.onClose(() => r()));
    void client.close(); // graceful: FIN sent, waiting for the peer
    client.reset();
    await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error('never closed')), 3_000))]);
    expect(client.socket.destroyed).toBe(true);
    await conn.close();
    await server.close();
  });
});
