/**
 * The sending half of a reliable stream: segmentation, the send buffer, cumulative and
 * selective acknowledgements, loss detection (RACK-style: a segment is lost once a segment
 * sent after it was delivered and it is older than srtt + srtt/4; a tail loss probe after
 * two RTTs without acknowledgements; or on retransmission timeout), the retransmission timer (RFC 6298 estimator with exponential backoff) and the
 * congestion window (slow start, then AIMD: +1 segment per window, halved on a loss episode,
 * back to the floor on a timeout). Pure bookkeeping: no timers, no I/O.
 * @module
 */
import { seqAdd, seqDiff, type SackBlock } from './reliable-wire.js';

/** RFC 6298 RTT estimator with exponential backoff. All values in ms. */
export class RttEstimator {
  /** Smoothed RTT; `undefined` before the first sample. */
  srtt: number | undefined;
  /** RTT variation. */
  rttvar = 0;
  /** Consecutive timeouts (the RTO doubles with each). */
  backoff = 0;
  private base: number;

  constructor(initialRto: number, private readonly minRto: number, private readonly maxRto: number) {
    this.base = initialRto;
  }

  /** Feeds one RTT sample (ms). Resets the backoff. */
  sample(r: number): void {
    if (!(r >= 0) || !Number.isFinite(r)) return;
    if (this.srtt === undefined) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.base = this.srtt + Math.max(1, 4 * this.rttvar);
    this.backoff = 0;
  }

  /** The current retransmission timeout, backoff included, within [minRto, maxRto]. */
  get rto(): number {
    return Math.min(this.maxRto, Math.max(this.minRto, this.base) * 2 ** Math.min(this.backoff, 16));
  }
}

/** One segment of the send buffer. */
export interface TxSegment {
  seq: number;
  data: Buffer;
  fin: boolean;
  /** Time of the latest transmission (ms, `performance.now()`), 0 if never sent. */
  sentAt: number;
  /** Transmissions so far. */
  xmits: number;
  /** Selectively acknowledged. */
  sacked: boolean;
  /** Declared lost: waiting for retransmission. */
  lost: boolean;
}

/** Tunables of a {@link Sender}. */
export interface SenderOptions {
  /** First sequence number of data (the initial sequence number + 1). */
  isn: number;
  /** Congestion window floor (segments). */
  minCwnd: number;
  /** Initial congestion window (segments). */
  initialCwnd: number;
  /** Congestion window ceiling (segments). */
  maxCwnd: number;
}

/** Counters kept by the sender. */
export interface SenderCounters {
  segmentsSent: number;
  retransmits: number;
  /** Tail loss probes sent. */
  probes: number;
  lossEpisodes: number;
  timeouts: number;
}

/** Send buffer and congestion control of one stream. */
export class Sender {
  /** Oldest unacknowledged sequence number. */
  una: number;
  /** Sequence number of the next segment to be created. */
  nxt: number;
  /** One beyond the highest sequence number ever sent. */
  max: number;
  cwnd: number;
  ssthresh = Infinity;
  /** Segments in flight (sent, neither acked, sacked nor declared lost). */
  inflight = 0;
  readonly counters: SenderCounters = { segmentsSent: 0, retransmits: 0, probes: 0, lossEpisodes: 0, timeouts: 0 };
  /** Whether the FIN was acknowledged. */
  finAcked = false;
  private segs: TxSegment[] = [];
  private head = 0;
  private unsent = 0; // index (absolute in segs) of the first never-sent segment
  private lostCount = 0;
  private recoverUntil: number;
  private rackSentAt = 0;
  private finQueued = false;

  constructor(private readonly o: SenderOptions) {
    this.una = this.nxt = this.max = this.recoverUntil = o.isn >>> 0;
    this.cwnd = o.initialCwnd;
  }

  /** Segments in the buffer (unacknowledged + unsent). */
  get buffered(): number {
    return this.segs.length - this.head;
  }

  /** Whether segments wait for (re)transmission. */
  get hasPending(): boolean {
    return this.lostCount > 0 || this.unsent < this.segs.length;
  }

  /** Whether anything is unacknowledged or unsent. */
  get busy(): boolean {
    return this.segs.length > this.head;
  }

  /** Appends `data` split into segments of at most `mss` bytes. */
  enqueue(data: Buffer, mss: number): void {
    if (this.finQueued) return;
    for (let off = 0; off < data.length; off += mss) {
      this.push(data.subarray(off, Math.min(data.length, off + mss)), false);
    }
  }

  /** Appends the FIN (once). */
  enqueueFin(): void {
    if (this.finQueued) return;
    this.finQueued = true;
    this.push(Buffer.alloc(0), true);
  }

  private push(data: Buffer, fin: boolean): void {
    this.segs.push({ seq: this.nxt, data, fin, sentAt: 0, xmits: 0, sacked: false, lost: false });
    this.nxt = seqAdd(this.nxt, 1);
  }

