/**
 * TURN client against scriptable fake servers on loopback (test/turn-fake-server.ts):
 * the relay data path (Send indications until the channel is bound, then ChannelData),
 * long-term auth (401, 438, wrong password, bounded rounds), refreshes and their failures,
 * close/deallocation, and the bad-input list: truncated, oversized, wrong-id, wrong-source,
 * looping-redirect and never-answering replies — each a typed error or ignored, never a
 * crash, a hang past the timeout or a leaked socket.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AbortError, ConnectionRefusedError, InvalidArgumentError, MessageTooBigError, PipeClosedError, StunError, TimeoutError,
} from '../src/errors.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { ATTR, CLASS, METHOD, encodeChannelData, encodeStun } from '../src/nat/stun/index.js';
import { MAX_TURN_PAYLOAD, TURN_MAX_AUTH_ROUNDS, TURN_MIN_REFRESH_DELAY, TurnAuthError, refreshDelay, turnAllocate, type TurnAllocateOptions, type TurnPipe } from '../src/nat/turn/index.js';
import { FakeTurnServer, type FakeRequest, type HookResult } from './turn-fake-server.js';

const PROTOS = ['udp', 'tcp'] as const;
type Proto = (typeof PROTOS)[number];

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function server(opts: Parameters<typeof FakeTurnServer.start>[0] = {}): Promise<FakeTurnServer> {
  const s = await FakeTurnServer.start(opts);
  cleanup.push(() => s.close());
  return s;
}

async function alloc(s: FakeTurnServer, extra: Partial<TurnAllocateOptions> = {}): Promise<TurnPipe> {
  const p = await turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto: s.opts.proto, ...extra });
  cleanup.push(() => p.close());
  return p;
}

/** A plain UDP peer on loopback that answers `echo:<data>` to everything (unless told not to). */
async function peer(echo = true): Promise<{ sock: UdpSocket; ep: Endpoint; got: { data: string; from: Endpoint }[] }> {
  const sock = createSocket('udp4');
  const got: { data: string; from: Endpoint }[] = [];
  sock.on('message', (d, r) => {
    got.push({ data: d.toString(), from: { host: r.address, port: r.port, family: 4 } });
    if (echo && !d.toString().startsWith('echo:')) sock.send(Buffer.concat([Buffer.from('echo:'), d]), r.port, r.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  cleanup.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, ep: { host: '127.0.0.1', port: sock.address().port, family: 4 }, got };
}

/** Open sockets of this process (UDP and TCP handles). */
function openSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPSocketWrap').length;
}

/**
 * The socket count once sockets closed just before have gone: libuv releases a handle one
 * loop turn after its 'close' event, so the count is read after a short pause.
 */
async function sockets(): Promise<number> {
  await new Promise((r) => setTimeout(r, 30));
  return openSockets();
}

/** Waits until the socket count is back to `n` (closing is asynchronous), or fails. */
async function noLeak(n: number): Promise<void> {
  for (let i = 0; i < 50 && openSockets() !== n; i++) await new Promise((r) => setTimeout(r, 20));
  expect(openSockets()).toBe(n);
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Expects `p` to reject with `type` within [min, max] ms; returns the error. */
async function rejectsWithin<E extends Error>(p: Promise<unknown>, type: new (...a: never[]) => E, max: number, min = 0): Promise<E> {
  const t0 = Date.now();
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  const dt = Date.now() - t0;
  expect(e, `expected ${type.name}, got ${String(e)}`).toBeInstanceOf(type);
  expect(dt).toBeLessThanOrEqual(max);
  expect(dt).toBeGreaterThanOrEqual(min);
  return e as E;
}

const success = (r: FakeRequest): Buffer =>
  r.response(CLASS.SUCCESS, [
    { type: ATTR.XOR_RELAYED_ADDRESS, value: { host: '127.0.0.1', port: 40000, family: 4 } },
    { type: ATTR.LIFETIME, value: 600 },
  ]);

describe.each(PROTOS)('TURN over %s: relay data path', (proto: Proto) => {
  it('allocates and exchanges messages both ways; Send indications until the channel is bound, then ChannelData', async () => {
    const s = await server({ proto, delay: (m) => (m.method === METHOD.CHANNEL_BIND ? 300 : 0) });
    const relay = await alloc(s);
    expect(relay.proto).toBe('udp');
    expect(relay.serverProto).toBe(proto);
    expect(relay.relayed.host).toBe('127.0.0.1');
    expect(relay.local).toEqual(relay.relayed);
    expect(relay.mapped?.port).toBe(relay.underlying.local.port);
    expect(relay.lifetime).toBe(600);
    const p = await peer();
    // before the bind: indications both ways
    await relay.send('one', p.ep);
    const m1 = await relay.recv({ timeout: 2000 });
    expect(m1.data.toString()).toBe('echo:one');
    expect(m1.from).toEqual(p.ep);
    expect(m1.pipe).toBe(relay);
    expect(relay.turnStats.indicationsOut).toBe(1);
    expect(relay.turnStats.indicationsIn).toBe(1);
    expect(p.got[0]?.from).toEqual(relay.relayed);
    // after the bind: ChannelData both ways
    await until(() => relay.channels === 1);
    for (let i = 0; i < 5; i++) {
      await relay.send(`msg ${i}`, `127.0.0.1:${p.ep.port}`);
      expect((await relay.recv({ timeout: 2000 })).data.toString()).toBe(`echo:msg ${i}`);
    }
    expect(relay.turnStats.channelDataOut).toBe(5);
    expect(relay.turnStats.channelDataIn).toBe(5);
    expect(s.count(METHOD.CREATE_PERMISSION)).toBe(1);
    expect(s.count(METHOD.CHANNEL_BIND)).toBe(1);
    expect(relay.stats.messagesOut).toBe(6);
    expect(relay.stats.messagesIn).toBe(6);
    expect(relay.permissions).toEqual(['127.0.0.1']);
  });

  it('delivers to onMessage callbacks and source-filtered subscriptions with from = the peer', async () => {
    const s = await server({ proto });
    const seen: string[] = [];
    const relay = await alloc(s, { onMessage: (m) => void seen.push(`${m.from.port}:${m.data.toString()}`) });
    const a = await peer();
    const b = await peer();
    const sub = relay.subscribe({ source: { port: b.ep.port } });
    await relay.send('x', a.ep);
    await relay.send('y', b.ep);
    const fromB = await relay.recv({ sub, timeout: 2000 });
    expect(fromB.data.toString()).toBe('echo:y');
    await until(() => seen.length === 2);
    expect(seen.sort()).toEqual([`${a.ep.port}:echo:x`, `${b.ep.port}:echo:y`].sort());
    expect(relay.queued(sub)).toBe(0);
  });

  it('permit(peer) lets a peer send first; unknown channels and foreign sources are ignored', async () => {
    const s = await server({ proto });
    const relay = await alloc(s);
    const p = await peer(false);
    p.sock.send('too early', relay.relayed.port, relay.relayed.host);
    await new Promise((r) => setTimeout(r, 100));
    expect(relay.queued()).toBe(0);
    await relay.permit('127.0.0.1');
    expect(relay.permissions).toEqual(['127.0.0.1']);
    p.sock.send('hello', relay.relayed.port, relay.relayed.host);
    const m = await relay.recv({ timeout: 2000 });
    expect(m.data.toString()).toBe('hello');
    expect(m.from).toEqual(p.ep);
    // unsolicited ChannelData on a channel we never bound, from the server: ignored
    const a = s.only();
    const ignored = relay.turnStats.ignored;
    a.client.send(encodeChannelData(0x4abc, Buffer.from('ghost'), { pad: proto === 'tcp' }));
    a.client.send(encodeChannelData(0x4000, Buffer.from('ghost'), { pad: proto === 'tcp' }));
    await until(() => relay.turnStats.ignored === ignored + 2);
    if (proto === 'udp') {
      // a Data indication that does not come from the server: ignored
      const other = await peer(false);
      other.sock.send(s.dataIndication(p.ep, Buffer.from('spoof')), relay.underlying.local.port, '127.0.0.1');
      await until(() => relay.turnStats.ignored === ignored + 3);
    }
    expect(relay.queued()).toBe(0);
    expect(relay.stats.messagesIn).toBe(1);
  });

  it('refreshes the allocation before its (short) lifetime ends and keeps relaying', async () => {
    const s = await server({ proto, lifetime: 1 });
    const relay = await alloc(s, { lifetime: 1 });
    expect(relay.lifetime).toBe(1);
    const firstExpiry = relay.expiresAt;
    const p = await peer();
    await new Promise((r) => setTimeout(r, 2600));
    expect(s.expired).toBe(0);
    expect(s.allocations.size).toBe(1);
    expect(relay.turnStats.refreshes).toBeGreaterThanOrEqual(3);
    expect(relay.expiresAt).toBeGreaterThan(firstExpiry + 1000);
    expect(relay.closed).toBe(false);
    await relay.send('still here', p.ep);
    expect((await relay.recv({ timeout: 2000 })).data.toString()).toBe('echo:still here');
  }, 15_000);

  it('refreshes permissions and channels on their timers', async () => {
    const s = await server({ proto });
    const relay = await alloc(s, { permissionRefresh: 150, channelRefresh: 250 });
    const p = await peer();
    await relay.send('a', p.ep);
    await relay.recv({ timeout: 2000 });
    await new Promise((r) => setTimeout(r, 900));
    expect(s.count(METHOD.CREATE_PERMISSION)).toBeGreaterThanOrEqual(5);
    expect(s.count(METHOD.CHANNEL_BIND)).toBeGreaterThanOrEqual(3);
    expect(relay.channels).toBe(1);
  });

  it('close() deletes the allocation (Refresh lifetime 0) and closes the socket', async () => {
    const base = await sockets();
    const s = await server({ proto });
    const withServer = await sockets();
    const relay = await turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto });
    expect(s.allocations.size).toBe(1);
    let closeErr: unknown = 'not called';
    relay.onClose((e) => (closeErr = e));
    await relay.close();
    await relay.close(); // idempotent
    expect(closeErr).toBeUndefined();
    expect(s.deleted).toBe(1);
    expect(s.allocations.size).toBe(0);
    const last = s.requests.filter((m) => m.method === METHOD.REFRESH).pop();
    expect(last?.attributes.find((a) => a.type === ATTR.LIFETIME)?.value).toBe(0);
    await expect(relay.send('x', '127.0.0.1:9')).rejects.toBeInstanceOf(PipeClosedError);
    await expect(relay.permit('127.0.0.1')).rejects.toBeInstanceOf(PipeClosedError);
    await expect(relay.permit('127.0.0.1', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(relay.recv({ timeout: 100 })).rejects.toBeInstanceOf(PipeClosedError);
    await noLeak(withServer);
    await s.close();
    await noLeak(base);
  });

  it('close() is bounded when the server does not answer the deallocation', async () => {
    const n = await sockets();
    const s = await server({ proto, hook: (r) => (r.msg.method === METHOD.REFRESH ? 'drop' : undefined) });
    const relay = await turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto, closeTimeout: 300, rto: 50 });
    const t0 = Date.now();
    await relay.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    await s.close(); // the fake still holds the allocation it was not told to delete
    await noLeak(n);
  });
});

