/**
 * TCP hole punching by simultaneous open.
 *
 * Both peers learn the external mapping of one local TCP port ({@link tcpMapping}), swap
 * their mapped (and LAN) endpoints and a session nonce through signalling, agree on a meeting
 * time, and then both call {@link tcpPunch} from that same local port. From `startAt` on,
 * each side:
 *
 * 1. `connect()`s from `localHost:localPort` to every remote endpoint. The first SYN opens
 *    our NAT for the peer's endpoint; when the peer's SYN arrives while ours is pending, the
 *    kernel completes a *simultaneous open* (both `connect()`s succeed on one connection).
 * 2. Listens on the same port, so that a SYN that matches no pending `connect()` (the peer's
 *    NAT maps per destination, or our SYN left after the peer's arrived) is accepted instead
 *    of being reset.
 * 3. In rounds 50, 100, 200 ms and then every `attemptInterval` apart, replaces failed
 *    attempts (reset: the peer was not up yet) and, with exponential back-off from 50 ms up
 *    to `maxAttemptInterval`, pending ones: a fresh SYN is much faster than the kernel's 1 s,
 *    3 s, … retransmissions when the first one was dropped (it reached a NAT that the peer's
 *    SYN had not opened yet). The back-off grows past any round-trip time, so a SYN-ACK
 *    eventually finds the socket whose SYN it answers still there.
 *
 * The port is shared on Linux through `SO_REUSEADDR` (libuv sets it on every explicit TCP
 * bind): the STUN connection, the attempts and accepted connections; the listener steps
 * aside while new attempts bind (`tcp-punch-listener.ts`). A SYN arriving in that instant is
 * reset and its sender retries {@link TCP_PUNCH_REFUSED_RETRY} ms later. Use a fresh local
 * port per punch: a 4-tuple still in `TIME_WAIT` cannot be connected again (`EADDRNOTAVAIL`).
 *
 * Every connection, however it came up, starts with an authenticated HELLO each way
 * (`tcp-punch-wire.ts`, keyed by the nonce): strays and other sessions are closed. The side
 * with the larger random tie-breaker sends SELECT on the first connection it verified; both
 * keep exactly that one and destroy every other socket, attempt and the listener. The
 * winner is returned as a {@link TcpPipe}; bytes after the exchange belong to the application.
 * @module
 */
