/**
 * `AcceptQueue<T>`: the hand-over point between something that produces connections (a
 * listening socket, a handshake runner) and the code that takes them with `await accept()` or
 * `for await`. Shared by `TcpServer` and `SecureServer`.
 *
 * - An item pushed while someone waits goes straight to the oldest waiter (FIFO).
 * - Otherwise it is queued; beyond `limit` the oldest queued item is dropped and handed to
 *   `onDrop` (to close it, count it, or leave it to other consumers).
 * - `take()` honours `{ signal, timeout }` (`AbortError`, `TimeoutError`) and removes its
 *   waiter however it ends, so abandoned waits leak nothing.
 * - After `close()` every waiter and every later `take()` on an empty queue reject with
 *   `PipeClosedError`; items still queued can be taken (or removed with `clear()`).
 *
 * ```ts
 * const q = new AcceptQueue<TcpPipe>({ limit: 64, onDrop: (p) => void p.close() });
 * q.push(pipe);                              // producer
 * const next = await q.take({ timeout: 1000 }); // consumer
 * for await (const p of q) handle(p);        // ends once closed and drained
 * ```
 * @module
 */
import { InvalidArgumentError, PipeClosedError } from '../errors.js';
import { cancellable, checkAbortOptions, type AbortOptions } from '../util/abort.js';
import { DEFAULT_MAX_ACCEPT_QUEUE } from './types.js';

/** Options of an {@link AcceptQueue}. */
export interface AcceptQueueOptions<T> {
  /** Most items kept waiting for `take()`; the oldest is dropped beyond it. @default DEFAULT_MAX_ACCEPT_QUEUE (1024) */
  limit?: number;
  /** Called with each item dropped because the queue was over its limit. @default none (the item is just forgotten) */
  onDrop?: (item: T) => void;
  /** Message of the `PipeClosedError` raised once closed. @default 'server is closed' */
  closedMessage?: string;
  /** Operation name used in `TimeoutError` messages of {@link AcceptQueue.take}. @default 'accept' */
  what?: string;
}

/** A pending `take()`. */
interface Waiter<T> {
  resolve: (item: T) => void;
  reject: (e: unknown) => void;
}

/**
 * A bounded FIFO of accepted items with waiters; see the module doc. Not tied to pipes: `T`
 * can be anything that must be handed over exactly once.
 */
export class AcceptQueue<T> implements AsyncIterable<T> {
  /** Most items kept queued. */
  readonly limit: number;
  /** Items dropped because the queue was over {@link limit}. */
  dropped = 0;
  readonly #onDrop: ((item: T) => void) | undefined;
  readonly #closedMessage: string;
  readonly #what: string;
  #items: T[] = [];
  #waiters: Waiter<T>[] = [];
  #closed = false;

  constructor(opts: AcceptQueueOptions<T> = {}) {
    const limit = opts.limit ?? DEFAULT_MAX_ACCEPT_QUEUE;
    if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgumentError('accept queue limit must be a positive integer');
    if (opts.onDrop !== undefined && typeof opts.onDrop !== 'function') throw new InvalidArgumentError('onDrop must be a function');
    this.limit = limit;
    this.#onDrop = opts.onDrop;
    this.#closedMessage = opts.closedMessage ?? 'server is closed';
    this.#what = opts.what ?? 'accept';
  }

  /** Items queued (not yet taken). */
  get length(): number {
    return this.#items.length;
  }

  /** Pending `take()` calls. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** `true` once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Hands `item` to the oldest waiter, or queues it (dropping the oldest queued item beyond
   * {@link limit}). Pushing after {@link close} queues the item as well: it can still be taken
   * or cleared; deciding whether to accept late items is the caller's business.
   */
  push(item: T): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      w.resolve(item);
      return;
    }
    const items = this.#items;
    items.push(item);
    if (items.length > this.limit) {
      const old = items.shift() as T;
      this.dropped++;
      this.#onDrop?.(old);
    }
  }

  /** The oldest queued item without waiting, or `undefined`. */
  tryTake(): T | undefined {
    return this.#items.shift();
  }

  /**
   * Resolves with the oldest queued item, or the next one pushed. Rejects with
   * `PipeClosedError` once closed (and empty), `AbortError` / `TimeoutError` per `opts`; a
   * signal already aborted (or a bad option: `InvalidArgumentError`) rejects at once, leaving
   * a queued item queued.
   */
  take(opts?: AbortOptions): Promise<T> {
    // A bad option or an aborted signal rejects even when an item is queued (which stays queued).
    if (opts !== undefined) {
      try {
        checkAbortOptions(opts);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T);
    if (this.#closed) return Promise.reject(this.#closedError());
    return cancellable<T>(opts, this.#what, (resolve, reject) => {
      const w: Waiter<T> = { resolve, reject };
      this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
    });
  }

  /**
   * Async iterator of items; ends (without error) once the queue is closed and drained.
   * `timeout` (ms) bounds the wait for each next item (`TimeoutError`). @default no timeout
   */
  async *items(opts: AbortOptions = {}): AsyncGenerator<T, void, undefined> {
    const next: AbortOptions = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}) };
    for (;;) {
      let item: T;
      try {
        item = await this.take(next);
      } catch (e) {
        if (e instanceof PipeClosedError) return;
        throw e;
      }
      yield item;
    }
  }

  /** `for await (const item of queue)`. */
  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    return this.items();
  }

  /** Rejects every waiter (and later `take()` on an empty queue) with `PipeClosedError`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w.reject(this.#closedError());
  }

  /** Removes `item` from the queue if it is queued (e.g. a connection that closed meanwhile); returns whether it was. */
  remove(item: T): boolean {
    const i = this.#items.indexOf(item);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }

  /** Removes and returns every queued item (e.g. to close them). */
  clear(): T[] {
    const items = this.#items;
    this.#items = [];
    return items;
  }

  #closedError(): PipeClosedError {
    return new PipeClosedError(this.#closedMessage);
  }
}
