/**
 * A subscription's bounded queue: matching, queueing with limits, and waiting receivers with a
 * synchronous fast path (a queued message is returned without creating a pending promise).
 * @module
 */
import { InvalidArgumentError, PipeClosedError } from '../errors.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import { cancellable, type AbortOptions } from '../util/abort.js';
import { DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, type Message, type Pattern, type QueueLimits, type Sub } from './types.js';

/** A compiled predicate for a subscription. */
export type Matcher = (data: Buffer, from: Endpoint) => boolean;

function patternMatcher(p: Pattern): Matcher {
  if (p instanceof RegExp) {
    const re = new RegExp(p.source, p.flags.replace(/[gy]/g, '')); // stateless: no lastIndex surprises
    return (d) => re.test(d.toString('utf8'));
  }
  if (typeof p === 'string') {
    if (p === '') return () => true;
    const needle = Buffer.from(p, 'utf8');
    return (d) => d.indexOf(needle) !== -1;
  }
  if (p instanceof Uint8Array) {
    const prefix = Buffer.from(p);
    if (prefix.length === 0) return () => true;
    return (d) => d.length >= prefix.length && d.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
  }
  if (typeof p === 'function') return p;
  throw new InvalidArgumentError('subscription pattern must be a RegExp, string, Uint8Array or function');
}

/** Compiles a subscription into one predicate; throws {@link InvalidArgumentError} on bad input. */
export function compileSub(sub: Sub): Matcher | undefined {
  if (sub === null || typeof sub !== 'object') throw new InvalidArgumentError('subscription must be an object');
  const pm = sub.pattern !== undefined ? patternMatcher(sub.pattern) : undefined;
  const host = sub.source?.host ? sub.source.host.toLowerCase() : '';
  const port = sub.source?.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`invalid source port ${String(port)}`);
  const hasSource = host !== '' || port !== 0;
  if (!pm && !hasSource) return undefined; // matches everything
  if (!hasSource) return pm;
  const srcOk = (f: Endpoint): boolean => (host === '' || f.host === host) && (port === 0 || f.port === port);
  if (!pm) return (_d, f) => srcOk(f);
  return (d, f) => srcOk(f) && pm(d, f);
}

interface Waiter {
  resolve: (m: Message) => void;
  reject: (e: unknown) => void;
}

/** Why a queue signals its owner. */
export interface QueueOwner {
  /** Whether full queues drop the oldest message (UDP) instead of asking the owner to pause (TCP). */
  readonly dropOldest: boolean;
  /** Called when the queue went over its limits (only when `dropOldest` is false). */
  queueFull(q: SubQueue): void;
  /** Called when a full queue drained below half its limits. */
  queueDrained(q: SubQueue): void;
  /** Counts a message dropped for lack of room. */
  countDrop(): void;
}

/** The queue of one subscription. */
export class SubQueue {
  /** The subscription this queue serves. */
  readonly sub: Sub;
  /** Its compiled predicate (`undefined` = match all). */
  readonly match: Matcher | undefined;
  private items: Message[] = [];
  private head = 0;
  private bytes = 0;
  private waiters: Waiter[] = [];
  private full = false;
  private readonly maxQueue: number;
  private readonly maxBytes: number;
  private isClosed = false;
  private closeCause: Error | undefined;
  private closedErr: Error | undefined;
  /** Set once the owner closed: no more messages will arrive. Created on first use (an Error's stack trace is costly). */
  get closedError(): Error | undefined {
    if (!this.isClosed) return undefined;
    const err = this.closeCause;
    return (this.closedErr ??= new PipeClosedError(err ? `pipe closed: ${err.message}` : 'pipe is closed', err ? { cause: err } : undefined));
  }

  constructor(sub: Sub, private readonly owner: QueueOwner, limits: QueueLimits = {}) {
    this.sub = sub;
    this.match = compileSub(sub);
    this.maxQueue = positive(limits.maxQueue, DEFAULT_MAX_QUEUE, 'maxQueue');
    this.maxBytes = positive(limits.maxQueueBytes, DEFAULT_MAX_QUEUE_BYTES, 'maxQueueBytes');
  }

  /** Messages waiting. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Hands `m` to a waiting receiver or queues it, applying the limits. */
  push(m: Message): void {
    const w = this.waiters.length > 0 ? this.waiters.shift() : undefined;
    if (w) {
      w.resolve(m);
      return;
    }
    this.items.push(m);
    this.bytes += m.data.length;
    if (this.length > this.maxQueue || this.bytes > this.maxBytes) {
      if (this.owner.dropOldest) {
        while (this.length > 1 && (this.length > this.maxQueue || this.bytes > this.maxBytes)) {
          this.take();
          this.owner.countDrop();
        }
      } else if (!this.full) {
        this.full = true;
        this.owner.queueFull(this);
      }
    }
  }

  /** Takes the oldest queued message synchronously, if any. */
  take(): Message | undefined {
    if (this.head >= this.items.length) return undefined;
    const m = this.items[this.head] as Message;
    (this.items as (Message | undefined)[])[this.head] = undefined;
    this.head++;
    this.bytes -= m.data.length;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.full && this.length <= this.maxQueue >> 1 && this.bytes <= this.maxBytes >> 1) {
      this.full = false;
      this.owner.queueDrained(this);
    }
    return m;
  }

  /** Resolves with the next message; fast path when one is queued. */
  next(opts?: AbortOptions): Promise<Message> {
    const signal = opts?.signal;
    if (signal?.aborted) return cancellable(opts, 'recv', () => undefined);
    const m = this.take();
    if (m) return Promise.resolve(m);
    if (this.closedError) return Promise.reject(this.closedError);
    if (signal === undefined && !(opts?.timeout && opts.timeout > 0)) {
      // Nothing to cancel it: a bare promise, without cancellable()'s timer/abort plumbing.
      return new Promise<Message>((resolve, reject) => {
        this.waiters.push({ resolve, reject });
      });
    }
    return cancellable<Message>(opts, 'recv', (resolve, reject) => {
      const w: Waiter = { resolve, reject };
      this.waiters.push(w);
      return () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
      };
    });
  }

  /** Ends the queue: waiting receivers reject; queued messages stay readable. */
  close(err?: Error): void {
    this.isClosed = true;
    this.closeCause = err;
    this.closedErr = undefined;
    const ws = this.waiters;
    if (ws.length === 0) return;
    this.waiters = [];
    const e = this.closedError;
    for (const w of ws) w.reject(e);
  }

  /** Drops everything queued (used on unsubscribe). */
  clear(): void {
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    if (this.full) {
      this.full = false;
      this.owner.queueDrained(this);
    }
  }
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return v;
}
