/**
 * Default routes from the kernel's routing table.
 *
 * On Linux the main routing table is read from `/proc/net/route` (IPv4) and
 * `/proc/net/ipv6_route` (IPv6) of the current network namespace. Nothing is spawned and
 * nothing is sent on the network. The parsers are pure and total: malformed lines are
 * skipped, they never throw.
 *
 * Elsewhere (macOS, Windows, BSD) the routing table is not read: {@link readRouteTable}
 * returns `{ available: false, defaults: [] }` and callers fall back to a heuristic.
 * Routes in other policy-routing tables (`ip rule`) are not visible in `/proc` and are ignored.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Family } from './endpoint.js';
import { bytesToIp } from './scope.js';

/** Path of the IPv4 routing table on Linux. */
export const PROC_NET_ROUTE = '/proc/net/route';
/** Path of the IPv6 routing table on Linux. */
export const PROC_NET_IPV6_ROUTE = '/proc/net/ipv6_route';

/** `RTF_UP`: the route is usable. */
export const RTF_UP = 0x0001;
/** `RTF_GATEWAY`: the destination is reached through a gateway (next hop). */
export const RTF_GATEWAY = 0x0002;
/** `RTF_REJECT`: an unreachable/prohibit route (e.g. IPv6's `lo` catch-all); never a real default. */
export const RTF_REJECT = 0x0200;

/** Largest routing-table text parsed; anything beyond is ignored (a full BGP table is not a host table). */
export const MAX_ROUTE_TABLE_BYTES = 4 * 1024 * 1024;

const HEX8 = /^[0-9a-fA-F]{8}$/;
const HEX32 = /^[0-9a-fA-F]{32}$/;
const HEX_FLAGS = /^[0-9a-fA-F]{1,8}$/;
const HEX2 = /^[0-9a-fA-F]{2}$/;
const DEC = /^-?[0-9]{1,10}$/;
const IFNAME = /^[^\s/]{1,64}$/;

/** One default route (destination `0.0.0.0/0` or `::/0`) of the kernel's routing table. */
export interface DefaultRoute {
  /** Name of the outgoing interface, e.g. `'eth0'`. */
  iface: string;
  /** Address family of the route. */
  family: Family;
  /**
   * Next-hop address. Absent for on-link default routes (point-to-point links such as
   * `ppp0` or `wg0`). IPv6 gateways are usually link-local (`fe80::1`); their zone is `iface`.
   */
  gateway?: string;
  /** Route metric; lower wins. */
  metric: number;
}

/** What {@link readRouteTable} found. */
export interface RouteTable {
  /** True when at least one of the kernel's routing tables could be read. */
  available: boolean;
  /** Every usable default route, in kernel table order. */
  defaults: DefaultRoute[];
}

/** Byte order of the host; `/proc/net/route` prints addresses as host-order hex words. */
export type Endianness = 'LE' | 'BE';

function lines(text: string): string[] {
  if (typeof text !== 'string') return [];
  return text.slice(0, MAX_ROUTE_TABLE_BYTES).split('\n');
}

function hex4ToIPv4(hex: string, order: Endianness): string {
  const v = parseInt(hex, 16) >>> 0;
  const be = [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  return (order === 'LE' ? be.reverse() : be).join('.');
}

/**
 * Parses the text of `/proc/net/route` into its default routes (destination and mask
 * `00000000`, `RTF_UP` set, `RTF_REJECT` clear). The header line and malformed lines are
 * skipped; never throws.
 *
 * @param text - The file's contents.
 * @param order - Byte order of the hex address words, which the kernel prints in host order.
 * @default order `os.endianness()` (`'LE'` on x86 and most ARM)
 */
export function parseProcNetRoute(text: string, order: Endianness = endianness()): DefaultRoute[] {
  const out: DefaultRoute[] = [];
  for (const line of lines(text)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface = '', dest = '', gw = '', flagsHex = '', , , metricDec = '', mask = ''] = f;
    if (!IFNAME.test(iface) || !HEX8.test(dest) || !HEX8.test(gw) || !HEX8.test(mask)) continue;
    if (!HEX_FLAGS.test(flagsHex) || !DEC.test(metricDec)) continue;
    const flags = parseInt(flagsHex, 16);
    if (parseInt(dest, 16) !== 0 || parseInt(mask, 16) !== 0) continue;
    if ((flags & RTF_UP) === 0 || (flags & RTF_REJECT) !== 0) continue;
    const route: DefaultRoute = { iface, family: 4, metric: Number(metricDec) };
    if ((flags & RTF_GATEWAY) !== 0 && parseInt(gw, 16) !== 0) route.gateway = hex4ToIPv4(gw, order);
    out.push(route);
  }
  return out;
}

