/**
 * Bad input for the STUN client, from loopback fakes: truncated, oversized, wrong-id,
 * wrong-source, never-answering, malformed and error replies over UDP, and silent, garbage,
 * partial and closing servers over TCP. Every case ends with a typed error or is ignored,
 * never crashes, never hangs past its timeout, and leaves no socket behind.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionRefusedError, PipeClosedError, StunError, TimeoutError } from '../src/errors.js';
import {
  ATTR, CLASS, METHOD, StunClient, decodeStun, encodeStun, stunGetMapping, type DecodedStunMessage, type StunAttribute,
} from '../src/nat/stun/index.js';

/** Live sockets of this process (UDP, TCP connections, TCP listeners). */
function liveSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}

/**
 * {@link liveSockets} once it stopped changing: closed handles leave the list an event-loop
 * turn or two after their close callbacks ran.
 */
async function settled(): Promise<number> {
  let last = liveSockets();
  for (let stable = 0, i = 0; stable < 3 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 2));
    const n = liveSockets();
    stable = n === last ? stable + 1 : 0;
    last = n;
  }
  return last;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Reply = (req: DecodedStunMessage, from: RemoteInfo, sock: UdpSocket) => void;

interface UdpFake {
  port: number;
  sock: UdpSocket;
  other: UdpSocket;
  requests: number;
}

/** A UDP "server" that hands each decodable request to `reply`. */
async function udpFake(reply: Reply): Promise<UdpFake> {
  const sock = createSocket('udp4');
  const other = createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  other.bind(0, '127.0.0.1');
  await Promise.all([once(sock, 'listening'), once(other, 'listening')]);
  const f: UdpFake = { port: sock.address().port, sock, other, requests: 0 };
  sock.on('message', (buf, rinfo) => {
    f.requests++;
    let req: DecodedStunMessage;
    try {
      req = decodeStun(buf);
    } catch {
      return;
    }
    reply(req, rinfo, sock);
  });
  cleanups.push(async () => {
    await new Promise<void>((r) => sock.close(() => r()));
    await new Promise<void>((r) => other.close(() => r()));
  });
  return f;
}

function response(req: DecodedStunMessage, from: { address: string; port: number }, o: { attrs?: StunAttribute[]; tid?: Uint8Array; cls?: 2 | 3; method?: number; fingerprint?: boolean } = {}): Buffer {
  return encodeStun(
    {
      method: o.method ?? METHOD.BINDING,
      cls: o.cls ?? CLASS.SUCCESS,
      transactionId: o.tid ?? req.transactionId,
      cookie: req.cookie,
      attributes: o.attrs ?? [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: from.address, port: from.port, family: 4 } }],
    },
    { fingerprint: o.fingerprint ?? false },
  );
}

const send = (sock: UdpSocket, buf: Buffer, to: RemoteInfo): void => sock.send(buf, to.port, to.address);

/** Runs `fn`, then checks it took at most `maxMs` and left no socket open. */
async function bounded<T>(maxMs: number, fn: () => Promise<T>, fakeSide: () => number = () => 0): Promise<{ value?: T; error?: unknown; ms: number }> {
  const before = (await settled()) - fakeSide();
  const t0 = performance.now();
  let out: { value?: T; error?: unknown; ms: number };
  try {
    out = { value: await fn(), ms: 0 };
  } catch (error) {
    out = { error, ms: 0 };
  }
  out.ms = performance.now() - t0;
  expect(out.ms).toBeLessThan(maxMs);
  // Sockets the fake itself still holds (a TCP fake that never reads never sees our FIN/RST) do not count.
  expect((await settled()) - fakeSide()).toBe(before);
  return out;
}

const server = (f: { port: number }): { host: string; port: number } => ({ host: '127.0.0.1', port: f.port });

