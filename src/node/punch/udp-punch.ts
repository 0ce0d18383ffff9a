/**
 * UDP hole punching over one datagram pipe (a `UdpPipe`, or any pipe with `proto: 'udp'`).
 *
 * Both peers call {@link punch} at the time agreed through signalling (`startAt`), each with
 * the other's candidate endpoints (host/LAN and server-reflexive addresses) and a shared
 * session `nonce`. From then on:
 *
 * 1. Each side sends an authenticated PROBE to every destination in bursts at 0, 50, 100,
 *    200, 400 ms after `startAt`, then every `maxInterval` (500 ms), within a packet-rate
 *    budget. Destinations are the candidates, predicted ports (`predictDelta`, for NATs that
 *    allocate sequentially) and peer-reflexive addresses: wherever a valid probe came from.
 * 2. Every valid probe is answered with an ACK to its source (that is what lets a symmetric
 *    NAT's fresh mapping through a cone NAT on the other side).
 * 3. A path is confirmed when an ACK for one of our probes comes back *from the address the
 *    probe was sent to* (ICE's symmetry rule; an ACK from elsewhere only adds a destination).
 * 4. One side controls, the one with the larger random tie-breaker (both learn both from the
 *    packets): it nominates its first confirmed path by sending NOMINATE probes there, and
 *    resolves when one is acked. The other side resolves when it receives a nomination. So
 *    both ends agree on one path (each end's `remote` is where the other's packets come from),
 *    which a reliable stream over the same pipe then uses.
 *
 * After resolving, each side keeps answering probes for `linger` ms (the peer may still be
 * waiting for an ack). Probes with a wrong MAC (another session, a stray sender) are ignored
 * and counted. The NAT binding then needs traffic at least every ~30 s: open a reliable
 * stream (it sends keep-alives) or call {@link keepAlive}.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, PipeClosedError } from '../../errors.js';
import { sameEndpoint, toEndpoint, unmapHost, type Endpoint, type EndpointLike } from '../../interfaces/endpoint.js';
import { Pipe } from '../../pipes/pipe.js';
import type { Message } from '../../pipes/types.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { PunchTimeoutError, type PunchStats } from './errors.js';
import { ReliableMux } from './reliable-mux.js';
import { decodePunch, encodePunch, isPunchPacket, PUNCH_ACK, PUNCH_PROBE, PunchKey, type PunchPacket } from './punch-wire.js';

/** Default bound of a punch attempt (ms, counted from the call, including the wait for `startAt`). */
export const DEFAULT_PUNCH_TIMEOUT = 10_000;
/** Default maximum number of peer candidates used (extra ones are ignored). */
export const DEFAULT_MAX_CANDIDATES = 16;
/** Maximum number of predicted destinations. */
export const MAX_PREDICTED = 32;
/** Maximum number of peer-reflexive destinations learned from the peer's packets. */
export const MAX_PEER_REFLEXIVE = 8;
/** Default packet budget (probes + acks per second) of one attempt. */
export const DEFAULT_PUNCH_RATE = 200;
/** Default cap of the gap between probe bursts (ms). */
export const DEFAULT_MAX_INTERVAL = 500;
/** Default time probes are still answered after resolving (ms). */
export const DEFAULT_PUNCH_LINGER = 5_000;
const FIRST_GAP = 50;
/** Most unacknowledged probe transaction ids remembered per attempt; the oldest is forgotten first (its late ack is ignored). */
const MAX_TXIDS = 2048;

/** Port-allocation hint for the peer's NAT (from `detectDelta`): predicted ports are probed too. */
export interface PredictDelta {
  /** Delta class: `'INDEPENDENT'` / `'DEPENDENT'` (+n per new mapping) predict ports; other classes add nothing. */
  kind: string;
  /** The step n (may be negative). */
  value: number;
  /** Ports predicted per candidate (n, 2n, … count·n). @default 8 */
  count?: number;
}