describe.each(PROTOS)('TURN over %s: authentication', (proto: Proto) => {
  it('answers the 401 challenge and retries on 438 Stale Nonce', async () => {
    const s = await server({ proto, staleNonces: 2 });
    const relay = await alloc(s);
    const allocs = s.requests.filter((m) => m.method === METHOD.ALLOCATE);
    expect(allocs.length).toBe(4); // unsigned, 438, 438, ok
    expect(allocs[0]?.attributes.some((a) => a.type === ATTR.USERNAME)).toBe(false);
    expect(allocs[3]?.attributes.find((a) => a.type === ATTR.NONCE)?.value).toBe(s.nonce);
    expect(relay.closed).toBe(false);
  });

  it('a wrong password fails fast with TurnAuthError (401), no socket left', async () => {
    const s = await server({ proto });
    const n = await sockets();
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'nope', proto }), TurnAuthError, 2000);
    expect(e).toBeInstanceOf(StunError);
    expect(e.code).toBe('ERR_TURN_AUTH');
    expect(e.errorCode).toBe(401);
    expect(e.message).toMatch(/wrong username, password or realm/);
    await noLeak(n);
  });

  it('gives up after a bounded number of 438 rounds', async () => {
    const s = await server({ proto, staleNonces: 1000 });
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto }), StunError, 2000);
    expect(e.errorCode).toBe(438);
    expect(s.count(METHOD.ALLOCATE)).toBe(TURN_MAX_AUTH_ROUNDS);
  });

  it('a 401 without REALM/NONCE is a StunError', async () => {
    const s = await server({ proto, hook: (r) => r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 401, reason: 'no' } }]) });
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto }), StunError, 2000);
    expect(e.message).toMatch(/without NONCE/);
  });

  it.each([403, 437, 442, 486, 508, 500])('Allocate error %i is a StunError with errorCode', async (code) => {
    const s = await server({ proto, hook: (r) => (r.msg.attributes.some((a) => a.type === ATTR.USERNAME) ? r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code, reason: '' } }]) : undefined) });
    const n = await sockets();
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto }), StunError, 2000);
    expect(e).not.toBeInstanceOf(TurnAuthError);
    expect(e.errorCode).toBe(code);
    expect(e.message).toMatch(new RegExp(`TURN Allocate to 127\\.0\\.0\\.1:\\d+ failed: ${code}`));
    await noLeak(n);
  });

  it('441 Wrong Credentials is a TurnAuthError', async () => {
    const s = await server({ proto, hook: (r) => (r.msg.attributes.some((a) => a.type === ATTR.USERNAME) ? r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 441, reason: '' } }]) : undefined) });
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto }), TurnAuthError, 2000);
    expect(e.errorCode).toBe(441);
    expect(e.reason).toBe('Wrong Credentials');
  });

  it('a success response with a bad or missing MESSAGE-INTEGRITY is rejected', async () => {
    for (const forge of ['unsigned', 'wrong-key'] as const) {
      const s = await server({
        proto,
        hook: (r) => {
          if (!r.msg.attributes.some((a) => a.type === ATTR.USERNAME)) return undefined;
          const attrs = [{ type: ATTR.XOR_RELAYED_ADDRESS, value: { host: '127.0.0.1', port: 40000, family: 4 as const } }];
          if (forge === 'unsigned') return r.response(CLASS.SUCCESS, attrs, { sign: false });
          return encodeStun({ method: r.msg.method, cls: CLASS.SUCCESS, transactionId: r.msg.transactionId, attributes: attrs }, { integrity: { key: 'wrong' } });
        },
      });
      const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto }), StunError, 2000);
      expect(e.message).toMatch(/MESSAGE-INTEGRITY/);
    }
  });
});

