/**
 * Network interfaces of this machine: names, indexes, MACs, addresses with their scopes,
 * default gateways and which interface holds the default route.
 *
 * Enumeration is local and fast: one `os.networkInterfaces()` call plus, on Linux, one
 * concurrent read of `/proc/net/route`, `/proc/net/ipv6_route` and
 * `/sys/class/net/<name>/{ifindex,operstate,flags}`. Nothing is spawned and nothing is sent
 * on the network.
 *
 * `os.networkInterfaces()` lists only interfaces that have at least one address (on Linux,
 * libuv also drops interfaces that are not up and running), so interfaces without any
 * address never appear here.
 *
 * Outside Linux the routing table is not read (best effort): `gateways` is empty and
 * `isDefault` comes from the same heuristic {@link Interfaces.tryDefault} falls back to;
 * {@link Interfaces.routesAvailable} tells which case applies.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { InterfaceNotFoundError, InvalidArgumentError } from '../errors.js';
import { cancellable, type AbortOptions } from '../util/abort.js';
import type { Family } from './endpoint.js';
import { bestDefaultRoute, defaultGateway, readRouteTable, type RouteTable } from './routes.js';
import { ipScope, ipToBytes, type AddressScope } from './scope.js';

/** Where Linux exposes per-interface attributes. */
export const SYSFS_NET = '/sys/class/net';
/** `IFF_UP`: the interface is administratively up. */
export const IFF_UP = 0x1;
/** `IFF_LOOPBACK`: the interface is a loopback interface. */
export const IFF_LOOPBACK = 0x8;
/** Operational states (`/sys/class/net/<name>/operstate`) counted as up; `unknown` is what `lo` and tun devices report. */
export const UP_OPERSTATES: ReadonlySet<string> = new Set(['up', 'unknown']);

const FAMILIES: readonly Family[] = [4, 6];
const SAFE_IFNAME = /^[^\s/]{1,64}$/;
/** Preference of address scopes when picking an interface's primary address (lower is better). */
const SCOPE_RANK: Readonly<Record<AddressScope, number>> = { global: 0, ula: 1, private: 1, cgnat: 2, 'link-local': 3, loopback: 4 };

/** One address of an {@link Interface}. */
export interface InterfaceAddress {
  /** The address literal, without `%zone`, e.g. `'192.168.1.5'` or `'fe80::1c2f:3aff:fe4b:1'`. */
  readonly address: string;
  /** Address family. */
  readonly family: Family;
  /** Length of the network prefix in bits, e.g. `24` or `64`. */
  readonly prefixLength: number;
  /** Netmask as `os.networkInterfaces()` reports it, e.g. `'255.255.255.0'` or `'ffff:ffff:ffff:ffff::'`. */
  readonly netmask: string;
  /** Reachability class of the address. */
  readonly scope: AddressScope;
  /** Kernel interface index to use as the zone of a link-local IPv6 address; absent otherwise. */
  readonly scopeId?: number;
}

/**
 * Default gateway address per family; a key is absent when the interface has no default
 * gateway for it. An IPv6 gateway is often link-local: its zone is the interface.
 */
export type Gateways = { readonly [F in Family]?: string };

/** Whether an interface holds the default route, per family. */
export type DefaultFlags = { readonly [F in Family]: boolean };

/**
 * Everything an {@link Interface} is built from: its fields, where `gateways` defaults to `{}`
 * and missing `isDefault` flags to `false`.
 */
export type InterfaceInit = Pick<Interface, 'name' | 'index' | 'mac' | 'up' | 'loopback' | 'addresses'> & {
  gateways?: Gateways;
  isDefault?: Partial<DefaultFlags>;
};

function checkFamily(family: unknown): Family {
  if (family !== 4 && family !== 6) throw new InvalidArgumentError(`family must be 4 or 6, got ${String(family)}`);
  return family;
}

/** A network interface of this machine. Immutable snapshot taken at enumeration time. */
export class Interface {
  /** Interface name, e.g. `'eth0'`, `'en0'`, `'lo'`. */
  readonly name: string;
  /** Kernel interface index (`/sys/class/net/<name>/ifindex` on Linux, else a link-local scope id), `-1` if unknown. */
  readonly index: number;
  /** MAC address, `'00:00:00:00:00:00'` for loopback and tunnels. */
  readonly mac: string;
  /** Up and running (Linux: `IFF_UP` and operstate `up`/`unknown`; elsewhere always true, since only up interfaces are listed). */
  readonly up: boolean;
  /** Loopback interface. */
  readonly loopback: boolean;
  /** Addresses, in the order the OS reports them. */
  readonly addresses: readonly InterfaceAddress[];
  /** Default gateway per family, where the interface has a default route through one. */
  readonly gateways: Gateways;
  /** Whether this interface holds the (lowest-metric) default route, per family. */
  readonly isDefault: DefaultFlags;

