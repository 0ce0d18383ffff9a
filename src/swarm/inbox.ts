/**
 * The queue behind `SwarmPeer.recv()`: FIFO, bounded in items and in bytes (the oldest items
 * are dropped when full, and counted), with waiting receivers and a synchronous fast path.
 * @module
 */
import { PipeClosedError } from '../errors.js';
import { cancellable, type AbortOptions } from '../util/abort.js';

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: unknown): void;
}

/** A bounded FIFO with async receivers. */
export class Inbox<T> {
  #items: T[] = [];
  #head = 0;
  #waiters: Waiter<T>[] = [];
  #closed: Error | undefined;
  #bytes = 0;

  /**
   * @param max items held at most
   * @param onDrop called for each item dropped
   * @param maxBytes bytes held at most (by `sizeOf`); the newest item is always kept
   * @param sizeOf the size of an item
   */
  constructor(
    private readonly max: number,
    private readonly onDrop: () => void,
    private readonly maxBytes = Number.POSITIVE_INFINITY,
    private readonly sizeOf: (v: T) => number = () => 0,
  ) {}

  /** Bytes of the items waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Items waiting. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Whether a receiver is waiting. */
  get hasWaiters(): boolean {
    return this.#waiters.length > 0;
  }

  /** Hands `v` to a waiting receiver, or queues it (dropping the oldest when full). */
  push(v: T): void {
    if (this.#closed) return;
    const w = this.#waiters.shift();
    if (w) {
      w.resolve(v);
      return;
    }
    this.#items.push(v);
    this.#bytes += this.sizeOf(v);
    while (this.length > this.max || (this.#bytes > this.maxBytes && this.length > 1)) {
      this.take();
      this.onDrop();
    }
  }

  /** Takes the oldest item synchronously. */
  take(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const v = this.#items[this.#head] as T;
    (this.#items as (T | undefined)[])[this.#head] = undefined;
    this.#head++;
    this.#bytes -= this.sizeOf(v);
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return v;
  }

  /** Resolves with the next item; rejects with `PipeClosedError` once closed and drained. */
  next(opts?: AbortOptions): Promise<T> {
    if (opts?.signal?.aborted) return cancellable(opts, 'recv', () => undefined);
    const v = this.take();
    if (v !== undefined) return Promise.resolve(v);
    if (this.#closed) return Promise.reject(this.#closed);
    return cancellable<T>(opts, 'recv', (resolve, reject) => {
      const w: Waiter<T> = { resolve, reject };
      this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
    });
  }

  /** Ends the queue: waiting receivers reject; queued items stay readable. */
  close(message = 'swarm peer is closed'): void {
    if (this.#closed) return;
    this.#closed = new PipeClosedError(message);
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w.reject(this.#closed);
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }
}
