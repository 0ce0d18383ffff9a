/**
 * NAT detection on loopback, without root:
 * - against p2pd's RFC 5780 server on 127.0.0.1 / 127.0.0.2 (no NAT: OPEN), in classic mode,
 *   with plain servers only ('basic'), with silent servers (BLOCKED), cancelled;
 * - against a fake RFC 5780 server that *emulates* a NAT (reports translated mappings and
 *   drops CHANGE-REQUEST answers the emulated filter would drop), for every P2PD type;
 * - the delta test against fakes with each allocation pattern, and the pure classifiers.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, InvalidArgumentError, TimeoutError } from '../src/errors.js';
import {
  classifyDelta, detectDelta, detectNat, mappingBehaviorOf, natTypeOf, NAT_TYPE_CODE, portDiff,
  type NatBehavior, type NatProgress, type PortSample,
} from '../src/nat/detect/index.js';
import { ATTR, CLASS, METHOD, decodeStun, encodeStun, getAttr, startStunServer, type StunAttribute, type StunServer } from '../src/nat/stun/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function liveSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}
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

async function bound(host = '127.0.0.1', port = 0): Promise<UdpSocket> {
  const s = createSocket('udp4');
  s.bind(port, host);
  await once(s, 'listening');
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

describe('detectNat against p2pd\'s RFC 5780 server on loopback', () => {
  let srv: StunServer;
  beforeAll(async () => {
    srv = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], rateLimit: false });
  });
  afterAll(() => srv?.close());

  it('no NAT, no filter: OPEN, endpoint-independent both ways, delta EQUAL, hairpin, well under 1 s', async () => {
    const steps: NatProgress['step'][] = [];
    const before = await settled();
    const r = await detectNat({ servers: [srv.primary], hairpin: true, onProgress: (p) => steps.push(p.step) });
    expect(r.type).toBe('OPEN');
    expect(r.mapping).toBe('endpoint-independent');
    expect(r.filtering).toBe('endpoint-independent');
    expect(r.nat).toBe(false);
    expect(r.method).toBe('rfc5780');
    expect(r.server).toEqual(srv.primary);
    expect(r.otherAddress).toEqual(srv.other);
    expect(r.external).toEqual(r.local);
    expect(r.delta?.type).toBe('EQUAL');
    expect(r.delta?.samples).toHaveLength(16);
    expect(r.hairpin).toBe(true);
    expect(r.ms).toBeLessThan(1000);
    expect(steps[0]).toBe('binding');
    expect(steps).toContain('filtering');
    expect(steps).toContain('delta');
    expect(steps.at(-1)).toBe('done');
    expect(r.tests.map((t) => t.name)).toEqual(expect.arrayContaining(['I', 'map-base', 'filter-II', 'hairpin']));
    expect(await settled()).toBe(before);
  });

  it('RFC 3489 classic requests: method rfc3489, same answer', async () => {
    const r = await detectNat({ servers: [srv.primary], classic: true, delta: false });
    expect(r.method).toBe('rfc3489');
    expect(r.type).toBe('OPEN');
    expect(r.delta).toBeUndefined();
  });

  it('skips servers that do not answer and uses the next one', async () => {
    const silent = await bound();
    const r = await detectNat({ servers: [`127.0.0.1:${silent.address().port}`, srv.primary], bindingTimeout: 200, delta: false });
    expect(r.type).toBe('OPEN');
    expect(r.server).toEqual(srv.primary);
    expect(r.tests.filter((t) => t.name === 'I').map((t) => t.ok)).toEqual([false, true]);
  });

  it('bad arguments are InvalidArgumentError', async () => {
    await expect(detectNat({ servers: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(detectNat({ servers: ['stun.example.org'] })).rejects.toThrow();
    await expect(detectNat({ servers: [srv.primary], family: 6 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(detectNat({ servers: [srv.primary], filterTimeout: -5 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('detectNat: no usable server', () => {
  it('silent servers: BLOCKED after bindingTimeout, no delta, no leaked sockets', async () => {
    const a = await bound();
    const b = await bound();
    const before = await settled();
    const t0 = performance.now();
    const r = await detectNat({ servers: [`127.0.0.1:${a.address().port}`, `127.0.0.1:${b.address().port}`], bindingTimeout: 200 });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.type).toBe('BLOCKED');
    expect(r.method).toBe('none');
    expect(r.mapping).toBe('unknown');
    expect(r.external).toBeUndefined();
    expect(r.delta).toBeUndefined();
    expect(await settled()).toBe(before);
  });

  it('signal and timeout end it with AbortError / TimeoutError, no leaked sockets', async () => {
    const a = await bound();
    const before = await settled();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 60);
    let t0 = performance.now();
    await expect(detectNat({ servers: [`127.0.0.1:${a.address().port}`], signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    expect(performance.now() - t0).toBeLessThan(500);
    t0 = performance.now();
    await expect(detectNat({ servers: [`127.0.0.1:${a.address().port}`], timeout: 80 })).rejects.toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(await settled()).toBe(before);
  });

  it('plain servers without CHANGE-REQUEST support: method basic, mapping from two servers, filtering unknown', async () => {
    const s1 = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    const s2 = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    cleanups.push(() => s1.close(), () => s2.close());
    const r = await detectNat({ servers: [s1.primary, s2.primary], delta: false });
    expect(r.method).toBe('basic');
    expect(r.nat).toBe(false);
    expect(r.mapping).toBe('endpoint-independent');
    expect(r.filtering).toBe('unknown');
    expect(r.type).toBe('SYMMETRIC_UDP_FIREWALL');
  });
});

// ------------------------------------------------------------------------------------------
// A fake RFC 5780 server that emulates a NAT in front of the client.

type Mapping = 'eim' | 'adm' | 'apdm';
type Filtering = 'eif' | 'adf' | 'apdf';

interface NatFake {
  primary: { host: string; port: number };
  close(): Promise<void>;
}

/**
 * Four sockets (127.0.0.1 / 127.0.0.2 × two ports). Each answers Binding requests as if the
 * client sat behind a NAT with the given mapping (external address 198.51.100.1, port derived
 * from the client port and, for dependent mappings, from the server address/port) and filtering
 * (a CHANGE-REQUEST answer is only sent if the emulated filter would let it in: the client's
 * socket must have sent to that address (adf) or address and port (apdf) before). `nat: false`
 * reports the real address (no NAT).
 */
