/**
 * STUN client (RFC 8489 Binding, RFC 5780 CHANGE-REQUEST tests, RFC 3489 classic messages) on
 * p2pd pipes: UDP with RFC 8489 retransmission, or TCP (one connection carrying the
 * transactions, STUN framing on the raw stream); IPv4 and IPv6; bound to a chosen interface,
 * address or port. Transactions check the transaction id and the source of the response, and
 * every call is bounded by `signal` / `timeout`.
 *
 * - {@link stunGetMapping}: one Binding transaction on a fresh socket, closed afterwards.
 * - {@link StunClient}: keeps its pipe (`client.pipe`) open, so the mapping it learned stays
 *   usable (hole punching), and runs further bindings and CHANGE-REQUEST tests on it.
 *
 * p2pd never resolves host names behind your back: servers are IP literals (`'1.2.3.4'`,
 * `'1.2.3.4:3478'`, `'[2001:db8::1]:3478'` or `{ host, port }`).
 * @module
 */
import { randomFillSync } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { InvalidArgumentError, PipeClosedError, StunError } from '../../errors.js';
import {
  formatEndpoint, nodeHost, sameEndpoint, toEndpoint, type Endpoint, type EndpointLike, type Family,
} from '../../interfaces/endpoint.js';
import { unmapIPv4 } from '../../interfaces/ip.js';
import { isUnspecified } from '../../interfaces/scope.js';
import { pipeOpen } from '../../pipes/open.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { TcpPipe } from '../../pipes/tcp.js';
import { SUB_ALL, type BindOptions, type Proto } from '../../pipes/types.js';
import { throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { decodeAttribute, type StunAttribute } from './attributes.js';
import { ATTR, CLASS, MAGIC_COOKIE, METHOD, STUN_HEADER_SIZE } from './constants.js';
import { fingerprintOf } from './integrity.js';
import { encodeStun, stunErrorOf, verifyFingerprint, type DecodedStunMessage } from './message.js';
import { StunTransport, STUN_RTO, STUN_MAX_TRIES, type StunReceived } from './transport.js';

/** The IANA STUN port (UDP and TCP). */
export const STUN_PORT = 3478;
/** Default SOFTWARE attribute sent by p2pd's client and server. */
export const STUN_SOFTWARE = 'p2pd';
/** How long {@link StunClient.close} waits for a TCP server to finish the connection before resetting it (ms). */
export const TCP_CLOSE_GRACE = 100;
/** Pre-RFC 5389 attribute number of XOR-MAPPED-ADDRESS, still sent by some old servers. */
export const ATTR_XOR_MAPPED_ADDRESS_OLD = 0x8020;

/**
 * Parses a STUN server given as `'1.2.3.4'`, `'1.2.3.4:3478'`, `'2001:db8::1'`,
 * `'[2001:db8::1]'`, `'[2001:db8::1]:3478'` or `{ host, port? }` into an {@link Endpoint};
 * the port defaults to {@link STUN_PORT}. Host names are not resolved: throws
 * {@link InvalidArgumentError} / `EndpointError` for anything but an IP literal.
 */
export function parseStunServer(server: EndpointLike | { host: string; port?: number }, defaultPort = STUN_PORT): Endpoint {
  if (typeof server === 'string') {
    const s = server.trim();
    if (isIP(s.split('%')[0] ?? '') !== 0) return toEndpoint({ host: s, port: defaultPort });
    if (s.startsWith('[') && s.endsWith(']')) return toEndpoint({ host: s.slice(1, -1), port: defaultPort });
    return toEndpoint(s);
  }
  if (server === null || typeof server !== 'object') throw new InvalidArgumentError('STUN server must be "host[:port]" or { host, port }');
  return toEndpoint({ ...server, port: server.port ?? defaultPort });
}

/** Where a STUN response came from and what it said. */
export interface StunMapping {
  /**
   * Local endpoint of the socket. For a socket bound to the wildcard address the host is the
   * address the kernel routes to the server from (found without sending anything).
   */
  local: Endpoint;
  /** The reflexive (mapped) address the server saw: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS. */
  mapped: Endpoint;
  /** The server the request was sent to. */
  server: Endpoint;
  /** Where the response came from (differs from `server` for CHANGE-REQUEST tests). */
  from: Endpoint;
  /** Transport. */
  proto: Proto;
  /** RESPONSE-ORIGIN (RFC 5780), else SOURCE-ADDRESS (RFC 3489), if present. */
  responseOrigin?: Endpoint;
  /** OTHER-ADDRESS (RFC 5780), else CHANGED-ADDRESS (RFC 3489): the server's alternate address and port. */
  otherAddress?: Endpoint;
  /** Which attribute gave `otherAddress`: `'rfc5780'` (OTHER-ADDRESS) or `'rfc3489'` (CHANGED-ADDRESS). */
  otherKind?: 'rfc5780' | 'rfc3489';
  /** SOFTWARE of the server, if sent. */
  software?: string;
  /** Milliseconds from the first transmission to the response. */
  rtt: number;
  /** True when the exchange used RFC 3489 classic messages (no magic cookie). */
  classic: boolean;
}

/** Options shared by {@link StunClient.open} and {@link stunGetMapping}. */
export interface StunClientOptions extends AbortOptions {
  /** The STUN server: an IP literal with optional port (default 3478), or `{ host, port }`. */
  server: EndpointLike | { host: string; port?: number };
  /** `'udp'` (default) or `'tcp'`. */
  proto?: Proto;
  /** Address family; must match the server's. @default the server's family */
  family?: Family;
  /** Local binding: `{ host?, port?, iface? }` or `'host:port'`. @default any address, any port */
  bind?: BindOptions | EndpointLike;
  /** Use this open pipe instead of opening one (it is not closed by the client). UDP only. */
  pipe?: Pipe;
  /** Send RFC 3489 classic requests (16-byte transaction id, no magic cookie). @default false */
  classic?: boolean;
  /** SOFTWARE attribute of requests (RFC 8489 messages only); `false` sends none. @default 'p2pd' */
  software?: string | false;
  /** Add FINGERPRINT to requests (RFC 8489 messages only). @default true */
  fingerprint?: boolean;
  /** Initial retransmission timeout over UDP (ms), doubled on each try. @default 500 (RFC 8489) */
  rto?: number;
  /** Requests sent before giving up over UDP. @default 7 (RFC 8489) */
  maxTries?: number;
}

/** Options of one {@link StunClient.binding}. */
export interface BindingOptions extends AbortOptions {
  /** Send to this server instead of the client's (UDP: same socket, so the same local port). */
  server?: EndpointLike | { host: string; port?: number };
  /** CHANGE-REQUEST "change IP" flag (RFC 5780 / 3489 filtering tests). */
  changeIp?: boolean;
  /** CHANGE-REQUEST "change port" flag. */
  changePort?: boolean;
  /**
   * Which sources may answer. Default: only the server for plain requests; any source for
   * CHANGE-REQUEST tests (the answer comes from the server's other address; the 96-bit
   * transaction id still has to match).
   */
  acceptFrom?: 'server' | 'any' | Endpoint | ((from: Endpoint) => boolean);
  /** Overrides the client's `classic` setting for this request. */
  classic?: boolean;
  /** Overrides the client's initial RTO (ms). */
  rto?: number;
  /** Overrides the client's retransmission count. */
  maxTries?: number;
}

// Transaction ids come from a pool filled by one CSPRNG call per 4 KiB: `randomBytes(12)` per
// request costs microseconds, a noticeable share of a loopback round trip.
const TID_POOL = Buffer.alloc(4096);
let tidOffset = TID_POOL.length;

/** Fills `id` (12 bytes; 16 for RFC 3489 classic, then never starting with the magic cookie) with random bytes. */
function fillTransactionId(id: Buffer, classic: boolean): void {
  const n = id.length;
  for (;;) {
    if (tidOffset + n > TID_POOL.length) {
      randomFillSync(TID_POOL);
      tidOffset = 0;
    }
    TID_POOL.copy(id, 0, tidOffset, tidOffset + n);
    tidOffset += n;
    if (!classic || id.readUInt32BE(0) !== MAGIC_COOKIE) return;
  }
}

/** A fresh random transaction id (12 bytes; 16 for RFC 3489 classic, never starting with the magic cookie). */
export function randomTransactionId(classic = false): Buffer {
  const id = Buffer.allocUnsafe(classic ? 16 : 12);
  fillTransactionId(id, classic);
  return id;
}

/** An encoded Binding request whose transaction id (and FINGERPRINT) are patched per request. */
interface RequestTemplate {
  bytes: Buffer;
  classic: boolean;
  fingerprint: boolean;
}

function checkProto(proto: unknown): Proto {
  if (proto !== 'udp' && proto !== 'tcp') throw new InvalidArgumentError(`proto must be 'udp' or 'tcp', got ${JSON.stringify(proto)}`);
  return proto;
}

function checkPositive(v: unknown, what: string): void {
  if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new InvalidArgumentError(`${what} must be a positive number`);
}

/**
 * The local address the kernel would use to reach `dest` (a connected UDP socket's name: a
 * route lookup, nothing is sent). `undefined` when there is no route.
 */
export function sourceAddressFor(dest: Endpoint): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createSocket(dest.family === 6 ? 'udp6' : 'udp4');
    const done = (v: string | undefined): void => {
      try {
        s.close();
      } catch {
        /* already closed */
      }
      resolve(v);
    };
    s.on('error', () => done(undefined));
    try {
      s.connect(dest.port || STUN_PORT, nodeHost(dest), () => {
        try {
          const a = s.address();
          done(a.address.split('%')[0]);
        } catch {
          done(undefined);
        }
      });
    } catch {
      done(undefined);
    }
  });
}

