import { createHook } from 'node:async_hooks';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError, InterfaceNotFoundError, InvalidArgumentError } from '../src/errors.js';
import { buildInterfaces } from '../src/interfaces/interfaces.js';
import { rejection } from './helpers/pipes.js';
import {
  Interface,
  Interfaces,
  bestDefaultRoute,
  defaultGateway,
  getDefaultInterface,
  getInterface,
  getInterfaces,
  initP2pd,
  ipFamily,
  ipScope,
  isUnspecified,
  parseProcNetIpv6Route,
  parseProcNetRoute,
  readRouteTable,
  type AddressScope,
  type RouteTable,
} from '../src/interfaces/index.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('real machine enumeration', () => {
  it('lists the loopback interface with 127.0.0.1 (scope loopback)', async () => {
    const ifs = await initP2pd();
    expect(ifs.length).toBeGreaterThan(0);
    const lo = ifs.list.find((i) => i.addresses.some((a) => a.address === '127.0.0.1'));
    expect(lo).toBeDefined();
    expect(lo?.loopback).toBe(true);
    expect(lo?.up).toBe(true);
    expect(lo?.addresses.find((a) => a.address === '127.0.0.1')).toMatchObject({ family: 4, scope: 'loopback', prefixLength: 8 });
    expect(lo?.supports(4)).toBe(true);
    expect(ifs.byName(lo?.name ?? '')).toBe(lo);
    if (process.platform === 'linux') {
      expect(ifs.routesAvailable).toBe(true);
      expect(lo?.index).toBeGreaterThan(0);
    }
  });

  it('every interface and address is well formed', async () => {
    const ifs = await initP2pd();
    const names = new Set<string>();
    for (const i of ifs) {
      expect(i).toBeInstanceOf(Interface);
      expect(names.has(i.name)).toBe(false);
      names.add(i.name);
      expect(Number.isInteger(i.index)).toBe(true);
      expect(i.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i);
      for (const a of i.addresses) {
        expect(ipFamily(a.address)).toBe(a.family);
        expect(a.scope).toBe(ipScope(a.address));
        expect(a.prefixLength).toBeGreaterThanOrEqual(0);
        expect(a.prefixLength).toBeLessThanOrEqual(a.family === 4 ? 32 : 128);
        if (a.family === 6 && a.scope === 'link-local' && process.platform === 'linux') {
          expect(a.scopeId).toBe(i.index);
        }
        if (a.scope !== 'link-local') expect(a.scopeId).toBeUndefined();
      }
      for (const f of [4, 6] as const) {
        const gw = i.gateways[f];
        if (gw !== undefined) expect(ipFamily(gw)).toBe(f);
        expect(typeof i.isDefault[f]).toBe('boolean');
      }
    }
    // At most one interface holds each family's default route.
    expect(ifs.list.filter((i) => i.isDefault[4]).length).toBeLessThanOrEqual(1);
    expect(ifs.list.filter((i) => i.isDefault[6]).length).toBeLessThanOrEqual(1);
    const def = ifs.tryDefault();
    if (def) expect(ifs.list).toContain(def);
    expect(ifs.list.map((i) => i.index).filter((x) => x >= 0)).toEqual(
      [...ifs.list.map((i) => i.index).filter((x) => x >= 0)].sort((a, b) => a - b),
    );
  });

  it('byName of an unknown name throws InterfaceNotFoundError naming the known ones', async () => {
    const ifs = await initP2pd();
    let err: unknown;
    try {
      ifs.byName('no-such-if0');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InterfaceNotFoundError);
    expect((err as InterfaceNotFoundError).code).toBe('ERR_NO_INTERFACE');
    expect((err as Error).message).toContain('no-such-if0');
    for (const n of ifs.names()) expect((err as Error).message).toContain(n);
    expect(ifs.find('no-such-if0')).toBeUndefined();
    const e2 = await rejection(getInterface('no-such-if0'));
    expect(e2).toBeInstanceOf(InterfaceNotFoundError);
    expect((e2 as InterfaceNotFoundError).code).toBe('ERR_NO_INTERFACE');
    expect(() => ifs.byName(42 as unknown as string)).toThrow(InvalidArgumentError);
  });

  it('standalone helpers agree with initP2pd', async () => {
    const ifs = await initP2pd();
    const list = await getInterfaces();
    expect(list.map((i) => i.name)).toEqual(ifs.names());
    const first = ifs.list[0];
    if (first) expect((await getInterface(first.name)).name).toBe(first.name);
    const def = ifs.tryDefault(4);
    if (def) expect((await getDefaultInterface(4)).name).toBe(def.name);
    expect(await rejection(getDefaultInterface(5 as 4))).toBeInstanceOf(InvalidArgumentError);
  });

  it('honours loopback:false and include', async () => {
    const noLo = await initP2pd({ loopback: false });
    expect(noLo.list.some((i) => i.loopback)).toBe(false);
    const onlyLo = await initP2pd({ include: (i) => i.loopback });
    expect(onlyLo.length).toBeGreaterThan(0);
    expect(onlyLo.list.every((i) => i.loopback)).toBe(true);
    expect(await rejection(initP2pd({ include: 'x' as unknown as () => boolean }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(initP2pd({ timeout: -1 }))).toBeInstanceOf(InvalidArgumentError);
  });

  it('rejects with AbortError when the signal is already aborted', async () => {
    const err = await rejection(initP2pd({ signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).code).toBe('ABORT_ERR');
  });

  it('sends nothing on the network (no sockets, lookups or child processes)', async () => {
    const spies = [
      vi.spyOn(dgram, 'createSocket'),
      vi.spyOn(net, 'connect'),
      vi.spyOn(net, 'createConnection'),
      vi.spyOn(net, 'createServer'),
      vi.spyOn(dns, 'lookup'),
    ];
    // Catches sockets created through any import style, by watching the native handles.
    const forbidden = /^(UDPWRAP|TCPWRAP|TCPCONNECTWRAP|TCPSERVERWRAP|GETADDRINFOREQWRAP|GETNAMEINFOREQWRAP|QUERYWRAP|PROCESSWRAP|SENDWRAP)$/;
    const seen: string[] = [];
    const hook = createHook({
      init(_id, type) {
        if (forbidden.test(type)) seen.push(type);
      },
    }).enable();
    try {
      const ifs = await initP2pd();
      ifs.tryDefault();
      await getInterfaces();
    } finally {
      hook.disable();
    }
    expect(seen).toEqual([]);
    for (const s of spies) expect(s).not.toHaveBeenCalled();
  });
});

describe('ipScope', () => {
  const table: [string, AddressScope][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'loopback'],
    ['0.1.2.3', 'loopback'],
    ['::', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['169.254.0.1', 'link-local'],
    ['169.254.255.255', 'link-local'],
    ['169.253.1.1', 'global'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['FE80::1', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fec0::1', 'global'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.15.255.255', 'global'],
    ['172.32.0.0', 'global'],
    ['192.168.1.1', 'private'],
    ['192.169.0.1', 'global'],
    ['::ffff:192.168.1.1', 'private'],
    ['::ffff:c0a8:101', 'private'],
    ['::ffff:10.1.2.3', 'private'],
    ['fc00::1', 'ula'],
    ['fd12:3456:789a::1', 'ula'],
    ['fbff::1', 'global'],
    ['fe00::1', 'global'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['100.63.255.255', 'global'],
    ['100.128.0.0', 'global'],
    ['::ffff:100.64.0.1', 'cgnat'],
    ['8.8.8.8', 'global'],
    ['1.1.1.1', 'global'],
    ['224.0.0.1', 'global'],
    ['2001:4860:4860::8888', 'global'],
    ['2606:4700::1111', 'global'],
    ['::2', 'global'],
    ['::ffff:8.8.8.8', 'global'],
    ['64:ff9b::808:808', 'global'],
  ];
  it.each(table)('%s → %s', (ip, scope) => {
    expect(ipScope(ip)).toBe(scope);
  });

  it.each(['', 'localhost', '1.2.3', '1.2.3.4.5', '::1::', '[::1]', 'x'.repeat(1000), '256.0.0.1'])(
    'rejects %j with InvalidArgumentError',
    (bad) => {
      expect(() => ipScope(bad)).toThrow(InvalidArgumentError);
    },
  );

  it('never throws anything but InvalidArgumentError, and agrees with the bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string({ maxLength: 50 })), (s) => {
        try {
          const scope = ipScope(s);
          expect(ipFamily(s)).toBeDefined();
          expect(typeof scope).toBe('string');
        } catch (e) {
          expect(e).toBeInstanceOf(InvalidArgumentError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

// The literal <-> bytes converter itself (ipToBytes, bytesToIp, ipFamily, unmapIPv4) is tested in test/ip.test.ts.
describe('isUnspecified', () => {
  it('is true for 0.0.0.0, :: and ::ffff:0.0.0.0 only', () => {
    expect(isUnspecified('0.0.0.0')).toBe(true);
    expect(isUnspecified('::')).toBe(true);
    expect(isUnspecified('::ffff:0.0.0.0')).toBe(true);
    expect(isUnspecified('127.0.0.1')).toBe(false);
    expect(isUnspecified('junk')).toBe(false);
  });
});

const ROUTE_V4 = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0100000A\t0003\t0\t0\t600\t00000000\t0\t0\t0
ppp0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
down0\t00000000\t0100000A\t0002\t0\t0\t1\t00000000\t0\t0\t0
blackhole0\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0
garbage line
eth1\tZZZZZZZZ\t0101A8C0\t0003\t0\t0\t0\t00000000
eth1\t00000000\t0101A8C0\t0003\t0\t0\tNaN\t00000000
eth1\t00000000\t0101A8C0\t0003\t0\t0
\t\t\t
`;

const ROUTE_V6 = `fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000100 00000002 00000000 00000003    wlan0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001      wg0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000000000000000000g 00000100 00000002 00000000 00000003    bad0
00000000000000000000000000000000 00 00000000000000000000000000000000
not a route at all
`;

describe('route table parsing', () => {
  it('parses /proc/net/route (little-endian) and skips malformed lines', () => {
    expect(parseProcNetRoute(ROUTE_V4, 'LE')).toEqual([
      { iface: 'eth0', family: 4, gateway: '192.168.1.1', metric: 100 },
      { iface: 'wlan0', family: 4, gateway: '10.0.0.1', metric: 600 },
      { iface: 'ppp0', family: 4, metric: 50 },
    ]);
  });

  it('honours big-endian hosts', () => {
    expect(parseProcNetRoute('eth0\t00000000\tC0A80101\t0003\t0\t0\t0\t00000000\t0\t0\t0\n', 'BE')).toEqual([
      { iface: 'eth0', family: 4, gateway: '192.168.1.1', metric: 0 },
    ]);
  });

  it('parses /proc/net/ipv6_route, dropping the lo reject route', () => {
    expect(parseProcNetIpv6Route(ROUTE_V6)).toEqual([
      { iface: 'eth0', family: 6, gateway: 'fd00::1', metric: 1024 },
      { iface: 'wlan0', family: 6, gateway: 'fe80::1', metric: 256 },
      { iface: 'wg0', family: 6, metric: 1024 },
    ]);
  });

  it('picks the lowest-metric default and per-interface gateways', () => {
    const routes = [...parseProcNetRoute(ROUTE_V4, 'LE'), ...parseProcNetIpv6Route(ROUTE_V6)];
    expect(bestDefaultRoute(routes, 4)?.iface).toBe('ppp0');
    expect(bestDefaultRoute(routes, 6)?.iface).toBe('wlan0');
    expect(bestDefaultRoute([], 6)).toBeUndefined();
    expect(defaultGateway(routes, 'eth0', 4)).toBe('192.168.1.1');
    expect(defaultGateway(routes, 'eth0', 6)).toBe('fd00::1');
    expect(defaultGateway(routes, 'ppp0', 4)).toBeUndefined();
    expect(defaultGateway(routes, 'nope', 4)).toBeUndefined();
  });

  it('parsers never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) => {
        expect(Array.isArray(parseProcNetRoute(s))).toBe(true);
        expect(Array.isArray(parseProcNetIpv6Route(s))).toBe(true);
      }),
      { numRuns: 1000 },
    );
    expect(parseProcNetRoute('')).toEqual([]);
    expect(parseProcNetIpv6Route(undefined as unknown as string)).toEqual([]);
  });

  it('readRouteTable: best effort off Linux or when unreadable, parses files on Linux', async () => {
    expect(await readRouteTable({ platform: 'darwin' })).toEqual({ available: false, defaults: [] });
    expect(await readRouteTable({ platform: 'linux', routePath: '/nonexistent/a', ipv6RoutePath: '/nonexistent/b' })).toEqual({
      available: false,
      defaults: [],
    });
    const dir = await mkdtemp(join(tmpdir(), 'p2pd-routes-'));
    try {
      await writeFile(join(dir, 'route'), ROUTE_V4);
      await writeFile(join(dir, 'ipv6_route'), ROUTE_V6);
      const t = await readRouteTable({ platform: 'linux', routePath: join(dir, 'route'), ipv6RoutePath: join(dir, 'ipv6_route') });
      expect(t.available).toBe(true);
      expect(t.defaults).toHaveLength(6);
      const v4only = await readRouteTable({ platform: 'linux', routePath: join(dir, 'route'), ipv6RoutePath: join(dir, 'x') });
      expect(v4only.available).toBe(true);
      expect(v4only.defaults.every((r) => r.family === 4)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

function nic(address: string, prefix: number, extra: Partial<NetworkInterfaceInfo> = {}): NetworkInterfaceInfo {
  const v6 = address.includes(':');
  const base = { address, netmask: v6 ? 'ffff:ffff:ffff:ffff::' : '255.255.255.0', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/${prefix}` };
  return (v6 ? { ...base, family: 'IPv6', scopeid: 0, ...extra } : { ...base, family: 'IPv4', ...extra }) as NetworkInterfaceInfo;
}

const RAW = {
  lo: [nic('127.0.0.1', 8, { internal: true, mac: '00:00:00:00:00:00' }), nic('::1', 128, { internal: true })],
  eth0: [nic('192.168.1.5', 24), nic('fe80::5', 64, { scopeid: 2 })],
  wlan0: [nic('10.0.0.7', 24), nic('2001:db8::7', 64), nic('fe80::7', 64, { scopeid: 3 })],
  tun0: [nic('100.64.1.2', 10, { cidr: null, netmask: '255.192.0.0' })],
};

describe('buildInterfaces (synthetic data)', () => {
  const routes: RouteTable = {
    available: true,
    defaults: [...parseProcNetRoute(ROUTE_V4, 'LE'), ...parseProcNetIpv6Route(ROUTE_V6)],
  };

  it('builds interfaces, indexes, scopes and default flags from the route table', () => {
    const list = buildInterfaces(RAW, routes);
    expect(list.map((i) => i.name)).toEqual(['eth0', 'wlan0', 'lo', 'tun0']);
    const ifs = new Interfaces(list, true);
    const eth0 = ifs.byName('eth0');
    expect(eth0.index).toBe(2);
    expect(eth0.gateways).toEqual({ 4: '192.168.1.1', 6: 'fd00::1' });
    expect(eth0.linkLocal()).toMatchObject({ address: 'fe80::5', scopeId: 2, scope: 'link-local', prefixLength: 64 });
    expect(eth0.primary(4)?.address).toBe('192.168.1.5');
    expect(eth0.supports(6)).toBe(true);
    // ppp0 holds the best IPv4 default but has no addresses: falls back to the heuristic.
    expect(list.some((i) => i.isDefault[4])).toBe(false);
    const wlan0 = ifs.byName('wlan0');
    expect(wlan0.isDefault).toEqual({ 4: false, 6: true });
    expect(wlan0.primary(6)?.address).toBe('2001:db8::7');
    expect(wlan0.addressesOf(6, 'link-local')).toHaveLength(1);
    expect(ifs.default(6)).toBe(wlan0);
    expect(ifs.default()).toBe(wlan0); // IPv6 route before the IPv4 heuristic
    expect(['eth0', 'wlan0']).toContain(ifs.default(4).name);
    const tun0 = ifs.byName('tun0');
    expect(tun0.index).toBe(-1);
    expect(tun0.addresses[0]).toMatchObject({ scope: 'cgnat', prefixLength: 10 });
    expect(tun0.supports(6)).toBe(false);
    const lo = ifs.byName('lo');
    expect(lo.loopback).toBe(true);
    expect(lo.isDefault).toEqual({ 4: false, 6: false });
    expect(() => lo.supports(5 as 4)).toThrow(InvalidArgumentError);
  });

  it('uses sysfs for index, up and loopback when present', () => {
    const sys = new Map([
      ['eth0', { index: 7, operstate: 'down', flags: 0x1003 }],
      ['wlan0', { index: 8, operstate: 'up', flags: 0x1002 }],
      ['lo', { index: 1, operstate: 'unknown', flags: 0x9 }],
    ]);
    const ifs = new Interfaces(buildInterfaces(RAW, routes, sys), true);
    expect(ifs.names()).toEqual(['lo', 'eth0', 'wlan0', 'tun0']);
    expect(ifs.byName('eth0').up).toBe(false);
    expect(ifs.byName('wlan0').up).toBe(false);
    expect(ifs.byName('lo').up).toBe(true);
    expect(ifs.byName('tun0').up).toBe(true);
    // wlan0 holds the IPv6 default route but is down; the heuristic has nothing routable on v6.
    expect(ifs.tryDefault(6)).toBeUndefined();
    expect(ifs.default(4).name).toBe('tun0');
  });

  it('without a route table, isDefault comes from the heuristic (best effort)', () => {
    const list = buildInterfaces(RAW, { available: false, defaults: [] });
    const ifs = new Interfaces(list, false);
    expect(ifs.routesAvailable).toBe(false);
    expect(ifs.list.every((i) => Object.keys(i.gateways).length === 0)).toBe(true);
    expect(ifs.byName('wlan0').isDefault[6]).toBe(true);
    expect(ifs.list.filter((i) => i.isDefault[4])).toHaveLength(1);
  });

  it('default() throws InterfaceNotFoundError when nothing qualifies', () => {
    const ifs = new Interfaces(buildInterfaces({ lo: RAW.lo }, { available: true, defaults: [] }), true);
    expect(ifs.tryDefault()).toBeUndefined();
    expect(() => ifs.default()).toThrow(InterfaceNotFoundError);
    expect(() => ifs.default(6)).toThrow(/IPv6/);
    expect(() => new Interfaces([]).byName('x')).toThrow(/\(none\)/);
  });

  it('Interface is an immutable snapshot', () => {
    const [i] = buildInterfaces({ eth0: RAW.eth0 }, routes);
    expect(i && Object.isFrozen(i.addresses)).toBe(true);
    expect(i && Object.isFrozen(i.addresses[0])).toBe(true);
    expect(JSON.parse(JSON.stringify(i))).toMatchObject({ name: 'eth0', gateways: { 4: '192.168.1.1' } });
  });
});
