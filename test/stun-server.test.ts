/**
 * The STUN server on loopback: Binding responses and their attributes, RFC 5780 with two
 * loopback addresses (127.0.0.1 / 127.0.0.2: CHANGE-REQUEST, OTHER-ADDRESS, RESPONSE-ORIGIN),
 * RFC 3489 classic requests, 400/420 errors, garbage, size and rate limits, RESPONSE-PORT,
 * TCP (pipelined requests, framing errors, connection limit), IPv6, and interop with the
 * `stun` npm package's client.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BindError, InvalidArgumentError, StunError } from '../src/errors.js';
import {
  ATTR, CLASS, METHOD, StunClient, decodeStun, encodeStun, getAttr, newTransactionId, startStunServer, stunGetMapping,
  verifyFingerprint, type DecodedStunMessage, type StunAttribute, type StunServer,
} from '../src/nat/stun/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(opts: Parameters<typeof startStunServer>[0] = {}): Promise<StunServer> {
  const s = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], ...opts });
  cleanups.push(() => s.close());
  return s;
}

async function udp(host = '127.0.0.1'): Promise<UdpSocket> {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.bind(0, host);
  await once(s, 'listening');
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

/** Sends `data` from `sock` to `to` and collects replies for `ms`. */
async function exchange(sock: UdpSocket, to: { host: string; port: number }, data: Buffer | Buffer[], ms = 150): Promise<{ msg: DecodedStunMessage; from: { address: string; port: number } }[]> {
  const got: { msg: DecodedStunMessage; from: { address: string; port: number } }[] = [];
  const on = (buf: Buffer, rinfo: { address: string; port: number }): void => {
    got.push({ msg: decodeStun(buf), from: { address: rinfo.address, port: rinfo.port } });
  };
  sock.on('message', on);
  for (const d of Array.isArray(data) ? data : [data]) sock.send(d, to.port, to.host);
  await new Promise((r) => setTimeout(r, ms));
  sock.off('message', on);
  return got;
}

function request(attributes: StunAttribute[] = [], o: { classic?: boolean; method?: number; cls?: 0 | 1 | 2 | 3; fingerprint?: boolean } = {}): Buffer {
  return encodeStun(
    { method: o.method ?? METHOD.BINDING, cls: o.cls ?? CLASS.REQUEST, transactionId: newTransactionId(o.classic), attributes, cookie: !o.classic },
    { fingerprint: o.fingerprint ?? false },
  );
}

