/**
 * TCP hole punching on loopback (no root): `tcpPunch` between two ports of this host, the
 * HELLO/SELECT exchange and its wire format, the winner rule with several remotes, strays,
 * `tcpMapping` sharing the port with the punch, and cleanup on success, timeout, abort and
 * errors. Loopback delivers a SYN synchronously, so two `connect()`s never cross in flight
 * here: one side's SYN always meets the other's listener (or a reset). Genuine simultaneous
 * open through NATs is covered by test/punch-tcp-lab.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { createServer, Server, Socket, connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, BindError, InvalidArgumentError, TimeoutError, UnreachableError } from '../src/errors.js';
import { startStunServer, type StunServer } from '../src/nat/stun/index.js';
import { tcpMapping } from '../src/node/punch/tcp-mapping.js';
import { tcpPunch, type TcpPunchOptions, type TcpPunchResult } from '../src/node/punch/tcp-punch.js';
import { TCP_PUNCH_HELLO_TIMEOUT } from '../src/node/punch/tcp-punch-exchange.js';
import { decodeTcpPunch, encodeTcpPunch, TcpPunchKey, TCP_PUNCH_FRAME_SIZE, TCP_PUNCH_HELLO, TCP_PUNCH_SELECT } from '../src/node/punch/tcp-punch-wire.js';

/** A port nobody uses right now (bound to port 0 and released). */
async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((res, rej) => s.once('error', rej).listen({ host, port: 0 }, res));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

/** Open TCP sockets and servers of this process on local port `port`. */
function handlesOn(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  let n = 0;
  for (const h of handles) {
    if (h instanceof Socket && !h.destroyed && h.localPort === port) n++;
    else if (h instanceof Server && h.listening && (h.address() as { port?: number } | null)?.port === port) n++;
  }
  return n;
}