describe('STUN client vs bad UDP replies', () => {
  it('never answering: TimeoutError at the timeout, socket closed', async () => {
    const f = await udpFake(() => undefined);
    const r = await bounded(700, () => stunGetMapping({ server: server(f), timeout: 300 }));
    expect(r.error).toBeInstanceOf(TimeoutError);
    expect(r.ms).toBeGreaterThanOrEqual(290);
    expect(f.requests).toBe(1); // RTO 500 ms: no retransmission within 300 ms
  });

  it('never answering: the RFC 8489 schedule (RTO doubling, Rc tries, Rm × RTO) ends the transaction', async () => {
    const f = await udpFake(() => undefined);
    // rto 20, 4 tries: sends at 0, 20, 60, 140; gives up at 140 + 16 × 20 = 460 ms
    const r = await bounded(1200, () => stunGetMapping({ server: server(f), rto: 20, maxTries: 4 }));
    expect(r.error).toBeInstanceOf(TimeoutError);
    expect(r.ms).toBeGreaterThanOrEqual(440);
    expect(f.requests).toBe(4);
  });

  it('truncated replies are ignored (timeout); a valid one after them is taken', async () => {
    const trunc = (req: DecodedStunMessage, from: RemoteInfo, s: UdpSocket): void => {
      const full = response(req, from, { attrs: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: from.address, port: from.port, family: 4 } }, { type: ATTR.SOFTWARE, value: 'fake' }] });
      for (const n of [1, 4, 19, 20, 24, full.length - 4]) send(s, full.subarray(0, n), from);
    };
    const only = await udpFake(trunc);
    const r1 = await bounded(700, () => stunGetMapping({ server: server(only), timeout: 250 }));
    expect(r1.error).toBeInstanceOf(TimeoutError);
    const then = await udpFake((req, from, s) => {
      trunc(req, from, s);
      send(s, response(req, from), from);
    });
    const r2 = await bounded(1000, () => stunGetMapping({ server: server(then), timeout: 1000 }));
    expect(r2.error).toBeUndefined();
    expect(r2.value?.mapped.host).toBe('127.0.0.1');
  });

  it('oversized replies (64 KiB datagrams) are ignored', async () => {
    const big = (req: DecodedStunMessage, from: RemoteInfo, s: UdpSocket): void => {
      const huge = Buffer.alloc(65507, 0xee);
      response(req, from).copy(huge, 0, 0, 20);
      huge.writeUInt16BE(0xfffc, 2); // length field claims the maximum
      send(s, huge, from);
      const padded = Buffer.alloc(65000);
      response(req, from).copy(padded);
      send(s, padded, from); // a valid message followed by junk: length mismatch
    };
    const only = await udpFake(big);
    const r1 = await bounded(700, () => stunGetMapping({ server: server(only), timeout: 250 }));
    expect(r1.error).toBeInstanceOf(TimeoutError);
    const then = await udpFake((req, from, s) => {
      big(req, from, s);
      send(s, response(req, from), from);
    });
    const r2 = await bounded(1000, () => stunGetMapping({ server: server(then), timeout: 1000 }));
    expect(r2.value?.mapped.port).toBeGreaterThan(0);
  });

  it('wrong transaction id is ignored; the right one after it is taken', async () => {
    const wrong = (req: DecodedStunMessage, from: RemoteInfo, s: UdpSocket): void => {
      const tid = Buffer.from(req.transactionId);
      tid[0]! ^= 1;
      send(s, response(req, from, { tid }), from);
    };
    const only = await udpFake(wrong);
    const r1 = await bounded(700, () => stunGetMapping({ server: server(only), timeout: 250 }));
    expect(r1.error).toBeInstanceOf(TimeoutError);
    const then = await udpFake((req, from, s) => {
      wrong(req, from, s);
      setTimeout(() => send(s, response(req, from), from), 20);
    });
    await using client = await StunClient.open({ server: server(then), timeout: 1000 });
    const m = await client.binding();
    expect(m.mapped.port).toBe(client.local.port);
    expect(client.transport.ignored).toBeGreaterThanOrEqual(1);
  });

  it('a reply from the wrong source is ignored; from the right source it is taken', async () => {
    let fake: UdpFake | undefined;
    const only = await udpFake((req, from) => send((fake as UdpFake).other, response(req, from), from));
    fake = only;
    const r1 = await bounded(700, () => stunGetMapping({ server: server(only), timeout: 250 }));
    expect(r1.error).toBeInstanceOf(TimeoutError);
    let fake2: UdpFake | undefined;
    const both = await udpFake((req, from, s) => {
      send((fake2 as UdpFake).other, response(req, from, { attrs: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: '6.6.6.6', port: 6666, family: 4 } }] }), from);
      setTimeout(() => send(s, response(req, from), from), 20);
    });
    fake2 = both;
    const r2 = await bounded(1000, () => stunGetMapping({ server: server(both), timeout: 1000 }));
    expect(r2.value?.mapped.host).toBe('127.0.0.1');
  });

  it('error responses are StunError with errorCode/reason; one without ERROR-CODE too', async () => {
    const f = await udpFake((req, from, s) => send(s, response(req, from, { cls: CLASS.ERROR, attrs: [{ type: ATTR.ERROR_CODE, value: { code: 401, reason: 'Unauthenticated' } }] }), from));
    const r = await bounded(700, () => stunGetMapping({ server: server(f), timeout: 500 }));
    expect(r.error).toBeInstanceOf(StunError);
    expect((r.error as StunError).errorCode).toBe(401);
    expect((r.error as StunError).reason).toBe('Unauthenticated');
    const g = await udpFake((req, from, s) => send(s, response(req, from, { cls: CLASS.ERROR, attrs: [] }), from));
    const r2 = await bounded(700, () => stunGetMapping({ server: server(g), timeout: 500 }));
    expect(r2.error).toBeInstanceOf(StunError);
    expect((r2.error as StunError).errorCode).toBeUndefined();
  });

  it('malformed success responses are StunError: no mapped address, unknown required attribute, bad FINGERPRINT, wrong method', async () => {
    const cases: ((req: DecodedStunMessage, from: RemoteInfo) => Buffer)[] = [
      (req, from) => response(req, from, { attrs: [{ type: ATTR.SOFTWARE, value: 'no mapping' }] }),
      (req, from) => response(req, from, { attrs: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: from.address, port: from.port, family: 4 } }, { type: 0x7abc, value: Buffer.alloc(4), raw: true }] }),
      (req, from) => {
        const b = response(req, from, { fingerprint: true });
        b[b.length - 1]! ^= 0x55;
        return b;
      },
      (req, from) => response(req, from, { method: METHOD.ALLOCATE }),
    ];
    for (const make of cases) {
      const f = await udpFake((req, from, s) => send(s, make(req, from), from));
      const r = await bounded(700, () => stunGetMapping({ server: server(f), timeout: 500 }));
      expect(r.error).toBeInstanceOf(StunError);
    }
  });

  it('a flood of garbage does not crash or stall the client', async () => {
    const f = await udpFake((req, from, s) => {
      for (let i = 0; i < 300; i++) send(s, Buffer.from([i & 1, 1, 0, 4, ...Buffer.alloc(20, i)]), from);
      for (let i = 0; i < 100; i++) send(s, Buffer.from(`junk ${i}`), from);
      setTimeout(() => send(s, response(req, from), from), 30);
    });
    const r = await bounded(1500, () => stunGetMapping({ server: server(f), timeout: 1500 }));
    expect(r.value?.mapped.host).toBe('127.0.0.1');
  });

  it('an old-style XOR-MAPPED-ADDRESS (0x8020) is understood', async () => {
    const f = await udpFake((req, from, s) => {
      const enc = encodeStun({ method: 1, cls: CLASS.SUCCESS, transactionId: req.transactionId, attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: from.address, port: from.port, family: 4 } }] });
      enc.writeUInt16BE(0x8020, 20);
      send(s, enc, from);
    });
    const r = await bounded(700, () => stunGetMapping({ server: server(f), timeout: 500 }));
    expect(r.value?.mapped).toEqual({ host: '127.0.0.1', port: r.value?.local.port, family: 4 });
  });
});