async function natFake(mapping: Mapping, filtering: Filtering, nat = true): Promise<NatFake> {
  const ips = ['127.0.0.1', '127.0.0.2'];
  const socks: UdpSocket[][] = [];
  for (let i = 0; i < ips.length; i++) {
    const row: UdpSocket[] = [];
    for (let p = 0; p < 2; p++) row.push(createSocket('udp4'));
    socks.push(row);
  }
  // Same two port numbers on both IPs.
  for (;;) {
    try {
      socks[0]![0]!.bind(0, ips[0]);
      await once(socks[0]![0]!, 'listening');
      socks[0]![1]!.bind(0, ips[0]);
      await once(socks[0]![1]!, 'listening');
      const p0 = socks[0]![0]!.address().port;
      const p1 = socks[0]![1]!.address().port;
      socks[1]![0]!.bind(p0, ips[1]);
      await once(socks[1]![0]!, 'listening');
      socks[1]![1]!.bind(p1, ips[1]);
      await once(socks[1]![1]!, 'listening');
      break;
    } catch {
      for (const s of socks.flat()) s.close();
      throw new Error('port collision in natFake; rerun');
    }
  }
  const ports = [socks[0]![0]!.address().port, socks[0]![1]!.address().port];
  /** Per client port: server endpoints it sent to ("ip|port"). */
  const sent = new Map<number, Set<string>>();
  for (let i = 0; i < 2; i++) {
    for (let p = 0; p < 2; p++) {
      const s = socks[i]![p]!;
      s.on('message', (buf: Buffer, from: RemoteInfo) => {
        let req;
        try {
          req = decodeStun(buf);
        } catch {
          return;
        }
        if (req.cls !== CLASS.REQUEST || req.method !== METHOD.BINDING) return;
        const seen = sent.get(from.port) ?? new Set<string>();
        sent.set(from.port, seen);
        seen.add(`${i}|${p}`);
        const change = getAttr(req, ATTR.CHANGE_REQUEST);
        const ri = change?.changeIp ? 1 - i : i;
        const rp = change?.changePort ? 1 - p : p;
        const pass = filtering === 'eif' || (filtering === 'adf' ? [...seen].some((k) => k.startsWith(`${ri}|`)) : seen.has(`${ri}|${rp}`));
        if (!pass) return;
        const extPort = (from.port + 10000 + (mapping === 'eim' ? 0 : i * 7 + (mapping === 'apdm' ? p * 13 : 0))) % 65536;
        const mapped = nat ? { host: '198.51.100.1', port: extPort, family: 4 as const } : { host: from.address, port: from.port, family: 4 as const };
        const attributes: StunAttribute[] = [
          { type: ATTR.XOR_MAPPED_ADDRESS, value: mapped },
          { type: ATTR.RESPONSE_ORIGIN, value: { host: ips[ri]!, port: ports[rp]!, family: 4 } },
          { type: ATTR.OTHER_ADDRESS, value: { host: ips[1 - i]!, port: ports[1 - p]!, family: 4 } },
        ];
        const res = encodeStun({ method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: req.transactionId, attributes, cookie: req.cookie });
        socks[ri]![rp]!.send(res, from.port, from.address);
      });
    }
  }
  return {
    primary: { host: ips[0]!, port: ports[0]! },
    close: async () => {
      await Promise.all(socks.flat().map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

describe('detectNat against an emulated NAT (fake RFC 5780 server)', () => {
  const cases: [Mapping, Filtering, boolean, string, NatBehavior, NatBehavior][] = [
    ['eim', 'eif', true, 'FULL_CONE', 'endpoint-independent', 'endpoint-independent'],
    ['eim', 'adf', true, 'RESTRICTED_CONE', 'endpoint-independent', 'address-dependent'],
    ['eim', 'apdf', true, 'PORT_RESTRICTED_CONE', 'endpoint-independent', 'address-and-port-dependent'],
    ['adm', 'apdf', true, 'SYMMETRIC', 'address-dependent', 'address-and-port-dependent'],
    ['apdm', 'apdf', true, 'SYMMETRIC', 'address-and-port-dependent', 'address-and-port-dependent'],
    ['apdm', 'eif', true, 'SYMMETRIC', 'address-and-port-dependent', 'endpoint-independent'],
    ['eim', 'apdf', false, 'SYMMETRIC_UDP_FIREWALL', 'endpoint-independent', 'address-and-port-dependent'],
    ['eim', 'adf', false, 'SYMMETRIC_UDP_FIREWALL', 'endpoint-independent', 'address-dependent'],
    ['eim', 'eif', false, 'OPEN', 'endpoint-independent', 'endpoint-independent'],
  ];
  for (const [m, f, nat, type, mapping, filtering] of cases) {
    it(`${nat ? 'NAT' : 'no NAT'} ${m}/${f}: ${type}, ${mapping} mapping, ${filtering} filtering`, async () => {
      const fake = await natFake(m, f, nat);
      cleanups.push(() => fake.close());
      const r = await detectNat({ servers: [fake.primary], delta: false, filterTimeout: 150 });
      expect(r.method).toBe('rfc5780');
      expect(r.nat).toBe(nat);
      expect(r.type).toBe(type);
      expect(r.mapping).toBe(mapping);
      expect(r.filtering).toBe(filtering);
      if (nat) expect(r.external?.host).toBe('198.51.100.1');
      // Filtering NATs cost one filter wait; open ones a few round trips.
      expect(r.ms).toBeLessThan(f === 'eif' ? 150 : 600);
    });
  }
});

// ------------------------------------------------------------------------------------------
// Port allocation delta.

/** A one-socket STUN fake that reports the mapped port `alloc(clientPort)`. */
async function allocFake(alloc: (clientPort: number) => number): Promise<{ host: string; port: number }> {
  const s = await bound();
  const known = new Map<number, number>();
  s.on('message', (buf: Buffer, from: RemoteInfo) => {
    const req = decodeStun(buf);
    let port = known.get(from.port);
    if (port === undefined) {
      port = alloc(from.port) & 0xffff;
      known.set(from.port, port);
    }
    const res = encodeStun({
      method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: req.transactionId,
      attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: '198.51.100.1', port, family: 4 } }],
    });
    s.send(res, from.port, from.address);
  });
  return { host: '127.0.0.1', port: s.address().port };
}

describe('port allocation delta', () => {
  it('EQUAL against a real server on loopback (mapped = local)', async () => {
    const srv = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    cleanups.push(() => srv.close());
    const before = await settled();
    const d = await detectDelta({ servers: [srv.primary] });
    expect(d.type).toBe('EQUAL');
    expect(d.samples).toHaveLength(16);
    expect(d.samples.filter((s) => s.series === 'consecutive').map((s) => s.local)).toEqual(
      Array.from({ length: 8 }, (_, i) => (d.samples[0] as PortSample).local + i),
    );
    expect(await settled()).toBe(before);
  });

  it('PRESERVING (+offset), INDEPENDENT (+n per mapping), DEPENDENT (+n per local port), RANDOM from emulated NATs', async () => {
    const pres = await allocFake((p) => p + 1000);
    expect(await detectDelta({ servers: [pres] })).toMatchObject({ type: 'PRESERVING', value: 1000 });
    let counter = 30000;
    const ind = await allocFake(() => (counter += 3));
    expect(await detectDelta({ servers: [ind] })).toMatchObject({ type: 'INDEPENDENT', value: 3 });
    const dep = await allocFake((p) => 5000 + 4 * p);
    expect(await detectDelta({ servers: [dep] })).toMatchObject({ type: 'DEPENDENT', value: 4 });
    const rnd = await allocFake(() => 1024 + Math.floor(Math.random() * 60000));
    expect(await detectDelta({ servers: [rnd] })).toMatchObject({ type: 'RANDOM', value: 0 });
  });

  it('no answer at all: TimeoutError; bad options: InvalidArgumentError', async () => {
    const silent = await bound();
    const before = await settled();
    await expect(detectDelta({ servers: [`127.0.0.1:${silent.address().port}`], bindingTimeout: 150, count: 3 })).rejects.toBeInstanceOf(TimeoutError);
    expect(await settled()).toBe(before);
    await expect(detectDelta({ servers: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(detectDelta({ servers: ['127.0.0.1'], count: 1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  // Scripted sequences in the spirit of P2PD's tests/test_nat.py.
  const series = (kind: PortSample['series'], pairs: [number, number | undefined][]): PortSample[] =>
    pairs.map(([local, mapped], index) => ({ series: kind, index, local, mapped }));
  it('classifyDelta on scripted samples', () => {
    const spread = [40000, 40007, 40011, 40030, 40041, 40042, 40060, 40071];
    const consec = [50000, 50001, 50002, 50003, 50004, 50005, 50006, 50007];
    const run = (f: (l: number, i: number) => number | undefined, g = f) =>
      classifyDelta([...series('consecutive', consec.map((l, i) => [l, f(l, i)])), ...series('spread', spread.map((l, i) => [l, g(l, i + 8)]))]);
    expect(run((l) => l)).toMatchObject({ type: 'EQUAL', value: 0 });
    expect(run((l) => l + 5)).toMatchObject({ type: 'PRESERVING', value: 5 });
    expect(run((_l, i) => 20000 + 10 * i)).toMatchObject({ type: 'INDEPENDENT', value: 10 });
    expect(run((l) => 2 * l - 70000)).toMatchObject({ type: 'DEPENDENT', value: 2 });
    const random = [31337, 4410, 58021, 12093, 40000, 27781, 9183, 61002, 33871, 5017, 47450, 21999, 8008, 55123, 19244, 36090];
    expect(run((_l, i) => random[i])).toMatchObject({ type: 'RANDOM', value: 0 });
    // Lost answers are skipped; a majority still decides.
    expect(run((l, i) => (i % 4 === 3 ? undefined : l))).toMatchObject({ type: 'EQUAL' });
    expect(classifyDelta([])).toMatchObject({ type: 'RANDOM' });
    // Wrap-around of the port space counts as a small step.
    expect(portDiff(65534, 2)).toBe(4);
    expect(portDiff(2, 65534)).toBe(-4);
  });
});

describe('pure mappings', () => {
  it('natTypeOf covers the seven types; P2PD codes', () => {
    expect(natTypeOf(false, 'endpoint-independent', 'endpoint-independent')).toBe('OPEN');
    expect(natTypeOf(false, 'endpoint-independent', 'address-and-port-dependent')).toBe('SYMMETRIC_UDP_FIREWALL');
    expect(natTypeOf(true, 'endpoint-independent', 'endpoint-independent')).toBe('FULL_CONE');
    expect(natTypeOf(true, 'endpoint-independent', 'address-dependent')).toBe('RESTRICTED_CONE');
    expect(natTypeOf(true, 'endpoint-independent', 'address-and-port-dependent')).toBe('PORT_RESTRICTED_CONE');
    expect(natTypeOf(true, 'endpoint-independent', 'unknown')).toBe('PORT_RESTRICTED_CONE');
    expect(natTypeOf(true, 'address-dependent', 'endpoint-independent')).toBe('SYMMETRIC');
    expect(Object.values(NAT_TYPE_CODE).sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const e = (port: number) => ({ host: '198.51.100.1', port, family: 4 as const });
    expect(mappingBehaviorOf(e(1), e(1), e(2))).toBe('endpoint-independent');
    expect(mappingBehaviorOf(e(1), e(2), e(2))).toBe('address-dependent');
    expect(mappingBehaviorOf(e(1), e(2), e(3))).toBe('address-and-port-dependent');
    expect(mappingBehaviorOf(e(1), undefined, e(3))).toBe('unknown');
  });
});