  constructor(init: InterfaceInit) {
    this.name = init.name;
    this.index = init.index;
    this.mac = init.mac;
    this.up = init.up;
    this.loopback = init.loopback;
    this.addresses = Object.freeze(init.addresses.map((a) => Object.freeze({ ...a })));
    this.gateways = Object.freeze({ ...init.gateways });
    this.isDefault = Object.freeze({ 4: init.isDefault?.[4] ?? false, 6: init.isDefault?.[6] ?? false });
  }

  /** True when the interface has at least one address of `family` (an IPv6 link-local address counts). */
  supports(family: Family): boolean {
    checkFamily(family);
    return this.addresses.some((a) => a.family === family);
  }

  /** Addresses of `family`, optionally only those of `scope`. */
  addressesOf(family: Family, scope?: AddressScope): InterfaceAddress[] {
    checkFamily(family);
    return this.addresses.filter((a) => a.family === family && (scope === undefined || a.scope === scope));
  }

  /** First link-local address of `family`, if any. @default family 6 */
  linkLocal(family: Family = 6): InterfaceAddress | undefined {
    return this.addressesOf(family, 'link-local')[0];
  }

  /** The address of `family` with the widest reach (global, then ULA/private, CGNAT, link-local, loopback). */
  primary(family: Family): InterfaceAddress | undefined {
    let best: InterfaceAddress | undefined;
    for (const a of this.addressesOf(family)) if (!best || SCOPE_RANK[a.scope] < SCOPE_RANK[best.scope]) best = a;
    return best;
  }

  /** Plain-object form, for logging and JSON. */
  toJSON(): Required<InterfaceInit> {
    const { name, index, mac, up, loopback, addresses, gateways, isDefault } = this;
    return { name, index, mac, up, loopback, addresses, gateways, isDefault };
  }
}

/** Best-effort pick when the routing table says nothing: up, not loopback, widest-reaching address of `family`. */
function heuristicDefault(list: readonly Interface[], family: Family): Interface | undefined {
  let best: Interface | undefined;
  let bestRank = SCOPE_RANK['link-local'];
  for (const i of list) {
    if (!i.up || i.loopback) continue;
    const p = i.primary(family);
    if (p && SCOPE_RANK[p.scope] < bestRank) {
      best = i;
      bestRank = SCOPE_RANK[p.scope];
    }
  }
  return best;
}

/** The result of {@link initP2pd}: the machine's interfaces, with lookups. Iterable. */
export class Interfaces implements Iterable<Interface> {
  /** The interfaces, ordered by kernel index (unknown indexes last), then name. */
  readonly list: readonly Interface[];
  /** True when gateways and `isDefault` come from the kernel's routing table (Linux), false when they are a heuristic. */
  readonly routesAvailable: boolean;

  /** @param routesAvailable - see {@link Interfaces.routesAvailable}. @default routesAvailable false */
  constructor(list: readonly Interface[], routesAvailable = false) {
    this.list = Object.freeze([...list]);
    this.routesAvailable = routesAvailable;
  }

  /** Number of interfaces. */
  get length(): number {
    return this.list.length;
  }

  /** Iterates over {@link Interfaces.list}. */
  [Symbol.iterator](): Iterator<Interface> {
    return this.list[Symbol.iterator]();
  }

  /** Names of the interfaces, in list order. */
  names(): string[] {
    return this.list.map((i) => i.name);
  }

  /** The interface called `name`, or `undefined`. */
  find(name: string): Interface | undefined {
    return this.list.find((i) => i.name === name);
  }

  /** The interface called `name`. @throws InterfaceNotFoundError (`ERR_NO_INTERFACE`) naming the known interfaces. */
  byName(name: string): Interface {
    if (typeof name !== 'string') throw new InvalidArgumentError(`interface name must be a string, got ${typeof name}`);
    const found = this.find(name);
    if (found) return found;
    const known = this.names();
    throw new InterfaceNotFoundError(
      `no interface named ${JSON.stringify(name.slice(0, 64))}; known interfaces: ${known.length ? known.join(', ') : '(none)'}`,
    );
  }

