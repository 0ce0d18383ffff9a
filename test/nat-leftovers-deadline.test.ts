/**
 * NAT toolkit leftovers (port mapping), on loopback only:
 * - `PortMapping.close` checks its options first: bad ones reject with InvalidArgumentError
 *   and leave the mapping as it was (still renewing), so a corrected close still works;
 * - `PortMapping.renew` joining a renewal in flight sees its failure and waits no longer than
 *   its own timeout;
 * - one deadline per multi-step call: `UpnpClient.discover` (SSDP search, route lookup,
 *   description fetch), `addPortMapping` (retry with lease 0), `getExternalAddress` over
 *   UPnP (discovery + SOAP) and NAT-PMP (route lookup + query), `mapPort`'s UPnP path,
 *   PCP's route lookup + exchange, and the NAT-PMP / pinhole renewals;
 * - `ssdpSearch` checks its options and takes `timeout: 0` as "none".
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError, InvalidArgumentError, PortMappingError, TimeoutError } from '../src/errors.js';
import {
  PcpClient,
  PortMappingFailedError,
  UpnpClient,
  getExternalAddress,
  mapPort,
  ssdpSearch,
  type MapPortOptions,
  type PortMapping,
} from '../src/nat/portmap/index.js';
import { FakeGateway, FakeIgd } from './portmap-client-fakes.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const settle = <T>(p: Promise<T>): Promise<{ v: T } | { e: unknown }> =>
  p.then(
    (v) => ({ v }),
    (e: unknown) => ({ e }),
  );
const errOf = async (p: Promise<unknown>): Promise<unknown> => {
  const r = await settle(p);
  if ('v' in r) throw new Error('expected a rejection');
  return r.e;
};
/** Runs `fn` after `ms` unless the test has ended by then. */
function later(fn: () => void, ms: number): void {
  const t = setTimeout(fn, ms);
  cleanups.push(() => clearTimeout(t));
}
/** Waits until `cond()` holds (polling), at most `ms`. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await sleep(10);
}

async function gateway(): Promise<FakeGateway> {
  const gw = await FakeGateway.start();
  cleanups.push(() => gw.close());
  return gw;
}
async function fakeIgd(host?: string): Promise<FakeIgd> {
  const igd = await FakeIgd.start(host);
  cleanups.push(() => igd.close());
  return igd;
}
function track(m: PortMapping): PortMapping {
  cleanups.push(() => m.close().catch(() => undefined));
  return m;
}
/** NAT-PMP deletions (lifetime 0) the gateway received. */
const deletions = (gw: FakeGateway): number => gw.maps('natpmp').filter((r) => r.natpmp?.kind === 'map' && r.natpmp.lifetime === 0).length;

/** The route lookup (a connected UDP socket's name) takes `ms` longer: nothing else connects UDP sockets here. */
function slowRouteLookup(ms: number): void {
  const real = dgram.Socket.prototype.connect;
  vi.spyOn(dgram.Socket.prototype, 'connect').mockImplementation(function (this: dgram.Socket, ...args: unknown[]) {
    setTimeout(() => {
      try {
        (real as (...a: unknown[]) => void).apply(this, args);
      } catch {
        /* closed meanwhile (the lookup was given up) */
      }
    }, ms);
  } as typeof real);
}

