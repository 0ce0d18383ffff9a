/**
 * NAT-PMP / PCP clients, PortMapping renewal/close, and mapPort's method fallback, against a
 * fake gateway on 127.0.0.1 (non-standard port). UPnP: portmap-client-upnp.test.ts.
 */
import { createSocket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, PortMappingError } from '../src/errors.js';
import {
  NatPmpClient,
  NatPmpResult,
  PcpClient,
  PcpResult,
  PortMappingFailedError,
  encodeNatPmpResponse,
  encodePcpResponse,
  getExternalAddress,
  mapPort,
  pcpNonceEquals,
  type MapPortOptions,
} from '../src/nat/portmap/index.js';
import { main as mapPortExample } from '../examples/map-port.js';
import { FakeGateway, FakeIgd, handleCounts, type GwRequest } from './portmap-client-fakes.js';

let gw: FakeGateway;
let base: Record<string, number>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeEach(async () => {
  base = await handleCounts();
  gw = await FakeGateway.start();
});
afterEach(async () => {
  await gw.close();
  expect(await handleCounts()).toEqual(base); // no leaked socket
});

const opts = (o: Partial<MapPortOptions> = {}): MapPortOptions => ({
  internalPort: 7777,
  protocol: 'udp',
  gateway: { host: '127.0.0.1', port: gw.port },
  methods: ['nat-pmp'],
  methodTimeout: 1_500,
  ...o,
});

