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
import { createSocket } from 'node:dgram';
import { setMaxListeners } from 'node:events';
import { isIP } from 'node:net';
import { InvalidArgumentError, PipeClosedError, StunError, UnreachableError } from '../../errors.js';
import { formatEndpoint, nodeHost, sameEndpoint, type Endpoint } from '../../interfaces/endpoint.js';
import { unmapIPv4 } from '../../interfaces/ip.js';
import { isUnspecified } from '../../interfaces/scope.js';
import { pipeOpen } from '../../pipes/open.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { TcpPipe } from '../../pipes/tcp.js';
import { SUB_ALL, type Proto } from '../../pipes/types.js';
import { cancellable, closeWithin, linkSignals, throwIfAborted, type AbortOptions, type LinkedSignal } from '../../util/abort.js';
import { checkTimeoutAndSignal, hasDeadline } from '../deadline.js';
import type { StunAttribute } from './attributes.js';
import { ATTR, CLASS, METHOD, STUN_HEADER_SIZE } from './constants.js';
import { fingerprintOf } from './integrity.js';
import { encodeStun, stunErrorOf, verifyFingerprint } from './message.js';
import { MAX_PENDING_TRANSACTIONS, StunTransport, STUN_RTO, STUN_MAX_TRIES, type StunReceived } from './transport.js';
import {
  checkAcceptFrom, checkPositive, checkProto, checkTimeout, parseStunServer, STUN_PORT, STUN_SOFTWARE, TCP_CLOSE_GRACE,
  type BindingOptions, type StunClientOptions, type StunMapping,
} from './client-options.js';
import { fillTransactionId, parseBindingResponse, unmapped } from './client-wire.js';

export {
  ATTR_XOR_MAPPED_ADDRESS_OLD, parseStunServer, STUN_PORT, STUN_SOFTWARE, TCP_CLOSE_GRACE,
  type BindingOptions, type StunClientOptions, type StunMapping,
} from './client-options.js';
export { parseBindingResponse, randomTransactionId } from './client-wire.js';

/** An encoded Binding request whose transaction id (and FINGERPRINT) are patched per request. */
interface RequestTemplate {
  bytes: Buffer;
  classic: boolean;
  fingerprint: boolean;
}

/**
 * The local address the kernel would use to reach `dest` (a connected UDP socket's name: a
 * route lookup, nothing is sent).
 * @throws UnreachableError when there is no route; AbortError.
 */