describe.each(PROTOS)('TURN over %s: bad replies', (proto: Proto) => {
  const T = 700; // allocation timeout of these tests (ms)

  async function expectTimeout(hook: (r: FakeRequest) => HookResult): Promise<FakeTurnServer> {
    const s = await server({ proto, hook });
    const n = await sockets();
    await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto, timeout: T, rto: 100 }), TimeoutError, T + 400, T - 50);
    await noLeak(n);
    return s;
  }

  it('never-answering server: TimeoutError at the timeout, no leaked socket', async () => {
    const s = await expectTimeout(() => 'drop');
    if (proto === 'udp') expect(s.count(METHOD.ALLOCATE)).toBeGreaterThan(1); // retransmitted
  });

  it('never-answering server: an abort signal cancels at once', async () => {
    const s = await server({ proto, hook: () => 'drop' });
    const n = await sockets();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto, signal: ac.signal }), AbortError, 500);
    await noLeak(n);
  });

  it('truncated responses are ignored', async () => {
    await expectTimeout((r) => {
      const full = r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 401, reason: 'x' } }, { type: ATTR.REALM, value: 'r' }, { type: ATTR.NONCE, value: 'n' }]);
      return proto === 'udp' ? [full.subarray(0, 10), full.subarray(0, 30), full.subarray(0, full.length - 4)] : full.subarray(0, full.length - 4);
    });
  });

  it('wrong transaction ids are ignored', async () => {
    await expectTimeout((r) => {
      const b = r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 401, reason: '' } }, { type: ATTR.REALM, value: 'r' }, { type: ATTR.NONCE, value: 'n' }]);
      b[19] = (b[19] as number) ^ 0xff;
      return b;
    });
  });

  it('oversized and malformed replies are ignored (UDP) or close the stream with a typed error (TCP)', async () => {
    const huge = Buffer.alloc(proto === 'udp' ? 65_507 : 70_000, 0);
    huge.writeUInt16BE(0x0113, 0); // Allocate error response type
    huge.writeUInt16BE(0xfffc, 2); // claims the largest length
    if (proto === 'udp') {
      const many = (r: FakeRequest): Buffer =>
        encodeStun({ method: r.msg.method, cls: CLASS.ERROR, transactionId: r.msg.transactionId, attributes: Array.from({ length: 64 }, () => ({ type: ATTR.SOFTWARE, value: 'x' })) });
      await expectTimeout((r) => {
        const b = many(r);
        // 65 attributes: over the decoder's limit
        const extra = Buffer.from([0x80, 0x22, 0, 1, 0x78, 0, 0, 0]);
        const out = Buffer.concat([b, extra]);
        out.writeUInt16BE(out.length - 20, 2);
        return [huge, out];
      });
      return;
    }
    const s = await server({ proto, hook: () => Buffer.from([0x80, 0, 0, 4, 1, 2, 3, 4]) });
    const n = await sockets();
    const e = await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto, timeout: 5000 }), PipeClosedError, 1500);
    expect(String((e.cause as Error | undefined)?.message)).toMatch(/neither STUN nor ChannelData/);
    await noLeak(n);
    const s2 = await server({ proto, hook: () => Buffer.from([0x50, 0x00, 0xff, 0xff]) }); // reserved channel 0x5000
    await rejectsWithin(turnAllocate({ server: s2.address, username: 'alice', password: 'secret', proto, timeout: 5000 }), PipeClosedError, 1500);
    await noLeak(n);
  });

  it('garbage from the server after allocation is ignored, the relay keeps working', async () => {
    const s = await server({ proto });
    const relay = await alloc(s);
    const p = await peer();
    const a = s.only();
    let seed = 42;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256);
    if (proto === 'udp') {
      for (let i = 0; i < 300; i++) a.client.send(Buffer.from(Array.from({ length: 1 + (i % 90) }, rnd)));
      a.client.send(Buffer.alloc(0));
    } else {
      // valid framing, nonsense content: STUN success responses nobody asked for, indications without DATA
      for (let i = 0; i < 50; i++) a.client.send(encodeStun({ method: METHOD.DATA, cls: CLASS.INDICATION, transactionId: Buffer.alloc(12, i), attributes: [] }));
      for (let i = 0; i < 50; i++) a.client.send(encodeStun({ method: METHOD.ALLOCATE, cls: CLASS.SUCCESS, transactionId: Buffer.alloc(12, i), attributes: [] }));
    }
    await relay.send('ok?', p.ep);
    expect((await relay.recv({ timeout: 2000 })).data.toString()).toBe('echo:ok?');
    expect(relay.closed).toBe(false);
  });
});