/** Options of {@link punch}. */
export interface PunchOptions extends AbortOptions {
  /** The datagram pipe to punch from (its local port is the one the peer learned). Stays open. */
  pipe: Pipe;
  /** The peer's candidate endpoints, best first. Other address families than the pipe's are skipped. */
  peerCandidates: readonly EndpointLike[];
  /** Meeting time (ms since the epoch) agreed through signalling. @default now */
  startAt?: number;
  /** Session secret shared through signalling (16–1024 bytes): authenticates probes. */
  nonce: Uint8Array;
  /** Bound of the whole attempt (ms): {@link PunchTimeoutError}. @default DEFAULT_PUNCH_TIMEOUT (10 s) */
  timeout?: number;
  /** The peer NAT's port-allocation pattern (symmetric NATs that allocate sequentially). */
  predictDelta?: PredictDelta;
  /** Candidates used at most. @default DEFAULT_MAX_CANDIDATES (16) */
  maxCandidates?: number;
  /** Packets per second at most (probes and acks). @default DEFAULT_PUNCH_RATE (200) */
  maxRate?: number;
  /** Largest gap between bursts (ms). @default DEFAULT_MAX_INTERVAL (500) */
  maxInterval?: number;
  /** How long probes are still answered after resolving (ms). @default DEFAULT_PUNCH_LINGER (5 s) */
  linger?: number;
}

/** What {@link punch} resolves with. */
export interface PunchResult {
  /** The peer's endpoint on the agreed path: send there, and expect its packets from there. */
  remote: Endpoint;
  /** Round-trip time of the path (ms). */
  rtt: number;
  /** Whether this side nominated the path. */
  controlling: boolean;
  /** Milliseconds from the call to success. */
  elapsed: number;
  /** Counters (still updated while lingering). */
  stats: PunchStats;
}

interface Dest {
  ep: Endpoint;
  kind: 'candidate' | 'predicted' | 'reflexive';
}

interface Sent {
  dest: Dest;
  at: number;
  nominate: boolean;
}

function key(e: Endpoint): string {
  return `${unmapHost(e.host)}%${e.scopeId ?? ''}|${e.port}`;
}

/** @internal Validates an optional number option. */
export function positive(v: number | undefined, dflt: number, name: string, min = 1): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return v;
}

/** Ports predicted for `c` from the delta hint. */
function predict(c: Endpoint, d: PredictDelta | undefined): Endpoint[] {
  if (!d || (d.kind !== 'INDEPENDENT' && d.kind !== 'DEPENDENT') || !Number.isInteger(d.value) || d.value === 0) return [];
  const n = Math.min(Math.max(0, Math.floor(d.count ?? 8)), MAX_PREDICTED);
  const out: Endpoint[] = [];
  for (let k = 1; k <= n; k++) {
    const port = c.port + d.value * k;
    if (port > 0 && port <= 65535) out.push({ ...c, port });
  }
  return out;
}

/**
 * Punches a hole to the peer and resolves with the agreed path. Rejects with
 * {@link PunchTimeoutError} (a `TimeoutError`) when no path worked within `timeout`,
 * `AbortError`, `PipeClosedError` (the pipe closed), `InvalidArgumentError` / `EndpointError`
 * (bad options). The pipe is never closed by this function.
 */
export function punch(opts: PunchOptions): Promise<PunchResult> {
  const t0 = performance.now();
  let session: PunchSession;
  let timeout: number;
  try {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('punch() expects options');
    throwIfAborted(opts.signal);
    const pipe = opts.pipe;
    if (!(pipe instanceof Pipe)) throw new InvalidArgumentError('opts.pipe must be a Pipe');
    if (pipe.proto !== 'udp') throw new InvalidArgumentError('punch() needs a datagram pipe (proto "udp")');
    if (pipe.closed) throw new PipeClosedError('pipe is closed');
    if (!Array.isArray(opts.peerCandidates)) throw new InvalidArgumentError('peerCandidates must be an array of endpoints');
    if (opts.startAt !== undefined && (typeof opts.startAt !== 'number' || !Number.isFinite(opts.startAt))) {
      throw new InvalidArgumentError('startAt must be a time in ms since the epoch');
    }
    timeout = positive(opts.timeout, DEFAULT_PUNCH_TIMEOUT, 'timeout');
    session = new PunchSession(pipe, opts, new PunchKey(opts.nonce));
  } catch (e) {
    return Promise.reject(e);
  }
  return cancellable<PunchResult>({ signal: opts.signal }, 'hole punch', (resolve, reject) => {
    const timer = setTimeout(() => {
      const s = session.stats;
      const why = s.probesReceived === 0 ? 'no probe from the peer got through' : s.acksReceived === 0 ? 'probes got through one way only' : 'no path was agreed';
      reject(new PunchTimeoutError(`hole punch timed out after ${timeout} ms (${why}; ${s.probesSent} probes to ${s.destinations} destinations)`, s));
    }, timeout);
    timer.unref?.();
    session.start(t0, (r) => resolve(r), reject);
    return () => {
      clearTimeout(timer);
      session.stop();
    };
  });
}

