/**
 * UPnP IGD client: finds the gateway's device description (SSDP or a known LOCATION), then
 * speaks SOAP to its WANIPConnection (v1/v2) / WANPPPConnection service — GetExternalIPAddress,
 * AddPortMapping, AddAnyPortMapping (v2), DeletePortMapping — and to WANIPv6FirewallControl
 * for IPv6 pinholes — AddPinhole, UpdatePinhole, DeletePinhole. Arguments are XML-escaped;
 * SOAP faults become {@link PortMappingError}s carrying the UPnP error code.
 * @module
 */
import { InvalidArgumentError, PortMappingError, TimeoutError } from '../../errors.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import { badSignal, badTimeout, linkSignals, longTimer, throwIfAborted, toAbortError } from '../../util/abort.js';
import { checkTimeoutAndSignal, hasDeadline } from '../deadline.js';
import { SSDP_SEARCH_TIMEOUT, ssdpSearch, type SsdpResponse, type SsdpSearchOptions } from './upnp-ssdp.js';
import { checkUpnpUrl, parseIgdDescription, upnpHttp, urlHost, xmlElements, xmlEscape, xmlText, type IgdDescription, type UpnpService } from './upnp-xml.js';
import { routeSourceAddress, stepBudget } from './transport.js';

/** UPnP error codes a client may act on (UPnP IGD WANIPConnection:2 §2.5, WANIPv6FirewallControl:1). */
export const UpnpErrorCode = {
  INVALID_ARGS: 402,
  ACTION_FAILED: 501,
  NOT_AUTHORIZED: 606,
  NO_SUCH_ENTRY: 714,
  CONFLICT_IN_MAPPING_ENTRY: 718,
  SAME_PORT_VALUES_REQUIRED: 724,
  ONLY_PERMANENT_LEASES_SUPPORTED: 725,
  NO_PORT_MAPS_AVAILABLE: 728,
  CONFLICT_WITH_OTHER_MECHANISMS: 729,
} as const;

/** Longest lease IGD v2 allows, seconds (one week). */
export const UPNP_MAX_LEASE = 604_800;
/** Longest pinhole lease WANIPv6FirewallControl allows, seconds. */
export const UPNP_MAX_PINHOLE_LEASE = 86_400;

/** Default bound of a whole {@link UpnpClient.discover} (SSDP search, route lookup, description fetch), ms. */
export const UPNP_DISCOVER_TIMEOUT = 8_000;

/** Timing options of UPnP operations. */
export interface UpnpCallOptions {
  /** Cancels the operation; it rejects with `AbortError`. */
  signal?: AbortSignal | undefined;
  /**
   * Time budget of the operation, ms, shared by every HTTP request it makes (an
   * `addPortMapping` retried with lease 0 makes two); when it passes, `TimeoutError`. `0` or
   * `Infinity` = none. @default 5000 for each HTTP request
   */
  timeout?: number | undefined;
}

/** Options of {@link UpnpClient.discover}. */
export interface UpnpDiscoverOptions extends UpnpCallOptions {
  /**
   * Bound of the whole discovery, ms: the SSDP search, the route lookup and the description
   * fetch share it (the search is cut short to fit). When it passes, the discovery rejects
   * with `TimeoutError` (also when it cut the search short and nobody had answered; `cause`
   * is then the search's `PortMappingError`). `0` or `Infinity` = none (the search still
   * ends after `ssdp.timeout`, the route lookup after 5 s). A bad value, or a bad `signal`,
   * is an `InvalidArgumentError` before anything is sent.
   * @default UPNP_DISCOVER_TIMEOUT (8000)
   */
  timeout?: number | undefined;
  /** Device description URL; when given, SSDP is skipped. */
  location?: string | URL | undefined;
  /** SSDP settings (targets, family, policy, ...), used when `location` is not given. */
  ssdp?: SsdpSearchOptions | undefined;
  /** This host's address on the gateway's network. @default the OS's source address towards the description's host */
  localAddress?: string | undefined;
  /** IPv6 zone (interface) for link-local description hosts. */
  zone?: string | undefined;
}

/** A parsed SOAP response: the output arguments by name. */
export type SoapResult = Record<string, string>;

/**
 * Builds a SOAP 1.1 request envelope; every argument value is XML-escaped, argument and
 * action names must be plain XML names.
 */