function hex16ToBytes(hex: string): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return b;
}

/**
 * Parses the text of `/proc/net/ipv6_route` into its default routes (destination `::/0`,
 * `RTF_UP` set, `RTF_REJECT` clear — which drops the kernel's catch-all unreachable route
 * on `lo`). Malformed lines are skipped; never throws.
 *
 * Columns: destination, prefix length, source, source prefix length, next hop, metric,
 * refcount, use, flags, device — all hex except the device.
 */
export function parseProcNetIpv6Route(text: string): DefaultRoute[] {
  const out: DefaultRoute[] = [];
  for (const line of lines(text)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [dest = '', plen = '', src = '', splen = '', nh = '', metricHex = '', , , flagsHex = '', iface = ''] = f;
    if (!HEX32.test(dest) || !HEX2.test(plen) || !HEX32.test(src) || !HEX2.test(splen) || !HEX32.test(nh)) continue;
    if (!HEX8.test(metricHex) || !HEX_FLAGS.test(flagsHex) || !IFNAME.test(iface)) continue;
    if (parseInt(plen, 16) !== 0 || !/^0+$/.test(dest)) continue;
    const flags = parseInt(flagsHex, 16);
    if ((flags & RTF_UP) === 0 || (flags & RTF_REJECT) !== 0) continue;
    const route: DefaultRoute = { iface, family: 6, metric: parseInt(metricHex, 16) >>> 0 };
    if ((flags & RTF_GATEWAY) !== 0 && !/^0+$/.test(nh)) route.gateway = bytesToIp(hex16ToBytes(nh));
    out.push(route);
  }
  return out;
}

/**
 * The default route the kernel uses for `family`: the lowest metric, the first in table order
 * on a tie. `undefined` when there is none.
 */
export function bestDefaultRoute(routes: readonly DefaultRoute[], family: Family): DefaultRoute | undefined {
  let best: DefaultRoute | undefined;
  for (const r of routes) {
    if (r.family === family && (best === undefined || r.metric < best.metric)) best = r;
  }
  return best;
}

/**
 * The default gateway of interface `iface` for `family`: the gateway of its lowest-metric
 * default route that has one. `undefined` when the interface has no such route.
 */
export function defaultGateway(routes: readonly DefaultRoute[], iface: string, family: Family): string | undefined {
  let best: DefaultRoute | undefined;
  for (const r of routes) {
    if (r.iface !== iface || r.family !== family || r.gateway === undefined) continue;
    if (best === undefined || r.metric < best.metric) best = r;
  }
  return best?.gateway;
}

/** Options of {@link readRouteTable}; the paths exist for tests and unusual `/proc` mounts. */
export interface ReadRouteTableOptions {
  /**
   * Platform whose routing table to read; only `'linux'` is supported.
   * @default process.platform
   */
  platform?: NodeJS.Platform;
  /**
   * IPv4 table path.
   * @default '/proc/net/route'
   */
  routePath?: string;
  /**
   * IPv6 table path.
   * @default '/proc/net/ipv6_route'
   */
  ipv6RoutePath?: string;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Reads the kernel's default routes, both files concurrently, once. Best effort: on a
 * platform other than Linux, or when the files cannot be read, returns
 * `{ available: false, defaults: [] }`; never rejects. A missing `ipv6_route` (IPv6
 * disabled) only loses the IPv6 routes.
 */
export async function readRouteTable(opts: ReadRouteTableOptions = {}): Promise<RouteTable> {
  if ((opts.platform ?? process.platform) !== 'linux') return { available: false, defaults: [] };
  const [v4, v6] = await Promise.all([
    readText(opts.routePath ?? PROC_NET_ROUTE),
    readText(opts.ipv6RoutePath ?? PROC_NET_IPV6_ROUTE),
  ]);
  const defaults = [
    ...(v4 === undefined ? [] : parseProcNetRoute(v4)),
    ...(v6 === undefined ? [] : parseProcNetIpv6Route(v6)),
  ];
  return { available: v4 !== undefined || v6 !== undefined, defaults };
}