import { Socket } from 'node:net';
import { InvalidArgumentError, TimeoutError, UnreachableError } from '../../errors.js';
import { endpointFromNode, formatEndpoint, nodeHost, parseHost, sameEndpoint, toEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import { checkMaxMessageSize } from '../../pipes/framing.js';
import { bindError } from '../../pipes/socket-errors.js';
import { TcpPipe } from '../../pipes/tcp.js';
import type { Framing, MessageCallback } from '../../pipes/types.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { TcpPunchExchange, type ExchangeConn } from './tcp-punch-exchange.js';
import { PunchListener } from './tcp-punch-listener.js';
import { TcpPunchKey } from './tcp-punch-wire.js';

/** Default bound of a TCP punch (ms, from the call, including the wait for `startAt`). */
export const DEFAULT_TCP_PUNCH_TIMEOUT = 6_000;
/** Default largest gap between rounds of connection attempts (ms). */
export const DEFAULT_TCP_ATTEMPT_INTERVAL = 250;
/** Default cap of the back-off between fresh SYNs to one remote (ms; the kernel's first SYN retransmission comes after 1 s). */
export const DEFAULT_TCP_MAX_ATTEMPT_INTERVAL = 1_000;
/** Gap after the first round, and first back-off step of a pending attempt (ms); gaps double up to `attemptInterval`. */
export const TCP_PUNCH_FIRST_GAP = 50;
/** Most remote endpoints used (extra ones are ignored). */
export const MAX_TCP_PUNCH_REMOTES = 8;
/** Most connections waiting for their HELLO at once (further accepted ones are closed). */
export const MAX_TCP_PUNCH_UNVERIFIED = 8;
/** Delay of a fresh attempt after a reset (the peer was not listening yet), for the first {@link TCP_PUNCH_FAST_RETRIES} tries to a remote (ms). */
export const TCP_PUNCH_REFUSED_RETRY = 30;
/** Tries to one remote that are repeated after {@link TCP_PUNCH_REFUSED_RETRY} when reset. */
export const TCP_PUNCH_FAST_RETRIES = 3;

/** Options of {@link tcpPunch}. */
export interface TcpPunchOptions extends AbortOptions {
  /** Local address to bind (the one the mapping was learned from). @default the wildcard address of the remotes' family */
  localHost?: string;
  /** Local port: the one whose external mapping the peer was told about (`tcpMapping()`'s `local.port`). */
  localPort: number;
  /** The peer's endpoints (its mapped endpoint first, then LAN ones). Other families than ours are skipped. */
  remotes: readonly EndpointLike[];
  /** Session secret shared through signalling (16–1024 bytes): authenticates the HELLO/SELECT exchange. */
  nonce: Uint8Array;
  /** Meeting time (ms since the epoch) agreed through signalling. @default now */
  startAt?: number;
  /** Bound of the whole punch (ms): `TimeoutError`. @default DEFAULT_TCP_PUNCH_TIMEOUT (6 s) */
  timeout?: number;
  /** Largest gap between rounds of attempts (ms); the first rounds come sooner. @default DEFAULT_TCP_ATTEMPT_INTERVAL (250) */
  attemptInterval?: number;
  /** Cap of the back-off between fresh SYNs to one remote (ms). @default DEFAULT_TCP_MAX_ATTEMPT_INTERVAL (1000) */
  maxAttemptInterval?: number;
  /** Listen on the port too (accepts the SYNs of a peer behind a per-destination mapping NAT). @default true */
  listen?: boolean;
  /** Framing of the returned pipe. @default 'raw' */
  framing?: Framing;
  /** Message callback of the returned pipe (else its messages queue for `recv()`). @default none */
  onMessage?: MessageCallback;
}

/** Counters of one {@link tcpPunch}. */
export interface TcpPunchStats {
  /** `connect()` calls (every fresh SYN). */
  attempts: number;
  /** Attempts answered with a reset (`ECONNREFUSED`). */
  refused: number;
  /** Attempts that failed otherwise (no route, tuple busy, …). */
  failed: number;
  /** Connections our `connect()` established (simultaneous open included). */
  connected: number;
  /** Connections our listener accepted. */
  accepted: number;
  /** Connections closed before a valid HELLO (strays, silent, over the limit). */
  rejected: number;
  /** Times the listener was opened. */
  listens: number;
  /** Listener failures (port held by another listener). */
  listenErrors: number;
}

/** What {@link tcpPunch} resolves with. */
export interface TcpPunchResult {
  /** The one connection, owned by the caller. */
  pipe: TcpPipe;
  /** Its local endpoint. */
  local: Endpoint;
  /** The peer's endpoint as we see it (its NAT's address). */
  remote: Endpoint;
  /** How it came up: our `connect()` (simultaneous open or a SYN into the peer's listener) or our listener. */
  via: 'connect' | 'accept';
  /** Whether this side selected the connection (the larger tie-breaker). */
  controlling: boolean;
  /** Milliseconds from the call to success. */
  elapsed: number;
  /** Counters. */
  stats: TcpPunchStats;
}

interface Remote {
  ep: Endpoint;
  /** Pending attempt. */
  sock: Socket | undefined;
  since: number;
  tries: number;
  /** A live connection with this remote (no new attempts meanwhile). */
  conn: Conn | undefined;
  /** Failed in a way retrying cannot fix (no route, bad address). */
  dead: boolean;
}

type Conn = ExchangeConn<Remote | undefined>;

/** @internal Validates an optional number option. */
function num(v: number | undefined, dflt: number, name: string, min = 1): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return v;
}

/** Rounds of attempts are their gap apart ± this fraction. */
const ROUND_JITTER = 0.2;

/** Connect errors that retrying cannot fix: the remote is dropped. */
const FATAL_CONNECT = new Set(['EINVAL', 'EAFNOSUPPORT', 'ENETUNREACH']);

/**
 * Punches a TCP connection to the peer and resolves with it. Rejects with `TimeoutError`
 * (no connection was verified within `timeout`; the message carries the counters),
 * `AbortError`, `BindError` (another socket holds the port without `SO_REUSEADDR`, or listens
 * on it), `UnreachableError` (no remote is routable), `InvalidArgumentError`.
 * Every socket, timer and the listener are gone when it settles, except the returned pipe.
 */
export function tcpPunch(opts: TcpPunchOptions): Promise<TcpPunchResult> {
  const t0 = performance.now();
  let session: TcpPunchSession;
  let timeout: number;
  try {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('tcpPunch() expects options');
    throwIfAborted(opts.signal);
    timeout = num(opts.timeout, DEFAULT_TCP_PUNCH_TIMEOUT, 'timeout');
    session = new TcpPunchSession(opts, t0);
  } catch (e) {
    return Promise.reject(e);
  }
  return cancellable<TcpPunchResult>({ signal: opts.signal }, 'TCP hole punch', (resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(`TCP hole punch timed out after ${timeout} ms (${session.summary()})`)), timeout);
    session.start(resolve, reject);
    return () => {
      clearTimeout(timer);
      session.stop();
    };
  });
}