/** Reads the mapping out of a success response; throws {@link StunError} when it carries none. */
export function parseBindingResponse(msg: DecodedStunMessage): Omit<StunMapping, 'local' | 'server' | 'from' | 'proto' | 'rtt'> {
  // One pass over the attributes (first of each type wins, as with getAttr).
  let xorMapped: Endpoint | undefined;
  let mapped: Endpoint | undefined;
  let oldXor: Uint8Array | undefined;
  let origin: Endpoint | undefined;
  let source: Endpoint | undefined;
  let other: Endpoint | undefined;
  let changed: Endpoint | undefined;
  let software: string | undefined;
  for (const a of msg.attributes) {
    if (a.raw === true) {
      if (a.type === ATTR_XOR_MAPPED_ADDRESS_OLD) oldXor ??= a.value;
      continue;
    }
    switch (a.type) {
      case ATTR.XOR_MAPPED_ADDRESS: xorMapped ??= a.value; break;
      case ATTR.MAPPED_ADDRESS: mapped ??= a.value; break;
      case ATTR.RESPONSE_ORIGIN: origin ??= a.value; break;
      case ATTR.SOURCE_ADDRESS: source ??= a.value; break;
      case ATTR.OTHER_ADDRESS: other ??= a.value; break;
      case ATTR.CHANGED_ADDRESS: changed ??= a.value; break;
      case ATTR.SOFTWARE: software ??= a.value; break;
      default:
    }
  }
  let m = xorMapped ?? mapped;
  if (!m && oldXor) {
    try {
      const d = decodeAttribute(ATTR.XOR_MAPPED_ADDRESS, Buffer.from(oldXor), { xorKey: msg.raw.subarray(4, 20) });
      if (d.raw !== true) m = d.value as Endpoint;
    } catch {
      /* malformed: no mapping */
    }
  }
  if (!m) throw new StunError('STUN Binding response without (XOR-)MAPPED-ADDRESS');
  const out: Omit<StunMapping, 'local' | 'server' | 'from' | 'proto' | 'rtt'> = { mapped: unmapped(m), classic: !msg.cookie };
  const o = origin ?? source;
  if (o) out.responseOrigin = unmapped(o);
  if (other) {
    out.otherAddress = unmapped(other);
    out.otherKind = 'rfc5780';
  } else if (changed) {
    out.otherAddress = unmapped(changed);
    out.otherKind = 'rfc3489';
  }
  if (software !== undefined) out.software = software;
  return out;
}

