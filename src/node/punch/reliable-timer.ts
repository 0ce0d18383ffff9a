/**
 * The time-driven side of a reliable stream (see `reliable-conn.ts`): its one unref'd timer,
 * the timestamps the timer works from, and what an established stream does when the timer
 * fires — the idle timeout, the retransmission timeout and its retry limit, RACK loss
 * detection, the tail loss probe, and the PING that probes a zero window or keeps the path
 * alive — and when it fires next: every 10 ms tick while data is in flight, else at the next
 * keep-alive or idle deadline.
 * @module
 */
import { TimeoutError } from '../../errors.js';
import type { RttEstimator, Sender, TxSegment } from './reliable-send.js';
import { TICK_MS, type ReliableSocketOptions } from './reliable-types.js';

/**
 * One timer per stream, unref'd (it never keeps the process alive). Armed again before it
 * fires, it keeps the earlier deadline.
 */
export class StreamTimer {
  private timer: NodeJS.Timeout | undefined;
  private due = 0;

  /**
   * @param onFire called when the timer fires (the timer is disarmed by then).
   * @param live arming is ignored while this returns false (the stream is closed).
   */
  constructor(private readonly onFire: () => void, private readonly live: () => boolean) {}

  /** Fires in `ms` (at least 1 ms), unless already due to fire by then (1 ms tolerance). */
  arm(ms: number): void {
    if (!this.live()) return;
    const due = performance.now() + ms;
    if (this.timer !== undefined && this.due <= due + 1) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(this.fire, Math.max(1, ms));
    this.timer.unref?.();
  }

  /** Disarms the timer. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.onFire();
  };
}

/** The timestamps (`performance.now()`, ms) the timer-driven duties work from. */
export interface StreamClock {
  /** The last packet from the peer (the idle timeout counts from it). */
  lastRecvAt: number;
  /** The last packet we sent (the keep-alive counts from it). */
  lastSendAt: number;
  /** The last acknowledged delivery, or the first transmission after idle (the tail loss probe counts from it). */
  lastAckAt: number;
  /** The last zero-window probe. */
  lastProbeAt: number;
  /** The tail loss probe of the current silence was sent. */
  tlpDone: boolean;
}

/** A new stream's clock: it has just heard from the peer and just sent. */
export function newStreamClock(): StreamClock {
  return { lastRecvAt: performance.now(), lastSendAt: performance.now(), lastAckAt: 0, lastProbeAt: 0, tlpDone: false };
}

/** How {@link onEstablishedTick} transmits. */
export interface TickOutput {
  /** Sends a segment again (a tail loss probe). */
  segment(s: TxSegment): void;
  /** Sends a PING (zero-window probe or keep-alive). */
  ping(): void;
}

/**
 * What an established stream does when its timer fires at `now`: fails after `idleTimeout`
 * without hearing from the peer; on a retransmission timeout, backs off (failing after
 * `maxRetries` in a row) and has the sender retransmit; otherwise runs loss detection and,
 * after two RTTs without any delivery, one tail loss probe per silence. Then it sends a PING
 * to probe a zero window (once per RTO) or when `keepAlive` ms passed without sending.
 * @returns the error to fail the stream with, if any (then nothing was sent).
 */
export function onEstablishedTick(now: number, c: StreamClock, snd: Sender, rtt: RttEstimator, o: ReliableSocketOptions, out: TickOutput): Error | undefined {
  if (now - c.lastRecvAt >= o.idleTimeout) {
    return new TimeoutError(`reliable stream idle: nothing from the peer for ${Math.round(now - c.lastRecvAt)} ms`);
  }
  const oldest = snd.oldestInflight();
  if (oldest > 0 && now - oldest >= rtt.rto) {
    if (++rtt.backoff > o.maxRetries) {
      return new TimeoutError(`reliable stream: the peer stopped acknowledging (${o.maxRetries} retransmission timeouts)`);
    }
    snd.onTimeout();
  } else if (snd.inflight > 0) {
    const srtt = rtt.srtt ?? rtt.rto;
    snd.detectLoss(now, srtt);
    // Tail loss probe: two RTTs without any delivery, once per silence.
    if (!c.tlpDone && snd.inflight > 0 && now - c.lastAckAt >= Math.max(2 * srtt + 2, TICK_MS / 2)) {
      c.tlpDone = true;
      const s = snd.probe(now);
      if (s) out.segment(s);
    }
  }
  // Zero window: probe, so that a lost window update cannot stall us.
  if (snd.hasPending && snd.inflight === 0 && now - c.lastProbeAt >= rtt.rto) {
    c.lastProbeAt = now;
    out.ping();
  } else if (now - c.lastSendAt >= o.keepAlive) out.ping();
  return undefined;
}

/**
 * When the timer of an established stream fires next, after a tick at `now` and the flush
 * that follows it: at the next tick while segments are queued or an ack is pending, else at
 * the keep-alive or idle deadline, whichever comes first (never sooner than a tick).
 */
export function nextTickIn(now: number, c: StreamClock, snd: Sender, o: ReliableSocketOptions, ackPending: boolean): number {
  const idle = Math.min(o.keepAlive - (now - c.lastSendAt), o.idleTimeout - (now - c.lastRecvAt));
  return snd.busy || ackPending ? TICK_MS : Math.max(TICK_MS, idle);
}