/** One punch: attempts and listener; the exchange picks the winner. */
class TcpPunchSession {
  readonly stats: TcpPunchStats = { attempts: 0, refused: 0, failed: 0, connected: 0, accepted: 0, rejected: 0, listens: 0, listenErrors: 0 };
  private readonly exchange: TcpPunchExchange<Remote | undefined>;
  private readonly family: Family;
  private readonly host: string;
  private readonly port: number;
  private readonly remotes: Remote[] = [];
  private readonly interval: number;
  private readonly maxInterval: number;
  private gap = TCP_PUNCH_FIRST_GAP;
  private readonly startAt: number;
  private readonly framing: Framing;
  private readonly maxMessageSize: number;
  private readonly onMessage: MessageCallback | undefined;
  private readonly listener: PunchListener | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private done = false;
  private ok: ((r: TcpPunchResult) => void) | undefined;
  private fail: ((e: unknown) => void) | undefined;

  constructor(opts: TcpPunchOptions, private readonly t0: number) {
    const key = new TcpPunchKey(opts.nonce);
    if (!Number.isInteger(opts.localPort) || opts.localPort < 1 || opts.localPort > 65535) throw new InvalidArgumentError('localPort must be an integer 1-65535');
    this.port = opts.localPort;
    if (!Array.isArray(opts.remotes)) throw new InvalidArgumentError('remotes must be an array of endpoints');
    const eps = opts.remotes.map((r) => toEndpoint(r));
    const local = opts.localHost !== undefined && opts.localHost !== '' ? parseHost(opts.localHost) : undefined;
    this.family = local?.family ?? eps.find((e) => e.port !== 0)?.family ?? 4;
    this.host = local ? nodeHost(local) : this.family === 6 ? '::' : '0.0.0.0';
    for (const ep of eps) {
      if (ep.port === 0 || ep.family !== this.family || this.remotes.some((r) => sameEndpoint(r.ep, ep))) continue;
      if (this.remotes.length < MAX_TCP_PUNCH_REMOTES) this.remotes.push({ ep, sock: undefined, since: 0, tries: 0, conn: undefined, dead: false });
    }
    if (this.remotes.length === 0) throw new InvalidArgumentError(`no usable IPv${this.family} remote endpoint`);
    if (opts.startAt !== undefined && (typeof opts.startAt !== 'number' || !Number.isFinite(opts.startAt))) throw new InvalidArgumentError('startAt must be a time in ms since the epoch');
    this.startAt = opts.startAt ?? Date.now();
    this.interval = num(opts.attemptInterval, DEFAULT_TCP_ATTEMPT_INTERVAL, 'attemptInterval', 10);
    this.gap = Math.min(TCP_PUNCH_FIRST_GAP, this.interval);
    this.maxInterval = Math.max(this.interval, num(opts.maxAttemptInterval, DEFAULT_TCP_MAX_ATTEMPT_INTERVAL, 'maxAttemptInterval', 10));
    if (opts.listen !== false) this.listener = new PunchListener(this.host, this.port, this.family, (sock) => this.accept(sock));
    this.framing = opts.framing ?? 'raw';
    if (this.framing !== 'raw' && this.framing !== 'length' && this.framing !== 'line') throw new InvalidArgumentError(`unknown framing ${JSON.stringify(this.framing)}`);
    this.maxMessageSize = checkMaxMessageSize(this.framing, undefined);
    if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw new InvalidArgumentError('onMessage must be a function');
    this.onMessage = opts.onMessage;
    this.exchange = new TcpPunchExchange(key, { win: (c, controlling) => this.win(c, controlling), gone: (c, rejected) => this.gone(c, rejected) });
  }

  start(ok: (r: TcpPunchResult) => void, fail: (e: unknown) => void): void {
    this.ok = ok;
    this.fail = fail;
    // Listen before the meeting time: a peer whose clock runs ahead is accepted, not reset.
    this.listener?.open();
    this.arm(Math.max(0, this.startAt - Date.now()));
  }

  /** The counters, for error messages. */
  summary(): string {
    const s = this.stats;
    s.listens = this.listener?.listens ?? 0;
    s.listenErrors = this.listener?.errors ?? 0;
    return `${s.attempts} attempts to ${this.remotes.length} remote(s): ${s.refused} refused, ${s.failed} failed, ${s.connected} connected, ${s.accepted} accepted, ${s.rejected} rejected`;
  }