describe('STUN client vs bad TCP servers', () => {
  async function tcpFake(onConn: (c: Socket) => void): Promise<{ port: number; srv: Server; conns: Set<Socket> }> {
    const conns = new Set<Socket>();
    const srv = createServer((c) => {
      conns.add(c);
      c.on('error', () => undefined);
      c.on('close', () => conns.delete(c));
      onConn(c);
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanups.push(async () => {
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    });
    return { port: (srv.address() as { port: number }).port, srv, conns };
  }

  /** Reads the request frames of one connection. */
  const onRequest = (c: Socket, fn: (req: DecodedStunMessage) => void): void => {
    let buf = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 20 && buf.length >= 20 + buf.readUInt16BE(2)) {
        const n = 20 + buf.readUInt16BE(2);
        fn(decodeStun(Buffer.from(buf.subarray(0, n))));
        buf = buf.subarray(n);
      }
    });
  };
  const from = (c: Socket): { address: string; port: number } => ({ address: c.remoteAddress as string, port: c.remotePort as number });

  it('never answering: TimeoutError at the timeout, connection closed', async () => {
    const f = await tcpFake(() => undefined); // never reads either
    const r = await bounded(800, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 300 }), () => f.conns.size);
    expect(r.error).toBeInstanceOf(TimeoutError);
  });

  it('garbage on the stream: the connection is dropped and the transaction fails at once', async () => {
    const f = await tcpFake((c) => onRequest(c, () => c.write(Buffer.from([0xc0, 0xff, 0xee, 0x00, 1, 2, 3, 4]))));
    const r = await bounded(800, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 5000 }));
    expect(r.error).toBeInstanceOf(PipeClosedError);
  });

  it('a partial frame that never completes: TimeoutError', async () => {
    const f = await tcpFake((c) => onRequest(c, (req) => c.write(response(req, from(c)).subarray(0, 25))));
    const r = await bounded(800, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 300 }));
    expect(r.error).toBeInstanceOf(TimeoutError);
  });

  it('the server closes the connection: PipeClosedError at once', async () => {
    const f = await tcpFake((c) => onRequest(c, () => c.end()));
    const r = await bounded(800, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 5000 }));
    expect(r.error).toBeInstanceOf(PipeClosedError);
  });

  it('wrong id then the right one, split into single bytes: success', async () => {
    const f = await tcpFake((c) =>
      onRequest(c, (req) => {
        const tid = Buffer.from(req.transactionId);
        tid[11]! ^= 0x80;
        const bytes = Buffer.concat([response(req, from(c), { tid }), response(req, from(c))]);
        let i = 0;
        const t = setInterval(() => {
          if (c.destroyed || i >= bytes.length) return clearInterval(t);
          c.write(bytes.subarray(i, i + 7));
          i += 7;
        }, 1);
      }),
    );
    const r = await bounded(2000, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 2000 }));
    expect(r.error).toBeUndefined();
    expect(r.value?.mapped.port).toBe(r.value?.local.port);
  });

  it('connection refused: ConnectionRefusedError', async () => {
    const f = await tcpFake(() => undefined);
    await new Promise<void>((r) => f.srv.close(() => r()));
    const r = await bounded(800, () => stunGetMapping({ server: server(f), proto: 'tcp', timeout: 500 }));
    expect(r.error).toBeInstanceOf(ConnectionRefusedError);
  });
});