function unmapped(e: Endpoint): Endpoint {
  if (e.family !== 6) return e;
  const h = unmapIPv4(e.host);
  return h === e.host ? e : { host: h, port: e.port, family: 4 };
}

/**
 * A STUN client on one pipe. Over UDP every binding uses the same socket (so mappings learned
 * here are the ones a hole punch from `client.pipe` will use); over TCP the client holds one
 * connection to its server and runs its transactions on it.
 *
 * @example
 * await using client = await StunClient.open({ server: '203.0.113.10:3478' });
 * const { mapped } = await client.binding();
 * await client.pipe.send('punch', peer);
 */
export class StunClient implements AsyncDisposable {
  /**
   * The pipe the transactions run on; stays open until {@link StunClient.close}. Send
   * anything on it (hole punching). When the client opened it, nothing is queued for `recv()`
   * by default: subscribe (`pipe.subscribe(SUB_ALL)` or a pattern), or take the packets that
   * are not STUN responses from `transport.onPacket`.
   */
  readonly pipe: Pipe;
  /** The transaction layer (retransmission, matching; `onPacket` for everything else). */
  readonly transport: StunTransport;
  /** The default server. */
  readonly server: Endpoint;
  /** `'udp'` or `'tcp'`. */
  readonly proto: Proto;
  /** Local endpoint, with the routed source address in place of a wildcard. */
  readonly local: Endpoint;
  private readonly opts: StunClientOptions;
  private readonly owns: boolean;
  private readonly life = new AbortController();
  private closing: Promise<void> | undefined;
  private removeClose: () => void;
  private readonly templates = new Map<number, RequestTemplate>();
  /** Ends the client's transactions: aborted by close() / pipe close, or by `opts.signal`. */
  private readonly signal: AbortSignal;

