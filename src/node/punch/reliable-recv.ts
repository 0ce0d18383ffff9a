/**
 * The receiving half of a reliable stream: in-order delivery, a bounded out-of-order buffer,
 * duplicate detection and SACK block generation. Pure bookkeeping: no timers, no I/O.
 * @module
 */
import { MAX_SACK_BLOCKS, seqAdd, seqDiff, type SackBlock } from './reliable-wire.js';

/** What {@link Receiver.accept} did with a segment. */
export type AcceptResult = 'new' | 'duplicate' | 'outside';

interface Held {
  data: Buffer;
  fin: boolean;
}

/** Reassembly state of one direction. */
export class Receiver {
  /** Next sequence number expected. */
  rcvNxt: number;
  /** Whether the peer's FIN was delivered in order (nothing follows it). */
  finReceived = false;
  private readonly ooo = new Map<number, Held>();
  private oooBytes = 0;
  private latest: number | undefined;

  /**
   * @param rcvNxt - The first data sequence number (the peer's initial sequence number + 1).
   * @param capacity - Segments accepted beyond `rcvNxt` (the receive window).
   */
  constructor(rcvNxt: number, private readonly capacity: number) {
    this.rcvNxt = rcvNxt >>> 0;
  }

  /** Segments held out of order. */
  get held(): number {
    return this.ooo.size;
  }

  /** Bytes held out of order. */
  get heldBytes(): number {
    return this.oooBytes;
  }

  /**
   * Takes one segment; hands what became deliverable in order to `deliver` (data) and sets
   * {@link finReceived} when the FIN is reached. `unread`: segments delivered but not yet
   * consumed by the application; they shrink the window, so a peer that ignores the window
   * we advertise cannot make us buffer more than `capacity` segments.
   */
  accept(seq: number, data: Buffer, fin: boolean, deliver: (data: Buffer) => void, unread = 0): AcceptResult {
    if (this.finReceived) return 'duplicate';
    const off = seqDiff(seq, this.rcvNxt);
    if (off < 0) return 'duplicate';
    if (off >= this.capacity - unread) return 'outside';
    if (off > 0) {
      if (this.ooo.has(seq >>> 0)) return 'duplicate';
      this.ooo.set(seq >>> 0, { data, fin });
      this.oooBytes += data.length;
      this.latest = seq >>> 0;
      return 'new';
    }
    this.latest = seq >>> 0;
    let cur: Held | undefined = { data, fin };
    while (cur !== undefined) {
      this.rcvNxt = seqAdd(this.rcvNxt, 1);
      if (cur.data.length > 0) deliver(cur.data);
      if (cur.fin) {
        this.finReceived = true;
        this.ooo.clear();
        this.oooBytes = 0;
        break;
      }
      cur = this.ooo.get(this.rcvNxt);
      if (cur !== undefined) {
        this.ooo.delete(this.rcvNxt);
        this.oooBytes -= cur.data.length;
      }
    }
    return 'new';
  }

  /**
   * SACK blocks for the segments held: the block holding the most recently received segment
   * first (RFC 2018), then the others in order, at most {@link MAX_SACK_BLOCKS}.
   */
  sacks(): SackBlock[] {
    if (this.ooo.size === 0) return [];
    const offs: number[] = [];
    for (const s of this.ooo.keys()) offs.push(seqDiff(s, this.rcvNxt));
    offs.sort((a, b) => a - b);
    const blocks: SackBlock[] = [];
    let first = -1;
    let start = offs[0] as number;
    let prev = start;
    const latest = this.latest === undefined ? -1 : seqDiff(this.latest, this.rcvNxt);
    const close = (end: number): void => {
      if (latest >= start && latest < end) first = blocks.length;
      blocks.push({ start: seqAdd(this.rcvNxt, start), end: seqAdd(this.rcvNxt, end) });
    };
    for (let i = 1; i < offs.length; i++) {
      const o = offs[i] as number;
      if (o !== prev + 1) {
        close(prev + 1);
        start = o;
      }
      prev = o;
    }
    close(prev + 1);
    if (first > 0) blocks.unshift(...blocks.splice(first, 1));
    return blocks.slice(0, MAX_SACK_BLOCKS);
  }
}
