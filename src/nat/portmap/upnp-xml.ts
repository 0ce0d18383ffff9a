/**
 * Small, bounded helpers for UPnP: XML escaping, a tag-text extractor (no XML dependency:
 * UPnP device descriptions and SOAP responses are flat enough), the IGD device-description
 * parser, and an HTTP request over `node:http` with a size limit, a timeout and an
 * `AbortSignal`. Nothing here resolves host names: URLs must carry IP literals.
 * @module
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { PortMappingError } from '../../errors.js';
import { cancellable } from '../../util/abort.js';

/** Largest device description or SOAP response read, bytes. */
export const UPNP_MAX_XML_BYTES = 64 * 1024;
/** Most `<service>` entries looked at in a description. */
export const UPNP_MAX_SERVICES = 64;

/** Escapes text for an XML element (`&`, `<`, `>`, quotes); drops characters XML 1.0 forbids. */
export function xmlEscape(s: string): string {
  return String(s)
    .replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the five named entities and numeric character references; unknown ones stay as they are. */
export function xmlUnescape(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (m, e: string) => {
    if (e[0] !== '#') return NAMED[e] ?? m;
    const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : m;
  });
}

/** Removes comments and turns CDATA sections into escaped text. */
function normalize(xml: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const c = xml.indexOf('<!--', i);
    const d = xml.indexOf('<![CDATA[', i);
    const next = c < 0 ? d : d < 0 ? c : Math.min(c, d);
    if (next < 0) return out + xml.slice(i);
    out += xml.slice(i, next);
    if (next === c) {
      const end = xml.indexOf('-->', c + 4);
      if (end < 0) return out;
      i = end + 3;
    } else {
      const end = xml.indexOf(']]>', d + 9);
      if (end < 0) return out;
      out += xmlEscape(xml.slice(d + 9, end));
      i = end + 3;
    }
  }
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * Inner texts of every element whose local name is `name` (any namespace prefix), in
 * document order, unescaped and trimmed. Elements with child elements give their raw inner
 * XML (not unescaped). At most `limit` results.
 */
export function xmlElements(xml: string, name: string, limit = 256): string[] {
  if (!NAME_RE.test(name)) throw new Error(`bad element name ${name}`);
  const src = normalize(xml);
  const open = new RegExp(`<(?:[A-Za-z_][A-Za-z0-9_.-]*:)?${name.replace(/\./g, '\\.')}(?:\\s[^<>]*?)?(/?)>`, 'g');
  const out: string[] = [];
  let m: RegExpExecArray | null;
  while (out.length < limit && (m = open.exec(src)) !== null) {
    if (m[1] === '/') {
      out.push('');
      continue;
    }
    const start = m.index + m[0].length;
    const close = new RegExp(`</(?:[A-Za-z_][A-Za-z0-9_.-]*:)?${name.replace(/\./g, '\\.')}\\s*>`, 'g');
    close.lastIndex = start;
    const c = close.exec(src);
    if (!c) break;
    const inner = src.slice(start, c.index);
    out.push(inner.includes('<') ? inner.trim() : xmlUnescape(inner).trim());
    open.lastIndex = c.index + c[0].length;
  }
  return out;
}

/** The text of the first `name` element, or `undefined`. */
export function xmlText(xml: string, name: string): string | undefined {
  return xmlElements(xml, name, 1)[0];
}

/** A service of an IGD. */
export interface UpnpService {
  /** e.g. `urn:schemas-upnp-org:service:WANIPConnection:2`. */
  serviceType: string;
  /** Absolute control URL. */
  controlUrl: URL;
}

/** What the client needs from an IGD's device description. */
export interface IgdDescription {
  /** Where the description was read. */
  location: URL;
  /** The root device type, e.g. `urn:schemas-upnp-org:device:InternetGatewayDevice:2`. */
  deviceType?: string;
  /** `friendlyName` of the root device. */
  friendlyName?: string;
  /** WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1, if any. */
  connection?: UpnpService & { version: 1 | 2 };
  /** WANIPv6FirewallControl:1, if any. */
  firewall6?: UpnpService;
}

const CONNECTION_PREF = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
];
const FIREWALL6 = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1';

/** Host of a URL without IPv6 brackets. */
export function urlHost(u: URL): string {
  return u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
}

/**
 * Checks a URL the gateway gave us: `http:`, an IP-literal host, no credentials. Returns
 * the URL or throws {@link PortMappingError}.
 */