  private constructor(pipe: Pipe, owns: boolean, server: Endpoint, local: Endpoint, opts: StunClientOptions) {
    this.pipe = pipe;
    this.owns = owns;
    this.server = server;
    this.proto = pipe.proto;
    this.local = local;
    this.opts = opts;
    this.transport = new StunTransport(pipe, false);
    // An owned pipe carries STUN for us: keep nothing in the default queue (subscribe to read).
    if (owns && pipe.isSubscribed(SUB_ALL)) pipe.unsubscribe(SUB_ALL);
    this.removeClose = pipe.onClose(() => this.life.abort(new PipeClosedError('STUN client pipe closed')));
    this.signal = opts.signal ? AbortSignal.any([this.life.signal, opts.signal]) : this.life.signal;
  }

  /**
   * Opens a client: binds a UDP socket (or connects over TCP) per `opts`. Rejects with
   * `BindError`, `ConnectError`s, `TimeoutError`, `AbortError`, `InvalidArgumentError`.
   */
  static async open(opts: StunClientOptions): Promise<StunClient> {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('StunClient.open expects options');
    throwIfAborted(opts.signal);
    const server = parseStunServer(opts.server);
    const proto = checkProto(opts.proto ?? opts.pipe?.proto ?? 'udp');
    checkPositive(opts.rto, 'rto');
    checkPositive(opts.maxTries, 'maxTries');
    checkPositive(opts.timeout, 'timeout');
    if (opts.family !== undefined && opts.family !== server.family) {
      throw new InvalidArgumentError(`server ${formatEndpoint(server)} is IPv${server.family}, family is ${opts.family}`);
    }
    let pipe: Pipe;
    let owns = true;
    if (opts.pipe) {
      if (opts.pipe.proto !== proto) throw new InvalidArgumentError(`pipe is ${opts.pipe.proto}, proto is ${proto}`);
      if (opts.pipe.closed) throw new PipeClosedError('pipe is closed');
      pipe = opts.pipe;
      owns = false;
    } else {
      const popts = { bind: opts.bind, family: server.family, signal: opts.signal, timeout: opts.timeout };
      pipe = proto === 'udp' ? await pipeOpen('udp', server, popts) : await pipeOpen('tcp', server, { ...popts, framing: 'raw' });
    }
    let local = pipe.local;
    try {
      if (isUnspecified(local.host)) {
        const src = await sourceAddressFor(server);
        if (src !== undefined) local = { host: unmapIPv4(src), port: local.port, family: isIP(unmapIPv4(src)) === 6 ? 6 : 4 };
      } else {
        local = unmapped(local);
      }
    } catch (e) {
      if (owns) await pipe.close();
      throw e;
    }
    return new StunClient(pipe, owns, server, local, opts);
  }