describe('TURN: wrong source and redirects (UDP)', () => {
  it('responses from another address are ignored (timeout), a real one after them is accepted', async () => {
    const other = createSocket('udp4');
    other.bind(0, '127.0.0.1');
    await once(other, 'listening');
    cleanup.push(() => new Promise<void>((r) => other.close(() => r())));
    let onlyWrong = true;
    const s = await server({
      hook: (r) => {
        // every answer is first sent from a foreign socket
        const b = r.msg.attributes.some((a) => a.type === ATTR.USERNAME) ? success(r) : r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 401, reason: '' } }, { type: ATTR.REALM, value: 'fake.realm' }, { type: ATTR.NONCE, value: 'n1' }], { sign: false });
        other.send(b, r.from.port, r.from.host);
        return onlyWrong ? 'drop' : undefined;
      },
    });
    const n = await sockets();
    await rejectsWithin(turnAllocate({ server: s.address, username: 'alice', password: 'secret', timeout: 600, rto: 100 }), TimeoutError, 1000, 550);
    await noLeak(n);
    onlyWrong = false;
    const relay = await alloc(s);
    expect(relay.closed).toBe(false);
  });

  function redirector(to: () => Endpoint | undefined): Promise<FakeTurnServer> {
    return server({
      hook: (r) => {
        const alt = to();
        return r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 300, reason: 'Try Alternate' } }, ...(alt ? [{ type: ATTR.ALTERNATE_SERVER, value: alt } as const] : [])], { sign: false });
      },
    });
  }

  it('follows a 300 redirect to the alternate server', async () => {
    const real = await server();
    const r = await redirector(() => real.address);
    const relay = await alloc(r);
    expect(relay.server).toEqual(real.address);
    expect(real.allocations.size).toBe(1);
  });

  it('a redirect loop, a self-redirect, a long chain and a 300 without ALTERNATE-SERVER are StunErrors (300)', async () => {
    const n0 = await sockets();
    let b: FakeTurnServer | undefined;
    const a = await redirector(() => b?.address);
    b = await redirector(() => a.address);
    const self: FakeTurnServer = await redirector(() => self.address);
    const none = await redirector(() => undefined);
    const chain: FakeTurnServer[] = [];
    for (let i = 0; i < 5; i++) {
      const next = i;
      chain.push(await redirector(() => chain[next + 1]?.address ?? a.address));
    }
    const n = await sockets();
    expect(n).toBeGreaterThan(n0);
    const go = (s: FakeTurnServer, extra: Partial<TurnAllocateOptions> = {}): Promise<unknown> =>
      turnAllocate({ server: s.address, username: 'alice', password: 'secret', timeout: 3000, ...extra });
    const loop = await rejectsWithin(go(a), StunError, 1000);
    expect(loop.errorCode).toBe(300);
    expect(loop.message).toMatch(/redirect loop: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+/);
    expect((await rejectsWithin(go(self), StunError, 1000)).message).toMatch(/redirect loop/);
    expect((await rejectsWithin(go(none), StunError, 1000)).message).toMatch(/without ALTERNATE-SERVER/);
    expect((await rejectsWithin(go(chain[0] as FakeTurnServer, { maxRedirects: 2 }), StunError, 1000)).message).toMatch(/more than 2 redirects/);
    await noLeak(n);
  });
});