describe('PortMapping.close: options checked before the mapping is touched', () => {
  it('bad options reject with InvalidArgumentError, the mapping stays active and renewing; a good close() then works', async () => {
    const gw = await gateway();
    let renewals = 0;
    const opts: MapPortOptions = {
      internalPort: 7777,
      protocol: 'udp',
      gateway: { host: '127.0.0.1', port: gw.port },
      methods: ['nat-pmp'],
      methodTimeout: 1_500,
      lifetime: 2, // renewed after about 1 s
      minRenewGapMs: 100,
      onRenew: () => renewals++,
    };
    const m = track(await mapPort(opts));
    const bad: unknown[] = [
      null,
      5,
      'now',
      ...[-1, Number.NaN, '500', null, {}].map((timeout) => ({ timeout })),
      ...[{}, 'abort', { aborted: 'no' }, null, 1].map((signal) => ({ signal })),
    ];
    for (const o of bad) {
      const e = await errOf(m.close(o as never));
      expect(e, JSON.stringify(o)).toBeInstanceOf(InvalidArgumentError);
      expect(m.state).toBe('active');
    }
    // Not closed: no deletion was sent, and the renewal schedule still runs.
    await until(() => renewals > 0, 3_000);
    expect(renewals).toBeGreaterThan(0);
    expect(deletions(gw)).toBe(0);
    expect(m.state).toBe('active');
    // A corrected close deletes the mapping.
    await m.close({ timeout: 1_000 });
    expect(m.state).toBe('closed');
    expect(deletions(gw)).toBe(1);
    // Still checked after the close; a good one returns the first close's outcome.
    await expect(m.close({ timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await m.close();
    expect(deletions(gw)).toBe(1);
  });

  it('an aborted signal still closes (no renewal any more) and rejects with AbortError', async () => {
    const gw = await gateway();
    const m = track(await mapPort({ internalPort: 7778, protocol: 'udp', gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_500 }));
    await expect(m.close({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect(m.state).toBe('closed');
  });
});

describe('PortMapping.renew joining a renewal in flight', () => {
  async function natPmpMapping(gw: FakeGateway): Promise<PortMapping> {
    return track(await mapPort({ internalPort: 7779, protocol: 'udp', gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_500, autoRenew: false }));
  }

  it('sees the renewal fail (it used to resolve)', async () => {
    const gw = await gateway();
    const m = await natPmpMapping(gw);
    gw.mapResult = 2; // NOT_AUTHORIZED
    const first = settle(m.renew({ timeout: 2_000 }));
    const joined = settle(m.renew({ timeout: 2_000 }));
    const [a, b] = await Promise.all([first, joined]);
    expect('e' in a && a.e).toBeInstanceOf(PortMappingError);
    expect('e' in b && b.e).toBeInstanceOf(PortMappingError);
    expect(gw.maps('natpmp').filter((r) => r.natpmp?.kind === 'map' && r.natpmp.lifetime > 0)).toHaveLength(2); // the mapping + one renewal
  });

  it('waits for it no longer than its own timeout (TimeoutError); the renewal goes on', async () => {
    const gw = await gateway();
    const m = await natPmpMapping(gw);
    gw.silent = true;
    const first = settle(m.renew({ timeout: 3_000 }));
    const t0 = performance.now();
    const e = await errOf(m.renew({ timeout: 200 }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(2_500);
    const r = await first;
    expect('e' in r && r.e).toBeInstanceOf(PortMappingError); // the gateway never answered it
    gw.silent = false; // for the close
  });
});

describe('UpnpClient.discover: one deadline for the SSDP search, the route lookup and the description fetch', () => {
  /** SSDP answers after `ms`; the description is never served (the request is recorded). */
  function slowSsdpSilentHttp(igd: FakeIgd, ms: number): { descRequests: number } {
    const seen = { descRequests: 0 };
    igd.ssdpOverride = (from) => {
      later(() => igd.ssdp.send(igd.ssdpAnswer(), from.port, from.address), ms);
      return [];
    };
    igd.httpOverride = (req) => {
      if (req.url === '/rootDesc.xml') seen.descRequests++;
      return true; // never answers
    };
    return seen;
  }
  const ssdpTo = (igd: FakeIgd, timeout?: number): { targets: { host: string; port: number; family: 4 }[]; family: 4; timeout?: number } => ({
    targets: [{ host: '127.0.0.1', port: igd.ssdpPort, family: 4 }],
    family: 4,
    ...(timeout !== undefined ? { timeout } : {}),
  });

  it('a slow SSDP answer leaves the description fetch only what is left (it used to get the whole timeout again)', async () => {
    const igd = await fakeIgd();
    const seen = slowSsdpSilentHttp(igd, 1_200);
    const t0 = performance.now();
    const e = await errOf(UpnpClient.discover({ ssdp: ssdpTo(igd, 3_000), timeout: 2_000 }));
    const took = performance.now() - t0;
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as Error).message).toMatch(/UPnP discovery timed out after 2000 ms/);
    expect(seen.descRequests).toBe(1); // the search succeeded: the fetch was cut, not the search
    expect(took).toBeLessThan(3_000); // without the shared deadline: 1.2 s + 2 s
    const open = (igd as unknown as { sockets: Set<unknown> }).sockets; // the fake's server-side connections
    await until(() => open.size === 0, 1_000);
    expect(open.size).toBe(0); // the fetch's connection is gone
  });

  it('a search cut short by the deadline with no answer is a TimeoutError (cause: the search\'s PortMappingError)', async () => {
    const igd = await fakeIgd();
    igd.ssdpSilent = true;
    const t0 = performance.now();
    const e = await errOf(UpnpClient.discover({ ssdp: ssdpTo(igd, 3_000), timeout: 600 }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as Error).cause).toBeInstanceOf(PortMappingError);
    expect((e as Error).message).toMatch(/timed out after 600 ms: SSDP search: no Internet Gateway Device answered/);
    expect(performance.now() - t0).toBeLessThan(2_500); // not the 3 s window
    // A search window shorter than the deadline ends as it always did.
    const e2 = await errOf(UpnpClient.discover({ ssdp: ssdpTo(igd, 300), timeout: 5_000 }));
    expect(e2).toBeInstanceOf(PortMappingError);
    expect((e2 as Error).message).toMatch(/no Internet Gateway Device answered within 300 ms/);
  });

  it('with a LOCATION: the fetch is bounded by the timeout; the signal aborts it', async () => {
    const igd = await fakeIgd();
    slowSsdpSilentHttp(igd, 0);
    await expect(UpnpClient.discover({ location: igd.location, timeout: 300 })).rejects.toBeInstanceOf(TimeoutError);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await expect(UpnpClient.discover({ location: igd.location, signal: ac.signal, timeout: 5_000 })).rejects.toBeInstanceOf(AbortError);
  });

  it('bad options are InvalidArgumentError before anything is sent', async () => {
    const igd = await fakeIgd();
    const requests: string[] = [];
    igd.httpOverride = (req) => (requests.push(String(req.url)), false);
    for (const o of [
      null,
      { location: igd.location, timeout: -1 },
      { location: igd.location, timeout: '500' },
      { location: igd.location, signal: {} },
      { ssdp: { ...ssdpTo(igd), timeout: Number.NaN } },
      { ssdp: { ...ssdpTo(igd), signal: 'x' } },
      {},
    ]) {
      await expect(UpnpClient.discover(o as never), JSON.stringify(o)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await sleep(50);
    expect(igd.searches).toHaveLength(0);
    expect(requests).toHaveLength(0);
    // Good options still work.
    const c = await UpnpClient.discover({ ssdp: ssdpTo(igd), timeout: 3_000 });
    expect(c.igd.friendlyName).toBe('fake & co');
  });
});

describe('ssdpSearch: options', () => {
  it('a bad timeout or signal is InvalidArgumentError, nothing sent; timeout 0 searches until the signal aborts', async () => {
    const igd = await fakeIgd();
    igd.ssdpSilent = true;
    const targets = [{ host: '127.0.0.1', port: igd.ssdpPort, family: 4 as const }];
    for (const bad of [{ timeout: -5 }, { timeout: Number.NaN }, { timeout: '1000' }, { signal: {} }]) {
      await expect(ssdpSearch({ targets, family: 4, ...(bad as object) })).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await sleep(50);
    expect(igd.searches).toHaveLength(0);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 400);
    const e = await errOf(ssdpSearch({ targets, family: 4, timeout: 0, signal: ac.signal }));
    expect(e).toBeInstanceOf(AbortError); // it used to end at once: "no answer within 0 ms"
    expect(igd.searches.length).toBeGreaterThan(0);
  });
});

describe('UPnP calls of several requests share one timeout', () => {
  it('addPortMapping: the retry with lease 0 (error 725) gets what is left', async () => {
    const igd = await fakeIgd();
    igd.version = 1;
    igd.httpOverride = (req, res, body) => {
      if (!/#AddPortMapping/.test(String(req.headers.soapaction))) return false;
      if (/<NewLeaseDuration>0</.test(body)) return true; // the retry is never answered
      setTimeout(() => {
        res.writeHead(500, { 'Content-Type': 'text/xml' });
        res.end('<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>');
      }, 800);
      return true;
    };
    const c = await UpnpClient.discover({ location: igd.location, timeout: 2_000 });
    const t0 = performance.now();
    const e = await errOf(c.addPortMapping({ protocol: 'udp', internalPort: 7777, externalPort: 7777, lifetime: 3600 }, { timeout: 1_500 }));
    const took = performance.now() - t0;
    expect(e).toBeInstanceOf(TimeoutError);
    const ms = Number(/timed out after (\d+) ms/.exec((e as Error).message)?.[1]);
    expect(ms).toBeLessThan(1_500); // the retry's own budget: what the first request left
    expect(took).toBeLessThan(2_200); // without sharing: 0.8 s + 1.5 s
  });

  it('getExternalAddress over UPnP: the SOAP call gets what the discovery left of the method budget', async () => {
    const igd = await fakeIgd();
    igd.ssdpOverride = (from) => {
      later(() => igd.ssdp.send(igd.ssdpAnswer(), from.port, from.address), 1_000);
      return [];
    };
    igd.httpOverride = (req) => /#GetExternalIPAddress/.test(String(req.headers.soapaction)); // never answers that one
    const t0 = performance.now();
    const e = (await errOf(getExternalAddress({ gateway: { host: '127.0.0.1', ssdp: `127.0.0.1:${igd.ssdpPort}` }, methods: ['upnp'], methodTimeout: 2_000 }))) as PortMappingFailedError;
    const took = performance.now() - t0;
    expect(e).toBeInstanceOf(PortMappingFailedError);
    expect(igd.calls).toHaveLength(0); // recorded only when answered
    const cause = e.attempts[0]?.error.cause as Error;
    expect(cause).toBeInstanceOf(TimeoutError);
    // The SOAP request's own timeout ended the method (it used to get the whole 2 s again and be cut by the method's hard stop).
    expect(cause.message).toMatch(/^HTTP POST .* timed out after \d+ ms/);
    expect(Number(/after (\d+) ms/.exec(cause.message)?.[1])).toBeLessThan(2_000);
    expect(took).toBeLessThan(3_500);
  });

  it('getExternalAddress over NAT-PMP: the route lookup and the query share the method budget', async () => {
    const gw = await gateway();
    gw.silent = true;
    slowRouteLookup(600);
    const e = (await errOf(getExternalAddress({ gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_000 }))) as PortMappingFailedError;
    expect(e).toBeInstanceOf(PortMappingFailedError);
    // The query's schedule was cut to what the lookup left (it used to get 1 s again, and the method's hard stop ended it).
    const msg = e.attempts[0]?.error.message ?? '';
    expect(msg).toMatch(/no valid answer .* in (\d+) ms/);
    expect(Number(/in (\d+) ms/.exec(msg)?.[1])).toBeLessThan(1_000);
  });

  it('PCP map: the client-address lookup and the exchange share the timeout', async () => {
    const gw = await gateway();
    gw.silent = true;
    slowRouteLookup(600);
    const c = new PcpClient({ gateway: '127.0.0.1', port: gw.port });
    const e = await errOf(c.map({ protocol: 'udp', internalPort: 7777, lifetime: 60 }, { timeout: 1_000 }));
    expect(e).toBeInstanceOf(PortMappingError);
    const ms = Number(/in (\d+) ms/.exec((e as Error).message)?.[1]);
    expect(ms).toBeLessThan(1_000); // it used to be the whole 1000 ms again
  });

  it('mapPort over UPnP: a mapping made too late is deleted in the background; the rejection does not wait for it', async () => {
    const igd = await fakeIgd();
    const deletes: number[] = [];
    igd.httpOverride = (req) => {
      const a = String(req.headers.soapaction);
      if (/#DeletePortMapping/.test(a)) deletes.push(performance.now());
      return /#(GetExternalIPAddress|DeletePortMapping)/.test(a); // neither is ever answered
    };
    const t0 = performance.now();
    const e = await errOf(mapPort({ internalPort: 7777, protocol: 'udp', gateway: { host: '127.0.0.1', location: igd.location }, methods: ['upnp'], timeout: 800 }));
    const took = performance.now() - t0;
    expect(e).toBeInstanceOf(TimeoutError);
    expect(igd.calls.map((c) => c.action)).toEqual(['AddAnyPortMapping']);
    expect(took).toBeLessThan(2_300); // it used to wait for the deletion's 2 s after the timeout
    await until(() => deletes.length > 0, 1_000);
    expect(deletes).toHaveLength(1); // the stray mapping is still deleted
  });
});

describe('renewals of several requests share the renewal timeout', () => {
  it('NAT-PMP: after a gateway reboot, the address query gets what the map request left', async () => {
    const gw = await gateway();
    const m = track(await mapPort({ internalPort: 7780, protocol: 'udp', gateway: { host: '127.0.0.1', port: gw.port }, methods: ['nat-pmp'], methodTimeout: 1_500, autoRenew: false }));
    const addressQueries = (): number => gw.requests.filter((r) => r.natpmp?.kind === 'external-address').length;
    const before = addressQueries();
    gw.reboot();
    gw.override = (req, g) => {
      if (req.natpmp?.kind === 'external-address') return []; // silent
      if (req.natpmp?.kind === 'map' && req.natpmp.lifetime > 0) {
        const n = req.natpmp;
        later(() => g.send(g.natPmpAnswer(n), req.from), 1_000); // a slow answer (lost state: epoch near 0)
        return [];
      }
      return undefined;
    };
    const t0 = performance.now();
    await m.renew({ timeout: 1_500 });
    const took = performance.now() - t0;
    // 250 ms then about 250 ms (what was left): 2 queries; with its own 1.5 s it would have sent a 3rd at 750 ms.
    expect(addressQueries() - before).toBeGreaterThanOrEqual(1);
    expect(addressQueries() - before).toBeLessThanOrEqual(2);
    expect(took).toBeLessThan(2_300);
  });

  it('UPnP pinhole: a new AddPinhole after UpdatePinhole found none (704) gets what is left', async () => {
    const v6 = await fakeIgd('::1');
    const m = track(await mapPort({ internalPort: 7781, protocol: 'udp', family: 6, gateway: { host: '::1', location: v6.location }, methods: ['upnp'], methodTimeout: 1_500, autoRenew: false }));
    v6.httpOverride = (req, res) => {
      const a = String(req.headers.soapaction);
      if (/#AddPinhole/.test(a)) return true; // never answered
      if (!/#UpdatePinhole/.test(a)) return false;
      setTimeout(() => {
        res.writeHead(500, { 'Content-Type': 'text/xml' });
        res.end('<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>704</errorCode><errorDescription>NoSuchEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>');
      }, 700);
      return true;
    };
    const e = await errOf(m.renew({ timeout: 1_500 }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect(Number(/timed out after (\d+) ms/.exec((e as Error).message)?.[1])).toBeLessThan(1_500);
    expect(m.state).toBe('active');
  });
});