describe('STUN server: Binding over UDP', () => {
  it('answers with XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, SOFTWARE and a valid FINGERPRINT', async () => {
    const s = await server();
    const c = await udp();
    const req = request();
    const [r] = await exchange(c, s.primary, req);
    expect(r).toBeDefined();
    const m = r!.msg;
    expect(m.cls).toBe(CLASS.SUCCESS);
    expect(m.method).toBe(METHOD.BINDING);
    expect(Buffer.from(m.transactionId)).toEqual(req.subarray(8, 20));
    const local = c.address();
    expect(getAttr(m, ATTR.XOR_MAPPED_ADDRESS)).toEqual({ host: '127.0.0.1', port: local.port, family: 4 });
    expect(getAttr(m, ATTR.MAPPED_ADDRESS)).toBeUndefined(); // only for classic requests, unless mappedAddress
    expect(getAttr(m, ATTR.RESPONSE_ORIGIN)).toEqual(s.primary);
    expect(getAttr(m, ATTR.OTHER_ADDRESS)).toBeUndefined();
    expect(getAttr(m, ATTR.SOFTWARE)).toBe('p2pd');
    expect(verifyFingerprint(m)).toBe(true);
    expect(s.rfc5780).toBe(false);
    expect(s.stats.success).toBe(1);
  });

  it('options: no SOFTWARE, no FINGERPRINT; MAPPED-ADDRESS too', async () => {
    const s = await server({ software: false, fingerprint: false });
    const [r] = await exchange(await udp(), s.primary, request());
    expect(r!.msg.attributes.map((a) => a.type)).toEqual([ATTR.XOR_MAPPED_ADDRESS, ATTR.RESPONSE_ORIGIN]);
    const s2 = await server({ mappedAddress: true });
    const c = await udp();
    const [r2] = await exchange(c, s2.primary, request());
    expect(getAttr(r2!.msg, ATTR.MAPPED_ADDRESS)).toEqual({ host: '127.0.0.1', port: c.address().port, family: 4 });
    expect(verifyFingerprint(r2!.msg)).toBe(true);
  });

  it('answers a request that carries a correct FINGERPRINT, ignores one with a wrong FINGERPRINT', async () => {
    const s = await server();
    const c = await udp();
    const good = request([], { fingerprint: true });
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff;
    const got = await exchange(c, s.primary, [bad, good]);
    expect(got).toHaveLength(1);
    expect(Buffer.from(got[0]!.msg.transactionId)).toEqual(good.subarray(8, 20));
    expect(s.stats.ignored).toBe(1);
  });

  it('RFC 3489 classic request: classic response with MAPPED-ADDRESS and SOURCE-ADDRESS, no FINGERPRINT', async () => {
    const s = await server();
    const c = await udp();
    const req = request([], { classic: true });
    const [r] = await exchange(c, s.primary, req);
    const m = r!.msg;
    expect(m.cookie).toBe(false);
    expect(Buffer.from(m.transactionId)).toEqual(req.subarray(4, 20));
    expect(getAttr(m, ATTR.MAPPED_ADDRESS)?.port).toBe(c.address().port);
    expect(getAttr(m, ATTR.SOURCE_ADDRESS)).toEqual(s.primary);
    expect(getAttr(m, ATTR.XOR_MAPPED_ADDRESS)).toBeUndefined();
    expect(m.offsets.fingerprint).toBeUndefined();
  });

  it('420 with UNKNOWN-ATTRIBUTES for an unknown comprehension-required attribute; optional ones are fine', async () => {
    const s = await server();
    const c = await udp();
    const [r] = await exchange(c, s.primary, request([{ type: 0x7001, value: Buffer.alloc(4), raw: true }, { type: 0xc001, value: Buffer.alloc(2), raw: true }]));
    expect(r!.msg.cls).toBe(CLASS.ERROR);
    expect(getAttr(r!.msg, ATTR.ERROR_CODE)?.code).toBe(420);
    expect(getAttr(r!.msg, ATTR.UNKNOWN_ATTRIBUTES)).toEqual([0x7001]);
    const [ok] = await exchange(c, s.primary, request([{ type: 0xc001, value: Buffer.alloc(2), raw: true }]));
    expect(ok!.msg.cls).toBe(CLASS.SUCCESS);
  });

  it('400 for a request of another method; CHANGE-REQUEST without an alternate address is 420', async () => {
    const s = await server();
    const c = await udp();
    const [r] = await exchange(c, s.primary, request([], { method: METHOD.ALLOCATE }));
    expect(r!.msg.cls).toBe(CLASS.ERROR);
    expect(r!.msg.method).toBe(METHOD.ALLOCATE);
    expect(getAttr(r!.msg, ATTR.ERROR_CODE)?.code).toBe(400);
    const [r2] = await exchange(c, s.primary, request([{ type: ATTR.CHANGE_REQUEST, value: { changeIp: false, changePort: true } }]));
    expect(getAttr(r2!.msg, ATTR.ERROR_CODE)?.code).toBe(420);
    expect(getAttr(r2!.msg, ATTR.UNKNOWN_ATTRIBUTES)).toEqual([ATTR.CHANGE_REQUEST]);
    // An all-zero CHANGE-REQUEST asks for nothing: answered normally.
    const [r3] = await exchange(c, s.primary, request([{ type: ATTR.CHANGE_REQUEST, value: { changeIp: false, changePort: false } }]));
    expect(r3!.msg.cls).toBe(CLASS.SUCCESS);
  });

  it('the client sees error responses as StunError with errorCode', async () => {
    const s = await server();
    await using client = await StunClient.open({ server: s.primary, timeout: 2000 });
    const e = await client.changeRequest({ changePort: true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StunError);
    expect((e as StunError).errorCode).toBe(420);
    expect((e as StunError).code).toBe('ERR_STUN');
  });

  it('ignores garbage, truncated messages, indications, responses and oversized datagrams', async () => {
    const s = await server({ maxRequestSize: 600 });
    const c = await udp();
    const valid = request([{ type: ATTR.SOFTWARE, value: 'test client' }]);
    const padded = request([{ type: ATTR.PADDING, value: Buffer.alloc(700) }]);
    const inputs = [
      Buffer.from('hello, not stun'),
      Buffer.alloc(0),
      valid.subarray(0, 19),
      valid.subarray(0, 24),
      Buffer.concat([valid, Buffer.alloc(4)]),
      Buffer.from([0xff, ...valid.subarray(1)]),
      request([], { cls: CLASS.INDICATION }),
      request([], { cls: CLASS.SUCCESS }),
      padded,
      Buffer.alloc(1400, 0x01),
    ];
    const got = await exchange(c, s.primary, inputs);
    expect(got).toHaveLength(0);
    expect(s.stats.ignored).toBe(inputs.length);
    // still serving
    const [r] = await exchange(c, s.primary, valid);
    expect(r!.msg.cls).toBe(CLASS.SUCCESS);
  });

  it('rate limit per source address: a burst is answered, the rest dropped', async () => {
    const s = await server({ rateLimit: { rate: 1, burst: 3 } });
    const c = await udp();
    const got = await exchange(c, s.primary, Array.from({ length: 10 }, () => request()));
    expect(got).toHaveLength(3);
    expect(s.stats.rateLimited).toBe(7);
  });

  it('RESPONSE-PORT sends the answer to that port of the source address', async () => {
    const s = await server();
    const c = await udp();
    const other = await udp();
    const seen = new Promise<Buffer>((resolve) => other.once('message', (b) => resolve(b)));
    const req = request([{ type: ATTR.RESPONSE_PORT, value: other.address().port }]);
    const direct = await exchange(c, s.primary, req);
    expect(direct).toHaveLength(0);
    const m = decodeStun(await seen);
    expect(getAttr(m, ATTR.XOR_MAPPED_ADDRESS)?.port).toBe(c.address().port);
  });

  it('rejects bad options and reports busy ports as BindError', async () => {
    await expect(startStunServer({ addresses: ['127.0.0.1', '::1'], ports: [0, 0] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startStunServer({ addresses: ['0.0.0.0', '127.0.0.2'], ports: [0, 0] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startStunServer({ addresses: ['127.0.0.1'], ports: [70000] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startStunServer({ addresses: ['127.0.0.1'], protos: ['sctp' as 'udp'] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startStunServer({ addresses: ['stun.example.org'] })).rejects.toThrow();
    const s = await server();
    await expect(startStunServer({ addresses: ['127.0.0.1'], ports: [s.primary.port] })).rejects.toBeInstanceOf(BindError);
  });

  it('close() releases the ports (a new server binds them again) and is idempotent', async () => {
    const s = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], protos: ['udp', 'tcp'] });
    const ports = [s.primary.port, s.other!.port];
    await s.close();
    await s.close();
    const again = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports, protos: ['udp', 'tcp'] });
    await again.close();
  });
});

describe('STUN server: RFC 5780 with two loopback addresses', () => {
  it('opens the four sockets per protocol and reports OTHER-ADDRESS per socket', async () => {
    const s = await server({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], protos: ['udp', 'tcp'] });
    expect(s.rfc5780).toBe(true);
    expect(s.endpoints).toHaveLength(8);
    const [p1, p2] = [s.primary.port, s.other!.port];
    expect(s.other).toEqual({ host: '127.0.0.2', port: p2, family: 4 });
    const c = await udp();
    for (const [ip, port, otherIp, otherPort] of [['127.0.0.1', p1, '127.0.0.2', p2], ['127.0.0.2', p2, '127.0.0.1', p1], ['127.0.0.1', p2, '127.0.0.2', p1]] as const) {
      const [r] = await exchange(c, { host: ip, port }, request(), 60);
      expect(getAttr(r!.msg, ATTR.OTHER_ADDRESS)).toEqual({ host: otherIp, port: otherPort, family: 4 });
      expect(getAttr(r!.msg, ATTR.RESPONSE_ORIGIN)).toEqual({ host: ip, port, family: 4 });
      expect(r!.from).toEqual({ address: ip, port });
    }
  });

  it('CHANGE-REQUEST: the answer comes from the socket it names, RESPONSE-ORIGIN says so', async () => {
    const s = await server({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
    const [p1, p2] = [s.primary.port, s.other!.port];
    const c = await udp();
    const cases = [
      [{ changeIp: true, changePort: true }, '127.0.0.2', p2],
      [{ changeIp: true, changePort: false }, '127.0.0.2', p1],
      [{ changeIp: false, changePort: true }, '127.0.0.1', p2],
      [{ changeIp: false, changePort: false }, '127.0.0.1', p1],
    ] as const;
    for (const [change, host, port] of cases) {
      const [r] = await exchange(c, s.primary, request([{ type: ATTR.CHANGE_REQUEST, value: change }]), 60);
      expect(r!.from).toEqual({ address: host, port });
      expect(getAttr(r!.msg, ATTR.RESPONSE_ORIGIN)).toEqual({ host, port, family: 4 });
      expect(getAttr(r!.msg, ATTR.XOR_MAPPED_ADDRESS)?.port).toBe(c.address().port);
    }
  });

  it('classic CHANGE-REQUEST gets CHANGED-ADDRESS and SOURCE-ADDRESS', async () => {
    const s = await server({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
    const c = await udp();
    const [r] = await exchange(c, s.primary, request([{ type: ATTR.CHANGE_REQUEST, value: { changeIp: true, changePort: true } }], { classic: true }));
    expect(r!.msg.cookie).toBe(false);
    expect(getAttr(r!.msg, ATTR.CHANGED_ADDRESS)).toEqual(s.other);
    expect(getAttr(r!.msg, ATTR.SOURCE_ADDRESS)).toEqual(s.other);
    expect(r!.from).toEqual({ address: '127.0.0.2', port: s.other!.port });
  });

  it('the client runs the change tests against it', async () => {
    const s = await server({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
    await using client = await StunClient.open({ server: s.primary, timeout: 2000 });
    const m = await client.binding();
    expect(m.otherAddress).toEqual(s.other);
    expect(m.otherKind).toBe('rfc5780');
    const both = await client.changeRequest({ changeIp: true, changePort: true });
    expect(both.from).toEqual(s.other);
    const port = await client.changeRequest({ changePort: true });
    expect(port.from).toEqual({ host: '127.0.0.1', port: s.other!.port, family: 4 });
    // Strict source check: demand the answer from the primary, which a change request never gives.
    await expect(client.changeRequest({ changePort: true }, { acceptFrom: s.primary, timeout: 300, rto: 50 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  });
});

describe('STUN server: TCP and IPv6', () => {
  it('TCP: client Binding, pipelined requests in one write, CHANGE-REQUEST over TCP is 400', async () => {
    const s = await server({ protos: ['udp', 'tcp'] });
    const m = await stunGetMapping({ server: s.primary, proto: 'tcp', timeout: 2000 });
    expect(m.proto).toBe('tcp');
    expect(m.mapped).toEqual(m.local);
    const sock = netConnect(s.primary.port, '127.0.0.1');
    cleanups.push(() => sock.destroy());
    await once(sock, 'connect');
    const reqs = [request(), request(), request([{ type: ATTR.CHANGE_REQUEST, value: { changeIp: false, changePort: true } }])];
    const replies = readFrames(sock, 3);
    sock.write(Buffer.concat(reqs));
    const got = await replies;
    expect(got.map((r) => r.cls)).toEqual([CLASS.SUCCESS, CLASS.SUCCESS, CLASS.ERROR]);
    expect(got.map((r) => Buffer.from(r.transactionId))).toEqual(reqs.map((q) => q.subarray(8, 20)));
    expect(getAttr(got[2]!, ATTR.ERROR_CODE)?.code).toBe(400);
    expect(getAttr(got[0]!, ATTR.XOR_MAPPED_ADDRESS)?.port).toBe(sock.localPort);
  });

  it('TCP: a framing error closes the connection; requests split across writes are reassembled', async () => {
    const s = await server({ protos: ['tcp'] });
    const sock = netConnect(s.primary.port, '127.0.0.1');
    cleanups.push(() => sock.destroy());
    sock.on('error', () => undefined);
    await once(sock, 'connect');
    const req = request();
    const reply = readFrames(sock, 1);
    sock.write(req.subarray(0, 7));
    await new Promise((r) => setTimeout(r, 20));
    sock.write(req.subarray(7));
    expect((await reply)[0]!.cls).toBe(CLASS.SUCCESS);
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await closed;
    expect(s.stats.tcpDropped).toBe(1);
  });

  it('TCP: connections over maxConnections are reset', async () => {
    const s = await server({ protos: ['tcp'], maxConnections: 1 });
    const a = netConnect(s.primary.port, '127.0.0.1');
    cleanups.push(() => a.destroy());
    await once(a, 'connect');
    await new Promise((r) => setTimeout(r, 20));
    const b = netConnect(s.primary.port, '127.0.0.1');
    cleanups.push(() => b.destroy());
    const errored = new Promise<Error>((resolve) => b.on('error', resolve));
    await new Promise((resolve) => b.once('close', resolve));
    expect((await errored as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(s.stats.tcpDropped).toBe(1);
  });

  it('IPv6 on ::1, UDP and TCP', async () => {
    const s = await server({ addresses: ['::1'], protos: ['udp', 'tcp'] });
    for (const proto of ['udp', 'tcp'] as const) {
      const m = await stunGetMapping({ server: `[::1]:${s.primary.port}`, proto, timeout: 2000 });
      expect(m.mapped.host).toBe('::1');
      expect(m.mapped.family).toBe(6);
      expect(m.mapped.port).toBe(m.local.port);
      expect(m.responseOrigin).toEqual({ host: '::1', port: s.primary.port, family: 6 });
    }
  });

  it('a dual-stack server on :: tells an IPv4 client its IPv4 address', async () => {
    const s = await server({ addresses: ['::'] });
    const m = await stunGetMapping({ server: { host: '127.0.0.1', port: s.primary.port }, timeout: 2000 });
    expect(m.mapped).toEqual({ host: '127.0.0.1', port: m.local.port, family: 4 });
    const c = await udp();
    const [r] = await exchange(c, { host: '127.0.0.1', port: s.primary.port }, request([], { classic: true }));
    expect(getAttr(r!.msg, ATTR.MAPPED_ADDRESS)).toEqual({ host: '127.0.0.1', port: c.address().port, family: 4 });
  });

  it('a wildcard single-address server answers (without RESPONSE-ORIGIN)', async () => {
    const s = await server({ addresses: ['0.0.0.0'] });
    const m = await stunGetMapping({ server: { host: '127.0.0.1', port: s.primary.port }, timeout: 2000 });
    expect(m.mapped.port).toBe(m.local.port);
    expect(m.responseOrigin).toBeUndefined();
  });
});

describe('STUN server: interop', () => {
  it('answers the `stun` npm package client', async () => {
    const require = createRequire(import.meta.url);
    const stun = require('stun') as {
      request(url: string, opts?: object): Promise<{ getXorAddress(): { address: string; port: number }; getAttribute(type: number): { value: unknown } | undefined }>;
    };
    const s = await server();
    const res = await stun.request(`127.0.0.1:${s.primary.port}`, { retries: 2, timeout: 200 });
    expect(res.getXorAddress().address).toBe('127.0.0.1');
    expect(res.getXorAddress().port).toBeGreaterThan(0);
    expect(String(res.getAttribute(ATTR.SOFTWARE)?.value)).toBe('p2pd');
  });
});

/** Reads `n` STUN frames from a TCP socket. */
function readFrames(sock: Socket, n: number): Promise<DecodedStunMessage[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: DecodedStunMessage[] = [];
    const t = setTimeout(() => reject(new Error(`only ${out.length} of ${n} frames`)), 2000);
    const on = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 20 && buf.length >= 20 + buf.readUInt16BE(2)) {
        const len = 20 + buf.readUInt16BE(2);
        out.push(decodeStun(Buffer.from(buf.subarray(0, len))));
        buf = buf.subarray(len);
      }
      if (out.length >= n) {
        clearTimeout(t);
        sock.off('data', on);
        resolve(out);
      }
    };
    sock.on('data', on);
  });
}
