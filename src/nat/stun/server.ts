/**
 * A small STUN server (RFC 8489 Binding; RFC 5780 NAT behaviour discovery when given two
 * addresses; answers RFC 3489 classic requests in kind) on p2pd pipes, over UDP and TCP.
 *
 * With two addresses it opens every primary/alternate IP × primary/alternate port
 * combination (4 sockets per protocol), answers CHANGE-REQUEST from the socket it names and
 * reports OTHER-ADDRESS / CHANGED-ADDRESS. Responses carry XOR-MAPPED-ADDRESS (MAPPED-ADDRESS
 * and SOURCE-ADDRESS for RFC 3489 classic requests), RESPONSE-ORIGIN, SOFTWARE and FINGERPRINT. Requests with
 * unknown comprehension-required attributes get 420 with UNKNOWN-ATTRIBUTES; other methods
 * and impossible requests get 400. Garbage, responses, indications, datagrams over the size
 * limit and requests beyond the per-source rate limit are dropped silently.
 *
 * @example
 * await using server = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
 * console.log(server.primary, server.other); // RFC 5780 capable
 * @module
 */
import { InvalidArgumentError } from '../../errors.js';
import { formatEndpoint, nodeHost, parseHost, type Endpoint } from '../../interfaces/endpoint.js';
import { ipToBytes, unmapIPv4 } from '../../interfaces/ip.js';
import { isUnspecified } from '../../interfaces/scope.js';
import { pipeOpen } from '../../pipes/open.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { TcpPipe } from '../../pipes/tcp.js';
import type { TcpServer } from '../../pipes/tcp-server.js';
import type { Message, Proto } from '../../pipes/types.js';
import type { UdpPipe } from '../../pipes/udp.js';
import { throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { isKnownAttribute, type StunAttribute } from './attributes.js';
import {
  ADDRESS_FAMILY, ATTR, CLASS, ERROR_CODE, ERROR_REASON, MAGIC_COOKIE, MAX_STUN_ATTRIBUTES, MAX_TEXT_BYTES, METHOD, STUN_HEADER_SIZE,
} from './constants.js';
import { fingerprintOf } from './integrity.js';
import { decodeStun, encodeStun, getAttr, verifyFingerprint, type DecodedStunMessage } from './message.js';
import { StunStreamSplitter } from './stream.js';
import { STUN_PORT, STUN_SOFTWARE } from './client.js';

/** Default alternate port of an RFC 5780 server. */
export const STUN_ALT_PORT = 3479;
/** Default largest request accepted (bytes); larger datagrams are dropped, larger TCP frames close the connection. */
export const DEFAULT_MAX_REQUEST_SIZE = 2048;
/** Default per-source-address rate limit: requests per second, and burst. */
export const DEFAULT_STUN_RATE_LIMIT = { rate: 500, burst: 1000 } as const;
/** Default most concurrent TCP connections per listening socket. */
export const DEFAULT_MAX_STUN_CONNECTIONS = 256;
/** Default idle time (ms) after which a TCP connection is closed. */
export const DEFAULT_STUN_TCP_IDLE = 30_000;
/** Most source addresses the rate limiter tracks at once (the table is reset beyond it). */
export const MAX_RATE_ENTRIES = 65_536;

/** Options of {@link startStunServer}. */
export interface StunServerOptions extends AbortOptions {
  /**
   * The addresses to listen on: `[primary]` or `[primary, alternate]` (one family). With two,
   * the server is RFC 5780 capable (CHANGE-REQUEST, OTHER-ADDRESS); both must then be
   * specific addresses. A single wildcard address (`'0.0.0.0'`, `'::'`) is allowed.
   * @default ['0.0.0.0']
   */
  addresses?: string[];
  /** `[primary]` or `[primary, alternate]` ports; `0` picks free ones. @default [3478, 3479] */
  ports?: number[];
  /** Protocols to serve. @default ['udp'] */
  protos?: Proto[];
  /** SOFTWARE attribute; `false` sends none. @default 'p2pd' */
  software?: string | false;
  /** Add FINGERPRINT to RFC 8489 responses. @default true */
  fingerprint?: boolean;
  /**
   * Also add MAPPED-ADDRESS to RFC 8489 responses (RFC 3489 classic requests always get
   * MAPPED-ADDRESS, and no XOR-MAPPED-ADDRESS). @default false
   */
  mappedAddress?: boolean;
  /** Per-source-IP token bucket; `false` disables it. @default DEFAULT_STUN_RATE_LIMIT */
  rateLimit?: { rate: number; burst: number } | false;
  /** Largest request in bytes. @default DEFAULT_MAX_REQUEST_SIZE (2048) */
  maxRequestSize?: number;
  /** Most concurrent TCP connections per listening socket. @default 256 */
  maxConnections?: number;
  /** Idle timeout of TCP connections (ms). @default 30 000 */
  tcpIdleTimeout?: number;
}

/** Counters of a {@link StunServer}. */
export interface StunServerStats {
  /** Binding requests answered with a success response. */
  success: number;
  /** Requests answered with an error response. */
  errors: number;
  /** Packets dropped: not STUN, malformed, not a request, bad FINGERPRINT, too big. */
  ignored: number;
  /** Requests dropped by the rate limiter. */
  rateLimited: number;
  /** TCP connections refused over `maxConnections` or closed for a framing error / idleness. */
  tcpDropped: number;
}

interface Sock {
  proto: Proto;
  ip: number;
  port: number;
  local: Endpoint;
  pipe: Pipe;
  /** Pre-encoded RESPONSE-ORIGIN attribute naming this socket (empty for a wildcard address). */
  originTlv?: Buffer;
  /** Pre-encoded OTHER-ADDRESS attribute of requests received on this socket (empty without RFC 5780). */
  otherTlv?: Buffer;
}

/** One address attribute (type, length, family, port, address), optionally XOR-ed with `xorKey` (header bytes 4–19). */
function addressTlv(type: number, port: number, ip: Uint8Array, xorKey?: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(8 + ip.length);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(4 + ip.length, 2);
  b[4] = 0;
  b[5] = ip.length === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6;
  b.writeUInt16BE(xorKey ? port ^ (MAGIC_COOKIE >>> 16) : port, 6);
  for (let i = 0; i < ip.length; i++) b[8 + i] = (ip[i] as number) ^ (xorKey ? (xorKey[i] as number) : 0);
  return b;
}

/** Writes an address attribute into `b` at `off` (XOR-ed with `request` bytes 4–19 when given); returns the next offset. */
function writeAddress(b: Buffer, off: number, type: number, port: number, ip: Uint8Array, request: Buffer | undefined): number {
  b.writeUInt16BE(type, off);
  b.writeUInt16BE(4 + ip.length, off + 2);
  b[off + 4] = 0;
  b[off + 5] = ip.length === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6;
  b.writeUInt16BE(request ? port ^ (MAGIC_COOKIE >>> 16) : port, off + 6);
  for (let i = 0; i < ip.length; i++) b[off + 8 + i] = (ip[i] as number) ^ (request ? (request[4 + i] as number) : 0);
  return off + 8 + ip.length;
}

/**
 * True for an RFC 8489 Binding request whose answer needs nothing decoded: correct framing,
 * only comprehension-optional attributes p2pd has no codec for plus SOFTWARE (≤ 763 bytes),
 * and a correct FINGERPRINT, if any, last. Anything else takes the full decoder.
 */
function isPlainBinding(d: Buffer): boolean {
  if (d.length < STUN_HEADER_SIZE || d.readUInt16BE(0) !== 0x0001 || d.readUInt32BE(4) !== MAGIC_COOKIE) return false;
  const len = d.readUInt16BE(2);
  if (len % 4 !== 0 || STUN_HEADER_SIZE + len !== d.length) return false;
  let off = STUN_HEADER_SIZE;
  let n = 0;
  while (off < d.length) {
    if (d.length - off < 4 || ++n > MAX_STUN_ATTRIBUTES) return false;
    const t = d.readUInt16BE(off);
    const l = d.readUInt16BE(off + 2);
    const next = off + 4 + l + ((4 - (l % 4)) % 4);
    if (next > d.length) return false;
    if (t === ATTR.FINGERPRINT) {
      return l === 4 && next === d.length && d.readUInt32BE(off + 4) === fingerprintOf(d.subarray(0, off));
    }
    if (t === ATTR.SOFTWARE ? l > MAX_TEXT_BYTES : t < 0x8000 || isKnownAttribute(t)) return false;
    off = next;
  }
  return true;
}

function softwareTlv(text: string): Buffer {
  const v = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
  b.writeUInt16BE(ATTR.SOFTWARE, 0);
  b.writeUInt16BE(v.length, 2);
  v.copy(b, 4);
  return b;
}

const EMPTY = Buffer.alloc(0);

interface Bucket {
  tokens: number;
  last: number;
}

/** A running STUN server; see {@link startStunServer}. */
export class StunServer implements AsyncDisposable {
  /** The primary address and port (what clients are given). */
  readonly primary: Endpoint;
  /** The alternate address and port (OTHER-ADDRESS of the primary socket), when RFC 5780 capable. */
  readonly other: Endpoint | undefined;
  /** Every listening endpoint, per protocol. */
  readonly endpoints: { proto: Proto; local: Endpoint }[];
  /** Counters. */
  readonly stats: StunServerStats = { success: 0, errors: 0, ignored: 0, rateLimited: 0, tcpDropped: 0 };
  private readonly socks: Sock[];
  private readonly addrs: string[];
  private readonly ports: number[];
  private readonly software: string | false;
  private readonly fingerprint: boolean;
  private readonly mappedAddress: boolean;
  private readonly rate: { rate: number; burst: number } | false;
  private readonly maxSize: number;
  private readonly maxConnections: number;
  private readonly idle: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly splitters = new WeakMap<TcpPipe, StunStreamSplitter>();
  private readonly ipCache = new Map<string, Uint8Array>();
  private readonly softwareTlv: Buffer;
  private closing: Promise<void> | undefined;

  /** @internal Use {@link startStunServer}. */
  constructor(socks: Sock[], addrs: string[], ports: number[], opts: StunServerOptions) {
    this.socks = socks;
    this.addrs = addrs;
    this.ports = ports;
    this.software = opts.software ?? STUN_SOFTWARE;
    this.fingerprint = opts.fingerprint ?? true;
    this.mappedAddress = opts.mappedAddress ?? false;
    this.rate = opts.rateLimit ?? { ...DEFAULT_STUN_RATE_LIMIT };
    this.maxSize = opts.maxRequestSize ?? DEFAULT_MAX_REQUEST_SIZE;
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_STUN_CONNECTIONS;
    this.idle = opts.tcpIdleTimeout ?? DEFAULT_STUN_TCP_IDLE;
    const fam = parseHost(addrs[0] as string).family;
    this.primary = { host: addrs[0] as string, port: ports[0] as number, family: fam };
    this.other = this.rfc5780 ? { host: addrs[1] as string, port: ports[1] as number, family: fam } : undefined;
    this.endpoints = socks.map((s) => ({ proto: s.proto, local: s.local }));
    this.softwareTlv = this.software === false ? EMPTY : softwareTlv(this.software);
    for (const s of socks) {
      s.originTlv = isUnspecified(s.local.host) ? EMPTY : addressTlv(ATTR.RESPONSE_ORIGIN, s.local.port, ipToBytes(s.local.host));
      if (this.rfc5780) {
        const o = this.otherOf(s);
        s.otherTlv = addressTlv(ATTR.OTHER_ADDRESS, o.port, ipToBytes(o.host));
      } else s.otherTlv = EMPTY;
    }
    for (const s of socks) {
      if (s.proto === 'udp') s.pipe.onMessage((m) => this.onUdp(s, m));
      else {
        const srv = s.pipe as TcpServer;
        srv.onMessage((m) => this.onTcp(s, m));
        srv.onConnection((c) => this.onConnection(srv, c));
      }
      s.pipe.onError(() => undefined);
    }
  }

  /** True when the server has an alternate address and port (RFC 5780 / RFC 3489 change tests). */
  get rfc5780(): boolean {
    return this.addrs.length === 2;
  }

  /** The listening endpoint of `proto` on address `ip` (0 primary, 1 alternate) and port `port` (0/1). */
  endpoint(proto: Proto = 'udp', ip: 0 | 1 = 0, port: 0 | 1 = 0): Endpoint | undefined {
    return this.socks.find((s) => s.proto === proto && s.ip === ip && s.port === port)?.local;
  }

  private onConnection(srv: TcpServer, c: TcpPipe): void {
    if (srv.connections.size > this.maxConnections) {
      this.stats.tcpDropped++;
      c.reset();
      return;
    }
    this.splitters.set(c, new StunStreamSplitter({ maxFrameSize: Math.max(STUN_HEADER_SIZE + 4, Math.min(this.maxSize, 65552)) }));
    c.socket.setTimeout(this.idle, () => {
      this.stats.tcpDropped++;
      c.reset();
    });
    c.onError(() => undefined);
  }

  private allowed(host: string): boolean {
    const r = this.rate;
    if (r === false) return true;
    const now = performance.now();
    let b = this.buckets.get(host);
    if (!b) {
      if (this.buckets.size >= MAX_RATE_ENTRIES) this.buckets.clear();
      b = { tokens: r.burst, last: now };
      this.buckets.set(host, b);
    } else {
      b.tokens = Math.min(r.burst, b.tokens + ((now - b.last) * r.rate) / 1000);
      b.last = now;
    }
    if (b.tokens < 1) {
      this.stats.rateLimited++;
      return false;
    }
    b.tokens -= 1;
    return true;
  }

  private onUdp(s: Sock, m: Message): void {
    const data = m.data;
    if (data.length > this.maxSize || data.length < STUN_HEADER_SIZE || (data[0] as number) > 1) {
      this.stats.ignored++;
      return;
    }
    // `from` is what the client is told (IPv4 for a v4-mapped source of a dual-stack socket);
    // replies go back to `m.from` as the socket reported it.
    const from = clientEndpoint(m.from);
    if (!this.allowed(from.host)) return;
    if (isPlainBinding(data)) {
      // Fast path: nothing in the request needs decoding.
      this.stats.success++;
      this.sendUdp(s, this.successResponse(data, from, s, s), m.from);
      return;
    }
    const r = this.answer(s, data, from, m.from);
    if (!r) return;
    const via = r.ip === s.ip && r.port === s.port ? s : this.socks.find((x) => x.proto === 'udp' && x.ip === r.ip && x.port === r.port) ?? s;
    this.sendUdp(via, r.response, r.to);
  }

  /**
   * Sends straight on the socket, without a completion callback (Node then tries a
   * synchronous send). Errors (ICMP, a closing socket) are dropped: STUN clients retransmit.
   */
  private sendUdp(via: Sock, data: Buffer, to: Endpoint): void {
    const pipe = via.pipe as UdpPipe;
    if (pipe.closed) return;
    pipe.stats.messagesOut++;
    pipe.stats.bytesOut += data.length;
    try {
      pipe.socket.send(data, to.port, to.scopeId ? nodeHost(to) : to.host);
    } catch {
      /* socket closing */
    }
  }

  private onTcp(s: Sock, m: Message): void {
    const c = m.pipe as TcpPipe;
    const splitter = this.splitters.get(c);
    if (!splitter) return;
    let frames;
    try {
      frames = splitter.push(m.data);
    } catch {
      this.stats.tcpDropped++;
      c.reset();
      return;
    }
    const from = clientEndpoint(m.from);
    for (const f of frames) {
      if (f.kind !== 'stun') {
        this.stats.ignored++;
        continue;
      }
      if (!this.allowed(from.host)) continue;
      const r = this.answer(s, f.data, from, m.from);
      if (r) c.send(r.response).catch(() => undefined);
    }
  }

  /**
   * Builds the answer to one request received on `s` from `from`: the bytes, which socket
   * sends them (`ip`/`port` indexes) and where to. `undefined` = drop.
   */
  private answer(s: Sock, data: Buffer, from: Endpoint, dest: Endpoint): { response: Buffer; ip: number; port: number; to: Endpoint } | undefined {
    let msg: DecodedStunMessage;
    try {
      msg = decodeStun(data);
    } catch {
      this.stats.ignored++;
      return undefined;
    }
    if (msg.cls !== CLASS.REQUEST || (msg.offsets.fingerprint !== undefined && !verifyFingerprint(msg))) {
      this.stats.ignored++;
      return undefined;
    }
    const reply = { ip: s.ip, port: s.port, to: dest };
    if (msg.method !== METHOD.BINDING) return { ...reply, response: this.error(msg, ERROR_CODE.BAD_REQUEST, 'Unsupported method') };
    if (msg.unknownRequired.length > 0) {
      return { ...reply, response: this.error(msg, ERROR_CODE.UNKNOWN_ATTRIBUTE, undefined, msg.unknownRequired) };
    }
    const change = getAttr(msg, ATTR.CHANGE_REQUEST);
    const changing = change !== undefined && (change.changeIp || change.changePort);
    if (changing && s.proto === 'tcp') return { ...reply, response: this.error(msg, ERROR_CODE.BAD_REQUEST, 'CHANGE-REQUEST over TCP') };
    // RFC 5780 §6.1: a server without an alternate address answers CHANGE-REQUEST with 420.
    if (changing && !this.rfc5780) return { ...reply, response: this.error(msg, ERROR_CODE.UNKNOWN_ATTRIBUTE, undefined, [ATTR.CHANGE_REQUEST]) };
    const responsePort = getAttr(msg, ATTR.RESPONSE_PORT);
    if (responsePort !== undefined) {
      if (s.proto === 'tcp' || responsePort === 0) return { ...reply, response: this.error(msg, ERROR_CODE.BAD_REQUEST, 'Bad RESPONSE-PORT') };
      reply.to = { ...dest, port: responsePort };
    }
    if (changing) {
      if (change.changeIp) reply.ip = 1 - s.ip;
      if (change.changePort) reply.port = 1 - s.port;
    }
    const via = reply.ip === s.ip && reply.port === s.port ? s : this.socks.find((x) => x.proto === s.proto && x.ip === reply.ip && x.port === reply.port) ?? s;
    if (msg.cookie) {
      this.stats.success++;
      return { ...reply, response: this.successResponse(msg.raw, from, via, s) };
    }
    const origin = via.local;
    const attributes: StunAttribute[] = [];
    const classic = !msg.cookie;
    if (classic) {
      attributes.push({ type: ATTR.MAPPED_ADDRESS, value: from });
      if (!isUnspecified(origin.host)) attributes.push({ type: ATTR.SOURCE_ADDRESS, value: origin });
      if (this.rfc5780) attributes.push({ type: ATTR.CHANGED_ADDRESS, value: this.otherOf(s) });
    } else {
      attributes.push({ type: ATTR.XOR_MAPPED_ADDRESS, value: from });
      if (this.mappedAddress) attributes.push({ type: ATTR.MAPPED_ADDRESS, value: from });
      if (!isUnspecified(origin.host)) attributes.push({ type: ATTR.RESPONSE_ORIGIN, value: origin });
      if (this.rfc5780) attributes.push({ type: ATTR.OTHER_ADDRESS, value: this.otherOf(s) });
    }
    if (this.software !== false) attributes.push({ type: ATTR.SOFTWARE, value: this.software });
    const response = encodeStun(
      { method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: msg.transactionId, attributes, cookie: msg.cookie },
      { fingerprint: this.fingerprint && !classic },
    );
    this.stats.success++;
    return { ...reply, response };
  }

  /**
   * The RFC 8489 success response to `request` (its raw bytes), written directly: XOR-MAPPED-ADDRESS,
   * MAPPED-ADDRESS, RESPONSE-ORIGIN of `via`, OTHER-ADDRESS of `recv`, SOFTWARE, FINGERPRINT.
   */
  private successResponse(request: Buffer, from: Endpoint, via: Sock, recv: Sock): Buffer {
    let ip = this.ipCache.get(from.host);
    if (!ip) {
      if (this.ipCache.size >= 1024) this.ipCache.clear();
      ip = ipToBytes(from.host);
      this.ipCache.set(from.host, ip);
    }
    const alen = 8 + ip.length;
    const origin = via.originTlv as Buffer;
    const other = recv.otherTlv as Buffer;
    const sw = this.softwareTlv;
    const size = STUN_HEADER_SIZE + alen + (this.mappedAddress ? alen : 0) + origin.length + other.length + sw.length + (this.fingerprint ? 8 : 0);
    const b = Buffer.allocUnsafe(size);
    b.writeUInt16BE(0x0101, 0); // Binding success response
    b.writeUInt16BE(size - STUN_HEADER_SIZE, 2);
    request.copy(b, 4, 4, STUN_HEADER_SIZE); // magic cookie + transaction id
    let off = writeAddress(b, STUN_HEADER_SIZE, ATTR.XOR_MAPPED_ADDRESS, from.port, ip, request);
    if (this.mappedAddress) off = writeAddress(b, off, ATTR.MAPPED_ADDRESS, from.port, ip, undefined);
    off += origin.copy(b, off);
    off += other.copy(b, off);
    off += sw.copy(b, off);
    if (this.fingerprint) {
      b.writeUInt32BE(((ATTR.FINGERPRINT << 16) | 4) >>> 0, off);
      b.writeUInt32BE(fingerprintOf(b.subarray(0, off)), off + 4);
    }
    return b;
  }

  /** OTHER-ADDRESS of socket `s`: the other IP and the other port. */
  private otherOf(s: Sock): Endpoint {
    const host = this.addrs[1 - s.ip] as string;
    return { host, port: this.ports[1 - s.port] as number, family: s.local.family };
  }

  private error(msg: DecodedStunMessage, code: number, reason?: string, unknown?: number[]): Buffer {
    this.stats.errors++;
    const attributes: StunAttribute[] = [{ type: ATTR.ERROR_CODE, value: { code, reason: reason ?? ERROR_REASON[code] ?? '' } }];
    if (unknown) attributes.push({ type: ATTR.UNKNOWN_ATTRIBUTES, value: unknown.slice(0, 32) });
    if (this.software !== false && msg.cookie) attributes.push({ type: ATTR.SOFTWARE, value: this.software });
    return encodeStun(
      { method: msg.method, cls: CLASS.ERROR, transactionId: msg.transactionId, attributes, cookie: msg.cookie },
      { fingerprint: this.fingerprint && msg.cookie },
    );
  }

  /** Closes every socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.socks.map((s) => s.pipe.close())).then(() => undefined);
    return this.closing;
  }

  /** `await using server = await startStunServer(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function clientEndpoint(e: Endpoint): Endpoint {
  if (e.family !== 6) return e;
  const h = unmapIPv4(e.host);
  return h === e.host ? e : { host: h, port: e.port, family: 4 };
}

function isBindInUse(e: unknown): boolean {
  return (e as { code?: string } | null)?.code === 'ERR_ADDRESS_IN_USE';
}

/**
 * Starts a STUN server. With one address it opens one socket per protocol (on the first
 * port); with two addresses and two ports it opens the four RFC 5780 sockets per protocol.
 * Ports `0` are picked free (the same port number on both addresses; retried on collisions).
 * Rejects with `BindError`, `InvalidArgumentError`, `AbortError`.
 */
export async function startStunServer(opts: StunServerOptions = {}): Promise<StunServer> {
  throwIfAborted(opts.signal);
  const addrs = (opts.addresses ?? ['0.0.0.0']).map((a) => parseHost(a).host);
  if (addrs.length < 1 || addrs.length > 2) throw new InvalidArgumentError('addresses must hold one or two IP addresses');
  const fam = parseHost(addrs[0] as string).family;
  if (addrs.length === 2) {
    if (parseHost(addrs[1] as string).family !== fam) throw new InvalidArgumentError('both addresses must be of the same family');
    if (addrs[0] === addrs[1]) throw new InvalidArgumentError('the alternate address must differ from the primary');
    if (addrs.some((a) => isUnspecified(a))) throw new InvalidArgumentError('an RFC 5780 server needs two specific addresses, not a wildcard');
  }
  const rfc5780 = addrs.length === 2;
  const wanted = opts.ports ?? [STUN_PORT, STUN_ALT_PORT];
  if (!Array.isArray(wanted) || wanted.length < 1 || wanted.length > 2) throw new InvalidArgumentError('ports must hold one or two port numbers');
  for (const p of wanted) if (!Number.isInteger(p) || p < 0 || p > 65535) throw new InvalidArgumentError(`bad port ${String(p)}`);
  if (rfc5780 && wanted.length !== 2) throw new InvalidArgumentError('an RFC 5780 server needs two ports');
  if (rfc5780 && wanted[0] !== 0 && wanted[0] === wanted[1]) throw new InvalidArgumentError('the alternate port must differ from the primary');
  const protos = opts.protos ?? ['udp'];
  if (!Array.isArray(protos) || protos.length === 0 || protos.some((p) => p !== 'udp' && p !== 'tcp')) {
    throw new InvalidArgumentError("protos must be a non-empty list of 'udp' / 'tcp'");
  }
  const rl = opts.rateLimit;
  if (rl !== undefined && rl !== false && !(rl.rate > 0 && rl.burst >= 1)) throw new InvalidArgumentError('rateLimit needs rate > 0 and burst >= 1');
  if (opts.maxRequestSize !== undefined && !(Number.isInteger(opts.maxRequestSize) && opts.maxRequestSize >= STUN_HEADER_SIZE)) {
    throw new InvalidArgumentError(`maxRequestSize must be an integer >= ${STUN_HEADER_SIZE}`);
  }
  const uniqProtos = [...new Set(protos)];
  const portCount = rfc5780 ? 2 : 1;
  const anyZero = wanted.slice(0, portCount).some((p) => p === 0);
  for (let attempt = 0; ; attempt++) {
    const socks: Sock[] = [];
    try {
      const ports: number[] = [];
      for (let pi = 0; pi < portCount; pi++) {
        let port = wanted[pi] as number;
        for (const proto of uniqProtos) {
          for (let ii = 0; ii < addrs.length; ii++) {
            const host = addrs[ii] as string;
            const bind = { host, port };
            const pipe = proto === 'udp'
              ? await pipeOpen('udp', undefined, { bind, signal: opts.signal, onMessage: noop })
              : await pipeOpen('tcp', undefined, { bind, signal: opts.signal, framing: 'raw', onMessage: noop });
            // The first socket of a port-0 slot fixes the number the others must get.
            if (port === 0) port = pipe.local.port;
            if (pi === 1 && port === ports[0]) {
              await pipe.close();
              throw Object.assign(new Error('alternate port equals primary'), { code: 'ERR_ADDRESS_IN_USE' });
            }
            socks.push({ proto, ip: ii, port: pi, local: { host, port: pipe.local.port, family: fam }, pipe });
          }
        }
        ports.push(port);
      }
      return new StunServer(socks, addrs, ports, opts);
    } catch (e) {
      await Promise.all(socks.map((s) => s.pipe.close()));
      if (!anyZero || !isBindInUse(e) || attempt >= 20) throw e;
    }
  }
}

function noop(): void {}

/** Describes a server's endpoints, e.g. for logs: `udp 127.0.0.1:3478, udp 127.0.0.2:3478, …`. */
export function describeStunServer(s: StunServer): string {
  return s.endpoints.map((e) => `${e.proto} ${formatEndpoint(e.local)}`).join(', ');
}
