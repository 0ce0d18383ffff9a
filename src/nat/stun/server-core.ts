/**
 * `StunServer`: the running server behind `startStunServer` (see `server.ts`): answers
 * Binding requests on every socket, CHANGE-REQUEST from the socket it names, rate-limits
 * sources and bounds TCP connections.
 * @module
 */
import { nodeHost, parseHost, type Endpoint } from '../../interfaces/endpoint.js';
import { ipToBytes } from '../../interfaces/ip.js';
import { isUnspecified } from '../../interfaces/scope.js';
import type { Pipe } from '../../pipes/pipe.js';
import { SourceShare, sourceOf } from '../../pipes/source-share.js';
import type { TcpPipe } from '../../pipes/tcp.js';
import type { TcpServer } from '../../pipes/tcp-server.js';
import type { Message, Proto } from '../../pipes/types.js';
import type { UdpPipe } from '../../pipes/udp.js';
import { AbortError } from '../../errors.js';
import { closeWithin, forceSignal, type AbortOptions } from '../../util/abort.js';
import type { StunAttribute } from './attributes.js';
import { ATTR, CLASS, ERROR_CODE, ERROR_REASON, METHOD, STUN_HEADER_SIZE } from './constants.js';
import { fingerprintOf } from './integrity.js';
import { decodeStun, encodeStun, getAttr, verifyFingerprint, type DecodedStunMessage } from './message.js';
import { StunStreamSplitter } from './stream.js';
import { STUN_SOFTWARE } from './client-options.js';
import { unmapped as clientEndpoint } from './client-wire.js';
import {
  DEFAULT_MAX_REQUEST_SIZE, DEFAULT_MAX_STUN_CONNECTIONS, DEFAULT_STUN_RATE_LIMIT, DEFAULT_STUN_TCP_IDLE, MAX_RATE_ENTRIES, MAX_STUN_TCP_UNSENT,
  type StunServerOptions, type StunServerStats,
} from './server-options.js';
import { addressTlv, EMPTY, isPlainBinding, softwareTlv, writeAddress } from './server-wire.js';

/** Most client addresses whose parsed IP bytes the fast response path caches; at this size the cache is cleared. */
const IP_CACHE_LIMIT = 1024;

/** One listening socket of a server: its protocol, which address (`ip`) and port (`port`) slot it fills (0 primary, 1 alternate). */
export interface Sock {
  /** Its protocol. */
  proto: Proto;
  /** Address slot: 0 primary, 1 alternate. */
  ip: number;
  /** Port slot: 0 primary, 1 alternate. */
  port: number;
  /** Where it listens. */
  local: Endpoint;
  /** The UDP pipe or TCP server. */
  pipe: Pipe;
  /** Pre-encoded RESPONSE-ORIGIN attribute naming this socket (empty for a wildcard address). */
  originTlv?: Buffer;
  /** Pre-encoded OTHER-ADDRESS attribute of requests received on this socket (empty without RFC 5780). */
  otherTlv?: Buffer;
}

interface Bucket {
  tokens: number;
  last: number;
}

/** A running STUN server; see `startStunServer`. */
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
  /** Per TCP connection: its frame splitter and its idle timer (re-armed by each whole frame only). */
  private readonly conns = new WeakMap<TcpPipe, { splitter: StunStreamSplitter; idle: NodeJS.Timeout }>();
  /** Live TCP connections of each listening socket, by source (see `source-share.ts`). */
  private readonly shares = new WeakMap<TcpServer, SourceShare<TcpPipe>>();
  private readonly ipCache = new Map<string, Uint8Array>();
  private readonly softwareTlv: Buffer;
  private closing: Promise<void> | undefined;

  /** @internal Use `startStunServer`. */
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
    let share = this.shares.get(srv);
    if (share === undefined) this.shares.set(srv, (share = new SourceShare()));
    const source = sourceOf(c.remote.host);
    if (share.size >= this.maxConnections) {
      // Full: the newcomer is refused, unless one source holds clearly more connections than
      // its own; then that source's oldest goes, so one address cannot lock everyone out.
      const victim = share.victimFor(source);
      this.stats.tcpDropped++;
      (victim ?? c).reset();
      if (victim === undefined) return;
    }
    share.add(source, c);
    c.onClose(() => share.delete(source, c));
    // Not the socket's own timeout: any byte re-arms that one, so a client trickling a request
    // that never completes would hold its slot forever. Only whole frames re-arm this timer.
    const idle = setTimeout(() => {
      this.stats.tcpDropped++;
      c.reset();
    }, this.idle);
    idle.unref();
    this.conns.set(c, { splitter: new StunStreamSplitter({ maxFrameSize: Math.max(STUN_HEADER_SIZE + 4, Math.min(this.maxSize, 65552)) }), idle });
    c.onClose(() => clearTimeout(idle));
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
    const conn = this.conns.get(c);
    if (!conn || c.closed) return;
    let frames;
    try {
      frames = conn.splitter.push(m.data);
    } catch {
      this.stats.tcpDropped++;
      c.reset();
      return;
    }
    if (frames.length > 0) conn.idle.refresh();
    const from = clientEndpoint(m.from);
    for (const f of frames) {
      if (c.socket.writableLength > MAX_STUN_TCP_UNSENT) {
        // The client does not read its answers: drop it rather than queue them without bound.
        this.stats.tcpDropped++;
        c.reset();
        return;
      }
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
      if (this.ipCache.size >= IP_CACHE_LIMIT) this.ipCache.clear();
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

  /**
   * Closes every socket. Idempotent. With `opts`, a signal that aborts or a timeout that passes
   * first resets the TCP connections still open and rejects with `AbortError` / `TimeoutError`
   * once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    const graceful = (): Promise<void> => (this.closing ??= Promise.all(this.socks.map((s) => s.pipe.close())).then(() => undefined));
    return closeWithin(graceful, opts, () => {
      const now = forceSignal(new AbortError('STUN server closed'));
      for (const s of this.socks) s.pipe.close({ signal: now }).catch(() => undefined);
    }, 'STUN server close');
  }

  /** `await using server = await startStunServer(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