export function soapEnvelope(serviceType: string, action: string, args: ReadonlyArray<readonly [string, string | number]>): string {
  const name = /^[A-Za-z_][A-Za-z0-9_]*$/;
  if (!name.test(action)) throw new InvalidArgumentError(`bad SOAP action name ${action}`);
  const body = args
    .map(([k, v]) => {
      if (!name.test(k)) throw new InvalidArgumentError(`bad SOAP argument name ${k}`);
      return `<${k}>${xmlEscape(String(v))}</${k}>`;
    })
    .join('');
  return (
    '<?xml version="1.0" encoding="utf-8"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${xmlEscape(serviceType)}">${body}</u:${action}></s:Body></s:Envelope>`
  );
}

/** Turns a SOAP fault body into a {@link PortMappingError}, or `undefined` if it holds none. */
export function parseSoapFault(xml: string, action: string): PortMappingError | undefined {
  const fault = xmlText(xml, 'Fault');
  if (fault === undefined) return undefined;
  const codeText = xmlText(fault, 'errorCode');
  const desc = (xmlText(fault, 'errorDescription') ?? xmlText(fault, 'faultstring') ?? '').slice(0, 200);
  const code = codeText !== undefined && /^[0-9]{1,4}$/.test(codeText) ? Number(codeText) : undefined;
  return new PortMappingError('upnp', `UPnP ${action} failed: ${code ?? 'fault'}${desc ? ` ${desc}` : ''}`, code !== undefined ? { resultCode: code } : undefined);
}

/** An IGD, ready for SOAP calls. */
export class UpnpClient {
  /** The device description. */
  readonly igd: IgdDescription;
  /** Our address as the IGD sees it (HTTP requests are sent from it; NewInternalClient). */
  readonly localAddress: string;
  private readonly zone: string | undefined;

  constructor(igd: IgdDescription, localAddress: string, zone?: string) {
    this.igd = igd;
    this.localAddress = localAddress;
    this.zone = zone;
  }

  /**
   * Finds the IGD (SSDP unless `location` is given), reads its description and checks it has
   * a WAN connection or IPv6 firewall service, all within `opts.timeout` (see
   * {@link UpnpDiscoverOptions.timeout}). Rejects with {@link PortMappingError}, `TimeoutError`
   * when `timeout` passes, `AbortError` when `signal` (or, during the search, `ssdp.signal`)
   * aborts, `InvalidArgumentError` for bad options.
   */
  static async discover(opts: UpnpDiscoverOptions): Promise<UpnpClient> {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('UpnpClient.discover options must be an object');
    checkTimeoutAndSignal(opts); // before anything is sent
    if (opts.location === undefined) {
      if (!opts.ssdp) throw new InvalidArgumentError('UpnpClient.discover needs `location` or `ssdp` options');
      const bad = badTimeout(opts.ssdp.timeout) ?? badSignal(opts.ssdp.signal);
      if (bad) throw bad;
    }
    throwIfAborted(opts.signal);
    const timeout = opts.timeout ?? UPNP_DISCOVER_TIMEOUT;
    const end = hasDeadline(timeout) ? performance.now() + timeout : Infinity;
    const what = 'UPnP discovery';
    const timedOut = (cause?: Error): TimeoutError =>
      new TimeoutError(`${what} timed out after ${timeout} ms${cause ? `: ${cause.message}` : ''}`, cause ? { cause } : undefined);
    let location: URL;
    let zone = opts.zone;
    if (opts.location !== undefined) {
      location = checkUpnpUrl(String(opts.location), undefined, 'UPnP location');
    } else {
      const r = await UpnpClient.search(opts.ssdp as SsdpSearchOptions, opts.signal, end, timedOut);
      location = r.location;
      zone ??= r.from.scopeId;
    }
    // The route lookup and the description fetch: what is left of the deadline, on one signal.
    const deadline = new AbortController();
    const stopTimer = end === Infinity ? undefined : longTimer(Math.max(0, end - performance.now()), () => deadline.abort(timedOut()));
    const link = linkSignals(opts.signal ? { signal: opts.signal } : undefined, [deadline.signal], what);
    const signal = link.signal;
    try {
      throwIfAborted(signal);
      if (performance.now() >= end) throw timedOut();
      const host = urlHost(location);
      const localAddress =
        opts.localAddress ??
        (await routeSourceAddress(
          { host, port: Number(location.port) || 80, family: host.includes(':') ? 6 : 4, ...(zone && /^fe80:/i.test(host) ? { scopeId: zone } : {}) } as Endpoint,
          { signal, ...(end === Infinity ? {} : { timeout: Math.max(1, Math.ceil(end - performance.now())) }) },
        ));
      // No timer of its own: the deadline is on `signal` (none at all with `timeout` 0 / Infinity).
      const res = await upnpHttp(location, { localAddress, zone, timeout: 0, signal });
      if (res.status !== 200) throw new PortMappingError('upnp', `device description ${location.href}: HTTP ${res.status}`);
      const igd = parseIgdDescription(res.body, location);
      if (!igd.connection && !igd.firewall6) {
        throw new PortMappingError('upnp', `device at ${location.href} offers no WANIPConnection/WANPPPConnection/WANIPv6FirewallControl service`);
      }
      return new UpnpClient(igd, localAddress, zone);
    } catch (e) {
      if (signal.aborted) throw toAbortError(signal);
      throw e;
    } finally {
      stopTimer?.();
      link.done();
    }
  }