  /** True once {@link StunClient.close} was called or the pipe closed. */
  get closed(): boolean {
    return this.life.signal.aborted || this.pipe.closed;
  }

  /**
   * One Binding transaction: resolves with the mapping, or rejects with `TimeoutError` (no
   * answer within the retransmissions / `timeout`), `AbortError`, {@link StunError} (an error
   * response, carrying `errorCode`/`reason`; or a response without a mapping, with unknown
   * comprehension-required attributes or a bad FINGERPRINT), `PipeClosedError`.
   */
  async binding(opts: BindingOptions = {}): Promise<StunMapping> {
    if (this.closed) throw new PipeClosedError('STUN client is closed');
    throwIfAborted(opts.signal);
    const server = opts.server === undefined ? this.server : parseStunServer(opts.server);
    if (server.family !== this.server.family) throw new InvalidArgumentError(`server ${formatEndpoint(server)} is not IPv${this.server.family}`);
    checkPositive(opts.rto, 'rto');
    checkPositive(opts.maxTries, 'maxTries');
    checkPositive(opts.timeout, 'timeout');
    const changeIp = opts.changeIp === true;
    const changePort = opts.changePort === true;
    const classic = opts.classic ?? this.opts.classic ?? false;
    const { request, tid } = this.encodeRequest(classic, changeIp, changePort);
    const accept = opts.acceptFrom ?? (changeIp || changePort ? 'any' : 'server');
    const acceptFrom =
      accept === 'server' ? undefined
      : accept === 'any' ? (): boolean => true
      : typeof accept === 'function' ? accept
      : (from: Endpoint): boolean => sameEndpoint(from, unmapped(accept));
    if (this.proto === 'tcp' && !sameEndpoint(server, this.server)) {
      throw new InvalidArgumentError('a TCP STUN client talks to the server it is connected to; open another client for another server');
    }
    const t0 = performance.now();
    let r: StunReceived;
    try {
      r = await this.transport.request(request, tid, {
        server,
        acceptFrom,
        signal: opts.signal ? AbortSignal.any([this.signal, opts.signal]) : this.signal,
        timeout: opts.timeout ?? this.opts.timeout,
        rto: opts.rto ?? this.opts.rto ?? STUN_RTO,
        maxTries: opts.maxTries ?? this.opts.maxTries ?? STUN_MAX_TRIES,
      });
    } catch (e) {
      if (this.life.signal.aborted && !opts.signal?.aborted && !this.opts.signal?.aborted) {
        throw new PipeClosedError('STUN client closed during the transaction', { cause: e });
      }
      throw e;
    }
    const rtt = performance.now() - t0;
    const msg = r.msg;
    const err = stunErrorOf(msg);
    if (err) throw err;
    if (msg.method !== METHOD.BINDING) throw new StunError(`response of method 0x${msg.method.toString(16)} to a Binding request`);
    if (msg.unknownRequired.length > 0) {
      throw new StunError(`Binding response with unknown comprehension-required attributes ${msg.unknownRequired.map((t) => `0x${t.toString(16)}`).join(', ')}`);
    }
    if (msg.offsets.fingerprint !== undefined && !verifyFingerprint(msg)) throw new StunError('Binding response with a bad FINGERPRINT');
    const out = parseBindingResponse(msg) as StunMapping;
    out.local = this.local;
    out.server = server;
    out.from = unmapped(r.from);
    out.proto = this.proto;
    out.rtt = rtt;
    return out;
  }