export function checkUpnpUrl(raw: string, base: URL | undefined, what: string): URL {
  let u: URL;
  try {
    u = base ? new URL(raw, base) : new URL(raw);
  } catch (e) {
    throw new PortMappingError('upnp', `${what}: not a URL: ${JSON.stringify(raw.slice(0, 100))}`, { cause: e });
  }
  if (u.protocol !== 'http:') throw new PortMappingError('upnp', `${what}: only http: URLs are used, got ${JSON.stringify(u.protocol)}`);
  if (isIP(urlHost(u)) === 0) throw new PortMappingError('upnp', `${what}: host must be an IP address, got ${JSON.stringify(u.hostname.slice(0, 64))}`);
  if (u.username || u.password) throw new PortMappingError('upnp', `${what}: credentials in URLs are refused`);
  return u;
}

/**
 * Parses a device description: finds the WAN connection and IPv6 firewall services and
 * resolves their control URLs against `URLBase` or `location`. Control URLs must stay on
 * the description's host and port (so a description cannot point us elsewhere).
 */
export function parseIgdDescription(xml: string, location: URL): IgdDescription {
  const baseText = xmlText(xml, 'URLBase');
  const base = baseText ? checkUpnpUrl(baseText, undefined, 'URLBase') : location;
  const out: IgdDescription = { location };
  const deviceType = xmlText(xml, 'deviceType');
  if (deviceType) out.deviceType = deviceType;
  const friendlyName = xmlText(xml, 'friendlyName');
  if (friendlyName) out.friendlyName = friendlyName;
  const found = new Map<string, URL>();
  for (const block of xmlElements(xml, 'service', UPNP_MAX_SERVICES)) {
    const type = xmlText(block, 'serviceType');
    const ctl = xmlText(block, 'controlURL');
    if (!type || !ctl || found.has(type)) continue;
    if (!CONNECTION_PREF.includes(type) && type !== FIREWALL6) continue;
    const url = checkUpnpUrl(ctl, base, `controlURL of ${type}`);
    if (url.host !== location.host) {
      throw new PortMappingError('upnp', `controlURL of ${type} points to ${url.host}, not to the device at ${location.host}`);
    }
    found.set(type, url);
  }
  for (const t of CONNECTION_PREF) {
    const u = found.get(t);
    if (u) {
      out.connection = { serviceType: t, controlUrl: u, version: t.endsWith(':2') ? 2 : 1 };
      break;
    }
  }
  const fw = found.get(FIREWALL6);
  if (fw) out.firewall6 = { serviceType: FIREWALL6, controlUrl: fw };
  return out;
}

/** Options of {@link upnpHttp}. */
export interface UpnpHttpOptions {
  /** HTTP method. @default 'GET' */
  method?: 'GET' | 'POST';
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Request body (SOAP envelope). */
  body?: string;
  /** Local address to send from (IGDs in secure mode check it). */
  localAddress?: string | undefined;
  /** IPv6 zone for a link-local host. */
  zone?: string | undefined;
  /** Request timeout, ms. @default 5000 */
  timeout?: number;
  /** Aborts the request. */
  signal?: AbortSignal | undefined;
  /** Largest response body accepted, bytes. @default UPNP_MAX_XML_BYTES */
  maxBytes?: number;
}

/** An HTTP response. */
export interface UpnpHttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP request without connection reuse. Rejects with {@link PortMappingError} on a
 * network error or a body over the limit, `TimeoutError` / `AbortError` via
 * timeout / signal; the socket is destroyed however it ends.
 */
export function upnpHttp(url: URL, opts: UpnpHttpOptions = {}): Promise<UpnpHttpResponse> {
  const maxBytes = opts.maxBytes ?? UPNP_MAX_XML_BYTES;
  const host = urlHost(url);
  const what = `HTTP ${opts.method ?? 'GET'} ${url.href}`;
  return cancellable<UpnpHttpResponse>({ signal: opts.signal, timeout: opts.timeout ?? 5_000 }, what, (resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.from(opts.body, 'utf8');
    const req = httpRequest({
      host: opts.zone && host.toLowerCase().startsWith('fe80') ? `${host}%${opts.zone}` : host,
      port: url.port ? Number(url.port) : 80,
      path: `${url.pathname}${url.search}`,
      method: opts.method ?? 'GET',
      agent: false,
      headers: {
        Connection: 'close',
        ...(body ? { 'Content-Length': String(body.length) } : {}),
        ...opts.headers,
      },
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const fail = (e: unknown): void =>
      reject(e instanceof PortMappingError ? e : new PortMappingError('upnp', `${what} failed: ${(e as Error).message}`, { cause: e }));
    req.on('error', fail);
    req.on('response', (res) => {
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        fail(new PortMappingError('upnp', `${what}: response of ${declared} bytes exceeds ${maxBytes}`));
        return;
      }
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > maxBytes) {
          fail(new PortMappingError('upnp', `${what}: response exceeds ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('error', fail);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(body);
    return () => {
      req.destroy();
    };
  });
}
