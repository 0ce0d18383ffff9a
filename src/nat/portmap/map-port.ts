/**
 * `mapPort()` and `getExternalAddress()`: try UPnP, NAT-PMP and PCP (in a configurable order)
 * against one gateway — by default the default gateway of the default interface — and
 * return the first that works; when none does, one {@link PortMappingFailedError} lists
 * every method's failure.
 * @module
 */
import { InvalidArgumentError, PortMappingError, TimeoutError, type PortMappingMethod } from '../../errors.js';
import { toEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import { initP2pd, type Interface } from '../../interfaces/interfaces.js';
import { ipFamily, ipToBytes } from '../../interfaces/ip.js';
import { ipScope } from '../../interfaces/scope.js';
import { MAX_TIMER_MS, whenAborted, throwIfAborted, toAbortError, type AbortOptions } from '../../util/abort.js';
import { abortAfter, checkTimeoutAndSignal } from '../deadline.js';
import { ExternalPortUnavailableError, startNatPmp, startPcp, startUpnp, startUpnpPinhole, type StartRequest, type Started } from './drivers.js';
import { PortMapping, type PortMappingCallbacks } from './mapping.js';
import { NatPmpClient } from './natpmp-client.js';
import { PcpClient } from './pcp-client.js';
import { routeSourceAddress } from './transport.js';
import { UpnpClient } from './upnp-client.js';
import { SSDP_MULTICAST_V4, SSDP_MULTICAST_V6, SSDP_PORT, type SsdpSearchOptions } from './upnp-ssdp.js';
import { urlHost } from './upnp-xml.js';
import { PORTMAP_SERVER_PORT } from './wire.js';

/** Methods tried by default, in order. */
export const DEFAULT_PORTMAP_METHODS: readonly PortMappingMethod[] = Object.freeze(['upnp', 'nat-pmp', 'pcp'] as const);
/** Default time budget of each method, ms. */
export const DEFAULT_METHOD_TIMEOUT_MS = 6_000;
/** Default requested lifetime, seconds (RFC 6886's recommendation). */
export const DEFAULT_MAPPING_LIFETIME = 7_200;

/** Where the gateway is and how to reach each of its services. */
export interface GatewayOptions {
  /** The gateway's IP address (`'192.168.1.1'`, `'fe80::1%eth0'`). @default the interface's default gateway */
  host?: string;
  /** UDP port of its NAT-PMP/PCP server. @default 5351 */
  port?: number;
  /**
   * Where SSDP M-SEARCH goes, instead of the multicast group plus `host:1900`; answers must
   * then come from this address. @default multicast on the interface and unicast to host:1900
   */
  ssdp?: EndpointLike;
  /** UPnP device description URL (skips SSDP). @default found by SSDP */
  location?: string;
}

/** Where and how to reach the gateway; shared by {@link mapPort} and {@link getExternalAddress}. */
export interface GatewayTargetOptions extends AbortOptions {
  /** The gateway: its address, or {@link GatewayOptions}. @default the default gateway of `interface` */
  gateway?: string | GatewayOptions;
  /** Network interface to work on (its gateway, its address, SSDP on it). @default the default interface */
  interface?: string;
  /** Address family. @default 4, or the family of `internalAddress` */
  family?: Family;
  /** Methods to try, in order. @default ['upnp', 'nat-pmp', 'pcp'] */
  methods?: readonly PortMappingMethod[];
  /** Time budget of each method, ms. @default 6000 */
  methodTimeout?: number;
  /** This host's address the mapping is for. @default the source address the OS uses towards the gateway */
  internalAddress?: string;
}

/** Options of {@link mapPort}. */
export interface MapPortOptions extends GatewayTargetOptions, PortMappingCallbacks {
  /** Local port to map, 1-65535. */
  internalPort: number;
  /** Transport protocol. */
  protocol: 'udp' | 'tcp';
  /** Requested external port (0 = any). @default internalPort */
  externalPort?: number;
  /** Fail (rather than accept another port) when the gateway maps a different external port. @default false */
  exactPort?: boolean;
  /** Requested lifetime, seconds. @default 7200 */
  lifetime?: number;
  /** Renew before expiry. @default true */
  autoRenew?: boolean;
  /** UPnP mapping description. @default 'p2pd' */
  description?: string;
  /** Minimum gap between renewal attempts, ms. @default 4000 */
  minRenewGapMs?: number;
  /** Budget of the delete request in `close()`, ms. @default 5000 */
  closeTimeout?: number;
}

/** One method's failure inside a {@link PortMappingFailedError}. */
export interface PortMappingAttempt {
  method: PortMappingMethod;
  error: PortMappingError;
}

/**
 * No method worked. `attempts` has each method's error in the order tried; `method` and
 * `resultCode` are those of the most telling one (a gateway that answered with a refusal
 * rather than one that stayed silent). Code `ERR_PORT_MAPPING`.
 */
export class PortMappingFailedError extends PortMappingError {
  /** What each method tried, and how it failed. */
  readonly attempts: readonly PortMappingAttempt[];
  constructor(what: string, attempts: readonly PortMappingAttempt[]) {
    const best = attempts.find((a) => a.error.resultCode !== undefined) ?? attempts[0];
    const list = attempts.map((a) => `${a.method}: ${a.error.message}`).join('; ');
    super(best?.method ?? 'upnp', `${what} failed (tried ${attempts.map((a) => a.method).join(', ') || 'nothing'}): ${list}`, {
      cause: new AggregateError(attempts.map((a) => a.error)),
      ...(best?.error.resultCode !== undefined ? { resultCode: best.error.resultCode } : {}),
    });
    this.attempts = Object.freeze([...attempts]);
  }

  /**
   * True when some method said the requested external port is taken (UPnP 718
   * ConflictInMappingEntry / 729 ConflictWithOtherMechanisms, or another port offered under
   * `exactPort`): trying another external port may work.
   */
  get portUnavailable(): boolean {
    return this.attempts.some(
      (a) => a.error instanceof ExternalPortUnavailableError || (a.method === 'upnp' && (a.error.resultCode === 718 || a.error.resultCode === 729)),
    );
  }
}

interface Target {
  family: Family;
  gateway: Endpoint; // host (+ scopeId) and NAT-PMP/PCP port
  iface: Interface | undefined;
  ssdp: Endpoint | undefined;
  location: string | undefined;
  internalAddress: string | undefined;
}

function checkInt(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`invalid ${what}: ${String(v)} (must be an integer ${min}-${max})`);
  return v;
}

