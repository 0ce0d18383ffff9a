/**
 * The protocol engine of one reliable stream: handshake, packet processing, acknowledgement
 * policy, transmission, timers. It knows nothing of Node streams: `ReliableSocket`
 * (reliable-stream.ts) drives it and receives its events through {@link ConnectionHooks}.
 *
 * State machine: the initiator sends SYN (random conversation id and initial sequence
 * number, its MSS), the responder answers SYN|ACK, the initiator ACKs; then data segments
 * flow both ways with cumulative + selective acks (`reliable-send.ts`, `reliable-recv.ts`),
 * acknowledged at least every second segment and at once when out of order. A FIN follows
 * the data; both FINs acknowledged = a clean close, which lingers to answer a retransmitted
 * FIN. A reset or failure sends RST. One unref'd timer per stream (`reliable-timer.ts`): 10 ms
 * ticks while data is in flight (RTO, RACK, tail loss probe, zero-window probe), else the
 * keep-alive PING after `keepAlive` ms without sending and the idle timeout.
 * @module
 */
import { randomInt } from 'node:crypto';
import { ConnectionRefusedError, ConnectionResetError, PipeClosedError } from '../../errors.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import { Receiver } from './reliable-recv.js';
import { ReliableMux, type MuxAcceptor, type MuxTarget } from './reliable-mux.js';
import { RttEstimator, Sender } from './reliable-send.js';
import { newStreamClock, nextTickIn, onEstablishedTick, StreamTimer, type TickOutput } from './reliable-timer.js';
import { ACK_EVERY, INITIAL_CWND, INITIAL_RTO, MIN_CWND, nowUs, TICK_MS, type ReliableSocketOptions, type ReliableStats } from './reliable-types.js';
import { FLAG_ACK, FLAG_FIN, FLAG_PING, FLAG_RST, FLAG_SYN, seqAdd, seqDiff, type ReliablePacket } from './reliable-wire.js';

const EMPTY = Buffer.alloc(0);

/** Events of a {@link ReliableConnection}. */
export interface ConnectionHooks {
  /** The handshake completed. */
  open(): void;
  /** Payload delivered in order. */
  data(d: Buffer): void;
  /** The peer's FIN was reached: no more data. */
  end(): void;
  /** Segments delivered but not consumed yet by the application (they shrink the window). */
  queued(): number;
  /** The send buffer has room again after {@link ReliableConnection.write} returned false. */
  writable(): void;
  /** Our FIN was acknowledged. */
  finished(): void;
  /** A fatal error (reset, timeout, the pipe closed); call {@link ReliableConnection.close} next. */
  fail(err: Error): void;
}

type State = 'new' | 'listen' | 'syn-sent' | 'syn-rcvd' | 'established' | 'closed';