  /** Ends the punch: everything but a returned pipe is destroyed. Idempotent. */
  stop(): void {
    this.done = true;
    this.ok = this.fail = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.listener?.close();
    for (const r of this.remotes) {
      r.sock?.destroy();
      r.sock = undefined;
    }
    this.exchange.close();
  }

  /** Runs the next round in `ms` (earlier than a round already planned only). */
  private arm(ms: number, earlierOnly = false): void {
    const at = performance.now() + ms;
    if (earlierOnly && this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.tick, ms);
  }

  /** One round: fresh attempts where due, with the listener out of the way while they bind. */
  private readonly tick = (): void => {
    this.timer = undefined;
    if (this.done) return;
    // Jittered, so that the peer's rounds (timed from the same startAt) drift apart from ours.
    this.arm(this.gap * (1 - ROUND_JITTER + Math.random() * 2 * ROUND_JITTER));
    this.gap = Math.min(this.gap * 2, this.interval);
    // A verified connection is all we need: the controlling side selects one it has already.
    if (this.exchange.verified) return;
    const now = performance.now();
    const due = this.remotes.filter((r) => !r.dead && !r.conn && (!r.sock || now - r.since >= Math.min(TCP_PUNCH_FIRST_GAP * 2 ** (r.tries - 1), this.maxInterval) * (1 - ROUND_JITTER)));
    if (due.length === 0) return;
    this.listener?.stepAside();
    for (const r of due) this.connect(r, now);
  };

  private connect(r: Remote, now: number): void {
    r.sock?.destroy(); // still in SYN-SENT: closing it sends nothing
    const sock = new Socket();
    r.sock = sock;
    r.since = now;
    r.tries++;
    this.stats.attempts++;
    const onError = (e: NodeJS.ErrnoException): void => {
      sock.destroy();
      if (r.sock === sock) r.sock = undefined;
      if (this.done) return;
      const code = e.code ?? '';
      if (e.syscall === 'bind' && this.listener?.bindLost() !== true) {
        // Not our listener: another socket holds the port exclusively.
        this.fail?.(bindError(e, formatEndpoint({ host: this.host, port: this.port, family: this.family })));
        return;
      }
      if (code === 'ECONNREFUSED') {
        this.stats.refused++;
        // The peer's host answered but had no socket for us yet (not started, or between rounds).
        if (r.tries <= TCP_PUNCH_FAST_RETRIES) this.arm(TCP_PUNCH_REFUSED_RETRY, true);
      } else this.stats.failed++;
      if (FATAL_CONNECT.has(code)) {
        r.dead = true;
        if (this.remotes.every((x) => x.dead) && this.exchange.size === 0) {
          this.fail?.(new UnreachableError(`no remote is reachable from ${formatEndpoint({ host: this.host, port: this.port, family: this.family })} (${code})`, { cause: e }));
        }
      }
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      if (r.sock === sock) r.sock = undefined;
      this.stats.connected++;
      r.conn = this.exchange.add(sock, 'connect', r);
    });
    sock.connect({ host: nodeHost(r.ep), port: r.ep.port, family: this.family, localAddress: this.host, localPort: this.port });
  }

  private accept(s: Socket): void {
    if (this.done || this.exchange.unverified >= MAX_TCP_PUNCH_UNVERIFIED) {
      if (!this.done) this.stats.rejected++;
      s.destroy();
      return;
    }
    this.stats.accepted++;
    const r = this.remotes.find((x) => sameEndpoint(x.ep, endpointFromNode(s.remoteAddress ?? '', s.remotePort ?? 0)));
    const c = this.exchange.add(s, 'accept', r);
    if (r && c) r.conn = c;
  }

  private gone(c: Conn, rejected: boolean): void {
    if (rejected) this.stats.rejected++;
    if (c.tag?.conn === c) c.tag.conn = undefined;
  }

  private win(c: Conn, controlling: boolean): void {
    const ok = this.ok;
    const pipe = new TcpPipe(c.sock, { framing: this.framing, maxMessageSize: this.maxMessageSize, onMessage: this.onMessage, defaultSub: this.onMessage === undefined });
    c.sock.resume();
    this.stats.listens = this.listener?.listens ?? 0;
    this.stats.listenErrors = this.listener?.errors ?? 0;
    this.stop();
    if (!ok) {
      pipe.reset();
      return;
    }
    ok({ pipe, local: pipe.local, remote: pipe.remote, via: c.via, controlling, elapsed: performance.now() - this.t0, stats: { ...this.stats } });
  }
}
