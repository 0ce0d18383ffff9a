/**
 * Demultiplexing of reliable-stream packets on one datagram pipe: one message callback per
 * pipe routes packets by (peer endpoint, conversation id) to their stream, hands new SYNs to
 * waiting responders, answers stray packets of finished conversations, and counts malformed
 * packets. Other traffic on the pipe (STUN, TURN, punch probes, application datagrams) is
 * left alone. The callback is registered while at least one stream or responder exists.
 * @module
 */
import type { Endpoint } from '../../interfaces/endpoint.js';
import { unmapHost } from '../../interfaces/endpoint.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { Message } from '../../pipes/types.js';
import { nowUs } from './reliable-types.js';
import { decodeReliable, encodeReliable, FLAG_ACK, FLAG_FIN, FLAG_PING, FLAG_RST, FLAG_SYN, RELIABLE_MAGIC, type ReliablePacket } from './reliable-wire.js';

/** What the mux delivers packets to. */
export interface MuxTarget {
  /** A packet of this conversation from the target's peer. */
  onPacket(p: ReliablePacket): void;
  /** The datagram pipe closed. */
  onPipeClosed(err: Error | undefined): void;
}

/** A responder waiting for a SYN. */
export interface MuxAcceptor {
  /** The peer it accepts from. */
  readonly remote: Endpoint;
  /** Required conversation id, or any unclaimed one. */
  readonly conv: number | undefined;
  /** Takes the SYN (and registers itself); false to decline. */
  acceptSyn(p: ReliablePacket): boolean;
  /** The datagram pipe closed. */
  onPipeClosed(err: Error | undefined): void;
}

/** Counters of one pipe's demultiplexer. */
export interface ReliableMuxStats {
  /** Packets with the reliable-stream magic byte that failed strict decoding. */
  malformed: number;
  /** Valid packets for no known conversation. */
  unknown: number;
  /** Resets sent in answer to packets of unknown conversations. */
  resetsSent: number;
}

const muxes = new WeakMap<Pipe, ReliableMux>();
const RST_PER_SECOND = 10;
/** SYNs nobody listened for yet are kept this long (ms) for a responder about to listen. */
const EARLY_SYN_MS = 2_000;
/** At most this many such SYNs are kept. */
const MAX_EARLY_SYNS = 16;

/** The key of a peer endpoint (IPv4-mapped IPv6 folded to IPv4). */
export function peerKey(e: Endpoint): string {
  return `${unmapHost(e.host)}%${e.scopeId ?? ''}|${e.port}`;
}

/** The demultiplexer of one datagram pipe. */
export class ReliableMux {
  readonly stats: ReliableMuxStats = { malformed: 0, unknown: 0, resetsSent: 0 };
  private readonly streams = new Map<string, MuxTarget>();
  private acceptors: MuxAcceptor[] = [];
  private readonly linger = new Map<string, { timer: NodeJS.Timeout; answer: (p: ReliablePacket) => void }>();
  private off: (() => void) | undefined;
  private offClose: (() => void) | undefined;
  private earlySyns: { key: string; at: number; p: ReliablePacket }[] = [];
  private watchTimer: NodeJS.Timeout | undefined;
  private rstTokens = RST_PER_SECOND;
  private rstAt = performance.now();

  private constructor(readonly pipe: Pipe) {}

  /** The demultiplexer of `pipe` (created on first use). */
  static of(pipe: Pipe): ReliableMux {
    let m = muxes.get(pipe);
    if (!m) {
      m = new ReliableMux(pipe);
      muxes.set(pipe, m);
    }
    return m;
  }

  /** The demultiplexer of `pipe` if it has one (diagnostics). */
  static peek(pipe: Pipe): ReliableMux | undefined {
    return muxes.get(pipe);
  }

  /** Conversations registered (streams). */
  get size(): number {
    return this.streams.size;
  }

  /** Whether a live or lingering conversation `conv` with `remote` exists. */
  has(remote: Endpoint, conv: number): boolean {
    const k = `${peerKey(remote)}#${conv}`;
    return this.streams.has(k) || this.linger.has(k);
  }