  /**
   * The default interface for `family`, or `undefined`: the up interface holding the default
   * route; failing that (no default route, or it is on an interface without addresses), the up
   * non-loopback interface with the widest-reaching (non-link-local) address of `family`.
   * Without `family`: the IPv4 default route's interface, then IPv6's, then the heuristic for 4, then 6.
   */
  tryDefault(family?: Family): Interface | undefined {
    const byRoute = (f: Family): Interface | undefined => this.list.find((i) => i.up && i.isDefault[f]);
    if (family !== undefined) {
      checkFamily(family);
      return byRoute(family) ?? heuristicDefault(this.list, family);
    }
    return byRoute(4) ?? byRoute(6) ?? heuristicDefault(this.list, 4) ?? heuristicDefault(this.list, 6);
  }

  /** Like {@link Interfaces.tryDefault} but throws InterfaceNotFoundError (`ERR_NO_INTERFACE`) when there is none. */
  default(family?: Family): Interface {
    const found = this.tryDefault(family);
    if (found) return found;
    const what = family === undefined ? '' : ` for IPv${family}`;
    throw new InterfaceNotFoundError(
      `no default interface${what}: no default route and no up, non-loopback interface with a routable address; ` +
        `known interfaces: ${this.names().join(', ') || '(none)'}`,
    );
  }
}

/** Per-interface attributes read from `/sys/class/net/<name>/` on Linux; absent fields were unreadable. */
export interface SysfsInfo {
  /** `ifindex`. */ index?: number;
  /** `operstate`, e.g. `'up'`, `'down'`, `'unknown'`. */ operstate?: string;
  /** `flags` (`IFF_*` bits). */ flags?: number;
}

async function readSysfs(name: string): Promise<SysfsInfo> {
  if (!SAFE_IFNAME.test(name) || name === '.' || name === '..') return {};
  const read = (file: string): Promise<string | undefined> =>
    readFile(`${SYSFS_NET}/${name}/${file}`, 'utf8').then((s) => s.trim(), () => undefined);
  const [idx, operstate, flags] = await Promise.all([read('ifindex'), read('operstate'), read('flags')]);
  const out: SysfsInfo = {};
  if (idx !== undefined && /^[0-9]+$/.test(idx)) out.index = Number(idx);
  if (operstate) out.operstate = operstate;
  if (flags !== undefined && /^0x[0-9a-fA-F]+$/.test(flags)) out.flags = parseInt(flags, 16);
  return out;
}

function prefixLength(e: NetworkInterfaceInfo): number {
  const m = e.cidr ? /\/([0-9]{1,3})$/.exec(e.cidr) : null;
  if (m) return Number(m[1]);
  try {
    return ipToBytes(e.netmask).reduce((n, b) => n + (b.toString(2).match(/1/g)?.length ?? 0), 0);
  } catch {
    return 0;
  }
}

/**
 * Builds {@link Interface}s from raw data; pure. `raw` is what `os.networkInterfaces()` returns,
 * `sysfs` what Linux reports per interface name. Exported for tests and custom sources.
 */
export function buildInterfaces(
  raw: NodeJS.Dict<NetworkInterfaceInfo[]>,
  routes: RouteTable,
  sysfs: ReadonlyMap<string, SysfsInfo> = new Map(),
): Interface[] {
  const list: Interface[] = [];
  for (const [name, entries] of Object.entries(raw)) {
    if (!entries || entries.length === 0) continue;
    const sys = sysfs.get(name) ?? {};
    const isV6 = (e: NetworkInterfaceInfo): boolean => (e.family as unknown) === 'IPv6' || (e.family as unknown) === 6;
    const v6Ids = entries.filter((e) => isV6(e) && (e.scopeid ?? 0) > 0).map((e) => e.scopeid ?? 0);
    const index = sys.index ?? v6Ids[0] ?? -1;
    const addresses: InterfaceAddress[] = [];
    for (const e of entries) {
      const family: Family = isV6(e) ? 6 : 4;
      const address = e.address.split('%')[0] ?? e.address;
      let scope: AddressScope;
      try {
        scope = ipScope(address);
      } catch {
        continue; // not an IP literal: nothing sensible to report
      }
      const a: { -readonly [K in keyof InterfaceAddress]: InterfaceAddress[K] } = {
        address,
        family,
        prefixLength: prefixLength(e),
        netmask: e.netmask,
        scope,
      };
      if (family === 6 && scope === 'link-local') {
        const id = (e.scopeid ?? 0) > 0 ? e.scopeid : index > 0 ? index : undefined;
        if (id !== undefined) a.scopeId = id;
      }
      addresses.push(a);
    }
    const flagUp = sys.flags === undefined || (sys.flags & IFF_UP) !== 0;
    const up = flagUp && (sys.operstate === undefined || UP_OPERSTATES.has(sys.operstate));
    const loopback = (sys.flags !== undefined && (sys.flags & IFF_LOOPBACK) !== 0) || entries.every((e) => e.internal);
    const gateways: { 4?: string; 6?: string } = {};
    for (const f of FAMILIES) {
      const gw = defaultGateway(routes.defaults, name, f);
      if (gw !== undefined) gateways[f] = gw;
    }
    list.push(new Interface({ name, index, mac: entries[0]?.mac ?? '00:00:00:00:00:00', up, loopback, addresses, gateways }));
  }
  list.sort((a, b) => (a.index < 0 ? 1 : 0) - (b.index < 0 ? 1 : 0) || a.index - b.index || (a.name < b.name ? -1 : 1));
  // Which interface holds the default route: the kernel's answer, or the heuristic without one.
  const holder = (f: Family): string | undefined =>
    routes.available ? bestDefaultRoute(routes.defaults, f)?.iface : heuristicDefault(list, f)?.name;
  const h4 = holder(4);
  const h6 = holder(6);
  return list.map((i) =>
    i.name === h4 || i.name === h6 ? new Interface({ ...i.toJSON(), isDefault: { 4: i.name === h4, 6: i.name === h6 } }) : i,
  );
}

