/**
 * Message dispatch shared by pipes and servers: callbacks, subscriptions with bounded queues,
 * pull-mode `recv()`, async iteration, close and error callbacks, counters.
 * @module
 */
import { AbortError, InvalidArgumentError, PipeClosedError } from '../errors.js';
import { checkAbortOptions, type AbortOptions } from '../util/abort.js';
import { SubQueue, type QueueOwner } from './sub-queue.js';
import { SUB_ALL, type Message, type MessageCallback, type PipeStats, type QueueLimits, type RecvOptions, type Sub } from './types.js';

/** Callback run once when a pipe closes; `err` is set when it closed because of an error (e.g. RST). */
export type CloseCallback = (err?: Error) => void;
/** Callback receiving errors that have no other place to go (e.g. a throwing `onMessage` callback). */
export type ErrorCallback = (err: Error) => void;

/** Base of every pipe and server: owns callbacks and subscription queues. */
export abstract class MessageHub implements QueueOwner {
  /** Counters. */
  readonly stats: PipeStats = { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0, unmatched: 0, dropped: 0 };
  /** @internal */
  abstract readonly dropOldest: boolean;
  protected callbacks: MessageCallback[] = [];
  protected queues: SubQueue[] = [];
  private closeCbs: CloseCallback[] = [];
  private errorCbs: ErrorCallback[] = [];
  /** True once closed (or closing). */
  closed = false;
  /** The error the pipe closed with, if any. */
  closeError: Error | undefined;
  protected limits: QueueLimits;
  /** Why `SUB_ALL` is not subscribed, if its default queue was dropped (see {@link subscribeDefault}). */
  private defaultDropped: string | undefined;

  constructor(limits: QueueLimits) {
    this.limits = limits;
  }

  /**
   * @internal Subscribes `SUB_ALL` as the default subscription of a pipe opened without a
   * callback. If that queue fills up without ever having been read while other consumers take
   * the messages (another subscription, or a callback — `othersConsume` replaces that test
   * for pipes whose callbacks are someone else's), it is dropped (its messages counted in
   * `stats.dropped`) instead of pausing the pipe, so an unread default queue cannot stall a
   * pipe used in callback or filter mode.
   * `subscribe(SUB_ALL)` queues again.
   */
  subscribeDefault(othersConsume?: () => boolean): void {
    this.subscribe(SUB_ALL);
    const q = this.queues.find((x) => x.sub === SUB_ALL);
    if (!q) return;
    const others = (): boolean => (othersConsume ? othersConsume() : this.callbacks.length > 0) || this.queues.length > 1;
    q.onOverflow = (full) => {
      if (full.everRead || !others() || !this.queues.includes(full)) return false;
      this.queues = this.queues.filter((x) => x !== full);
      this.stats.dropped += full.length;
      full.close();
      full.clear();
      this.defaultDropped = 'the default SUB_ALL queue was dropped after it filled up unread while callbacks or other subscriptions took the messages';
      return true;
    };
  }