/** Checks the `gateway` option's shape: an address string or a {@link GatewayOptions} object. */
function checkGateway(g: unknown): void {
  if (g === undefined || typeof g === 'string') return;
  if (g === null || typeof g !== 'object' || Array.isArray(g)) {
    throw new InvalidArgumentError(`gateway must be an IP address string or { host?, port?, ssdp?, location? }, got ${g === null ? 'null' : Array.isArray(g) ? 'an array' : typeof g}`);
  }
  const { host, location } = g as GatewayOptions;
  if ((host !== undefined && typeof host !== 'string') || (location !== undefined && typeof location !== 'string')) throw new InvalidArgumentError('gateway.host and gateway.location must be strings');
}

function checkMethods(m: unknown): PortMappingMethod[] {
  const list = m === undefined ? [...DEFAULT_PORTMAP_METHODS] : m;
  if (!Array.isArray(list) || list.length === 0) throw new InvalidArgumentError('methods must be a non-empty array');
  for (const x of list) if (x !== 'upnp' && x !== 'nat-pmp' && x !== 'pcp') throw new InvalidArgumentError(`unknown method ${String(x)}`);
  if (new Set(list).size !== list.length) throw new InvalidArgumentError('methods must not repeat');
  return list as PortMappingMethod[];
}

async function resolveTarget(o: GatewayTargetOptions, signal: AbortSignal): Promise<Target> {
  const g: GatewayOptions = typeof o.gateway === 'string' ? { host: o.gateway } : { ...o.gateway };
  if (o.internalAddress !== undefined && ipFamily(o.internalAddress) === undefined) throw new InvalidArgumentError(`invalid internalAddress ${String(o.internalAddress)}`);
  const family: Family = o.family ?? (o.internalAddress ? (ipFamily(o.internalAddress) as Family) : g.host ? (ipFamily(g.host) ?? 4) : 4);
  if (family !== 4 && family !== 6) throw new InvalidArgumentError(`family must be 4 or 6`);
  const port = checkInt(g.port ?? PORTMAP_SERVER_PORT, 'gateway port', 1, 65535);
  let iface: Interface | undefined;
  if (o.interface !== undefined || g.host === undefined || (g.ssdp === undefined && g.location === undefined)) {
    const all = await initP2pd({ signal });
    if (o.interface !== undefined) iface = all.byName(o.interface);
    else if (g.host === undefined) iface = all.default(family);
    else iface = interfaceFor(all.list, g.host.split('%')[0] as string, family); // where SSDP multicast must go
  }
  let host = g.host ?? iface?.gateways[family];
  if (host === undefined) throw new InvalidArgumentError(`interface ${iface?.name ?? '?'} has no IPv${family} default gateway; pass \`gateway\``);
  if (family === 6 && !host.includes('%') && host.toLowerCase().startsWith('fe80') && iface) host = `${host}%${iface.name}`;
  const gateway = toEndpoint({ host, port });
  if (gateway.family !== family) throw new InvalidArgumentError(`gateway ${host} is not an IPv${family} address`);
  const ssdp = g.ssdp !== undefined ? toEndpoint(g.ssdp) : undefined;
  return { family, gateway, iface, ssdp, location: g.location, internalAddress: o.internalAddress };
}