  /**
   * Processes an acknowledgement: `ack` cumulative (already checked to be within
   * [una, max]) and SACK blocks. Returns the number of segments newly delivered.
   */
  onAck(ack: number, sacks: readonly SackBlock[]): number {
    let delivered = 0;
    const n = seqDiff(ack, this.una);
    for (let i = 0; i < n && this.head < this.segs.length; i++) {
      const s = this.segs[this.head] as TxSegment;
      if (!s.sacked) {
        delivered++;
        this.delivered(s);
      }
      if (s.fin) this.finAcked = true;
      this.segs[this.head++] = undefined as unknown as TxSegment;
    }
    if (n > 0) this.una = ack >>> 0;
    if (this.unsent < this.head) this.unsent = this.head;
    if (this.head > 256 && this.head * 2 > this.segs.length) {
      this.segs = this.segs.slice(this.head);
      this.unsent -= this.head;
      this.head = 0;
    }
    for (const b of sacks) {
      let from = seqDiff(b.start, this.una);
      let to = seqDiff(b.end, this.una);
      if (from < 0) from = 0;
      if (to > seqDiff(this.max, this.una)) to = seqDiff(this.max, this.una);
      for (let i = from; i < to; i++) {
        const s = this.segs[this.head + i];
        if (s === undefined || s.sacked || s.xmits === 0) continue;
        s.sacked = true;
        delivered++;
        this.delivered(s);
      }
    }
    if (delivered > 0) this.grow(delivered);
    return delivered;
  }

  private delivered(s: TxSegment): void {
    if (s.lost) {
      s.lost = false;
      this.lostCount--;
    } else if (s.xmits > 0) this.inflight--;
    if (s.sentAt > this.rackSentAt) this.rackSentAt = s.sentAt;
  }

  private grow(n: number): void {
    if (this.cwnd < this.ssthresh) this.cwnd = Math.min(this.o.maxCwnd, this.cwnd + n);
    else this.cwnd = Math.min(this.o.maxCwnd, this.cwnd + n / this.cwnd);
  }

  /** RACK loss detection; returns the number of segments newly declared lost. */
  detectLoss(now: number, srtt: number): number {
    const reo = Math.max(1, srtt / 4);
    let lost = 0;
    for (let i = this.head; i < this.unsent; i++) {
      const s = this.segs[i] as TxSegment;
      if (s.sacked || s.lost || s.xmits === 0) continue;
      if (s.sentAt < this.rackSentAt && now - s.sentAt > srtt + reo) {
        this.markLost(s);
        lost++;
      }
    }
    if (lost > 0) this.lossEpisode(false);
    return lost;
  }

  /**
   * Tail loss probe: retransmits the highest segment in flight (no cwnd change, nothing
   * declared lost) so that its acknowledgement reveals, through SACK, what the tail lost.
   */
  probe(now: number): TxSegment | undefined {
    for (let i = this.unsent - 1; i >= this.head; i--) {
      const s = this.segs[i] as TxSegment;
      if (!s.sacked && !s.lost && s.xmits > 0) {
        s.xmits++;
        s.sentAt = now;
        this.counters.segmentsSent++;
        this.counters.retransmits++;
        this.counters.probes++;
        return s;
      }
    }
    return undefined;
  }

  /** Oldest transmission time among segments in flight (0 if none). */
  oldestInflight(): number {
    if (this.inflight === 0) return 0;
    let t = Infinity;
    for (let i = this.head; i < this.unsent; i++) {
      const s = this.segs[i] as TxSegment;
      if (!s.sacked && !s.lost && s.xmits > 0 && s.sentAt < t) t = s.sentAt;
    }
    return t === Infinity ? 0 : t;
  }

  /** Retransmission timeout: every segment in flight is declared lost. */
  onTimeout(): void {
    for (let i = this.head; i < this.unsent; i++) {
      const s = this.segs[i] as TxSegment;
      if (!s.sacked && !s.lost && s.xmits > 0) this.markLost(s);
    }
    this.counters.timeouts++;
    this.lossEpisode(true);
  }

  private markLost(s: TxSegment): void {
    s.lost = true;
    this.lostCount++;
    this.inflight--;
  }

  private lossEpisode(timeout: boolean): void {
    if (timeout) {
      this.ssthresh = Math.max(this.o.minCwnd, Math.floor(this.cwnd / 2));
      this.cwnd = this.o.minCwnd;
      this.recoverUntil = this.max;
      return;
    }
    // One reduction per window of data (a burst of losses is one congestion signal).
    if (seqDiff(this.una, this.recoverUntil) < 0) return;
    this.counters.lossEpisodes++;
    this.ssthresh = Math.max(this.o.minCwnd, Math.floor(this.cwnd / 2));
    this.cwnd = this.ssthresh;
    this.recoverUntil = this.max;
  }

  /**
   * The next segment to transmit now, if the congestion window allows: a lost segment first,
   * else a new one below `edge` (the peer's window edge). Marks it sent at `now`.
   */
  next(now: number, edge: number): TxSegment | undefined {
    if (this.inflight >= Math.floor(this.cwnd)) return undefined;
    if (this.lostCount > 0) {
      for (let i = this.head; i < this.unsent; i++) {
        const s = this.segs[i] as TxSegment;
        if (s.lost) {
          s.lost = false;
          this.lostCount--;
          this.counters.retransmits++;
          return this.sent(s, now);
        }
      }
    }
    if (this.unsent >= this.segs.length) return undefined;
    const s = this.segs[this.unsent] as TxSegment;
    if (seqDiff(s.seq, edge) >= 0) return undefined;
    this.unsent++;
    if (seqDiff(seqAdd(s.seq, 1), this.max) > 0) this.max = seqAdd(s.seq, 1);
    return this.sent(s, now);
  }

  private sent(s: TxSegment, now: number): TxSegment {
    s.xmits++;
    s.sentAt = now;
    this.inflight++;
    this.counters.segmentsSent++;
    return s;
  }
}