  /**
   * Listens for `ms` ms even with no stream or responder, so that a SYN arriving before the
   * responder calls `openReliable` is kept for it (used right after a hole punch, when the
   * initiator may be a round trip ahead).
   */
  watch(ms: number): void {
    if (this.pipe.closed || ms <= 0) return;
    if (this.watchTimer) clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => {
      this.watchTimer = undefined;
      this.earlySyns = [];
      this.detachIfIdle();
    }, ms);
    this.watchTimer.unref?.();
    this.attach();
  }

  /** Registers a conversation. */
  register(remote: Endpoint, conv: number, t: MuxTarget): void {
    const k = `${peerKey(remote)}#${conv}`;
    this.dropLinger(k);
    this.streams.set(k, t);
    this.attach();
  }

  /**
   * Removes a conversation. With `linger`, its stray segments, FINs and PINGs are still
   * answered with a final ACK (`seq`, `ack`) for `linger.ms` ms.
   */
  unregister(remote: Endpoint, conv: number, t: MuxTarget, linger?: { ms: number; seq: number; ack: number }): void {
    const k = `${peerKey(remote)}#${conv}`;
    if (this.streams.get(k) !== t) return;
    this.streams.delete(k);
    if (linger && linger.ms > 0 && !this.pipe.closed) {
      const answer = (p: ReliablePacket): void => {
        if (p.payload.length === 0 && (p.flags & (FLAG_FIN | FLAG_PING)) === 0) return;
        this.send({ flags: FLAG_ACK, conv, seq: linger.seq, ack: linger.ack, wnd: 0, ts: nowUs() || 1, tsEcho: p.ts, sacks: [], payload: Buffer.alloc(0) }, remote);
      };
      const timer = setTimeout(() => {
        this.linger.delete(k);
        this.detachIfIdle();
      }, linger.ms);
      timer.unref?.();
      this.linger.set(k, { timer, answer });
    }
    this.detachIfIdle();
  }

  /**
   * Adds a responder waiting for a SYN. A SYN from its peer that arrived in the last
   * {@link EARLY_SYN_MS} ms (the initiator was a little faster) is handed over at once.
   */
  addAcceptor(a: MuxAcceptor): void {
    const now = performance.now();
    this.earlySyns = this.earlySyns.filter((e) => now - e.at < EARLY_SYN_MS);
    const k = peerKey(a.remote);
    for (const e of this.earlySyns) {
      if (e.key === k && (a.conv === undefined || a.conv === e.p.conv) && a.acceptSyn(e.p)) {
        this.earlySyns = this.earlySyns.filter((x) => x !== e);
        return;
      }
    }
    this.acceptors = [...this.acceptors, a];
    this.attach();
  }

  /** Removes a responder. */
  removeAcceptor(a: MuxAcceptor): void {
    this.acceptors = this.acceptors.filter((x) => x !== a);
    this.detachIfIdle();
  }

  /** Sends a packet to `to` (errors surface as loss). */
  send(p: ReliablePacket, to: Endpoint): void {
    void this.pipe.send(encodeReliable(p), to).catch(() => undefined);
  }

  private dropLinger(k: string): void {
    const l = this.linger.get(k);
    if (l) {
      clearTimeout(l.timer);
      this.linger.delete(k);
    }
  }

  private attach(): void {
    if (this.off) return;
    this.off = this.pipe.onMessage(this.onMessage);
    this.offClose = this.pipe.onClose(this.onClose);
  }

  private detachIfIdle(): void {
    if (this.streams.size > 0 || this.acceptors.length > 0 || this.linger.size > 0 || this.watchTimer || !this.off) return;
    this.off();
    this.offClose?.();
    this.off = this.offClose = undefined;
  }

  private readonly onClose = (err?: Error): void => {
    const targets = [...this.streams.values(), ...this.acceptors];
    this.streams.clear();
    this.acceptors = [];
    this.earlySyns = [];
    if (this.watchTimer) clearTimeout(this.watchTimer);
    this.watchTimer = undefined;
    for (const l of this.linger.values()) clearTimeout(l.timer);
    this.linger.clear();
    this.detachIfIdle();
    for (const t of targets) t.onPipeClosed(err);
  };

  private readonly onMessage = (m: Message): void => {
    const d = m.data;
    if (d.length === 0 || d[0] !== RELIABLE_MAGIC) return;
    let p: ReliablePacket;
    try {
      p = decodeReliable(d);
    } catch {
      this.stats.malformed++;
      return;
    }
    const k = `${peerKey(m.from)}#${p.conv}`;
    const s = this.streams.get(k);
    if (s !== undefined) {
      s.onPacket(p);
      return;
    }
    if ((p.flags & (FLAG_SYN | FLAG_ACK)) === FLAG_SYN) {
      const fk = peerKey(m.from);
      for (const a of this.acceptors) {
        if (peerKey(a.remote) === fk && (a.conv === undefined || a.conv === p.conv) && a.acceptSyn(p)) return;
      }
      // Nobody listens (yet): stay silent, keep it briefly for a responder about to listen.
      this.stats.unknown++;
      const now = performance.now();
      this.earlySyns = this.earlySyns.filter((e) => now - e.at < EARLY_SYN_MS && !(e.key === fk && e.p.conv === p.conv));
      if (this.earlySyns.length >= MAX_EARLY_SYNS) this.earlySyns.shift();
      this.earlySyns.push({ key: fk, at: now, p });
      return;
    }
    const l = this.linger.get(k);
    if (l !== undefined) {
      l.answer(p);
      return;
    }
    this.stats.unknown++;
    if ((p.flags & (FLAG_RST | FLAG_SYN)) === 0) this.reset(p, m.from);
  };

  /** Answers a packet of an unknown conversation with a rate-limited RST. */
  private reset(p: ReliablePacket, to: Endpoint): void {
    const now = performance.now();
    this.rstTokens = Math.min(RST_PER_SECOND, this.rstTokens + ((now - this.rstAt) * RST_PER_SECOND) / 1000);
    this.rstAt = now;
    if (this.rstTokens < 1) return;
    this.rstTokens--;
    this.stats.resetsSent++;
    this.send({ flags: FLAG_RST, conv: p.conv, seq: p.ack, ack: 0, wnd: 0, ts: 0, tsEcho: 0, sacks: [], payload: Buffer.alloc(0) }, to);
  }
}