/** One attempt: destinations, probe schedule, answers, nomination. */
class PunchSession {
  readonly stats: PunchStats = { probesSent: 0, acksSent: 0, probesReceived: 0, acksReceived: 0, ignored: 0, destinations: 0, rateLimited: 0 };
  private readonly dests: Dest[] = [];
  private readonly sent = new Map<string, Sent>();
  private readonly rtts = new Map<string, number>();
  private readonly tb = randomBytes(8);
  private nominee: { dest: Dest; rtt: number } | undefined;
  private state: 'waiting' | 'probing' | 'done' | 'lingering' | 'stopped' = 'waiting';
  private timer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private off: (() => void) | undefined;
  private offClose: (() => void) | undefined;
  private cursor = 0;
  private gap = FIRST_GAP;
  private tokens: number;
  private refillAt = performance.now();
  private t0 = 0;
  private readonly rate: number;
  private readonly burst: number;
  private readonly maxInterval: number;
  private readonly linger: number;
  private readonly startAt: number;
  private ok: ((r: PunchResult) => void) | undefined;
  private fail: ((e: unknown) => void) | undefined;

  constructor(private readonly pipe: Pipe, opts: PunchOptions, private readonly key: PunchKey) {
    this.rate = positive(opts.maxRate, DEFAULT_PUNCH_RATE, 'maxRate');
    this.burst = Math.max(16, Math.ceil(this.rate / 4));
    this.tokens = this.burst;
    this.maxInterval = positive(opts.maxInterval, DEFAULT_MAX_INTERVAL, 'maxInterval', FIRST_GAP);
    this.linger = positive(opts.linger, DEFAULT_PUNCH_LINGER, 'linger', 0);
    this.startAt = opts.startAt ?? Date.now();
    const max = Math.floor(positive(opts.maxCandidates, DEFAULT_MAX_CANDIDATES, 'maxCandidates'));
    const family = pipe.local.family;
    const cands: Endpoint[] = [];
    for (const c of opts.peerCandidates) {
      const ep = toEndpoint(c);
      if (ep.port === 0 || ep.family !== family || cands.some((x) => sameEndpoint(x, ep))) continue;
      if (cands.length < max) cands.push(ep);
    }
    for (const ep of cands) this.add(ep, 'candidate');
    let predicted = 0;
    for (const c of cands) {
      for (const ep of predict(c, opts.predictDelta)) if (predicted < MAX_PREDICTED && this.add(ep, 'predicted')) predicted++;
    }
  }

  private add(ep: Endpoint, kind: Dest['kind']): Dest | undefined {
    const k = key(ep);
    const have = this.dests.find((d) => key(d.ep) === k);
    if (have) return undefined;
    if (kind === 'reflexive' && this.dests.filter((d) => d.kind === 'reflexive').length >= MAX_PEER_REFLEXIVE) return undefined;
    const d: Dest = { ep, kind };
    // Peer-reflexive addresses are proven to reach us: probe them first.
    if (kind === 'reflexive') this.dests.unshift(d);
    else this.dests.push(d);
    this.stats.destinations = this.dests.length;
    return d;
  }

  start(t0: number, ok: (r: PunchResult) => void, fail: (e: unknown) => void): void {
    this.t0 = t0;
    this.ok = ok;
    this.fail = fail;
    this.off = this.pipe.onMessage(this.onMessage);
    this.offClose = this.pipe.onClose((err) => {
      const f = this.fail;
      this.stop();
      f?.(new PipeClosedError(`pipe closed during the hole punch${err ? `: ${err.message}` : ''}`, err ? { cause: err } : undefined));
    });
    this.arm(Math.max(0, this.startAt - Date.now()));
  }

