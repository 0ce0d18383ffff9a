/**
 * `TcpPipe`: one TCP connection (a client, or a connection accepted by a `TcpServer`).
 * @module
 */
import type { Socket } from 'node:net';
import { FrameError, InvalidArgumentError, PipeClosedError } from '../errors.js';
import { endpointFromNode, sameEndpoint, toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { checkAbortOptions, closeWithin, type AbortOptions } from '../util/abort.js';
import { clearCloseDeadline, closeDeadline } from './close-deadlines.js';
import { createDecoder, encodeFrame, type FrameDecoder } from './framing.js';
import { boundSend, handled, Pipe, type SendData } from './pipe.js';
import { streamError } from './socket-errors.js';
import type { TcpPipeInit } from './tcp-init.js';
import { CLOSE_FLUSH_TIMEOUT, CLOSE_TIMEOUT, MAX_INFLIGHT_CALLBACKS, type Framing, type Message } from './types.js';

export type { TcpPipeInit } from './tcp-init.js';

/** Converts send data to a Buffer without copying bytes. */
export function toBuffer(data: SendData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new InvalidArgumentError('data must be a string or a Uint8Array');
}

/** A batch this large is written without waiting for the end of the tick. */
const BATCH_BYTES = 64 * 1024;

/**
 * Longest time the tail of a burst is left to the kernel's Nagle algorithm (ms) before it is
 * pushed out; usually the peer's acknowledgement releases it within a round trip.
 */
export const BURST_TAIL_HOLD_MS = 1;

/** The sends of one tick. */
interface Batch {
  /** Payload bytes. */
  bytes: number;
  /** The latest frame, written last with the batch's callback. */
  last: Buffer | [Buffer, Buffer] | undefined;
  /** Whether the socket was corked for it (more than one frame). */
  corked: boolean;
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

function newBatch(): Batch {
  let resolve: () => void = () => undefined;
  let reject: (e: Error) => void = () => undefined;
  const promise = handled(
    new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
  );
  return { bytes: 0, last: undefined, corked: false, promise, resolve, reject };
}

/** A TCP connection as a Pipe. */
export class TcpPipe extends Pipe {
  readonly proto = 'tcp' as const;
  readonly isServer = false;
  readonly dropOldest = false;
  readonly framing: Framing;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /**
   * The underlying socket (for options such as keep-alive). With `noDelay` (the default)
   * TCP_NODELAY is set at the pipe's first send: call {@link ensureNoDelay} before writing to
   * the socket directly.
   */
  readonly socket: Socket;
  private readonly decoder: FrameDecoder | undefined;
  private readonly maxMessageSize: number;
  private readonly parent: TcpPipeInit['parent'];
  private readonly flushTimeout: number;
  private pauses = 0;
  private inflight = 0;
  private inflightPaused = false;
  private lastError: Error | undefined;
  private closing: Promise<void> | undefined;
  private readonly emitFrame = (frame: Buffer): void => this.deliver(frame);

  constructor(socket: Socket, init: TcpPipeInit) {
    super(init);
    this.socket = socket;
    this.framing = init.framing;
    this.maxMessageSize = init.maxMessageSize;
    this.decoder = createDecoder(init.framing, init.maxMessageSize);
    this.parent = init.parent;
    this.flushTimeout = init.flushTimeout ?? CLOSE_FLUSH_TIMEOUT;
    this.holdTails = init.holdBurstTails === true;
    this.noDelayDeferred = init.deferNoDelay === true;
    // Each address read is a system call plus an object (≈ 3 µs, a tenth of a connect + close).
    this.local = init.knownLocal ?? endpointFromNode(socket.localAddress ?? '', socket.localPort ?? 0);
    this.remote = init.knownRemote ?? endpointFromNode(socket.remoteAddress ?? '', socket.remotePort ?? 0);
    if (init.onMessage) this.onMessage(init.onMessage);
    else if (init.defaultSub) this.subscribeDefault();
    socket.on('data', this.onData);
    socket.on('error', (e) => {
      this.lastError ??= streamError(e);
    });
    socket.on('end', () => {
      // The peer finished in the middle of a message: report the truncation instead of a clean close.
      const pending = this.decoder?.pending ?? 0;
      if (pending > 0) this.lastError ??= new FrameError(`connection closed by the peer in the middle of a message (${pending} bytes of it received)`);
    });
    socket.on('close', () => this.onSocketClose());
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.decoder === undefined) {
      this.deliver(chunk);
      return;
    }
    try {
      this.decoder.push(chunk, this.emitFrame);
    } catch (e) {
      this.lastError = e as Error;
      this.socket.destroy();
    }
  };

  private deliver(data: Buffer): void {
    const st = this.stats;
    st.messagesIn++;
    st.bytesIn += data.length;
    const m: Message = { data, from: this.remote, pipe: this };
    const a = this.dispatch(m);
    const b = this.parent !== undefined && this.parent.deliverShared(m);
    if (!a && !b) st.unmatched++;
  }

  /**
   * Sends one message on the connection (`dest`, if given, must be the remote end).
   * The first send of a tick is written at once; the tick's later sends are written together
   * (one write) when the tick ends, or as soon as they reach 64 KiB. The promise resolves once
   * the message's bytes were handed to the kernel; sends are written in call order.
   */
  send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void> {
    try {
      if (dest !== undefined && dest !== this.remote && !sameEndpoint(toEndpoint(dest), this.remote)) {
        throw new InvalidArgumentError('a TCP pipe sends only to its remote end; omit dest or pass msg.from');
      }
      if (this.closed || this.socket.destroyed || !this.socket.writable) throw this.closedErr();
      if (opts !== undefined) checkAbortOptions(opts); // a bad timeout or signal: nothing is sent
      const buf = toBuffer(data);
      const frame = encodeFrame(this.framing, buf, this.maxMessageSize);
      this.stats.messagesOut++;
      this.stats.bytesOut += buf.length;
      // The first send of a tick leaves at once. The tick's later sends are coalesced: they leave
      // together when the tick ends (one write for a burst) and share one promise. Writing the
      // head of a burst at once lets the peer start on it while the rest is produced, so a
      // request/response exchange pipelines instead of going lock-step burst by burst.
      if (!this.tickOpen) {
        this.tickOpen = true;
        process.nextTick(this.flush);
        if (this.noDelayDeferred) this.ensureNoDelay();
        else if (this.tailHeld) this.pushTail();
        return boundSend(this.writeNow(frame), opts);
      }
      let b = this.batch;
      if (b === undefined) {
        if (buf.length >= BATCH_BYTES) return boundSend(this.writeNow(frame), opts);
        b = this.batch = newBatch();
      } else {
        if (!b.corked) {
          this.socket.cork();
          b.corked = true;
        }
        this.writeFrame(b.last as Buffer | [Buffer, Buffer], undefined);
      }
      b.last = frame;
      b.bytes += buf.length;
      const p = b.promise;
      if (b.bytes >= BATCH_BYTES) this.flush();
      return boundSend(p, opts);
    } catch (e) {
      return handled(Promise.reject(e));
    }
  }

  /**
   * Sets TCP_NODELAY now if the pipe deferred it to its first send (pipes opened with
   * `noDelay: true`, the default, do). Call it before writing to {@link socket} directly.
   */
  ensureNoDelay(): void {
    if (!this.noDelayDeferred) return;
    this.noDelayDeferred = false;
    this.socket.setNoDelay(true);
  }

  /** TCP_NODELAY wanted and not set yet (see {@link TcpPipeInit.deferNoDelay}). */
  private noDelayDeferred: boolean;

  /** The tick's later sends, written when it ends. */
  private batch: Batch | undefined;
  /** Whether this tick has sent already (its end is scheduled to run `flush`). */
  private tickOpen = false;

  /** See {@link TcpPipeInit.holdBurstTails}. */
  private readonly holdTails: boolean;
  /** Whether Nagle is on for a burst's tail (TCP_NODELAY off until {@link pushTail}). */
  private tailHeld = false;
  private tailTimer: NodeJS.Timeout | undefined;

  /** TCP_NODELAY back on: the kernel sends a held tail at once. */
  private readonly pushTail = (): void => {
    if (!this.tailHeld) return;
    this.tailHeld = false;
    this.socket.setNoDelay(true);
  };

  /**
   * Ends the tick: writes its batch, if any; its last frame carries the callback. The head of
   * the burst left at once; with {@link TcpPipeInit.holdBurstTails} the batch goes out with
   * Nagle on, so the kernel holds it until the peer acknowledges the head (as node:net's
   * default does for every write) and the peer's work on the head overlaps ours on the tail.
   * The next tick's first send, or {@link BURST_TAIL_HOLD_MS}, turns TCP_NODELAY back on.
   */
  private readonly flush = (): void => {
    this.tickOpen = false;
    const b = this.batch;
    if (b === undefined) return;
    this.batch = undefined;
    if (this.holdTails && !this.closed && b.bytes < BATCH_BYTES) {
      if (!this.tailHeld) {
        this.tailHeld = true;
        this.socket.setNoDelay(false);
      }
      if (this.tailTimer === undefined) {
        this.tailTimer = setTimeout(this.pushTail, BURST_TAIL_HOLD_MS);
        this.tailTimer.unref();
      } else this.tailTimer.refresh();
    }
    this.writeFrame(b.last as Buffer | [Buffer, Buffer], (err?: Error | null) => (err ? b.reject(streamError(err)) : b.resolve()));
    if (b.corked) this.socket.uncork();
  };

  private writeFrame(frame: Buffer | [Buffer, Buffer], cb: ((err?: Error | null) => void) | undefined): void {
    const s = this.socket;
    if (Buffer.isBuffer(frame)) s.write(frame, cb);
    else {
      s.cork();
      s.write(frame[0]);
      s.write(frame[1], cb);
      s.uncork();
    }
  }

  /** A send outside any batch (the first of a tick, or a large one): written at once, with its own promise. */
  private writeNow(frame: Buffer | [Buffer, Buffer]): Promise<void> {
    return handled(new Promise<void>((resolve, reject) => this.writeFrame(frame, (err?: Error | null) => (err ? reject(streamError(err)) : resolve()))));
  }

  private closedErr(): Error {
    return new PipeClosedError(this.closeError ? `pipe is closed: ${this.closeError.message}` : 'pipe is closed', this.closeError ? { cause: this.closeError } : undefined);
  }

  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.closeGracefully(), opts, () => this.reset(), 'TCP pipe close');
  }

  private closeGracefully(): Promise<void> {
    if (this.closing) return this.closing;
    this.flush(); // the tick's pending sends go out before the FIN
    this.pushTail();
    this.closed = true;
    this.closing = new Promise<void>((resolve) => {
      if (this.socket.destroyed) {
        queueMicrotask(() => {
          this.onSocketClose();
          resolve();
        });
        return;
      }
      // Our queued data is flushed first (bounded by flushTimeout); then the peer has
      // CLOSE_TIMEOUT to finish its side before the connection is reset.
      // Deadlines go to one shared coarse timer: a timer per close costs more than the close.
      closeDeadline(this.socket, this.flushTimeout);
      this.socket.once('finish', () => closeDeadline(this.socket, CLOSE_TIMEOUT));
      this.socket.once('close', () => {
        clearCloseDeadline(this.socket);
        resolve();
      });
      this.socket.end();
    });
    return this.closing;
  }

  /** Closes at once with a reset (RST) instead of a graceful FIN. */
  reset(): void {
    this.closed = true;
    const b = this.batch;
    this.batch = undefined;
    b?.reject(this.closedErr()); // its bytes are discarded with the socket
    if (this.socket.destroyed) return;
    // After a graceful end() has begun, Node 20's reset path never emits 'close': destroy instead.
    if (this.socket.writableEnded) this.socket.destroy();
    else this.socket.resetAndDestroy();
  }

  private onSocketClose(): void {
    if (this.tailTimer !== undefined) clearTimeout(this.tailTimer);
    if (this.closeCbsDone) return;
    this.closeCbsDone = true;
    this.finish(this.lastError);
    this.parent?.pipeClosed(this);
  }
  private closeCbsDone = false;

  /** @internal Pause reading (queue full); counted so several reasons can overlap. */
  pauseReading(): void {
    if (this.pauses++ === 0) this.socket.pause();
  }

  /** @internal */
  resumeReading(): void {
    if (this.pauses > 0 && --this.pauses === 0 && !this.socket.destroyed) this.socket.resume();
  }

  override queueFull(): void {
    this.pauseReading();
  }

  override queueDrained(): void {
    this.resumeReading();
  }

  protected override trackAsync(p: Promise<void>, reporter: { reportError(e: unknown): void } = this): void {
    if (++this.inflight >= MAX_INFLIGHT_CALLBACKS && !this.inflightPaused) {
      this.inflightPaused = true;
      this.pauseReading();
    }
    p.then(
      () => this.settled(),
      (e: unknown) => {
        this.settled();
        reporter.reportError(e);
      },
    );
  }

  /** @internal A server callback's promise for one of this pipe's messages: counts against this pipe's in-flight limit; errors go to `reporter`. */
  trackShared(p: Promise<void>, reporter: { reportError(e: unknown): void }): void {
    this.trackAsync(p, reporter);
  }

  private settled(): void {
    this.inflight--;
    if (this.inflightPaused && this.inflight <= MAX_INFLIGHT_CALLBACKS >> 1) {
      this.inflightPaused = false;
      this.resumeReading();
    }
  }
}