describe('TURN: failures after allocation', () => {
  it('a refused refresh (437) closes the pipe with the StunError', async () => {
    let refuse = false;
    const s = await server({ lifetime: 1, hook: (r) => (refuse && r.msg.method === METHOD.REFRESH ? r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 437, reason: '' } }]) : undefined) });
    const relay = await alloc(s, { lifetime: 1 });
    refuse = true;
    const err = await new Promise<Error | undefined>((res) => relay.onClose(res));
    expect(err).toBeInstanceOf(StunError);
    expect((err as StunError).errorCode).toBe(437);
    expect(relay.closeError).toBe(err);
    expect(relay.closed).toBe(true);
  });

  it('unanswered refreshes are retried until the allocation expires, then the pipe closes with TimeoutError', async () => {
    const s = await server({ lifetime: 2, hook: (r) => (r.msg.method === METHOD.REFRESH ? 'drop' : undefined) });
    const relay = await alloc(s, { lifetime: 2, refreshRetry: 200, requestTimeout: 200, rto: 50 });
    const t0 = Date.now();
    const err = await new Promise<Error | undefined>((res) => relay.onClose(res));
    expect(err).toBeInstanceOf(TimeoutError);
    expect(Date.now() - t0).toBeGreaterThan(1500);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(s.count(METHOD.REFRESH)).toBeGreaterThanOrEqual(3);
  });

  it('the server closing the TCP connection closes the pipe with PipeClosedError', async () => {
    const s = await server({ proto: 'tcp' });
    const relay = await alloc(s);
    const closed = new Promise<Error | undefined>((res) => relay.onClose(res));
    s.close();
    expect(await closed).toBeInstanceOf(PipeClosedError);
    await expect(relay.send('x', '127.0.0.1:9')).rejects.toBeInstanceOf(PipeClosedError);
  });

  it('a peer the server refuses (403 on CreatePermission) fails the send with StunError 403', async () => {
    const s = await server({ hook: (r) => (r.msg.method === METHOD.CREATE_PERMISSION || r.msg.method === METHOD.CHANNEL_BIND ? r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 403, reason: 'Forbidden IP' } }]) : undefined) });
    const relay = await alloc(s);
    const errors: Error[] = [];
    relay.onError((e) => errors.push(e));
    const e = await relay.send('x', '127.0.0.1:9').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StunError);
    expect((e as StunError).errorCode).toBe(403);
    expect((e as StunError).message).toMatch(/CreatePermission .* 403 Forbidden IP/);
    await until(() => errors.length === 1); // the background ChannelBind failed too, reported
    expect(relay.closed).toBe(false);
  });

  it('falls back to Send indications when channels are disabled', async () => {
    const s = await server();
    const relay = await alloc(s, { channels: false });
    const p = await peer();
    for (let i = 0; i < 3; i++) {
      await relay.send(`i${i}`, p.ep);
      expect((await relay.recv({ timeout: 2000 })).data.toString()).toBe(`echo:i${i}`);
    }
    expect(relay.turnStats.indicationsOut).toBe(3);
    expect(relay.turnStats.channelDataOut).toBe(0);
    expect(s.count(METHOD.CHANNEL_BIND)).toBe(0);
  });
});