  /**
   * The SSDP step of {@link discover}: the search window is cut to the time left before
   * `end`, so the search itself ends by the deadline (no timer aborts it: its own error says
   * who answered and what was ignored). Nobody answered in a window cut short: `timedOut`.
   */
  private static async search(ssdp: SsdpSearchOptions, signal: AbortSignal | undefined, end: number, timedOut: (cause: Error) => TimeoutError): Promise<SsdpResponse> {
    const asked = ssdp.timeout === undefined ? SSDP_SEARCH_TIMEOUT : hasDeadline(ssdp.timeout) ? ssdp.timeout : Infinity;
    const left = end - performance.now();
    const cut = left < asked;
    const userSignal = signal ?? ssdp.signal;
    try {
      return await ssdpSearch({ ...ssdp, timeout: cut ? Math.max(1, Math.ceil(left)) : asked, signal: userSignal });
    } catch (e) {
      if (userSignal?.aborted) throw toAbortError(userSignal);
      if (cut && e instanceof PortMappingError && e.cause instanceof TimeoutError) throw timedOut(e);
      throw e;
    }
  }

  private service(kind: 'connection' | 'firewall6', action: string): UpnpService {
    const s = kind === 'connection' ? this.igd.connection : this.igd.firewall6;
    if (!s) {
      throw new PortMappingError('upnp', `UPnP ${action}: the gateway has no ${kind === 'connection' ? 'WAN connection' : 'WANIPv6FirewallControl'} service`);
    }
    return s;
  }