/** The interface whose default gateway is `host`, else the one with `host` on-link; `undefined` if none. */
function interfaceFor(list: readonly Interface[], host: string, family: Family): Interface | undefined {
  const byGw = list.find((i) => i.up && i.gateways[family]?.toLowerCase() === host.toLowerCase());
  if (byGw) return byGw;
  let h: Uint8Array;
  try {
    h = ipToBytes(host);
  } catch {
    return undefined;
  }
  const inPrefix = (addr: string, len: number): boolean => {
    const a = ipToBytes(addr);
    if (a.length !== h.length) return false;
    for (let bit = 0; bit < len; bit += 8) {
      const mask = len - bit >= 8 ? 0xff : (0xff << (8 - (len - bit))) & 0xff;
      if (((a[bit / 8] as number) & mask) !== ((h[bit / 8] as number) & mask)) return false;
    }
    return true;
  };
  return list.find((i) => i.up && i.addressesOf(family).some((a) => a.prefixLength > 0 && inPrefix(a.address, a.prefixLength)));
}

function sameSlash64(a: string, b: string): boolean {
  try {
    const x = ipToBytes(a);
    const y = ipToBytes(b);
    return x.length === 16 && y.length === 16 && x.subarray(0, 8).every((v, i) => v === y[i]);
  } catch {
    return false;
  }
}

/** SSDP targets and the policy that keeps discovery on the gateway / the local link. */
function ssdpOptions(t: Target, searchTimeout: number): SsdpSearchOptions {
  const gw = t.gateway.host;
  const ifAddr = t.iface?.primary(t.family)?.address;
  const targets: Endpoint[] = [];
  if (t.ssdp) targets.push(t.ssdp);
  else {
    if (t.iface) {
      const group = t.family === 4 ? SSDP_MULTICAST_V4 : SSDP_MULTICAST_V6;
      targets.push({ host: group, port: SSDP_PORT, family: t.family, ...(t.family === 6 ? { scopeId: t.iface.name } : {}) });
    }
    targets.push({ ...t.gateway, port: SSDP_PORT });
  }
  const onLink = (h: string): boolean =>
    h === gw || (t.family === 6 && (ipScope(h) === 'link-local' || (ifAddr !== undefined && sameSlash64(h, ifAddr))));
  const sources = new Set([gw, ...(t.ssdp ? [t.ssdp.host] : [])]);
  return {
    targets,
    family: t.family,
    timeout: searchTimeout,
    localAddress: t.family === 4 && !t.ssdp ? ifAddr : undefined,
    multicastInterface: t.ssdp || !t.iface ? undefined : t.family === 4 ? ifAddr : `::%${t.iface.name}`,
    accept: (from, location) => {
      if (!sources.has(from.host) && !onLink(from.host)) return false;
      const lh = urlHost(location);
      return (t.family === 6) === lh.includes(':') && (lh === from.host || sources.has(lh) || onLink(lh));
    },
  };
}

/** This host's address towards the gateway; a route lookup bounded by `signal` and the method's budget left (`timeout`, ms). */
async function internalAddressFor(t: Target, signal: AbortSignal, timeout: number): Promise<string> {
  if (t.internalAddress) return t.internalAddress;
  if (t.family === 6) {
    const p = t.iface?.addressesOf(6).find((a) => a.scope === 'global' || a.scope === 'ula');
    if (p) return p.address;
  }
  return routeSourceAddress(t.gateway, { signal, timeout });
}