  /** Encodes a Binding request from a cached template: copy, new transaction id, FINGERPRINT. */
  private encodeRequest(classic: boolean, changeIp: boolean, changePort: boolean): { request: Buffer; tid: Buffer } {
    const key = (classic ? 1 : 0) | (changeIp ? 2 : 0) | (changePort ? 4 : 0);
    let t = this.templates.get(key);
    if (!t) {
      const attributes: StunAttribute[] = [];
      if (changeIp || changePort) attributes.push({ type: ATTR.CHANGE_REQUEST, value: { changeIp, changePort } });
      const software = this.opts.software ?? STUN_SOFTWARE;
      if (!classic && software !== false) attributes.push({ type: ATTR.SOFTWARE, value: software });
      const fingerprint = !classic && (this.opts.fingerprint ?? true);
      const bytes = encodeStun(
        { method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: Buffer.alloc(classic ? 16 : 12, 0xaa), attributes, cookie: !classic },
        { fingerprint },
      );
      t = { bytes, classic, fingerprint };
      this.templates.set(key, t);
    }
    const request = Buffer.allocUnsafe(t.bytes.length);
    t.bytes.copy(request);
    const at = classic ? 4 : 8;
    const tid = request.subarray(at, STUN_HEADER_SIZE);
    fillTransactionId(tid, classic);
    if (t.fingerprint) request.writeUInt32BE(fingerprintOf(request.subarray(0, request.length - 8)), request.length - 4);
    return { request, tid };
  }

  /** RFC 5780 filtering test: a Binding request with CHANGE-REQUEST; the answer comes from the server's other address. */
  changeRequest(change: { changeIp?: boolean; changePort?: boolean }, opts: Omit<BindingOptions, 'changeIp' | 'changePort'> = {}): Promise<StunMapping> {
    return this.binding({ ...opts, changeIp: change.changeIp === true, changePort: change.changePort === true });
  }

  /**
   * Closes the client: pending transactions reject with `PipeClosedError`, and the pipe is
   * closed unless it was given in `opts.pipe`. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.life.abort(new PipeClosedError('STUN client closed'));
    this.removeClose();
    this.closing = (async () => {
      await this.transport.close();
      if (!this.owns) return;
      const pipe = this.pipe;
      const closed = pipe.close();
      // A TCP server that does not read our FIN must not hold us for CLOSE_TIMEOUT: reset it.
      const timer = pipe.proto === 'tcp' ? setTimeout(() => (pipe as TcpPipe).reset(), TCP_CLOSE_GRACE) : undefined;
      await closed;
      if (timer) clearTimeout(timer);
    })();
    return this.closing;
  }

  /** `await using client = await StunClient.open(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * One STUN Binding on a fresh socket (UDP) or connection (TCP), closed afterwards:
 * `{ local, mapped, server, … }`. To keep the socket (and its mapping) use {@link StunClient}.
 *
 * @example
 * const { mapped } = await stunGetMapping({ server: '203.0.113.10', timeout: 3000 });
 */
export async function stunGetMapping(opts: StunClientOptions & Omit<BindingOptions, 'server'>): Promise<StunMapping> {
  const client = await StunClient.open(opts);
  try {
    return await client.binding(opts);
  } finally {
    await client.close();
  }
}