  /** Calls a SOAP action and returns its output arguments. */
  async call(kind: 'connection' | 'firewall6', action: string, args: ReadonlyArray<readonly [string, string | number]>, opts?: UpnpCallOptions): Promise<SoapResult> {
    const svc = this.service(kind, action);
    const res = await upnpHttp(svc.controlUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${svc.serviceType}#${action}"` },
      body: soapEnvelope(svc.serviceType, action, args),
      localAddress: this.localAddress,
      zone: this.zone,
      timeout: opts?.timeout,
      signal: opts?.signal,
    });
    if (res.status !== 200) {
      throw parseSoapFault(res.body, action) ?? new PortMappingError('upnp', `UPnP ${action} failed: HTTP ${res.status} without a SOAP fault`);
    }
    const inner = xmlText(res.body, `${action}Response`);
    if (inner === undefined) {
      throw parseSoapFault(res.body, action) ?? new PortMappingError('upnp', `UPnP ${action}: malformed response (no ${action}Response element)`);
    }
    const out: SoapResult = {};
    const re = /<(?:[A-Za-z_][A-Za-z0-9_.-]*:)?([A-Za-z_][A-Za-z0-9_]*)(?:\s[^<>]*)?(?:\/>|>)/g;
    let m: RegExpExecArray | null;
    let n = 0;
    while ((m = re.exec(inner)) !== null && n++ < 64) {
      const name = m[1] as string;
      if (!(name in out)) out[name] = m[0].endsWith('/>') ? '' : xmlElements(inner, name, 1)[0] ?? '';
    }
    return out;
  }

  /**
   * The WAN address (GetExternalIPAddress). An empty answer or `0.0.0.0` (what miniupnpd
   * says when its WAN address is in a reserved range it could not validate) is a
   * {@link PortMappingError}; a documentation/private address is returned as it is.
   */
  async getExternalAddress(opts?: UpnpCallOptions): Promise<string> {
    const r = await this.call('connection', 'GetExternalIPAddress', [], opts);
    const a = (r.NewExternalIPAddress ?? '').trim();
    if (a === '' || a === '0.0.0.0') throw new PortMappingError('upnp', `UPnP GetExternalIPAddress: the gateway does not know its external address (${JSON.stringify(a)})`);
    return a;
  }

  /**
   * Adds (or refreshes: same arguments again) a port mapping to `internalPort` on our
   * address. IGD v2 uses AddAnyPortMapping (the gateway may pick another port) unless
   * `exact`; v1 and `exact` use AddPortMapping (conflict: error 718). A gateway that only
   * supports permanent leases (725) is retried with lease 0: `permanent` is then true.
   */
  async addPortMapping(
    m: { protocol: 'udp' | 'tcp'; internalPort: number; externalPort: number; lifetime: number; description?: string; exact?: boolean },
    opts?: UpnpCallOptions,
  ): Promise<{ externalPort: number; lifetime: number; permanent: boolean }> {
    const lease = Math.min(Math.max(0, Math.floor(m.lifetime)), UPNP_MAX_LEASE);
    const any = this.igd.connection?.version === 2 && !m.exact;
    const args = (l: number): Array<[string, string | number]> => [
      ['NewRemoteHost', ''],
      ['NewExternalPort', m.externalPort],
      ['NewProtocol', m.protocol.toUpperCase()],
      ['NewInternalPort', m.internalPort],
      ['NewInternalClient', this.localAddress],
      ['NewEnabled', 1],
      ['NewPortMappingDescription', m.description ?? 'p2pd'],
      ['NewLeaseDuration', l],
    ];
    const step = stepBudget(opts); // both requests (the retry with lease 0 too) share opts.timeout
    const once = async (l: number, o: UpnpCallOptions): Promise<number> => {
      if (!any) {
        await this.call('connection', 'AddPortMapping', args(l), o);
        return m.externalPort;
      }
      const r = await this.call('connection', 'AddAnyPortMapping', args(l), o);
      const p = Number(r.NewReservedPort);
      if (!Number.isInteger(p) || p < 1 || p > 65535) {
        throw new PortMappingError('upnp', `UPnP AddAnyPortMapping: invalid NewReservedPort ${JSON.stringify((r.NewReservedPort ?? '').slice(0, 20))}`);
      }
      return p;
    };
    try {
      return { externalPort: await once(lease, step()), lifetime: lease, permanent: lease === 0 };
    } catch (e) {
      if (!(e instanceof PortMappingError) || e.resultCode !== UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED || lease === 0) throw e;
      return { externalPort: await once(0, step()), lifetime: 0, permanent: true };
    }
  }

  /** Deletes a port mapping (DeletePortMapping). */
  async deletePortMapping(protocol: 'udp' | 'tcp', externalPort: number, opts?: UpnpCallOptions): Promise<void> {
    await this.call(
      'connection',
      'DeletePortMapping',
      [
        ['NewRemoteHost', ''],
        ['NewExternalPort', externalPort],
        ['NewProtocol', protocol.toUpperCase()],
      ],
      opts,
    );
  }

  /**
   * Opens an IPv6 pinhole to `internalPort` on our (IPv6) address from any remote host and
   * port (AddPinhole). Returns the pinhole's UniqueID.
   */
  async addPinhole(p: { protocol: 'udp' | 'tcp'; internalPort: number; lifetime: number }, opts?: UpnpCallOptions): Promise<{ uniqueId: string; lifetime: number }> {
    const lease = Math.min(Math.max(1, Math.floor(p.lifetime)), UPNP_MAX_PINHOLE_LEASE);
    const r = await this.call(
      'firewall6',
      'AddPinhole',
      [
        ['RemoteHost', ''],
        ['RemotePort', 0],
        ['InternalClient', this.localAddress],
        ['InternalPort', p.internalPort],
        ['Protocol', p.protocol === 'udp' ? 17 : 6],
        ['LeaseTime', lease],
      ],
      opts,
    );
    const id = (r.UniqueID ?? '').trim();
    if (!/^[0-9]{1,5}$/.test(id)) throw new PortMappingError('upnp', `UPnP AddPinhole: invalid UniqueID ${JSON.stringify(id.slice(0, 20))}`);
    return { uniqueId: id, lifetime: lease };
  }

  /** Extends a pinhole's lease (UpdatePinhole). */
  async updatePinhole(uniqueId: string, lifetime: number, opts?: UpnpCallOptions): Promise<number> {
    const lease = Math.min(Math.max(1, Math.floor(lifetime)), UPNP_MAX_PINHOLE_LEASE);
    await this.call('firewall6', 'UpdatePinhole', [['UniqueID', uniqueId], ['NewLeaseTime', lease]], opts);
    return lease;
  }

  /** Closes a pinhole (DeletePinhole). */
  async deletePinhole(uniqueId: string, opts?: UpnpCallOptions): Promise<void> {
    await this.call('firewall6', 'DeletePinhole', [['UniqueID', uniqueId]], opts);
  }
}
