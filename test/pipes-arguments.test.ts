/**
 * Bad arguments get a typed error, never a silent "wait forever": `timeout` values, recv on a
 * pipe without that subscription, a recv whose subscription is removed, a UDP send to the other
 * address family, formatting something that is not an endpoint.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AbortError, EndpointError, InvalidArgumentError, formatEndpoint, pipeOpen, sleep, type Pipe } from '../src/index.js';

const open: Pipe[] = [];
async function track<T extends Pipe>(p: Promise<T>): Promise<T> {
  const x = await p;
  open.push(x);
  return x;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close().catch(() => undefined)));
});

describe('timeout values', () => {
  it('recv: a negative, NaN or string timeout is an InvalidArgumentError, not an endless wait', async () => {
    const u = await track(pipeOpen('udp', '127.0.0.1:9'));
    for (const t of [-1, Number.NaN, '100' as unknown as number]) {
      const e = await u.recv({ timeout: t }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(InvalidArgumentError);
      expect((e as Error).message).toMatch(/timeout must be a non-negative number/);
    }
  });

  it('recv: 0 and Infinity mean no timeout of its own (the message still arrives)', async () => {
    const srv = await track(pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const c = await track(pipeOpen('udp', srv.local));
    for (const t of [0, Infinity]) {
      const r = c.recv({ timeout: t });
      const m = await Promise.race([r.then(() => 'resolved'), sleep(30).then(() => 'pending')]);
      expect(m).toBe('pending');
      await c.send('ping');
      const got = await srv.recv({ timeout: 2000 });
      await srv.send('pong', got.from);
      expect((await r).data.toString()).toBe('pong');
    }
  });

  it('connect, sleep-free operations and close reject bad timeouts with InvalidArgumentError; close still closes', async () => {
    await expect(pipeOpen('tcp', '127.0.0.1:9', { timeout: -5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    const srv = await track(pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const e = await srv.close({ timeout: -1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(srv.closed).toBe(true);
  });
});

describe('subscriptions', () => {
  it('a recv waiting on a subscription that is removed rejects with AbortError saying so', async () => {
    const u = await track(pipeOpen('udp', '127.0.0.1:9'));
    const sub = u.subscribe({ pattern: 'x' });
    const r = u.recv({ sub });
    u.unsubscribe(sub);
    const e = await r.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect((e as Error).message).toMatch(/unsubscribe/);
    expect(u.closed).toBe(false);
  });

  it('recv on a TCP server says to use accept()', async () => {
    const srv = await track(pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const e = await srv.recv({ timeout: 100 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toMatch(/accept\(\)/);
  });
});

describe('families and endpoints', () => {
  it('a UDP send from an IPv4 pipe to an IPv6 address is an InvalidArgumentError naming both', async () => {
    const u = await track(pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const e = await u.send('x', '[::1]:9').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toMatch(/IPv6.*IPv4 UDP pipe/);
    await u.send('still usable', '127.0.0.1:9');
  });

  it('formatEndpoint of something that is not an endpoint is an EndpointError', () => {
    for (const bad of [{}, null, undefined, 42, { host: 1, port: 2 }]) expect(() => formatEndpoint(bad as never)).toThrow(EndpointError);
    expect(formatEndpoint({ host: '::1', port: 5 })).toBe('[::1]:5');
  });
});

describe('IPv6 link-local destinations need a zone', () => {
  it('TCP and UDP clients to fe80::… without %iface fail with an EndpointError that says so', async () => {
    for (const proto of ['tcp', 'udp'] as const) {
      const e = await pipeOpen(proto, '[fe80::1234]:7000', { timeout: 1000 }).catch((x: unknown) => x);
      expect(e, proto).toBeInstanceOf(EndpointError);
      expect((e as Error).message).toMatch(/fe80::1234 is an IPv6 link-local address: say which interface.*\[fe80::1234%eth0\]:7000/);
    }
    // Every fe80::/10 first group counts; fec0:: (old site-local) and fe8:: (group 0x0fe8) do not.
    const e = await pipeOpen('tcp', { host: 'febf::1', port: 7 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EndpointError);
  });

  it('a UDP send to fe80::… without a zone is refused before anything is sent; with a zone it is attempted', async () => {
    const srv = await track(pipeOpen('udp', undefined, { family: 6 }));
    const before = srv.stats.messagesOut;
    const e = await srv.send('x', '[fe80::1234]:7000').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EndpointError);
    expect((e as Error).message).toMatch(/link-local address: say which interface/);
    expect(srv.stats.messagesOut).toBe(before);
    // Not link-local: the zone check stays out of the way (the send reaches the kernel).
    for (const host of ['fec0::1', '::1']) await srv.send('x', { host, port: 9 }).catch(() => undefined);
    expect(srv.stats.messagesOut).toBe(before + 2);
  });
});
