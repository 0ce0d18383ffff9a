/**
 * Audit of the NAT toolkit's `{ signal, timeout }` and argument handling, on loopback only:
 * `detectDelta` honours its overall `timeout`; overall timeouts past 2^31 − 1 ms do not fire
 * after 1 ms (`detectNat`, `mapPort`) nor do huge STUN RTOs turn into retransmission bursts;
 * `timeout: 0` / `Infinity` mean "none" as `AbortOptions` documents; bad arguments are
 * `InvalidArgumentError`s before anything is sent, never a bare `TypeError`.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, TimeoutError } from '../src/errors.js';
import { detectDelta, detectNat } from '../src/nat/detect/index.js';
import { getExternalAddress, mapPort, NatPmpClient, PcpClient } from '../src/nat/portmap/index.js';
import { StunClient, startStunServer, stunGetMapping } from '../src/nat/stun/index.js';
import { turnAllocate } from '../src/nat/turn/index.js';
import { FakeGateway } from './portmap-client-fakes.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A UDP socket on 127.0.0.1 that never answers and counts what it receives. */
async function silentUdp(): Promise<{ sock: Socket; port: number; received: () => number }> {
  const sock = createSocket('udp4');
  let n = 0;
  sock.on('message', () => n++);
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, port: sock.address().port, received: () => n };
}

const HUGE = 2 ** 31 + 10; // past Node's timer limit: a plain setTimeout fires it after 1 ms
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('overall timeouts', () => {
  it('detectDelta honours `timeout` (it used to wait for bindingTimeout)', async () => {
    const s = await silentUdp();
    const t0 = performance.now();
    const e = await detectDelta({ servers: [`127.0.0.1:${s.port}`], timeout: 300, bindingTimeout: 8_000, count: 2 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(4_000);
  });

  it('detectDelta checks its options: null, a bad timeout or bindingTimeout are InvalidArgumentError, nothing sent', async () => {
    const s = await silentUdp();
    await expect(detectDelta(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(detectDelta({ servers: [`127.0.0.1:${s.port}`], timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(detectDelta({ servers: [`127.0.0.1:${s.port}`], bindingTimeout: Number.NaN })).rejects.toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(s.received()).toBe(0);
  });

  it('detectNat: a timeout past 2^31 - 1 ms does not fire at once; 0 means none', async () => {
    const srv = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], rateLimit: false });
    cleanups.push(() => srv.close());
    const r = await detectNat({ servers: [srv.primary], timeout: HUGE, delta: false });
    expect(r.external).toBeDefined();
    const r0 = await detectNat({ servers: [srv.primary], timeout: 0, delta: false });
    expect(r0.external).toBeDefined();
  });

  it('mapPort: a timeout past 2^31 - 1 ms and the largest methodTimeout do not fire at once', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    // The gateway answers a little late: a timer fired after 1 ms would have given up by then.
    const late = (): void => {
      gw.silent = true;
      gw.override = (req, g) => {
        if (req.natpmp) setTimeout(() => g.send(g.natPmpAnswer(req.natpmp!), req.from), 30);
        return [];
      };
    };
    late();
    const base = { internalPort: 7777, protocol: 'udp' as const, gateway: { host: '127.0.0.1', port: gw.port, location: 'http://127.0.0.1:9/unused' }, methods: ['nat-pmp' as const] };
    const m1 = await mapPort({ ...base, timeout: HUGE, methodTimeout: 3_000 });
    expect(m1.externalPort).toBe(7777);
    await m1.close();
    const m2 = await mapPort({ ...base, methodTimeout: 0x7fffffff, timeout: 5_000 });
    expect(m2.externalPort).toBe(7777);
    await m2.close();
  });
});

describe('bad arguments: InvalidArgumentError before anything is sent', () => {
  it('mapPort: timeout that is not a number of ms, a gateway that is not an address or an object', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    const base = { internalPort: 7777, protocol: 'udp' as const, gateway: { host: '127.0.0.1', port: gw.port, location: 'http://127.0.0.1:9/unused' }, methods: ['nat-pmp' as const], methodTimeout: 300 };
    for (const timeout of ['x', -5, Number.NaN] as never[]) {
      await expect(mapPort({ ...base, timeout })).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    for (const gateway of [42, null, ['127.0.0.1'], { host: 42 }] as never[]) {
      const e = await mapPort({ ...base, gateway, interface: 'lo' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(InvalidArgumentError);
      expect((e as Error).message).toMatch(/gateway/);
      expect((e as Error).message).not.toMatch(/default gateway/);
    }
    await expect(getExternalAddress(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(gw.requests).toHaveLength(0);
  });

  it('PcpClient.unmap(null) is an InvalidArgumentError, not a TypeError', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    const c = new PcpClient({ gateway: '127.0.0.1', port: gw.port, localAddress: '127.0.0.1' });
    await expect(c.unmap(null as never, { timeout: 300 })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(gw.requests).toHaveLength(0);
  });

  it('NAT-PMP / PCP calls take timeout 0 and Infinity as "none" (the protocol schedule), as AbortOptions documents', async () => {
    const gw = await FakeGateway.start();
    cleanups.push(() => gw.close());
    const n = new NatPmpClient({ gateway: '127.0.0.1', port: gw.port, localAddress: '127.0.0.1' });
    expect((await n.externalAddress({ timeout: 0 })).externalAddress).toBe(gw.externalAddress);
    expect((await n.externalAddress({ timeout: Infinity })).externalAddress).toBe(gw.externalAddress);
    const p = new PcpClient({ gateway: '127.0.0.1', port: gw.port, localAddress: '127.0.0.1' });
    expect((await p.announce({ timeout: 0 })).epoch).toBeGreaterThan(0);
    await expect(n.externalAddress({ timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('StunClient.binding: null options and a malformed acceptFrom are InvalidArgumentError', async () => {
    const s = await silentUdp();
    const c = await StunClient.open({ server: `127.0.0.1:${s.port}` });
    cleanups.push(() => c.close());
    await expect(c.binding(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.binding({ acceptFrom: 'nonsense' as never, timeout: 200 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.binding({ acceptFrom: 42 as never, timeout: 200 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(s.received()).toBe(0);
  });

  it('stunGetMapping takes timeout 0 and Infinity as "none", as AbortOptions documents', async () => {
    const srv = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], rateLimit: false });
    cleanups.push(() => srv.close());
    expect((await stunGetMapping({ server: srv.primary, timeout: 0 })).mapped.host).toBe('127.0.0.1');
    expect((await stunGetMapping({ server: srv.primary, timeout: Infinity })).mapped.host).toBe('127.0.0.1');
    await expect(stunGetMapping({ server: srv.primary, timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('a STUN RTO past 2^31 - 1 ms is no burst of retransmissions: the timeout ends the transaction', async () => {
    const s = await silentUdp();
    const t0 = performance.now();
    const e = await stunGetMapping({ server: `127.0.0.1:${s.port}`, rto: 2 ** 31, timeout: 400 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as Error).message).toMatch(/400 ms/);
    expect(performance.now() - t0).toBeGreaterThan(300);
    expect(s.received()).toBe(1);
  });

  it('turnAllocate: a permission/channel refresh longer than their lifetime is refused (it would lapse, or storm past 2^31 ms)', async () => {
    const s = await silentUdp();
    const base = { server: `127.0.0.1:${s.port}`, username: 'u', password: 'p', timeout: 300 };
    await expect(turnAllocate({ ...base, permissionRefresh: 2 ** 31 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...base, permissionRefresh: 300_001 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(turnAllocate({ ...base, channelRefresh: 600_001 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(s.received()).toBe(0);
  });
});