/** One conversation's protocol state. */
export class ReliableConnection implements MuxTarget {
  /** Conversation id (0 while a responder waits for the SYN). */
  conversationId = 0;
  private state: State = 'new';
  private readonly mux: ReliableMux;
  private readonly rtt: RttEstimator;
  private readonly remote: Endpoint;
  private snd: Sender | undefined;
  private rcv: Receiver | undefined;
  private isn = 0;
  private peerIsn = 0;
  private segSize: number;
  private edge = 0;
  private tsEcho = 0;
  private lastWnd = 0;
  private ackPending = false;
  private unacked = 0;
  private kicked = false;
  private readonly timer = new StreamTimer(() => this.tick(), () => this.state !== 'closed');
  private readonly clock = newStreamClock();
  private readonly out: TickOutput = { segment: (s) => this.send(FLAG_ACK | (s.fin ? FLAG_FIN : 0), s.seq, s.data), ping: () => this.sendAck(FLAG_PING) };
  private hsAt = 0;
  private hsRto = 0;
  private blocked = false;
  private peerReset = false;
  private endSignalled = false;
  private finishSignalled = false;
  private acceptor: MuxAcceptor | undefined;
  private readonly st = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0, duplicates: 0, outOfWindow: 0, invalid: 0, acksSent: 0, pingsSent: 0 };

  constructor(private readonly o: ReliableSocketOptions, private readonly hooks: ConnectionHooks) {
    this.mux = ReliableMux.of(o.pipe);
    this.remote = o.remote;
    this.segSize = o.mtu;
    this.rtt = new RttEstimator(INITIAL_RTO, o.minRto, o.maxRto);
    if (o.initialRtt !== undefined) this.rtt.sample(o.initialRtt);
  }

  /** Whether the handshake completed and the connection is not closed. */
  get established(): boolean {
    return this.state === 'established';
  }

  /** A snapshot of the counters. */
  get stats(): ReliableStats {
    const c = this.snd?.counters;
    return {
      ...this.st,
      segmentsSent: c?.segmentsSent ?? 0,
      retransmits: c?.retransmits ?? 0,
      probes: c?.probes ?? 0,
      lossEpisodes: c?.lossEpisodes ?? 0,
      timeouts: c?.timeouts ?? 0,
      srtt: this.rtt.srtt,
      rto: this.rtt.rto,
      cwnd: this.snd?.cwnd ?? INITIAL_CWND,
      inflight: this.snd?.inflight ?? 0,
    };
  }

  // ----------------------------------------------------------------- handshake --
  /** Sends the SYN (initiator) or waits for one (responder). */
  start(): void {
    if (this.o.initiator) {
      let conv = this.o.conv;
      while (conv === undefined || this.mux.has(this.remote, conv)) {
        if (this.o.conv !== undefined) return this.hooks.fail(new PipeClosedError(`conversation ${conv} with this peer is in use`));
        conv = randomInt(1, 0xffffffff);
      }
      this.conversationId = conv;
      this.mux.register(this.remote, conv, this);
      this.isn = randomInt(0, 0xffffffff);
      this.state = 'syn-sent';
      this.sendSyn();
      return;
    }
    this.state = 'listen';
    this.acceptor = { remote: this.remote, conv: this.o.conv, acceptSyn: (p) => this.acceptSyn(p), onPipeClosed: (err) => this.onPipeClosed(err) };
    this.mux.addAcceptor(this.acceptor);
  }

  private acceptSyn(p: ReliablePacket): boolean {
    if (this.state !== 'listen' || this.mux.has(this.remote, p.conv)) return false;
    this.mux.removeAcceptor(this.acceptor as MuxAcceptor);
    this.acceptor = undefined;
    this.conversationId = p.conv;
    this.mux.register(this.remote, p.conv, this);
    this.peerIsn = p.seq;
    this.segSize = Math.min(this.o.mtu, p.payload.readUInt16BE(0));
    this.rcv = new Receiver(seqAdd(p.seq, 1), this.o.receiveBuffer);
    this.isn = randomInt(0, 0xffffffff);
    this.state = 'syn-rcvd';
    this.tsEcho = p.ts;
    this.clock.lastRecvAt = performance.now();
    this.sendSyn();
    return true;
  }

  private sendSyn(): void {
    const mss = Buffer.allocUnsafe(2);
    mss.writeUInt16BE(Math.min(this.o.mtu, 0xffff), 0);
    this.hsAt = performance.now();
    if (this.hsRto === 0) this.hsRto = this.rtt.rto;
    this.send(this.state === 'syn-rcvd' ? FLAG_SYN | FLAG_ACK : FLAG_SYN, this.isn, mss);
    this.timer.arm(this.hsRto);
  }

  private establish(p: ReliablePacket): void {
    this.state = 'established';
    this.snd = new Sender({ isn: seqAdd(this.isn, 1), minCwnd: MIN_CWND, initialCwnd: INITIAL_CWND, maxCwnd: Math.max(MIN_CWND, this.o.sendBuffer) });
    this.edge = seqAdd(p.ack, p.wnd);
    this.sampleRtt(p);
    this.rtt.backoff = 0;
    this.timer.arm(TICK_MS);
    this.hooks.open();
  }

  // ------------------------------------------------------------------- inbound --
  /** @internal A packet of this conversation (from the mux). */
  onPacket(p: ReliablePacket): void {
    if (this.state === 'closed') return;
    const now = performance.now();
    this.st.packetsIn++;
    this.clock.lastRecvAt = now;
    if (p.flags & FLAG_RST) return this.onReset(p);
    if (this.state === 'syn-sent') {
      if ((p.flags & (FLAG_SYN | FLAG_ACK)) !== (FLAG_SYN | FLAG_ACK) || p.ack !== seqAdd(this.isn, 1)) return void this.st.invalid++;
      this.peerIsn = p.seq;
      this.segSize = Math.min(this.o.mtu, p.payload.readUInt16BE(0));
      this.rcv = new Receiver(seqAdd(p.seq, 1), this.o.receiveBuffer);
      this.tsEcho = p.ts;
      this.sendAck();
      this.establish(p);
      return;
    }
    if (p.flags & FLAG_SYN) {
      if (this.state === 'syn-rcvd' && !(p.flags & FLAG_ACK) && p.seq === this.peerIsn) this.sendSyn(); // our SYN|ACK was lost
      else if (this.state === 'established' && this.o.initiator && p.seq === this.peerIsn) this.sendAck(); // our ACK was lost
      else this.st.invalid++;
      return;
    }
    if (this.state === 'syn-rcvd') {
      if (p.ack !== seqAdd(this.isn, 1)) return void this.st.invalid++;
      this.establish(p);
    }
    if (this.state !== 'established') return;
    const snd = this.snd as Sender;
    const rcv = this.rcv as Receiver;
    if (seqDiff(p.ack, snd.max) > 0) return void this.st.invalid++; // acknowledges what we never sent
    if (seqDiff(p.ack, snd.una) >= 0) {
      const delivered = snd.onAck(p.ack, p.sacks);
      this.edge = seqAdd(p.ack, p.wnd);
      if (delivered > 0) this.onDelivered(p, now);
    }
    const fin = (p.flags & FLAG_FIN) !== 0;
    if (p.payload.length > 0 || fin) {
      if (p.payload.length > this.o.mtu) return void this.st.invalid++;
      this.tsEcho = p.ts;
      const r = rcv.accept(p.seq, p.payload, fin, this.deliver, this.unread());
      if (r === 'duplicate') this.st.duplicates++;
      else if (r === 'outside') this.st.outOfWindow++;
      this.ackPending = true;
      // At least every second segment, and at once when something is out of order: one lost
      // coalesced ack must not stall a small window until the RTO.
      if (++this.unacked >= ACK_EVERY || r !== 'new' || rcv.held > 0 || rcv.finReceived) this.sendAck();
      if (rcv.finReceived && !this.endSignalled) {
        this.endSignalled = true;
        this.hooks.end();
      }
    }
    if (p.flags & FLAG_PING) {
      this.tsEcho = p.ts;
      this.ackPending = true;
    }
    this.kick();
  }

  private onDelivered(p: ReliablePacket, now: number): void {
    const snd = this.snd as Sender;
    this.clock.lastAckAt = now;
    this.clock.tlpDone = false;
    this.rtt.backoff = 0;
    this.sampleRtt(p);
    if (snd.inflight > 0) snd.detectLoss(now, this.rtt.srtt ?? this.rtt.rto);
    if (this.blocked && snd.buffered < this.o.sendBuffer) {
      this.blocked = false;
      this.hooks.writable();
    }
    if (snd.finAcked && !this.finishSignalled) {
      this.finishSignalled = true;
      this.hooks.finished();
    }
  }

  private readonly deliver = (data: Buffer): void => {
    this.st.bytesIn += data.length;
    this.hooks.data(data);
  };

  private sampleRtt(p: ReliablePacket): void {
    if (p.tsEcho === 0) return;
    const r = ((nowUs() - p.tsEcho) >>> 0) / 1000;
    if (r < 60_000) this.rtt.sample(r);
  }

  private onReset(p: ReliablePacket): void {
    if (this.state === 'syn-sent') {
      if (p.flags & FLAG_ACK && p.ack === seqAdd(this.isn, 1)) {
        this.peerReset = true;
        this.hooks.fail(new ConnectionRefusedError('the peer refused the reliable stream'));
      } else this.st.invalid++;
      return;
    }
    const off = this.rcv ? seqDiff(p.seq, this.rcv.rcvNxt) : -1;
    if (off < 0 || off >= this.o.receiveBuffer) return void this.st.invalid++;
    this.peerReset = true;
    this.hooks.fail(new ConnectionResetError('reliable stream reset by the peer'));
  }

  /** @internal The datagram pipe closed. */
  onPipeClosed(err: Error | undefined): void {
    this.hooks.fail(new PipeClosedError(`the datagram pipe under the reliable stream closed${err ? `: ${err.message}` : ''}`, err ? { cause: err } : undefined));
  }

  // ------------------------------------------------------------------ outbound --
  /** Queues data (once established); false when the send buffer is full (wait for `writable`). */
  write(chunks: readonly Buffer[]): boolean {
    const snd = this.snd as Sender;
    for (const c of chunks) {
      snd.enqueue(c, this.segSize);
      this.st.bytesOut += c.length;
    }
    this.kick();
    this.blocked = snd.buffered >= this.o.sendBuffer;
    return !this.blocked;
  }

  /** Queues the FIN after the data; `finished` follows its acknowledgement. */
  end(): void {
    (this.snd as Sender).enqueueFin();
    this.kick();
  }

  /** The application consumed data: advertise the reopened window if it had shrunk. */
  windowOpened(): void {
    if (this.state === 'established' && this.lastWnd < this.o.receiveBuffer / 2 && this.window() > this.lastWnd) {
      this.ackPending = true;
      this.kick();
    }
  }

  /** Segments' worth of data delivered but not consumed yet by the application. */
  private unread(): number {
    return this.hooks.queued();
  }

  private window(): number {
    const rcv = this.rcv;
    if (!rcv) return Math.min(0xffff, this.o.receiveBuffer);
    return Math.max(0, Math.min(0xffff, this.o.receiveBuffer - rcv.held - this.unread()));
  }

  private send(flags: number, seq: number, payload: Buffer): void {
    const ack = (flags & FLAG_ACK) !== 0;
    const wnd = this.window();
    if (ack) {
      this.ackPending = false;
      this.unacked = 0;
      this.lastWnd = wnd;
    }
    this.st.packetsOut++;
    this.clock.lastSendAt = performance.now();
    const rcv = ack ? this.rcv : undefined;
    this.mux.send({ flags, conv: this.conversationId, seq, ack: rcv ? rcv.rcvNxt : 0, wnd, ts: nowUs() || 1, tsEcho: this.tsEcho, sacks: rcv ? rcv.sacks() : [], payload }, this.remote);
  }

  private sendAck(flags = 0): void {
    if (flags & FLAG_PING) this.st.pingsSent++;
    else this.st.acksSent++;
    this.send(FLAG_ACK | flags, this.snd ? this.snd.max : seqAdd(this.isn, 1), EMPTY);
  }

  /** Flushes on the next turn of the event loop (coalesces writes and acks). */
  private kick(): void {
    if (this.kicked) return;
    this.kicked = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.kicked = false;
    if (this.state !== 'established') return;
    const snd = this.snd as Sender;
    const now = performance.now();
    const wasIdle = snd.inflight === 0;
    for (let s = snd.next(now, this.edge); s !== undefined; s = snd.next(now, this.edge)) this.send(FLAG_ACK | (s.fin ? FLAG_FIN : 0), s.seq, s.data);
    if (wasIdle && snd.inflight > 0) {
      this.clock.lastAckAt = now; // the probe timer counts from the first transmission after idle
      this.clock.tlpDone = false;
    }
    if (this.ackPending) this.sendAck();
    if (snd.busy) this.timer.arm(TICK_MS);
  };

  private tick(): void {
    const now = performance.now();
    if (this.state === 'syn-sent' || this.state === 'syn-rcvd') {
      if (now - this.hsAt >= this.hsRto - 1) {
        this.hsRto = Math.min(this.o.maxRto, this.hsRto * 2);
        this.sendSyn();
      } else this.timer.arm(this.hsRto - (now - this.hsAt));
      return;
    }
    if (this.state !== 'established') return;
    const snd = this.snd as Sender;
    const err = onEstablishedTick(now, this.clock, snd, this.rtt, this.o, this.out);
    if (err) return this.hooks.fail(err);
    this.flush();
    this.timer.arm(nextTickIn(now, this.clock, snd, this.o, this.ackPending));
  }

  // --------------------------------------------------------------------- close --
  /**
   * Ends the conversation: stops the timer, sends RST unless both FINs were acknowledged
   * (or the peer reset), and unregisters from the mux, lingering after a clean close.
   * Idempotent. Returns whether the close was clean.
   */
  close(): boolean {
    const was = this.state;
    if (was === 'closed') return false;
    this.state = 'closed';
    this.timer.stop();
    if (this.acceptor) this.mux.removeAcceptor(this.acceptor);
    const snd = this.snd;
    const rcv = this.rcv;
    const clean = snd !== undefined && snd.finAcked && rcv !== undefined && rcv.finReceived;
    if ((was === 'established' || was === 'syn-rcvd') && !clean && !this.peerReset && !this.o.pipe.closed) {
      this.send(FLAG_RST | FLAG_ACK, snd ? snd.max : seqAdd(this.isn, 1), EMPTY);
    }
    // A clean close lingers: the peer's retransmitted FIN still gets its ACK.
    if (this.conversationId !== 0) this.mux.unregister(this.remote, this.conversationId, this, clean ? { ms: this.o.linger, seq: snd ? snd.max : 0, ack: rcv ? rcv.rcvNxt : 0 } : undefined);
    return clean;
  }
}