/** Lets pending closes finish. */
const settle = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Both sides of a punch between `p` and `q` on loopback. */
async function pair(p: number, q: number, extra: Partial<TcpPunchOptions> = {}, host = '127.0.0.1'): Promise<[TcpPunchResult, TcpPunchResult]> {
  const nonce = randomBytes(32);
  const startAt = Date.now() + 50;
  const ep = (port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
  return Promise.all([
    tcpPunch({ localHost: host, localPort: p, remotes: [ep(q)], nonce, startAt, timeout: 3000, ...extra }),
    tcpPunch({ localHost: host, localPort: q, remotes: [ep(p)], nonce, startAt, timeout: 3000, ...extra }),
  ]);
}

describe('tcp punch wire', () => {
  const key = new TcpPunchKey(randomBytes(32));
  const tb = randomBytes(8);
  it('HELLO and SELECT round-trip; another key or a flipped bit fails authentication; junk is malformed', () => {
    for (const type of [TCP_PUNCH_HELLO, TCP_PUNCH_SELECT] as const) {
      const f = encodeTcpPunch(key, type, tb);
      expect(f.length).toBe(TCP_PUNCH_FRAME_SIZE);
      expect(decodeTcpPunch(key, f)).toEqual({ kind: 'frame', type, tiebreaker: tb });
      expect(decodeTcpPunch(new TcpPunchKey(randomBytes(32)), f).kind).toBe('unauthenticated');
      const g = Buffer.from(f);
      g[10] = (g[10] as number) ^ 1;
      expect(decodeTcpPunch(key, g).kind).toBe('unauthenticated');
    }
    expect(decodeTcpPunch(key, Buffer.alloc(TCP_PUNCH_FRAME_SIZE)).kind).toBe('malformed');
    expect(decodeTcpPunch(key, Buffer.alloc(5)).kind).toBe('malformed');
    expect(() => new TcpPunchKey(Buffer.alloc(8))).toThrow(InvalidArgumentError);
  });
});

describe('tcpPunch on loopback', () => {
  it('two peers end up with one connection each, from the agreed time on; bytes sent right after the exchange arrive', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const t0 = Date.now();
    const [a, b] = await pair(p, q);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40); // waited for startAt
    expect(a.controlling).not.toBe(b.controlling);
    expect(a.local.port).toBe(p);
    expect(a.remote.port).toBe(q);
    expect(b.local.port).toBe(q);
    expect(b.remote.port).toBe(p);
    expect([a.via, b.via].sort()).toEqual(['accept', 'connect']);
    // The controlling side may write at once: its bytes can share a segment with SELECT.
    const [ctl, other] = a.controlling ? [a, b] : [b, a];
    await ctl.pipe.send('first');
    expect((await other.pipe.recv({ timeout: 2000 })).data.toString()).toBe('first');
    await other.pipe.send('back');
    expect((await ctl.pipe.recv({ timeout: 2000 })).data.toString()).toBe('back');
    await settle();
    expect(handlesOn(p)).toBe(1);
    expect(handlesOn(q)).toBe(1);
    await Promise.all([a.pipe.close(), b.pipe.close()]);
  });

  it('several remotes: several connections come up, exactly one survives on each side', async () => {
    const [p, q] = [await freePort('0.0.0.0'), await freePort('0.0.0.0')];
    const nonce = randomBytes(32);
    const startAt = Date.now() + 50;
    const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    const [a, b] = await Promise.all([
      tcpPunch({ localPort: p, remotes: hosts.map((h) => `${h}:${q}`), nonce, startAt, timeout: 3000 }),
      tcpPunch({ localPort: q, remotes: hosts.map((h) => `${h}:${p}`), nonce, startAt, timeout: 3000 }),
    ]);
    expect(a.stats.connected + a.stats.accepted + b.stats.connected + b.stats.accepted).toBeGreaterThan(2);
    expect(a.controlling).not.toBe(b.controlling);
    expect(a.local.port).toBe(b.remote.port);
    expect(b.local.port).toBe(a.remote.port);
    await settle();
    expect(handlesOn(p)).toBe(1);
    expect(handlesOn(q)).toBe(1);
    await a.pipe.send('x');
    expect((await b.pipe.recv({ timeout: 2000 })).data.toString()).toBe('x');
    await Promise.all([a.pipe.close(), b.pipe.close()]);
  });

  it('IPv6 loopback, length framing on the returned pipe', async () => {
    const [p, q] = [await freePort('::1'), await freePort('::1')];
    const [a, b] = await pair(p, q, { framing: 'length' }, '::1');
    expect(a.remote.family).toBe(6);
    await a.pipe.send('one');
    await a.pipe.send('two');
    expect((await b.pipe.recv({ timeout: 2000 })).data.toString()).toBe('one');
    expect((await b.pipe.recv({ timeout: 2000 })).data.toString()).toBe('two');
    await Promise.all([a.pipe.close(), b.pipe.close()]);
  });

  it('one side without a listener still meets the other; with none on either side every SYN is reset on loopback', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const nonce = randomBytes(32);
    const startAt = Date.now() + 30;
    const [a, b] = await Promise.all([
      tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${q}`], nonce, startAt, listen: false, timeout: 3000 }),
      tcpPunch({ localHost: '127.0.0.1', localPort: q, remotes: [`127.0.0.1:${p}`], nonce, startAt, timeout: 3000 }),
    ]);
    expect(a.via).toBe('connect');
    expect(b.via).toBe('accept');
    await Promise.all([a.pipe.close(), b.pipe.close()]);

    const [r, s] = [await freePort(), await freePort()];
    const both = await Promise.allSettled([
      tcpPunch({ localHost: '127.0.0.1', localPort: r, remotes: [`127.0.0.1:${s}`], nonce, listen: false, timeout: 600 }),
      tcpPunch({ localHost: '127.0.0.1', localPort: s, remotes: [`127.0.0.1:${r}`], nonce, listen: false, timeout: 600 }),
    ]);
    for (const x of both) {
      expect(x.status).toBe('rejected');
      const e = (x as PromiseRejectedResult).reason as Error;
      expect(e).toBeInstanceOf(TimeoutError);
      expect(e.message).toMatch(/[1-9]\d* refused/);
    }
    await settle();
    expect(handlesOn(r) + handlesOn(s)).toBe(0);
  });

  it('no peer: TimeoutError after `timeout`, the listener and every attempt are gone', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const t0 = Date.now();
    const e = await tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${q}`], nonce: randomBytes(16), timeout: 700, attemptInterval: 50 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as TimeoutError).code).toBe('ERR_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(690);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect((e as Error).message).toMatch(/attempts to 1 remote/);
    await settle();
    expect(handlesOn(p)).toBe(0);
  });

  it('abort: AbortError while waiting for startAt and while punching; nothing left open', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const pre = new AbortController();
    pre.abort();
    await expect(tcpPunch({ localPort: p, remotes: [`127.0.0.1:${q}`], nonce: randomBytes(16), signal: pre.signal })).rejects.toBeInstanceOf(AbortError);
    for (const startIn of [500, 0]) {
      const ac = new AbortController();
      const run = tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${q}`], nonce: randomBytes(16), startAt: Date.now() + startIn, signal: ac.signal, timeout: 5000 });
      setTimeout(() => ac.abort(), 150);
      await expect(run).rejects.toBeInstanceOf(AbortError);
      await settle();
      expect(handlesOn(p)).toBe(0);
    }
  });

  it('an unroutable remote fails at once with UnreachableError (nothing is sent)', async () => {
    const p = await freePort();
    const t0 = Date.now();
    // 127.0.0.1 cannot reach 0.0.0.0/8: connect() fails with EINVAL before any packet.
    const e = await tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: ['0.1.2.3:9'], nonce: randomBytes(16), timeout: 3000 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnreachableError);
    expect(Date.now() - t0).toBeLessThan(1000);
    await settle();
    expect(handlesOn(p)).toBe(0);
  });

  it('a port held by a listener elsewhere: BindError', async () => {
    const p = await freePort();
    const other = createServer();
    await new Promise<void>((res) => other.listen({ host: '127.0.0.1', port: p }, res));
    try {
      const e = await tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${await freePort()}`], nonce: randomBytes(16), timeout: 2000 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(BindError);
      expect((e as BindError).code).toBe('ERR_ADDRESS_IN_USE');
    } finally {
      await new Promise<void>((res) => other.close(() => res()));
    }
  });

  it('strays on the punch port (wrong key, junk) are closed; the peer still gets through', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const nonce = randomBytes(32);
    const a = tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${q}`], nonce, startAt: Date.now() + 400, timeout: 4000 });
    a.catch(() => undefined); // awaited below
    await settle(50); // a listens from the call on
    const strays = [encodeTcpPunch(new TcpPunchKey(randomBytes(32)), TCP_PUNCH_HELLO, randomBytes(8)), Buffer.alloc(64, 0x41)].map((data) => {
      const s = netConnect({ host: '127.0.0.1', port: p });
      s.on('error', () => undefined);
      s.on('connect', () => s.write(data));
      s.resume(); // read, so that the close by `a` is seen
      return new Promise<void>((res) => s.on('close', () => res()));
    });
    await Promise.all(strays); // a closed both
    const b = await tcpPunch({ localHost: '127.0.0.1', localPort: q, remotes: [`127.0.0.1:${p}`], nonce, startAt: Date.now(), timeout: 3000 });
    const ra = await a;
    expect(ra.stats.rejected).toBeGreaterThanOrEqual(2);
    expect(ra.stats.accepted).toBeGreaterThanOrEqual(2);
    await b.pipe.send('ok');
    expect((await ra.pipe.recv({ timeout: 2000 })).data.toString()).toBe('ok');
    await Promise.all([ra.pipe.close(), b.pipe.close()]);
  });

  it('a silent connection is closed after TCP_PUNCH_HELLO_TIMEOUT', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const run = tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${q}`], nonce: randomBytes(16), startAt: Date.now() + 10_000, timeout: 4000 });
    run.catch(() => undefined);
    await settle(50);
    const t0 = Date.now();
    const s = netConnect({ host: '127.0.0.1', port: p });
    s.on('error', () => undefined);
    s.resume();
    await new Promise<void>((res) => s.on('close', () => res()));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(TCP_PUNCH_HELLO_TIMEOUT - 50);
    expect(Date.now() - t0).toBeLessThan(TCP_PUNCH_HELLO_TIMEOUT + 1000);
    await expect(run).rejects.toThrow(/1 accepted, 1 rejected/);
  }, 10_000);

  it('a socket connected to itself is rejected (own tie-breaker)', async () => {
    const p = await freePort();
    const e = await tcpPunch({ localHost: '127.0.0.1', localPort: p, remotes: [`127.0.0.1:${p}`], nonce: randomBytes(16), timeout: 600, listen: false }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as Error).message).toMatch(/[1-9]\d* rejected/);
    await settle();
    expect(handlesOn(p)).toBe(0);
  });

  it('bad options: InvalidArgumentError', async () => {
    const nonce = randomBytes(16);
    const bad: unknown[] = [
      null,
      { localPort: 0, remotes: ['127.0.0.1:1'], nonce },
      { localPort: 1000, remotes: [], nonce },
      { localPort: 1000, remotes: ['[::1]:5'], nonce, localHost: '127.0.0.1' },
      { localPort: 1000, remotes: ['127.0.0.1:5'], nonce: Buffer.alloc(4) },
      { localPort: 1000, remotes: ['127.0.0.1:5'], nonce, timeout: -1 },
      { localPort: 1000, remotes: ['127.0.0.1:5'], nonce, attemptInterval: 1 },
      { localPort: 1000, remotes: ['127.0.0.1:5'], nonce, framing: 'xml' },
    ];
    for (const o of bad) await expect(tcpPunch(o as TcpPunchOptions)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('tcpMapping + tcpPunch', () => {
  let stun: StunServer;
  beforeAll(async () => {
    stun = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], protos: ['tcp'], rateLimit: false });
  });
  afterAll(() => stun?.close());

  it('learns the mapping of a kernel-chosen port and punches from it while the STUN connection stays open', async () => {
    const [ma, mb] = await Promise.all([
      tcpMapping({ server: stun.primary, localHost: '127.0.0.1' }),
      tcpMapping({ server: stun.primary, localHost: '127.0.0.1' }),
    ]);
    try {
      expect(ma.mapped).toEqual(ma.local);
      expect(ma.local.port).toBeGreaterThan(0);
      expect(ma.client?.closed).toBe(false);
      const nonce = randomBytes(32);
      const startAt = Date.now() + 30;
      const [a, b] = await Promise.all([
        tcpPunch({ localHost: '127.0.0.1', localPort: ma.local.port, remotes: [`127.0.0.1:${mb.mapped.port}`], nonce, startAt, timeout: 3000 }),
        tcpPunch({ localHost: '127.0.0.1', localPort: mb.local.port, remotes: [`127.0.0.1:${ma.mapped.port}`], nonce, startAt, timeout: 3000 }),
      ]);
      expect(ma.client?.closed).toBe(false); // the punch shared the port with it
      expect((await ma.client?.binding({ timeout: 1000 }))?.mapped).toEqual(ma.mapped);
      await a.pipe.send('m');
      expect((await b.pipe.recv({ timeout: 2000 })).data.toString()).toBe('m');
      await Promise.all([a.pipe.close(), b.pipe.close()]);
    } finally {
      await Promise.all([ma.close(), mb.close()]);
    }
  });

  it('keep: false closes the STUN connection at once; the port can still be punched from', async () => {
    const m = await tcpMapping({ server: stun.primary, localHost: '127.0.0.1', keep: false });
    expect(m.client).toBeUndefined();
    const q = await freePort();
    const nonce = randomBytes(32);
    const [a, b] = await Promise.all([
      tcpPunch({ localHost: '127.0.0.1', localPort: m.local.port, remotes: [`127.0.0.1:${q}`], nonce, timeout: 3000 }),
      tcpPunch({ localHost: '127.0.0.1', localPort: q, remotes: [`127.0.0.1:${m.local.port}`], nonce, timeout: 3000 }),
    ]);
    await Promise.all([a.pipe.close(), b.pipe.close()]);
  });
});