describe('TURN: argument checks', () => {
  it('rejects bad options with InvalidArgumentError / EndpointError', async () => {
    const ok = { server: '127.0.0.1:3478', username: 'u', password: 'p' };
    await expect(turnAllocate({ ...ok, username: '' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...ok, username: 'x'.repeat(600) })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...ok, proto: 'sctp' as 'udp' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...ok, lifetime: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...ok, maxRedirects: 99 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...ok, server: 'turn.example.com:3478' })).rejects.toMatchObject({ code: 'ERR_BAD_ENDPOINT' });
    await expect(turnAllocate(null as unknown as TurnAllocateOptions)).rejects.toBeInstanceOf(InvalidArgumentError);
    const ac = new AbortController();
    ac.abort();
    await expect(turnAllocate({ ...ok, signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  it('a TCP server that refuses the connection is a ConnectionRefusedError', async () => {
    const s = await server({ proto: 'tcp' });
    const port = s.address.port;
    await s.close();
    const n = await sockets();
    await expect(turnAllocate({ server: `127.0.0.1:${port}`, username: 'u', password: 'p', proto: 'tcp' })).rejects.toBeInstanceOf(ConnectionRefusedError);
    await noLeak(n);
  });

  it('send checks dest, family and size', async () => {
    const s = await server();
    const relay = await alloc(s);
    await expect(relay.send('x')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(relay.send('x', '[::1]:5')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(relay.send(Buffer.alloc(MAX_TURN_PAYLOAD + 1), '127.0.0.1:5')).rejects.toBeInstanceOf(MessageTooBigError);
    await expect(relay.send('x', 'nonsense')).rejects.toMatchObject({ code: 'ERR_BAD_ENDPOINT' });
    await expect(relay.permit('::1')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('schedules refreshes at lifetime - 60 s, or half of a short lifetime', () => {
    expect(refreshDelay(600)).toBe(540_000);
    expect(refreshDelay(3600)).toBe(3_540_000);
    expect(refreshDelay(120)).toBe(60_000);
    expect(refreshDelay(10)).toBe(5_000);
  });

  it('refresh delays stay within [TURN_MIN_REFRESH_DELAY, 2^31 - 1 ms] whatever the server grants', () => {
    expect(refreshDelay(0)).toBe(TURN_MIN_REFRESH_DELAY);
    expect(refreshDelay(0.2)).toBe(TURN_MIN_REFRESH_DELAY);
    expect(refreshDelay(3_000_000)).toBe(2 ** 31 - 1);
    expect(refreshDelay(0xffffffff)).toBe(2 ** 31 - 1);
  });
});

describe('TURN: hostile lifetimes', () => {
  it('a huge granted lifetime does not overflow the timer into a refresh storm', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const s = await server({ lifetime: 3_000_000 });
      const relay = await alloc(s);
      expect(relay.lifetime).toBe(3_000_000);
      await new Promise((r) => setTimeout(r, 300));
      expect(s.count(METHOD.REFRESH)).toBe(0);
      expect(warnings).not.toContain('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a refresh answered with lifetime 0 (allocation deleted) closes the pipe instead of refreshing in a loop', async () => {
    const s = await server({ lifetime: 1, hook: (r) => (r.msg.method === METHOD.REFRESH ? r.response(CLASS.SUCCESS, [{ type: ATTR.LIFETIME, value: 0 }]) : undefined) });
    const relay = await alloc(s, { lifetime: 1 });
    const err = await new Promise<Error | undefined>((res) => relay.onClose(res));
    expect(err).toBeInstanceOf(StunError);
    expect(err?.message).toMatch(/lifetime of 0/);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.count(METHOD.REFRESH)).toBeLessThanOrEqual(2); // the one answered 0 (+ the close's deletion)
  });

  it('permit() takes { signal, timeout }: a server that never answers CreatePermission is bounded by them', async () => {
    const s = await server({ hook: (r) => (r.msg.method === METHOD.CREATE_PERMISSION ? 'drop' : undefined) });
    const relay = await alloc(s, { requestTimeout: 10_000 });
    await expect(relay.permit('127.0.0.1', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(relay.permit('127.0.0.1', { timeout: 150 })).rejects.toBeInstanceOf(TimeoutError);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(relay.permit('127.0.0.2', { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  it('an Allocate granting lifetime 0 is a StunError', async () => {
    const s = await server({ lifetime: 0 });
    await expect(turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto: s.opts.proto })).rejects.toBeInstanceOf(StunError);
  });
});
