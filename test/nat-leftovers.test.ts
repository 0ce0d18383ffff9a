/**
 * NAT toolkit leftovers, on loopback only:
 * - `PortMapping.renew` checks its `timeout` / `signal` before the driver sends anything;
 * - the port-mapping route lookup honours the caller's budget and signal (capped at
 *   `ROUTE_LOOKUP_TIMEOUT_MS`) instead of a fixed 5 s;
 * - a TURN 300 Try Alternate to an unusable ALTERNATE-SERVER (unspecified, broadcast,
 *   multicast, port 0, another family, IPv4-mapped) is a `StunError` 300, and nothing is
 *   sent there.
 */
import dgram, { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Socket as TcpSocket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError, InvalidArgumentError, StunError, TimeoutError } from '../src/errors.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { mapPort, PcpClient, routeSourceAddress, type MapPortOptions } from '../src/nat/portmap/index.js';
import { ROUTE_LOOKUP_TIMEOUT_MS } from '../src/nat/portmap/transport.js';
import { ATTR, CLASS, METHOD } from '../src/nat/stun/index.js';
import { turnAllocate, type TurnAllocateOptions } from '../src/nat/turn/index.js';
import { alternateProblem, followRedirect } from '../src/nat/turn/redirect.js';
import { FakeGateway } from './portmap-client-fakes.js';
import { FakeTurnServer } from './turn-fake-server.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('PortMapping.renew: arguments checked before anything is sent', () => {
  it('a bad timeout, a bad signal or null options are InvalidArgumentError; the gateway sees no request', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    const opts: MapPortOptions = { internalPort: 7777, protocol: 'udp', gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_500, autoRenew: false };
    const m = await mapPort(opts);
    cleanups.push(() => m.close());
    const before = gw.requests.length;
    for (const timeout of [-1, Number.NaN, '500', null] as never[]) {
      await expect(m.renew({ timeout })).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    for (const signal of [{}, 'abort', { aborted: 'no' }] as never[]) {
      await expect(m.renew({ signal })).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(m.renew(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(gw.requests.length).toBe(before);
    expect(m.state).toBe('active');
    // Good arguments still renew.
    await m.renew({ timeout: 1_000 });
    expect(gw.requests.length).toBe(before + 1);
  });
});

describe('port-mapping route lookup: the caller\'s budget and signal', () => {
  it('rejects with TimeoutError once the caller\'s timeout passes (not after a fixed 5 s)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const p = routeSourceAddress({ host: '127.0.0.1', port: 9, family: 4 }, { timeout: 50 });
    const settled = p.then(
      (v) => ({ v }),
      (e: unknown) => ({ e }),
    );
    vi.advanceTimersByTime(50); // before the lookup's callback can run
    const r = await settled;
    expect('e' in r && r.e).toBeInstanceOf(TimeoutError);
    expect(String((r as { e: Error }).e.message)).toMatch(/50 ms/);
  });

  it('a longer budget is capped at ROUTE_LOOKUP_TIMEOUT_MS; none at all means the cap', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    for (const timeout of [60_000, 0, Infinity, undefined]) {
      const p = routeSourceAddress({ host: '127.0.0.1', port: 9, family: 4 }, { timeout });
      const settled = p.then(
        () => 'resolved',
        (e: unknown) => e,
      );
      vi.advanceTimersByTime(ROUTE_LOOKUP_TIMEOUT_MS);
      expect(await settled).toBeInstanceOf(TimeoutError);
    }
  });

  it('bad options are InvalidArgumentError; the signal aborts; on time it answers', async () => {
    const dest: Endpoint = { host: '127.0.0.1', port: 9, family: 4 };
    await expect(routeSourceAddress(dest, { timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(routeSourceAddress(dest, { signal: {} as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(routeSourceAddress(dest, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect(await routeSourceAddress(dest, { timeout: 2_000 })).toBe('127.0.0.1');
  });

  it('PCP takes the call\'s timeout for its client-address lookup', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const c = new PcpClient({ gateway: '127.0.0.1', port: gw.port });
    const settled = c.announce({ timeout: 40 }).then(
      () => 'resolved',
      (e: unknown) => e,
    );
    vi.advanceTimersByTime(40);
    expect(await settled).toBeInstanceOf(TimeoutError);
    vi.useRealTimers();
    await sleep(30);
    expect(gw.requests).toHaveLength(0);
  });
});

describe('TURN 300 Try Alternate: unusable ALTERNATE-SERVER targets', () => {
  /** Destinations of every UDP datagram this process sends; any not on loopback is dropped (never sent) and recorded. */
  function watchUdpSends(): { to: string[]; blocked: string[] } {
    const seen = { to: [] as string[], blocked: [] as string[] };
    const real = dgram.Socket.prototype.send;
    const loopback = (h: string): boolean => /^127\./.test(h) || h === '::1' || /^::ffff:127\./i.test(h);
    vi.spyOn(dgram.Socket.prototype, 'send').mockImplementation(function (this: dgram.Socket, ...args: unknown[]) {
      const host = args.slice(1).find((a): a is string => typeof a === 'string');
      if (host !== undefined) seen.to.push(host);
      if (host !== undefined && !loopback(host)) {
        seen.blocked.push(host);
        const cb = [...args].reverse().find((a): a is (e: Error | null) => void => typeof a === 'function');
        if (cb) process.nextTick(cb, new Error(`test: blocked send to ${host}`));
        return;
      }
      return (real as (...a: unknown[]) => void).apply(this, args);
    } as typeof real);
    return seen;
  }

  async function turnServer(opts: Parameters<typeof FakeTurnServer.start>[0] = {}): Promise<FakeTurnServer> {
    const s = await FakeTurnServer.start(opts);
    cleanups.push(() => s.close());
    return s;
  }

  /** A TURN server on 127.0.0.1 that answers every request with 300 and `alt` (may be changed). */
  async function redirector(alt: { current: Endpoint }, proto: 'udp' | 'tcp' = 'udp'): Promise<FakeTurnServer> {
    return turnServer({
      proto,
      hook: (r) =>
        r.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 300, reason: 'Try Alternate' } }, { type: ATTR.ALTERNATE_SERVER, value: alt.current }], { sign: false }),
    });
  }

  const go = (s: FakeTurnServer, extra: Partial<TurnAllocateOptions> = {}): Promise<unknown> =>
    turnAllocate({ server: s.address, username: 'alice', password: 'secret', proto: s.opts.proto, timeout: 3_000, ...extra }).then(
      (p) => {
        cleanups.push(() => p.close());
        return p;
      },
      (e: unknown) => e,
    );

  it('unspecified, broadcast, multicast, port 0, IPv6 for an IPv4 client, IPv4-mapped: StunError 300, nothing sent there (UDP)', async () => {
    const seen = watchUdpSends();
    const real = await turnServer(); // a working server: an unspecified address would reach it through the kernel
    const alt = { current: real.address };
    const r = await redirector(alt);
    const p = real.address.port;
    const bad: [Endpoint, RegExp][] = [
      [{ host: '0.0.0.0', port: p, family: 4 }, /unspecified/],
      [{ host: '0.1.2.3', port: p, family: 4 }, /unspecified/],
      [{ host: '::', port: p, family: 6 }, /unspecified/],
      [{ host: '255.255.255.255', port: p, family: 4 }, /broadcast/],
      [{ host: '224.0.0.1', port: p, family: 4 }, /multicast/],
      [{ host: '239.255.255.250', port: 1900, family: 4 }, /multicast/],
      [{ host: 'ff02::1', port: p, family: 6 }, /multicast/],
      [{ host: '127.0.0.1', port: 0, family: 4 }, /port 0/],
      [{ host: '::1', port: p, family: 6 }, /IPv6 address.*IPv4/],
      [{ host: '::ffff:127.0.0.1', port: p, family: 6 }, /IPv4-mapped/],
    ];
    for (const [target, why] of bad) {
      alt.current = target;
      const before = r.count(METHOD.ALLOCATE);
      const e = await go(r);
      expect(e, `${target.host}:${target.port}`).toBeInstanceOf(StunError);
      expect((e as StunError).errorCode).toBe(300);
      expect((e as Error).message).toMatch(why);
      expect((e as Error).message).toMatch(/not followed/);
      expect(r.count(METHOD.ALLOCATE)).toBe(before + 1);
    }
    await sleep(50);
    expect(real.requests).toHaveLength(0);
    expect(seen.blocked).toEqual([]);
    expect(new Set(seen.to.filter((h) => h !== '127.0.0.1'))).toEqual(new Set());
    // The same redirector pointing at the working server is followed.
    alt.current = real.address;
    const relay = await go(r);
    expect(relay).not.toBeInstanceOf(Error);
    expect(real.allocations.size).toBe(1);
  });

  it('over TCP: no connection is made to an unspecified ALTERNATE-SERVER (it would reach this host)', async () => {
    const accepted: TcpSocket[] = [];
    const srv = createServer((c) => {
      accepted.push(c);
      c.on('error', () => undefined);
    });
    srv.on('error', () => undefined);
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanups.push(() => new Promise<void>((res) => srv.close(() => res())));
    cleanups.push(() => accepted.forEach((c) => c.destroy()));
    const port = (srv.address() as { port: number }).port;
    const r = await redirector({ current: { host: '0.0.0.0', port, family: 4 } }, 'tcp');
    const e = await go(r);
    expect(e).toBeInstanceOf(StunError);
    expect((e as StunError).errorCode).toBe(300);
    await sleep(50);
    expect(accepted).toHaveLength(0);
  });

  it('maxRedirects: 0 follows no redirect at all', async () => {
    const real = await turnServer();
    const r = await redirector({ current: real.address });
    const e = await go(r, { maxRedirects: 0 });
    expect(e).toBeInstanceOf(StunError);
    expect((e as StunError).errorCode).toBe(300);
    expect(real.requests).toHaveLength(0);
  });

  it('the alternate gets a fresh unsigned Allocate first, then the same username, never the first server\'s nonce', async () => {
    const real = await turnServer({ realm: 'alt.realm' });
    const first = await turnServer({
      hook: (req) => {
        const signed = req.msg.attributes.some((a) => a.type === ATTR.USERNAME);
        if (!signed) return undefined; // 401 challenge with this server's realm and nonce
        return req.response(CLASS.ERROR, [{ type: ATTR.ERROR_CODE, value: { code: 300, reason: 'Try Alternate' } }, { type: ATTR.ALTERNATE_SERVER, value: real.address }], { sign: false });
      },
    });
    first.nonce = 'first-server-nonce';
    const relay = await go(first);
    expect(relay).not.toBeInstanceOf(Error);
    const [unsigned, signed] = real.requests.filter((m) => m.method === METHOD.ALLOCATE);
    expect(unsigned?.attributes.some((a) => a.type === ATTR.USERNAME || a.type === ATTR.MESSAGE_INTEGRITY || a.type === ATTR.NONCE)).toBe(false);
    expect(signed?.attributes.find((a) => a.type === ATTR.USERNAME)?.value).toBe('alice');
    expect(signed?.attributes.find((a) => a.type === ATTR.REALM)?.value).toBe('alt.realm');
    expect(signed?.attributes.find((a) => a.type === ATTR.NONCE)?.value).not.toBe('first-server-nonce');
    for (const m of real.requests) expect(JSON.stringify(m.attributes)).not.toContain('secret');
  });
});

describe('alternateProblem / followRedirect (no traffic)', () => {
  const remote: Endpoint = { host: '198.51.100.1', port: 3478, family: 4 };
  const local: Endpoint = { host: '127.0.0.1', port: 3478, family: 4 };

  it('a remote server may not point the client at this host; a loopback one may', () => {
    expect(alternateProblem({ host: '127.0.0.1', port: 3478, family: 4 }, remote)).toMatch(/loopback/);
    expect(alternateProblem({ host: '::1', port: 3478, family: 6 }, { host: '2001:db8::1', port: 3478, family: 6 })).toMatch(/loopback/);
    expect(alternateProblem({ host: '127.0.0.2', port: 3479, family: 4 }, local)).toBeUndefined();
    expect(alternateProblem({ host: '203.0.113.9', port: 3478, family: 4 }, remote)).toBeUndefined();
    expect(alternateProblem({ host: '2001:db8::2', port: 3478, family: 6 }, { host: '2001:db8::1', port: 3478, family: 6 })).toBeUndefined();
  });

  it('an IPv4 target for an IPv6 transport, a link-local one without an interface', () => {
    const v6: Endpoint = { host: '2001:db8::1', port: 3478, family: 6 };
    expect(alternateProblem({ host: '203.0.113.9', port: 3478, family: 4 }, v6)).toMatch(/IPv4 address.*IPv6/);
    expect(alternateProblem({ host: 'fe80::2', port: 3478, family: 6 }, v6)).toMatch(/link-local/);
    // Redirected by a link-local server on a known interface: the alternate is on that link.
    const t = followRedirect({ host: 'fe80::2', port: 3478, family: 6 }, { host: 'fe80::1', port: 3478, family: 6, scopeId: 'eth0' }, [], 0, 3);
    expect(t).toEqual({ host: 'fe80::2', port: 3478, family: 6, scopeId: 'eth0' });
  });

  it('a refused target is a StunError 300 before the loop and count checks', () => {
    const e = (() => {
      try {
        followRedirect({ host: '224.0.0.1', port: 3478, family: 4 }, remote, [remote], 5, 3);
      } catch (x) {
        return x;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(StunError);
    expect((e as StunError).errorCode).toBe(300);
    expect((e as Error).message).toMatch(/multicast/);
  });
});
