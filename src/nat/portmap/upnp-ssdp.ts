/**
 * SSDP discovery of an Internet Gateway Device (UPnP Device Architecture §1.3): M-SEARCH
 * over a UDP pipe, sent to the multicast group on the chosen interface and/or unicast to
 * the gateway, retransmitted once a second until the timeout. A response counts only if it
 * is a well-formed `HTTP/1.1 200` from an accepted source with an `http:` LOCATION whose
 * host is an IP literal that the caller's policy accepts (see {@link SsdpSearchOptions.accept}).
 * @module
 */
import { InvalidArgumentError, PortMappingError, TimeoutError } from '../../errors.js';
import { formatEndpoint, type Endpoint, type Family } from '../../interfaces/endpoint.js';
import { pipeOpen } from '../../pipes/open.js';
import { badSignal, badTimeout, sleep, throwIfAborted, toAbortError } from '../../util/abort.js';
import { checkUpnpUrl } from './upnp-xml.js';

/** SSDP port. */
export const SSDP_PORT = 1900;
/** IPv4 SSDP multicast group. */
export const SSDP_MULTICAST_V4 = '239.255.255.250';
/** IPv6 link-local SSDP multicast group. */
export const SSDP_MULTICAST_V6 = 'ff02::c';
/** Largest SSDP response looked at, bytes. */
export const SSDP_MAX_RESPONSE = 8 * 1024;
/**
 * Interval between M-SEARCH rounds, ms: round `n` is never sent before `n` intervals after
 * the search started, so no path through the loop can re-send without waiting.
 */
export const SSDP_ROUND_INTERVAL_MS = 1_000;
/** How long an SSDP search lasts by default, ms. */
export const SSDP_SEARCH_TIMEOUT = 3_000;
/** Search targets sent by default (IGD v1 and v2; v2 devices also answer v1 searches). */
export const IGD_SEARCH_TARGETS: readonly string[] = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
];

/** A parsed, accepted SSDP search response. */
export interface SsdpResponse {
  /** Who answered. */
  from: Endpoint;
  /** The device description URL. */
  location: URL;
  /** The `ST` header. */
  st: string;
  /** The `USN` header, if any. */
  usn?: string;
  /** The `SERVER` header, if any. */
  server?: string;
}

/** Options of {@link ssdpSearch}. */
export interface SsdpSearchOptions {
  /** Where to send M-SEARCH (multicast group and/or unicast addresses, same family). */
  targets: readonly Endpoint[];
  /** Address family. */
  family: Family;
  /** Local address to bind. @default the wildcard */
  localAddress?: string | undefined;
  /** Outgoing multicast interface: an IPv4 address, or an IPv6 interface name/index. @default the OS choice */
  multicastInterface?: string | undefined;
  /** Search targets (`ST`). @default IGD_SEARCH_TARGETS */
  searchTargets?: readonly string[];
  /**
   * How long to search, ms (`0` or `Infinity`: until `signal` aborts or an answer comes).
   * Anything else that is not a non-negative number is an `InvalidArgumentError`.
   * @default SSDP_SEARCH_TIMEOUT (3000)
   */
  timeout?: number;
  /** `MX` header, seconds. @default 1 */
  mx?: number;
  /**
   * Source/LOCATION policy: return false to ignore a response (wrong source, LOCATION
   * pointing off-link, ...). @default accept every well-formed response
   */
  accept?: (from: Endpoint, location: URL) => boolean;
  signal?: AbortSignal | undefined;
}