  /** Registers a message callback (sync or async); returns a function that removes it. */
  onMessage(cb: MessageCallback): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onMessage expects a function');
    this.callbacks = [...this.callbacks, cb];
    return () => {
      this.callbacks = this.callbacks.filter((c) => c !== cb);
    };
  }

  /** Registers a close callback; runs immediately (async) if already closed. Returns a remover. */
  onClose(cb: CloseCallback): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onClose expects a function');
    if (this.closed && this.closeCbs === CLOSED) {
      queueMicrotask(() => this.safeCall(cb, this.closeError));
      return () => undefined;
    }
    this.closeCbs.push(cb);
    return () => {
      this.closeCbs = this.closeCbs.filter((c) => c !== cb);
    };
  }

  /** Registers an error callback for errors raised by callbacks; returns a remover. */
  onError(cb: ErrorCallback): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onError expects a function');
    this.errorCbs.push(cb);
    return () => {
      this.errorCbs = this.errorCbs.filter((c) => c !== cb);
    };
  }

  /**
   * Subscribes: from now on messages matching `sub` are queued for `recv({ sub })`.
   * Subscribing the same object twice is a no-op. Returns `sub`.
   */
  subscribe(sub: Sub = SUB_ALL, limits?: QueueLimits): Sub {
    if (sub === SUB_ALL) this.defaultDropped = undefined;
    if (!this.queues.some((q) => q.sub === sub)) {
      const q = new SubQueue(sub, this, { ...this.limits, ...limits });
      if (this.closed) q.close(this.closeError);
      this.queues = [...this.queues, q];
    }
    return sub;
  }

  /** Removes a subscription and drops what it had queued; pending `recv`s on it reject with `AbortError`. */
  unsubscribe(sub: Sub): void {
    const q = this.queues.find((x) => x.sub === sub);
    if (!q) return;
    this.queues = this.queues.filter((x) => x !== q);
    // The error only for a waiting recv (building one, with its stack, costs more than the rest of unsubscribe).
    q.close(q.hasWaiter ? new AbortError('recv cancelled: its subscription was removed (unsubscribe)') : undefined, true);
    q.clear();
  }

  /** Whether `sub` is subscribed. */
  isSubscribed(sub: Sub): boolean {
    return this.queues.some((q) => q.sub === sub);
  }

  /** Number of messages queued for `sub`. */
  queued(sub: Sub = SUB_ALL): number {
    return this.queueOf(sub).length;
  }

  private queueOf(sub: Sub): SubQueue {
    const qs = this.queues;
    for (let i = 0; i < qs.length; i++) if ((qs[i] as SubQueue).sub === sub) return qs[i] as SubQueue;
    throw new InvalidArgumentError(
      sub === SUB_ALL
        ? `not subscribed to SUB_ALL (${this.defaultDropped ?? 'this pipe has no default subscription: it was opened with an onMessage callback, it is a TCP server (use accept() for its connections), it was accepted by a TCP server whose own callbacks or subscriptions take its messages, or SUB_ALL was unsubscribed'}); call subscribe(SUB_ALL) first`
        : 'not subscribed to this subscription; call subscribe(sub) first',
    );
  }

  /**
   * Pull mode: resolves with the next message of `sub` (default `SUB_ALL`). Rejects with
   * `TimeoutError`, `AbortError`, or `PipeClosedError` once closed and drained.
   * A message already queued is returned without waiting.
   */
  recv(opts?: RecvOptions): Promise<Message> {
    let q: SubQueue;
    try {
      q = this.queueOf(opts?.sub ?? SUB_ALL);
    } catch (e) {
      return Promise.reject(e);
    }
    return q.next(opts);
  }

  /** Takes an already-queued message synchronously, or `undefined`. */
  tryRecv(sub: Sub = SUB_ALL): Message | undefined {
    return this.queueOf(sub).take();
  }

  /**
   * Async iteration over `sub` (subscribed on first use if it is not). Ends when the pipe is
   * closed gracefully and the queue is drained; throws the close error (e.g. a
   * `ConnectionResetError`) after draining when the pipe closed because of one; `signal` ends it
   * early with an AbortError, and `timeout` (ms) bounds the wait for each next message
   * (`TimeoutError`). @default no timeout
   */
  async *messages(opts: { sub?: Sub } & AbortOptions = {}): AsyncGenerator<Message, void, undefined> {
    checkAbortOptions(opts); // once, not per message: queued messages are not yielded past a bad option or an aborted signal
    const sub = opts.sub ?? SUB_ALL;
    if (!this.isSubscribed(sub)) this.subscribe(sub);
    const q = this.queueOf(sub);
    for (;;) {
      let m = q.take();
      if (!m) {
        if (q.closedError) return this.endIteration();
        try {
          m = await q.next({ signal: opts.signal, timeout: opts.timeout });
        } catch (e) {
          if (e instanceof PipeClosedError && q.closedError) return this.endIteration();
          throw e;
        }
      }
      yield m;
    }
  }

  private endIteration(): void {
    if (this.closeError) throw this.closeError;
  }

  /** `for await (const msg of pipe)`: iterates `SUB_ALL`. */
  [Symbol.asyncIterator](): AsyncGenerator<Message, void, undefined> {
    return this.messages();
  }

  /** @internal Delivers a message to callbacks and matching queues; false if nothing took it. Hot path. */
  protected dispatch(m: Message): boolean {
    let handled = false;
    const cbs = this.callbacks;
    for (let i = 0; i < cbs.length; i++) {
      handled = true;
      try {
        const r = (cbs[i] as MessageCallback)(m);
        if (r !== undefined && typeof (r as Promise<void>).then === 'function') this.trackAsync(r as Promise<void>);
      } catch (e) {
        this.reportError(e);
      }
    }
    const qs = this.queues;
    let copies = 0;
    for (let i = 0; i < qs.length; i++) {
      const q = qs[i] as SubQueue;
      if (q.match === undefined || q.match(m.data, m.from)) {
        q.push(copies++ === 0 || this.limits.copyPayloads === false ? m : { data: copyOf(m.data), from: m.from, pipe: m.pipe });
      }
    }
    return handled || copies > 0;
  }

  /** @internal Called for promises returned by callbacks. */
  protected trackAsync(p: Promise<void>): void {
    p.then(undefined, (e: unknown) => this.reportError(e));
  }

  /** @internal Routes an error to `onError` callbacks, or emits a process warning. */
  reportError(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    if (this.errorCbs.length === 0) {
      process.emitWarning(`p2pd: unhandled error in a pipe callback: ${err.message}`, { code: 'P2PD_CALLBACK_ERROR' });
      return;
    }
    for (const cb of this.errorCbs) this.safeCall(cb, err);
  }

  private safeCall<A>(cb: (a: A) => void, a: A): void {
    try {
      cb(a);
    } catch (e) {
      process.emitWarning(`p2pd: error in a close/error callback: ${String(e)}`, { code: 'P2PD_CALLBACK_ERROR' });
    }
  }

  /** @internal Marks closed, ends all queues and runs close callbacks once. */
  protected finish(err?: Error): void {
    if (this.closeCbs === CLOSED) return;
    this.closed = true;
    this.closeError = err;
    for (const q of this.queues) q.close(err);
    const cbs = this.closeCbs;
    this.closeCbs = CLOSED;
    for (const cb of cbs) this.safeCall(cb, err);
  }

  /** @internal */
  countDrop(): void {
    this.stats.dropped++;
  }
  /** @internal */
  queueFull(_q: SubQueue): void {}
  /** @internal */
  queueDrained(_q: SubQueue): void {}
}

const CLOSED: CloseCallback[] = [];

/** Copies of at most this many bytes are carved from a shared slab. */
const SLAB_COPY_MAX = 4 * 1024;
/** Size of the slab subscription copies are carved from. */
const SLAB_SIZE = 64 * 1024;
let slab: ArrayBuffer | undefined;
let slabUsed = 0;

/**
 * A copy of `b`. Small payloads are carved from a 64 KiB slab shared by all pipes (as Node's
 * own 8 KiB pool does for `Buffer.allocUnsafe`, with 8× fewer allocations); larger ones get
 * their own buffer. The view is made with `Buffer.from(arrayBuffer, offset, length)`, which
 * costs about half of `Buffer#subarray` (no species lookup).
 */
function copyOf(b: Buffer): Buffer {
  const n = b.length;
  if (n > SLAB_COPY_MAX) return Buffer.from(b);
  if (slab === undefined || slabUsed + n > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE).buffer as ArrayBuffer; // not zero-filled: every byte handed out is written first
    slabUsed = 0;
  }
  const c = Buffer.from(slab, slabUsed, n);
  slabUsed = (slabUsed + n + 7) & ~7;
  c.set(b);
  return c;
}