describe('NAT-PMP', () => {
  it('maps, reports the grant, and close() deletes with lifetime 0', async () => {
    const m = await mapPort(opts({ externalPort: 8888, lifetime: 3600 }));
    expect(m.method).toBe('nat-pmp');
    expect(m).toMatchObject({ protocol: 'udp', internalPort: 7777, externalPort: 8888, externalAddress: '203.0.113.7', lifetime: 3600, internalAddress: '127.0.0.1', state: 'active' });
    expect(m.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 3590_000);
    expect(gw.maps('natpmp')[0]?.natpmp).toMatchObject({ internalPort: 7777, externalPort: 8888, lifetime: 3600 });
    await m.close();
    await m.close(); // idempotent
    expect(m.state).toBe('closed');
    expect(gw.maps('natpmp').at(-1)?.natpmp).toMatchObject({ kind: 'map', internalPort: 7777, externalPort: 0, lifetime: 0 });
  });

  it('renews before expiry (short lifetime) and `await using` deletes', async () => {
    let renewals = 0;
    {
      await using m = await mapPort(opts({ lifetime: 2, minRenewGapMs: 100, onRenew: () => renewals++ }));
      await sleep(3_200);
      expect(m.state).toBe('active');
      expect(renewals).toBeGreaterThanOrEqual(2);
      expect(m.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    }
    const maps = gw.maps('natpmp');
    expect(maps.length).toBe(renewals + 2);
    expect(maps.at(-1)?.natpmp).toMatchObject({ lifetime: 0 });
  });

  it('reports failed renewals, then expiry', async () => {
    const failed: Error[] = [];
    let expired = 0;
    const m = await mapPort(opts({ lifetime: 2, minRenewGapMs: 200, onRenewFailed: (e) => failed.push(e), onExpire: () => expired++ }));
    gw.silent = true;
    await sleep(2_300);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]).toBeInstanceOf(PortMappingError);
    expect(expired).toBe(1);
    expect(m.state).toBe('expired');
    gw.silent = false;
    await m.renew(); // re-creates
    expect(m.state).toBe('active');
    await m.close();
  });

  it('renew() takes { signal, timeout }: an aborted signal rejects at once, a silent gateway within the timeout', async () => {
    const m = await mapPort(opts({ lifetime: 60 }));
    try {
      await expect(m.renew({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
      gw.silent = true;
      await expect(m.renew({ timeout: 300 })).rejects.toBeInstanceOf(PortMappingError);
      const ac = new AbortController();
      const p = m.renew({ signal: ac.signal, timeout: 1000 });
      setTimeout(() => ac.abort(), 50);
      await expect(p).rejects.toBeInstanceOf(AbortError);
    } finally {
      gw.silent = false;
      await m.close();
    }
  });

  it('re-maps every mapping at once when another one sees the gateway reboot (epoch)', async () => {
    let changed = 0;
    const a = await mapPort(opts({ internalPort: 7001, lifetime: 2, minRenewGapMs: 100 }));
    const b = await mapPort(opts({ internalPort: 7002, lifetime: 600, onChange: () => changed++ }));
    gw.reboot();
    gw.assignPort = (s) => s + 1000;
    await sleep(1_500); // a renews at 1 s and sees the epoch go back; b must follow at once (its own renewal is at 300 s)
    const bMaps = gw.maps('natpmp').filter((r) => r.natpmp?.kind === 'map' && r.natpmp.internalPort === 7002);
    expect(bMaps.length).toBe(2);
    expect(b.externalPort).toBe(8002);
    expect(changed).toBe(1);
    gw.assignPort = undefined;
    await Promise.all([a.close(), b.close()]);
  });

  it('a gateway with a reserved WAN address (NETWORK_FAILURE on opcode 0) still maps', async () => {
    gw.natPmpAddressResult = NatPmpResult.NETWORK_FAILURE;
    const m = await mapPort(opts());
    expect(m.externalAddress).toBeUndefined();
    expect(m.externalPort).toBe(7777);
    await m.close();
    const e = await getExternalAddress({ gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_000 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PortMappingFailedError);
    expect((e as PortMappingError).resultCode).toBe(NatPmpResult.NETWORK_FAILURE);
  });

  it('getExternalAddress over NAT-PMP', async () => {
    expect(await getExternalAddress({ gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'] })).toBe('203.0.113.7');
  });

  it('a refusal becomes a PortMappingError with the result code', async () => {
    gw.mapResult = NatPmpResult.NOT_AUTHORIZED;
    const c = new NatPmpClient({ gateway: '127.0.0.1', port: gw.port });
    const e = await c.map({ protocol: 'tcp', internalPort: 80 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PortMappingError);
    expect(e).toMatchObject({ method: 'nat-pmp', resultCode: 2, code: 'ERR_PORT_MAPPING' });
    expect((e as Error).message).toMatch(/NOT_AUTHORIZED/);
  });

  it('exactPort: another port is deleted and reported', async () => {
    gw.assignPort = (s) => s + 1;
    const e = await mapPort(opts({ externalPort: 8888, exactPort: true })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PortMappingFailedError);
    expect((e as Error).message).toMatch(/8889, not the requested 8888/);
    expect(gw.maps('natpmp').at(-1)?.natpmp).toMatchObject({ lifetime: 0 });
  });
});

describe('NAT-PMP bad input: ignored or a typed error, never a crash or a hang', () => {
  const good = (r: GwRequest, g: FakeGateway): Buffer => g.natPmpAnswer(r.natpmp!);
  const cases: Record<string, (r: GwRequest, g: FakeGateway) => Buffer[]> = {
    'a 2-byte reply': () => [Buffer.from([0, 0x81])],
    'an empty reply': () => [Buffer.alloc(0)],
    'a truncated map reply': (r, g) => [good(r, g).subarray(0, 12)],
    'an oversized reply': (r, g) => [Buffer.concat([good(r, g), Buffer.alloc(100)])],
    'a reply for another port (wrong id)': (_r, g) =>
      [encodeNatPmpResponse({ kind: 'map', protocol: 'udp', resultCode: 0, epoch: g.epoch, internalPort: 9999, externalPort: 9999, lifetime: 60 })],
    'a reply for TCP to a UDP request': (_r, g) =>
      [encodeNatPmpResponse({ kind: 'map', protocol: 'tcp', resultCode: 0, epoch: g.epoch, internalPort: 7777, externalPort: 7777, lifetime: 60 })],
    'a PCP-version reply': () => [Buffer.alloc(60, 2)],
    silence: () => [],
  };
  for (const [name, bad] of Object.entries(cases)) {
    it(`${name}`, async () => {
      gw.override = (r, g) => bad(r, g);
      const t0 = performance.now();
      const e = await mapPort(opts({ methodTimeout: 800 })).catch((x: unknown) => x);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect((e as PortMappingFailedError).attempts[0]?.error.message).toMatch(/no valid answer/);
    });
  }

  it('garbage first, then the real answer: the garbage is ignored', async () => {
    gw.override = (r, g) => [Buffer.from([0]), Buffer.alloc(30, 0xff), g.natPmpAnswer(r.natpmp!)];
    const m = await mapPort(opts());
    expect(m.externalPort).toBe(7777);
    gw.override = undefined;
    await m.close();
  });

  it('answers from the wrong source (other address, other port) are ignored', async () => {
    const other = createSocket('udp4');
    await new Promise<void>((r) => other.bind(0, '127.0.0.2', () => r()));
    const otherPort = createSocket('udp4');
    await new Promise<void>((r) => otherPort.bind(0, '127.0.0.1', () => r()));
    gw.override = (r, g) => {
      const ans = g.natPmpAnswer(r.natpmp!);
      g.send(ans, r.from, other);
      g.send(ans, r.from, otherPort);
      return [];
    };
    try {
      const e = await mapPort(opts({ methodTimeout: 700 })).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect((e as Error).message).toMatch(/datagram\(s\) from other sources dropped/);
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
      await new Promise<void>((r) => otherPort.close(() => r()));
    }
  });
});

describe('PCP', () => {
  const popts = (o: Partial<MapPortOptions> = {}): MapPortOptions => opts({ methods: ['pcp'], ...o });

  it('maps with our address as client address; renew and delete reuse the nonce', async () => {
    const m = await mapPort(popts({ lifetime: 2, minRenewGapMs: 100, externalPort: 8888 }));
    expect(m).toMatchObject({ method: 'pcp', externalAddress: '203.0.113.7', externalPort: 8888, internalAddress: '127.0.0.1' });
    await sleep(1_500);
    await m.close();
    const maps = gw.maps('pcp');
    expect(maps.length).toBeGreaterThanOrEqual(3);
    const nonce = maps[0]!.pcp!.kind === 'map' ? maps[0]!.pcp!.nonce : new Uint8Array();
    for (const r of maps) {
      expect(r.pcp).toMatchObject({ clientAddress: '127.0.0.1', internalPort: 7777, protocol: 17 });
      expect(pcpNonceEquals((r.pcp as { nonce: Uint8Array }).nonce, nonce)).toBe(true);
    }
    expect(maps[1]!.pcp).toMatchObject({ externalPort: 8888, externalAddress: '203.0.113.7' }); // renewal suggests what it has
    expect(maps.at(-1)!.pcp).toMatchObject({ lifetime: 0 });
  });

  it('refusals carry the PCP result code', async () => {
    gw.mapResult = PcpResult.NO_RESOURCES;
    const c = new PcpClient({ gateway: '127.0.0.1', port: gw.port });
    await expect(c.map({ protocol: 'udp', internalPort: 7777 }, { timeout: 1000 })).rejects.toMatchObject({ method: 'pcp', resultCode: 8 });
  });

  it('a NAT-PMP-only gateway: typed error at once, then NAT-PMP is used', async () => {
    gw.pcp = false;
    const c = new PcpClient({ gateway: '127.0.0.1', port: gw.port });
    await expect(c.map({ protocol: 'udp', internalPort: 7777 }, { timeout: 3000 })).rejects.toThrow(/NAT-PMP only/);
    const m = await mapPort(popts({ methods: ['pcp', 'nat-pmp'] }));
    expect(m.method).toBe('nat-pmp');
    await m.close();
  });

  const bad: Record<string, (r: { pcp?: { kind: string } }, g: FakeGateway) => Buffer[]> = {
    'a truncated reply': () => [Buffer.alloc(20, 2)],
    'a 2-byte reply': () => [Buffer.from([2, 0x81])],
    'an oversized reply': () => [Buffer.concat([Buffer.from([2, 0x81, 0, 0]), Buffer.alloc(1200)])],
    'a wrong nonce': (r, g) => {
      const req = r.pcp as unknown as { nonce: Uint8Array; internalPort: number };
      return [
        encodePcpResponse({ kind: 'map', resultCode: 0, lifetime: 60, epoch: g.epoch, nonce: new Uint8Array(12).fill(7), protocol: 17, internalPort: req.internalPort, externalPort: 1, externalAddress: '1.2.3.4' }),
      ];
    },
    silence: () => [],
  };
  for (const [name, f] of Object.entries(bad)) {
    it(`bad input: ${name}`, async () => {
      gw.override = (r, g) => f(r, g);
      const t0 = performance.now();
      const e = await mapPort(popts({ methodTimeout: 800 })).catch((x: unknown) => x);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect((e as PortMappingFailedError).attempts[0]).toMatchObject({ method: 'pcp' });
    });
  }
});

describe('mapPort orchestration', () => {
  it('methods order is configurable; the first that works wins', async () => {
    const m = await mapPort(opts({ methods: ['pcp', 'nat-pmp'] }));
    expect(m.method).toBe('pcp');
    await m.close();
    gw.override = (r) => (r.pcp ? [] : undefined); // PCP silent
    const n = await mapPort(opts({ methods: ['pcp', 'nat-pmp'], methodTimeout: 600 }));
    expect(n.method).toBe('nat-pmp');
    await n.close();
  });

  it('a gateway that answers nothing: one typed error listing every method tried, within the budgets', async () => {
    const igd = await FakeIgd.start();
    igd.ssdpSilent = true;
    gw.silent = true;
    const t0 = performance.now();
    const e = await mapPort(
      opts({ methods: ['upnp', 'nat-pmp', 'pcp'], methodTimeout: 700, gateway: { host: '127.0.0.1', port: gw.port, ssdp: `127.0.0.1:${igd.ssdpPort}` } }),
    ).catch((x: unknown) => x);
    expect(performance.now() - t0).toBeLessThan(3 * 700 + 800);
    expect(e).toBeInstanceOf(PortMappingFailedError);
    expect(e).toBeInstanceOf(PortMappingError);
    const f = e as PortMappingFailedError;
    expect(f.code).toBe('ERR_PORT_MAPPING');
    expect(f.attempts.map((a) => a.method)).toEqual(['upnp', 'nat-pmp', 'pcp']);
    expect(f.message).toMatch(/upnp: .*; nat-pmp: .*; pcp: /);
    expect(igd.searches.length).toBeGreaterThan(0);
    await igd.close();
  });

  it('the caller signal aborts at once with AbortError, and a bad option is an InvalidArgumentError', async () => {
    gw.silent = true;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const t0 = performance.now();
    await expect(mapPort(opts({ signal: ac.signal, methodTimeout: 5_000 }))).rejects.toBeInstanceOf(AbortError);
    expect(performance.now() - t0).toBeLessThan(1_000);
    await expect(mapPort(opts({ timeout: 200, methodTimeout: 5_000 }))).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    await expect(mapPort(opts({ internalPort: 0 }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(mapPort(opts({ methods: ['nat-pmp', 'nat-pmp'] }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});

describe('examples/map-port.ts', () => {
  it('7777 -> 8888, next port while taken (NAT-PMP offers another), then delete', async () => {
    gw.assignPort = (s) => (s < 8890 ? 40000 + s : s); // 8888 and 8889 are "taken"
    const lines: string[] = [];
    const r = await mapPortExample({ gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1000, log: (l) => lines.push(l) });
    expect(r).toMatchObject({ tried: [8888, 8889, 8890], method: 'nat-pmp', externalPort: 8890, externalAddress: '203.0.113.7', deleted: true });
    const maps = gw.maps('natpmp').map((q) => q.natpmp as { externalPort: number; lifetime: number; internalPort: number });
    expect(maps.map((q) => [q.externalPort, q.lifetime])).toEqual([[8888, 3600], [0, 0], [8889, 3600], [0, 0], [8890, 3600], [0, 0]]);
    expect(maps.every((q) => q.internalPort === 7777)).toBe(true);
    expect(lines.join('\n')).toMatch(/8888 is taken[\s\S]*mapped udp 127\.0\.0\.1:7777 -> 203\.0\.113\.7:8890 via nat-pmp[\s\S]*deleted/);
  });

  it('gives up at once when no gateway answers', async () => {
    gw.silent = true;
    await expect(mapPortExample({ gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 300, log: () => undefined })).rejects.toBeInstanceOf(PortMappingFailedError);
    expect(gw.maps('natpmp').every((q) => (q.natpmp as { externalPort: number }).externalPort === 8888)).toBe(true);
  });
});