/** Finds the IGD: SSDP (or the known LOCATION), route lookup and description fetch, all within `budget` ms. */
async function upnpClientFor(t: Target, budget: number, signal: AbortSignal): Promise<UpnpClient> {
  const internal = t.internalAddress;
  return UpnpClient.discover({
    ...(t.location ? { location: t.location } : { ssdp: ssdpOptions(t, Math.min(3_000, budget)) }),
    ...(internal ? { localAddress: internal } : {}),
    ...(t.iface ? { zone: t.iface.name } : {}),
    signal,
    timeout: budget,
  });
}

/** What is left of a method's `budget` (ms, counted from now) each time it is called; at least 1 ms. */
function budgetLeft(budget: number): () => number {
  const end = performance.now() + budget;
  return () => Math.max(1, Math.floor(end - performance.now()));
}

function asMethodError(method: PortMappingMethod, e: unknown, budget: number): PortMappingError {
  if (e instanceof PortMappingError && e.method === method) return e;
  if (e instanceof TimeoutError) {
    // A UPnP discovery cut short by the budget says what the SSDP search saw: keep that.
    const why = e.cause instanceof PortMappingError && e.cause.method === method ? `: ${e.cause.message}` : '';
    return new PortMappingError(method, `no answer within the ${budget} ms method timeout${why}`, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new PortMappingError(method, msg, { cause: e });
}

/**
 * Runs `fn` for each method in order with its own time budget and returns the first
 * success; the caller's signal/timeout abort everything (AbortError / TimeoutError).
 */
async function tryMethods<T>(
  o: GatewayTargetOptions,
  what: string,
  fn: (method: PortMappingMethod, t: Target, signal: AbortSignal, budget: number) => Promise<T>,
): Promise<T> {
  const methods = checkMethods(o.methods);
  const budget = checkInt(o.methodTimeout ?? DEFAULT_METHOD_TIMEOUT_MS, 'methodTimeout', 1, 0x7fffffff);
  checkGateway(o.gateway);
  throwIfAborted(o.signal);
  checkTimeoutAndSignal(o); // before any timer or listener exists
  const outer = new AbortController();
  // Chained past 2^31 − 1 ms (a plain setTimeout fires a longer delay after 1 ms).
  const stopTimer = abortAfter(outer, o.timeout, what);
  const onAbort = (): void => outer.abort(o.signal?.reason);
  const offUser = o.signal ? whenAborted(o.signal, onAbort) : undefined;
  const attempts: PortMappingAttempt[] = [];
  try {
    const t = await resolveTarget(o, outer.signal);
    for (const method of methods) {
      const ac = new AbortController();
      // Hard stop a little after the budget: the clients' own schedules end at the budget
      // with a more telling error (what was ignored, how many attempts).
      const mt = setTimeout(() => ac.abort(new TimeoutError(`${method} timed out after ${budget} ms`)), Math.min(budget + Math.min(500, budget / 4), MAX_TIMER_MS));
      const signal = AbortSignal.any([outer.signal, ac.signal]);
      try {
        return await fn(method, t, signal, budget);
      } catch (e) {
        if (outer.signal.aborted) throw toAbortError(outer.signal);
        if (e instanceof InvalidArgumentError) throw e;
        attempts.push({ method, error: asMethodError(method, e, budget) });
      } finally {
        clearTimeout(mt);
      }
    }
  } catch (e) {
    if (outer.signal.aborted) throw toAbortError(outer.signal);
    throw e;
  } finally {
    stopTimer();
    offUser?.();
  }
  throw new PortMappingFailedError(what, attempts);
}

/**
 * Maps `internalPort` on the gateway: tries each method in `methods` order (UPnP, NAT-PMP,
 * PCP by default) and returns a {@link PortMapping} that renews itself and deletes the
 * mapping on `close()` / `await using`.
 *
 * @throws PortMappingFailedError (a `PortMappingError`) listing every method's failure;
 *   InvalidArgumentError for bad options; AbortError / TimeoutError via `signal` / `timeout`.
 * @example
 * await using m = await mapPort({ internalPort: 7777, externalPort: 8888, protocol: 'udp' });
 * console.log(`reachable at ${m.externalAddress}:${m.externalPort} via ${m.method}`);
 */
export async function mapPort(opts: MapPortOptions): Promise<PortMapping> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('mapPort options must be an object');
  const internalPort = checkInt(opts.internalPort, 'internalPort', 1, 65535);
  if (opts.protocol !== 'udp' && opts.protocol !== 'tcp') throw new InvalidArgumentError(`protocol must be 'udp' or 'tcp', got ${String(opts.protocol)}`);
  const externalPort = checkInt(opts.externalPort ?? internalPort, 'externalPort', 0, 65535);
  const lifetime = checkInt(opts.lifetime ?? DEFAULT_MAPPING_LIFETIME, 'lifetime', 1, 0xffffffff);
  const what = `mapping ${opts.protocol} port ${internalPort}`;
  return tryMethods(opts, what, async (method, t, signal, budget) => {
    const r: StartRequest = {
      protocol: opts.protocol,
      internalPort,
      externalPort,
      lifetime,
      exactPort: opts.exactPort ?? false,
      description: opts.description ?? 'p2pd',
      signal,
      timeout: budget,
    };
    const left = budgetLeft(budget);
    let s: Started;
    if (method === 'upnp') {
      const c = await upnpClientFor(t, left(), signal);
      s = t.family === 6 ? await startUpnpPinhole(c, { ...r, timeout: left() }) : await startUpnp(c, { ...r, timeout: left() });
    } else if (method === 'nat-pmp') {
      if (t.family !== 4) throw new PortMappingError('nat-pmp', 'NAT-PMP maps IPv4 only');
      const local = await internalAddressFor(t, signal, left());
      s = await startNatPmp(new NatPmpClient({ gateway: t.gateway.host, port: t.gateway.port, localAddress: local }), { ...r, timeout: left() });
    } else {
      const local = await internalAddressFor(t, signal, left());
      const gw = t.gateway.scopeId ? `${t.gateway.host}%${t.gateway.scopeId}` : t.gateway.host;
      s = await startPcp(new PcpClient({ gateway: gw, port: t.gateway.port, localAddress: local }), { ...r, timeout: left() });
    }
    if (signal.aborted) {
      // Too late for the caller: delete the mapping in the background (best effort), and
      // reject now rather than after the deletion's own 2 s.
      void s.driver.remove({ timeout: 2_000 }).catch(() => undefined);
      throw toAbortError(signal);
    }
    return new PortMapping({
      driver: s.driver,
      protocol: opts.protocol,
      family: s.family,
      gateway: t.gateway.host,
      internalAddress: s.internalAddress,
      internalPort,
      grant: s.grant,
      autoRenew: opts.autoRenew ?? true,
      ...(opts.minRenewGapMs !== undefined ? { minRenewGapMs: opts.minRenewGapMs } : {}),
      ...(opts.closeTimeout !== undefined ? { closeTimeout: opts.closeTimeout } : {}),
      onRenew: opts.onRenew,
      onRenewFailed: opts.onRenewFailed,
      onExpire: opts.onExpire,
      onChange: opts.onChange,
    });
  });
}

/**
 * The gateway's external IPv4 address: UPnP GetExternalIPAddress, then NAT-PMP (by
 * default; PCP has no such query and is reported as failed if listed). An answer of
 * `0.0.0.0` / empty counts as a failure of that method.
 * @throws PortMappingFailedError listing every method's failure.
 */
export async function getExternalAddress(opts: GatewayTargetOptions = {}): Promise<string> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('getExternalAddress options must be an object');
  const o: GatewayTargetOptions = { ...opts, methods: opts.methods ?? ['upnp', 'nat-pmp'], family: 4 };
  return tryMethods(o, 'external address query', async (method, t, signal, budget) => {
    const left = budgetLeft(budget); // the method's steps share its budget
    if (method === 'upnp') return (await upnpClientFor(t, left(), signal)).getExternalAddress({ signal, timeout: left() });
    if (method === 'nat-pmp') {
      const local = await internalAddressFor(t, signal, left());
      const c = new NatPmpClient({ gateway: t.gateway.host, port: t.gateway.port, localAddress: local });
      const r = await c.externalAddress({ signal, timeout: left() });
      if (r.externalAddress === '0.0.0.0') throw new PortMappingError('nat-pmp', 'the gateway reports external address 0.0.0.0');
      return r.externalAddress;
    }
    throw new PortMappingError('pcp', 'PCP has no external-address query (use mapPort: PCP mappings carry it)');
  });
}