/** Builds an M-SEARCH request. */
export function encodeMSearch(st: string, host: string, mx: number): Buffer {
  if (/[\r\n]/.test(st) || /[\r\n]/.test(host)) throw new InvalidArgumentError('SSDP header values must not contain line breaks');
  return Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\nST: ${st}\r\n\r\n`, 'latin1');
}

/**
 * Parses an SSDP search response; `undefined` when it is not one (wrong status line, no
 * LOCATION/ST, over {@link SSDP_MAX_RESPONSE}, LOCATION not an `http:` URL with an IP host).
 */
export function parseSsdpResponse(data: Uint8Array, from: Endpoint): SsdpResponse | undefined {
  if (data.length > SSDP_MAX_RESPONSE || data.length < 12) return undefined;
  const text = Buffer.from(data).toString('latin1');
  const lines = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/.test(lines[0] ?? '')) return undefined;
  const h = new Map<string, string>();
  for (const line of lines.slice(1, 64)) {
    if (line === '') break;
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    if (!h.has(k)) h.set(k, line.slice(i + 1).trim());
  }
  const loc = h.get('location');
  const st = h.get('st');
  if (!loc || !st || loc.length > 512) return undefined;
  let location: URL;
  try {
    location = checkUpnpUrl(loc, undefined, 'SSDP LOCATION');
  } catch {
    return undefined;
  }
  const r: SsdpResponse = { from, location, st };
  const usn = h.get('usn');
  if (usn) r.usn = usn;
  const server = h.get('server');
  if (server) r.server = server;
  return r;
}

/** True when an ST names something an IGD offers. */
function isIgdTarget(st: string): boolean {
  return /^urn:schemas-upnp-org:(device:(InternetGatewayDevice|WANDevice|WANConnectionDevice)|service:(WANIPConnection|WANPPPConnection)):\d+$/.test(st) || st === 'upnp:rootdevice';
}

/**
 * Searches for an IGD and resolves with the first accepted response. Rejects with
 * {@link PortMappingError} (cause `TimeoutError`) when none arrives within `timeout`; when
 * `signal` aborts, rejects at once with its reason as {@link AbortError} (a `TimeoutError`
 * reason is kept), without sending anything more. M-SEARCH rounds are at least
 * {@link SSDP_ROUND_INTERVAL_MS} apart. The pipe is closed however it ends.
 */
export async function ssdpSearch(opts: SsdpSearchOptions): Promise<SsdpResponse> {
  const bad = badTimeout(opts.timeout) ?? badSignal(opts.signal);
  if (bad) throw bad;
  throwIfAborted(opts.signal ?? undefined);
  if (opts.targets.length === 0) throw new InvalidArgumentError('ssdpSearch needs at least one target');
  const timeout = opts.timeout === 0 ? Infinity : (opts.timeout ?? SSDP_SEARCH_TIMEOUT);
  const mx = opts.mx ?? 1;
  const sts = opts.searchTargets ?? IGD_SEARCH_TARGETS;
  const pipe = await pipeOpen('udp', undefined, {
    bind: { host: opts.localAddress ?? (opts.family === 6 ? '::' : '0.0.0.0'), port: 0 },
    family: opts.family,
    onMessage: () => undefined,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  let ignored = 0;
  try {
    if (opts.multicastInterface) {
      try {
        pipe.socket.setMulticastInterface(opts.multicastInterface);
      } catch {
        /* unicast-only search still works */
      }
    }
    const sub = pipe.subscribe({}, { maxQueue: 64, maxQueueBytes: 512 * 1024 });
    const t0 = performance.now();
    let sent = 0;
    let lastError: unknown;
    const signal = opts.signal ?? undefined;
    for (let round = 0; ; round++) {
      throwIfAborted(signal);
      // Never start round n before its slot, whatever ended the previous one.
      const slot = round * SSDP_ROUND_INTERVAL_MS;
      if (slot >= timeout) break;
      const early = slot - (performance.now() - t0);
      if (early > 0) await sleep(Math.ceil(early), signal ? { signal } : undefined);
      if (performance.now() - t0 >= timeout) break;
      for (const target of opts.targets) {
        for (const st of sts) {
          const host = target.family === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
          try {
            await pipe.send(encodeMSearch(st, host, mx), target);
            sent++;
          } catch (e) {
            lastError = e;
          }
        }
      }
      if (sent === 0 && round === 0) {
        throw new PortMappingError('upnp', `SSDP search: cannot send to ${opts.targets.map((t) => formatEndpoint(t)).join(', ')}`, { cause: lastError });
      }
      const roundEnd = Math.min(timeout, (round + 1) * SSDP_ROUND_INTERVAL_MS);
      for (;;) {
        const left = Math.ceil(roundEnd - (performance.now() - t0));
        if (left <= 0) break;
        let m;
        try {
          m = await pipe.recv({ sub, timeout: left, ...(signal ? { signal } : {}) });
        } catch (e) {
          // The caller's abort may carry a TimeoutError reason: that is not this round's end.
          if (signal?.aborted) throw toAbortError(signal);
          if (e instanceof TimeoutError) break;
          throw e;
        }
        const r = parseSsdpResponse(m.data, m.from);
        if (!r || !isIgdTarget(r.st) || (opts.accept && !opts.accept(r.from, r.location))) {
          ignored++;
          continue;
        }
        return r;
      }
    }
    throw new PortMappingError(
      'upnp',
      `SSDP search: no Internet Gateway Device answered within ${timeout} ms (asked ${opts.targets.map((t) => formatEndpoint(t)).join(', ')}${ignored ? `; ignored ${ignored} response(s)` : ''})`,
      { cause: new TimeoutError('SSDP search timed out') },
    );
  } finally {
    await pipe.close();
  }
}