  /** Ends the attempt; keeps answering probes for `linger` ms when it succeeded. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.ok = undefined;
    this.fail = undefined;
    if (this.state === 'done' && this.linger > 0) {
      this.state = 'lingering';
      this.lingerTimer = setTimeout(() => this.detach(), this.linger);
      this.lingerTimer.unref?.();
      return;
    }
    this.detach();
  }

  private detach(): void {
    this.state = 'stopped';
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.off?.();
    this.offClose?.();
    this.off = this.offClose = undefined;
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(this.tick, ms);
    this.timer.unref?.();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    if (this.state === 'waiting') this.state = 'probing';
    if (this.state !== 'probing') return;
    if (this.nominee) this.sendProbe(this.nominee.dest, true);
    else {
      const n = this.dests.length;
      for (let i = 0; i < n; i++) {
        if (!this.take()) {
          this.stats.rateLimited += n - i;
          break;
        }
        this.sendProbe(this.dests[this.cursor % n] as Dest, false, false);
        this.cursor = (this.cursor + 1) % n;
      }
    }
    const gap = this.gap;
    this.gap = Math.min(this.maxInterval, gap * 2);
    this.arm(gap);
  };

  /** Takes a token of the packet budget. */
  private take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refillAt) * this.rate) / 1000);
    this.refillAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private sendProbe(dest: Dest, nominate: boolean, budget = true): void {
    if (budget && !this.take()) {
      this.stats.rateLimited++;
      return;
    }
    const txid = randomBytes(8);
    if (this.sent.size >= MAX_TXIDS) this.sent.delete(this.sent.keys().next().value as string);
    this.sent.set(txid.toString('hex'), { dest, at: performance.now(), nominate });
    this.stats.probesSent++;
    const rttUs = nominate && this.nominee ? this.nominee.rtt * 1000 : 0;
    void this.pipe.send(encodePunch(this.key, { type: PUNCH_PROBE, nominate, txid, tiebreaker: this.tb, rttUs }), dest.ep).catch(() => undefined);
  }

  private readonly onMessage = (m: Message): void => {
    if (!isPunchPacket(m.data) || this.state === 'stopped') return;
    const r = decodePunch(this.key, m.data);
    if (r.kind === 'keepalive') return;
    if (r.kind !== 'packet' || r.packet.tiebreaker.equals(this.tb)) {
      this.stats.ignored++; // malformed, another session's, or our own packet reflected back
      return;
    }
    if (r.packet.type === PUNCH_PROBE) this.onProbe(r.packet, m.from);
    else this.onAck(r.packet, m.from);
  };

  private onProbe(p: PunchPacket, from: Endpoint): void {
    this.stats.probesReceived++;
    if (this.take() || this.state !== 'probing') {
      this.stats.acksSent++;
      void this.pipe.send(encodePunch(this.key, { type: PUNCH_ACK, nominate: false, txid: p.txid, tiebreaker: this.tb, rttUs: 0 }), from).catch(() => undefined);
    } else this.stats.rateLimited++;
    if (this.state !== 'probing' && this.state !== 'waiting') return;
    const isNew = this.add(from, 'reflexive');
    if (isNew && this.state === 'probing' && !this.nominee) this.sendProbe(isNew, false);
    if (p.nominate && Buffer.compare(p.tiebreaker, this.tb) > 0) {
      const rtt = this.rtts.get(key(from)) ?? p.rttUs / 1000;
      this.succeed(from, rtt, false);
    }
  }

  private onAck(p: PunchPacket, from: Endpoint): void {
    const txid = p.txid.toString('hex');
    const s = this.sent.get(txid);
    if (s === undefined) {
      this.stats.ignored++; // not ours, or too old
      return;
    }
    this.sent.delete(txid);
    this.stats.acksReceived++;
    if (this.state !== 'probing' && this.state !== 'waiting') return;
    if (!sameEndpoint(s.dest.ep, from)) {
      // An asymmetric answer: probe where it came from instead.
      const d = this.add(from, 'reflexive');
      if (d && !this.nominee) this.sendProbe(d, false);
      return;
    }
    const rtt = performance.now() - s.at;
    this.rtts.set(key(from), rtt);
    if (Buffer.compare(this.tb, p.tiebreaker) <= 0) return; // the peer controls: wait for its nomination
    if (s.nominate) {
      this.succeed(s.dest.ep, rtt, true);
      return;
    }
    if (!this.nominee) {
      this.nominee = { dest: s.dest, rtt };
      this.gap = FIRST_GAP;
      this.sendProbe(s.dest, true);
      this.arm(FIRST_GAP);
    }
  }

  private succeed(remote: Endpoint, rtt: number, controlling: boolean): void {
    const ok = this.ok;
    this.state = 'done';
    // The peer may open a reliable stream a round trip before we do: keep its SYN.
    ReliableMux.of(this.pipe).watch(this.linger);
    ok?.({ remote, rtt, controlling, elapsed: performance.now() - this.t0, stats: this.stats });
  }
}