export function sourceAddressFor(dest: Endpoint, opts: AbortOptions = {}): Promise<string> {
  return cancellable<string>(opts, `route lookup for ${nodeHost(dest)}`, (resolve, reject) => {
    const s = createSocket(dest.family === 6 ? 'udp6' : 'udp4');
    const noRoute = (cause?: unknown): void => reject(new UnreachableError(`no route to ${nodeHost(dest)}`, cause !== undefined ? { cause } : undefined));
    s.on('error', noRoute);
    try {
      s.connect(dest.port || STUN_PORT, nodeHost(dest), () => {
        try {
          resolve((s.address().address.split('%')[0]) as string);
        } catch (e) {
          noRoute(e);
        }
      });
    } catch (e) {
      noRoute(e);
    }
    return () => {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    };
  });
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
  private readonly link: LinkedSignal;

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
    // Not AbortSignal.any(): a caller's signal may outlive many clients, and this client's may
    // outlive many transactions (see linkSignals).
    this.link = linkSignals({ signal: opts.signal }, [this.life.signal], 'STUN client');
    this.signal = this.link.signal;
    this.removeClose = pipe.onClose(() => {
      this.life.abort(new PipeClosedError('STUN client pipe closed'));
      this.link.done();
    });
    // Each binding in flight listens on it until it ends: concurrent bindings are no leak.
    setMaxListeners(MAX_PENDING_TRANSACTIONS, this.signal);
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
    checkTimeout(opts.timeout);
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
        const src = await sourceAddressFor(server, opts.signal ? { signal: opts.signal } : {}).catch((e: unknown) => {
          if (e instanceof UnreachableError) return undefined; // the binding itself will say more
          throw e;
        });
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
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('binding options must be an object');
    if (this.closed) throw new PipeClosedError('STUN client is closed');
    throwIfAborted(opts.signal);
    const server = opts.server === undefined ? this.server : parseStunServer(opts.server);
    if (server.family !== this.server.family) throw new InvalidArgumentError(`server ${formatEndpoint(server)} is not IPv${this.server.family}`);
    checkPositive(opts.rto, 'rto');
    checkPositive(opts.maxTries, 'maxTries');
    checkTimeout(opts.timeout);
    const changeIp = opts.changeIp === true;
    const changePort = opts.changePort === true;
    const classic = opts.classic ?? this.opts.classic ?? false;
    const { request, tid } = this.encodeRequest(classic, changeIp, changePort);
    const accept = opts.acceptFrom ?? (changeIp || changePort ? 'any' : 'server');
    const acceptFrom =
      accept === 'server' ? undefined
      : accept === 'any' ? (): boolean => true
      : typeof accept === 'function' ? accept
      : ((e: Endpoint) => (from: Endpoint): boolean => sameEndpoint(from, e))(checkAcceptFrom(accept));
    if (this.proto === 'tcp' && !sameEndpoint(server, this.server)) {
      throw new InvalidArgumentError('a TCP STUN client talks to the server it is connected to; open another client for another server');
    }
    const t0 = performance.now();
    let r: StunReceived;
    const link = opts.signal ? linkSignals({ signal: opts.signal }, [this.signal], 'STUN binding') : undefined;
    try {
      r = await this.transport.request(request, tid, {
        server,
        acceptFrom,
        signal: link ? link.signal : this.signal,
        timeout: opts.timeout ?? this.opts.timeout,
        rto: opts.rto ?? this.opts.rto ?? STUN_RTO,
        maxTries: opts.maxTries ?? this.opts.maxTries ?? STUN_MAX_TRIES,
      });
    } catch (e) {
      if (this.life.signal.aborted && !opts.signal?.aborted && !this.opts.signal?.aborted) {
        throw new PipeClosedError('STUN client closed during the transaction', { cause: e });
      }
      throw e;
    } finally {
      link?.done();
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
   * closed unless it was given in `opts.pipe`. Idempotent. With `opts`, a signal that aborts or
   * a timeout that passes first resets an owned TCP connection and rejects with `AbortError` /
   * `TimeoutError` once it is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.closeOnce(), opts, () => {
      if (this.owns && this.pipe.proto === 'tcp') (this.pipe as TcpPipe).reset();
    }, 'STUN client close');
  }

  private closeOnce(): Promise<void> {
    if (this.closing) return this.closing;
    this.life.abort(new PipeClosedError('STUN client closed'));
    this.link.done();
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
 * `opts.timeout` bounds the whole call, not each step: opening the socket (a TCP connect),
 * the route lookup, the Binding transaction and the close share one deadline, and the call
 * rejects with `TimeoutError` once it passes (a close still under way then is forced: an
 * owned TCP connection is reset). `opts.signal` cancels any step (`AbortError`).
 *
 * @example
 * const { mapped } = await stunGetMapping({ server: '203.0.113.10', timeout: 3000 });
 */
export async function stunGetMapping(opts: StunClientOptions & Omit<BindingOptions, 'server'>): Promise<StunMapping> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('stunGetMapping expects options');
  checkTimeoutAndSignal(opts);
  throwIfAborted(opts.signal);
  const server = parseStunServer(opts.server);
  const overall = hasDeadline(opts.timeout) ? opts.timeout : undefined;
  // One deadline for every step: each step given the full timeout made the call take up to
  // twice it (a connect that used most of it, then a whole Binding transaction).
  const deadline = linkSignals({ signal: opts.signal, timeout: overall }, [], `STUN mapping from ${formatEndpoint(server)}`);
  // With a deadline the steps get none of their own ("0"); without one, what the caller gave.
  const step = overall === undefined ? opts.timeout : 0;
  try {
    const client = await StunClient.open({ ...opts, signal: deadline.signal, timeout: step });
    try {
      return await client.binding({ ...opts, signal: deadline.signal, timeout: step });
    } finally {
      await client.close({ signal: deadline.signal }).catch((e: unknown) => {
        if (!deadline.signal.aborted) throw e; // forced by the deadline or the caller's abort: closed all the same
      });
    }
  } finally {
    deadline.done();
  }
}
