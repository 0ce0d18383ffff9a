/**
 * `ReliableSocket`: a reliable, ordered byte stream over a datagram pipe as a Node.js
 * `Duplex` shaped like a `net.Socket` (`localAddress`/`localPort`/`remoteAddress`/
 * `remotePort`, `resetAndDestroy()`, `end()` = FIN, `destroy()` = RST), so that a `TcpPipe`
 * can wrap it (see `reliable.ts`). The protocol runs in {@link ReliableConnection}.
 *
 * Writes complete once their data is in the send buffer (at most `sendBuffer` segments
 * unacknowledged or unsent); `_final` completes when our FIN is acknowledged. Reads: segments
 * are handed to the `Readable` only while it asks for more (its buffer holds about one
 * segment); the rest wait here, counted in segments, and shrink the receive window, so what
 * the application has not read is bounded in segments whatever their size. With
 * `allowHalfOpen: false` the peer's FIN ends our side too, and the stream closes once both
 * FINs are acknowledged.
 * @module
 */
import { Duplex } from 'node:stream';
import { PipeClosedError } from '../../errors.js';
import { nodeHost, type Endpoint } from '../../interfaces/endpoint.js';
import type { Pipe } from '../../pipes/pipe.js';
import { ReliableConnection } from './reliable-conn.js';
import type { ReliableSocketOptions, ReliableStats } from './reliable-types.js';

type Cb = (e?: Error | null) => void;

function noop(): void {}

/** A reliable byte stream over a datagram pipe. Open it with `openReliable`. */
export class ReliableSocket extends Duplex {
  /** The datagram pipe carrying the packets (not owned: closing the stream leaves it open). */
  readonly datagram: Pipe;
  /** The peer. */
  readonly remote: Endpoint;
  /** Whether this side sent the SYN. */
  readonly initiator: boolean;
  private readonly conn: ReliableConnection;
  private writeCb: Cb | undefined;
  private finalCb: Cb | undefined;
  private held: { chunks: Buffer[]; cb: Cb } | undefined;
  private ready: { ok: () => void; fail: (e: Error) => void } | undefined;
  /** Segments delivered in order that the `Readable` did not ask for yet (from `inboxHead` on). */
  private inbox: Buffer[] = [];
  private inboxHead = 0;
  /** The `Readable` asked for data (`_read`) and has not been refused since. */
  private wants = false;
  /** The peer's FIN was reached: `push(null)` once the inbox is empty. */
  private peerEnded = false;
  private readonly mtu: number;

  constructor(o: ReliableSocketOptions) {
    // A readable buffer of about one segment: the rest waits in the inbox, counted in segments.
    super({ allowHalfOpen: false, decodeStrings: true, emitClose: true, autoDestroy: true, readableHighWaterMark: 1 });
    this.mtu = o.mtu;
    this.datagram = o.pipe;
    this.remote = o.remote;
    this.initiator = o.initiator;
    this.conn = new ReliableConnection(o, {
      open: () => {
        const h = this.held;
        this.held = undefined;
        if (h) this.accept(h.chunks, h.cb);
        const r = this.ready;
        this.ready = undefined;
        r?.ok();
      },
      data: (d) => {
        if (this.destroyed) return;
        if (this.wants && this.unread === 0) this.wants = this.push(d);
        else this.inbox.push(d);
      },
      end: () => {
        this.peerEnded = true;
        if (!this.destroyed && this.unread === 0) this.push(null);
      },
      queued: () => this.unread + Math.ceil(this.readableLength / this.mtu),
      writable: () => this.release('writeCb'),
      finished: () => this.release('finalCb'),
      fail: (err) => {
        if (!this.destroyed) this.destroy(err);
      },
    });
    this.on('error', noop); // errors surface through the wrapping pipe's closeError
  }

  /** Conversation id shared by both ends (0 while a responder waits for the SYN). */
  get conversationId(): number {
    return this.conn.conversationId;
  }

  /** Whether the handshake completed and the stream is not closed. */
  get established(): boolean {
    return this.conn.established;
  }

  /** A snapshot of the ARQ counters. */
  get stats(): ReliableStats {
    return this.conn.stats;
  }

  // ----------------------------------------------------------- net.Socket shape --
  /** Local address (of the datagram pipe). */
  get localAddress(): string {
    return nodeHost(this.datagram.local);
  }
  /** Local port (of the datagram pipe). */
  get localPort(): number {
    return this.datagram.local.port;
  }
  /** The peer's address. */
  get remoteAddress(): string {
    return nodeHost(this.remote);
  }
  /** The peer's port. */
  get remotePort(): number {
    return this.remote.port;
  }
  /** Closes at once: sends RST, the peer's stream fails with `ConnectionResetError`. */
  resetAndDestroy(): this {
    return this.destroy();
  }

  /** Starts the handshake; `ok` runs once established, `fail` if the stream ends first. */
  start(ok: () => void, fail: (e: Error) => void): void {
    this.ready = { ok, fail };
    this.conn.start();
  }

  private release(which: 'writeCb' | 'finalCb'): void {
    const cb = this[which];
    this[which] = undefined;
    cb?.();
  }

  // ------------------------------------------------------------ Duplex hooks --
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: Cb): void {
    this.accept([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: Cb): void {
    this.accept(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  private accept(chunks: Buffer[], cb: Cb): void {
    if (!this.conn.established) {
      this.held = { chunks, cb };
      return;
    }
    if (this.conn.write(chunks)) cb();
    else this.writeCb = cb;
  }

  override _final(cb: Cb): void {
    if (!this.conn.established) return cb();
    this.finalCb = cb;
    this.conn.end();
  }

  /** Segments waiting in the inbox. */
  private get unread(): number {
    return this.inbox.length - this.inboxHead;
  }

  override _read(): void {
    this.wants = true;
    while (this.wants && this.unread > 0) this.wants = this.push(this.inbox[this.inboxHead++] as Buffer);
    if (this.unread === 0) {
      this.inbox = [];
      this.inboxHead = 0;
      if (this.peerEnded) this.push(null);
    } else if (this.inboxHead > 64 && this.inboxHead * 2 > this.inbox.length) {
      this.inbox = this.inbox.slice(this.inboxHead);
      this.inboxHead = 0;
    }
    this.conn.windowOpened();
  }

  override _destroy(err: Error | null, cb: Cb): void {
    this.conn.close();
    const e = err ?? new PipeClosedError('reliable stream closed');
    const r = this.ready;
    this.ready = undefined;
    r?.fail(e);
    for (const c of [this.writeCb, this.finalCb, this.held?.cb]) c?.(e);
    this.writeCb = this.finalCb = this.held = undefined;
    this.inbox = [];
    this.inboxHead = 0;
    cb(err);
  }
}