/** Options of {@link initP2pd} and the standalone lookups. */
export interface InitOptions extends AbortOptions {
  /** Cancels enumeration; it rejects with AbortError. @default undefined */
  signal?: AbortSignal;
  /** Milliseconds before enumeration rejects with TimeoutError; `0` means none. @default 0 */
  timeout?: number;
  /**
   * Keeps only the interfaces for which this returns true. Default-route detection still sees
   * every interface; a filtered-out default-route holder is replaced by the heuristic. @default undefined (keep all)
   */
  include?: (iface: Interface) => boolean;
  /** Include loopback interfaces. @default true */
  loopback?: boolean;
}

async function enumerate(opts: InitOptions): Promise<Interfaces> {
  let raw: NodeJS.Dict<NetworkInterfaceInfo[]>;
  try {
    raw = networkInterfaces();
  } catch (e) {
    throw new InterfaceNotFoundError('could not enumerate network interfaces', { cause: e });
  }
  const linux = process.platform === 'linux';
  const names = Object.keys(raw);
  const [routes, sys] = await Promise.all([
    readRouteTable(),
    linux ? Promise.all(names.map(async (n) => [n, await readSysfs(n)] as const)) : Promise.resolve([]),
  ]);
  let list = buildInterfaces(raw, routes, new Map(sys));
  if (opts.loopback === false) list = list.filter((i) => !i.loopback);
  const include = opts.include;
  if (include) list = list.filter((i) => include(i));
  return new Interfaces(list, routes.available);
}

/**
 * Enumerates the machine's interfaces. Sends nothing on the network and spawns nothing;
 * typically a few milliseconds.
 * @throws InvalidArgumentError on bad options; AbortError / TimeoutError via `signal` / `timeout`.
 */
export function initP2pd(opts: InitOptions = {}): Promise<Interfaces> {
  if (opts === null || typeof opts !== 'object') {
    return Promise.reject(new InvalidArgumentError(`initP2pd options must be an object, got ${opts === null ? 'null' : typeof opts}`));
  }
  if (opts.loopback !== undefined && typeof opts.loopback !== 'boolean') {
    return Promise.reject(new InvalidArgumentError(`loopback must be a boolean, got ${typeof opts.loopback}`));
  }
  if (opts.include !== undefined && typeof opts.include !== 'function') {
    return Promise.reject(new InvalidArgumentError('include must be a function'));
  }
  if (opts.timeout !== undefined && !(typeof opts.timeout === 'number' && opts.timeout >= 0)) {
    return Promise.reject(new InvalidArgumentError(`timeout must be a number >= 0, got ${String(opts.timeout)}`));
  }
  return cancellable<Interfaces>(opts, 'interface enumeration', (resolve, reject) => {
    enumerate(opts).then(resolve, reject);
  });
}

/** The machine's interfaces as a plain array; see {@link initP2pd}. */
export async function getInterfaces(opts?: InitOptions): Promise<Interface[]> {
  return [...(await initP2pd(opts)).list];
}

/** The default interface; see {@link Interfaces.default}. @throws InterfaceNotFoundError when there is none. */
export async function getDefaultInterface(family?: Family, opts?: InitOptions): Promise<Interface> {
  if (family !== undefined) checkFamily(family);
  return (await initP2pd(opts)).default(family);
}

/** The interface called `name`. @throws InterfaceNotFoundError (`ERR_NO_INTERFACE`) naming the known interfaces. */
export async function getInterface(name: string, opts?: InitOptions): Promise<Interface> {
  if (typeof name !== 'string') throw new InvalidArgumentError(`interface name must be a string, got ${typeof name}`);
  return (await initP2pd(opts)).byName(name);
}
