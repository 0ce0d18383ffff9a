/**
 * A subscription's bounded queue: matching, queueing with limits, and waiting receivers with a
 * synchronous fast path (a queued message is returned without creating a pending promise).
 * @module
 */
import { InvalidArgumentError, PipeClosedError } from '../errors.js';
import { parseHost, type Endpoint } from '../interfaces/endpoint.js';
import { bytesToIp, ipToBytes } from '../interfaces/ip.js';
import { badSignal, badTimeout, cancellable, type AbortOptions } from '../util/abort.js';
import { DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, type Message, type Pattern, type QueueLimits, type Sub } from './types.js';

/** Byte prefixes up to this length are matched with a JavaScript loop; longer ones with `Buffer#compare`. */
export const SHORT_PREFIX = 32;

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
    const n = prefix.length;
    if (n === 0) return () => true;
    if (n > SHORT_PREFIX) return (d) => d.length >= n && d.compare(prefix, 0, n, 0, n) === 0;
    // Short prefixes: a byte loop beats Buffer#compare's argument checks and native call.
    return (d) => {
      if (d.length < n) return false;
      for (let i = 0; i < n; i++) if (d[i] !== prefix[i]) return false;
      return true;
    };
  }
  if (typeof p === 'function') return p;
  throw new InvalidArgumentError('subscription pattern must be a RegExp, string, Uint8Array or function');
}

/** Canonical text of an IP literal (RFC 5952; IPv4-mapped IPv6 as IPv4; no zone). */
function canonicalIp(host: string): string {
  return bytesToIp(ipToBytes(host), { mapped: 'unmap' });
}

/** Canonical forms of the source hosts seen lately (a small cache: filters run per message). */
const canonCache = new Map<string, string>();
function canonicalOf(host: string): string {
  let c = canonCache.get(host);
  if (c === undefined) {
    try {
      c = canonicalIp(host);
    } catch {
      c = ''; // not an IP literal: matches no IP source
    }
    if (canonCache.size >= 1024) canonCache.clear();
    canonCache.set(host, c);
  }
  return c;
}

/**
 * The source-host test of a subscription: an IP literal (IPv4, IPv6 in any spelling, an
 * IPv4-mapped IPv6 address matching its IPv4 form, optionally with a zone, which must then
 * match the message's). Anything else is an `InvalidArgumentError`.
 */
function sourceHost(text: string): (f: Endpoint) => boolean {
  let parsed: { host: string; scopeId?: string };
  try {
    parsed = parseHost(text);
  } catch (e) {
    throw new InvalidArgumentError(`invalid subscription source host ${JSON.stringify(text)}: an IP address is expected`, { cause: e });
  }
  const exact = parsed.host;
  const want = canonicalIp(exact);
  const zone = parsed.scopeId;
  return (f) => (f.host === exact || canonicalOf(f.host) === want) && (zone === undefined || f.scopeId === zone);
}

/** Compiles a subscription into one predicate; throws {@link InvalidArgumentError} on bad input. */
export function compileSub(sub: Sub): Matcher | undefined {
  if (sub === null || typeof sub !== 'object') throw new InvalidArgumentError('subscription must be an object');
  const pm = sub.pattern !== undefined ? patternMatcher(sub.pattern) : undefined;
  const src = sub.source?.host ? sourceHost(sub.source.host) : undefined;
  const port = sub.source?.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`invalid source port ${String(port)}`);
  const hasSource = src !== undefined || port !== 0;
  if (!pm && !hasSource) return undefined; // matches everything
  if (!hasSource) return pm;
  const srcOk = (f: Endpoint): boolean => (src === undefined || src(f)) && (port === 0 || f.port === port);
  if (!pm) return (_d, f) => srcOk(f);
  return (d, f) => srcOk(f) && pm(d, f);
}

type Resolve = (m: Message) => void;
type Reject = (e: unknown) => void;

/**
 * The queue a bare `next()` promise is being created for. The executor below runs synchronously
 * inside `new Promise`, so one module-level executor serves every queue: no closure and no
 * waiter object per `recv()` (a hot path when consumers keep up with the traffic).
 */
let enqueueOn: SubQueue | undefined;
function enqueueWaiter(resolve: Resolve, reject: Reject): void {
  (enqueueOn as SubQueue).addWaiter(resolve, reject);
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
  /** The oldest waiting receiver (most queues have at most one), then the others in order. */
  private waitRes: Resolve | undefined;
  private waitRej: Reject | undefined;
  /** Receivers waiting behind `waitRes`, oldest first, as flat pairs `[resolve, reject, …]`. */
  private moreWaiters: (Resolve | Reject)[] | undefined;
  private full = false;
  private readonly maxQueue: number;
  private readonly maxBytes: number;
  private isClosed = false;
  /** True once anyone asked this queue for a message (`take`/`next`). */
  everRead = false;
  /**
   * @internal Called when the queue goes over its limits (pipes that pause, i.e. TCP);
   * returns true if it dealt with it (e.g. removed the queue), so the owner need not pause.
   */
  onOverflow: ((q: SubQueue) => boolean) | undefined;
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
    const resolve = this.waitRes;
    if (resolve !== undefined) {
      this.shiftWaiter();
      resolve(m);
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
      } else if (!this.full && this.onOverflow?.(this) !== true) {
        this.full = true;
        this.owner.queueFull(this);
      }
    }
  }

  /** Takes the oldest queued message synchronously, if any. */
  take(): Message | undefined {
    this.everRead = true;
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
    // An aborted signal or a bad option rejects (via cancellable) even when a message is queued.
    if (signal !== undefined || opts?.timeout !== undefined) {
      if (signal?.aborted === true || badSignal(signal) !== undefined || badTimeout(opts?.timeout) !== undefined) return cancellable(opts, 'recv', () => undefined);
    }
    const m = this.take();
    if (m) return Promise.resolve(m);
    if (this.closedError) return Promise.reject(this.closedError);
    if (signal === undefined && (opts?.timeout === undefined || opts.timeout === 0 || opts.timeout === Infinity)) {
      // Nothing to cancel it: a bare promise, without cancellable()'s timer/abort plumbing.
      enqueueOn = this;
      const p = new Promise<Message>(enqueueWaiter);
      enqueueOn = undefined;
      return p;
    }
    return cancellable<Message>(opts, 'recv', (resolve, reject) => {
      this.addWaiter(resolve, reject);
      return () => {
        if (this.waitRes === resolve) return this.shiftWaiter();
        const more = this.moreWaiters;
        const i = more ? more.indexOf(resolve) : -1;
        if (i >= 0) (more as (Resolve | Reject)[]).splice(i, 2);
      };
    });
  }

  /** @internal Appends a waiting receiver. */
  addWaiter(resolve: Resolve, reject: Reject): void {
    if (this.waitRes === undefined) {
      this.waitRes = resolve;
      this.waitRej = reject;
    } else (this.moreWaiters ??= []).push(resolve, reject);
  }

  /** Removes the oldest waiter; the next one, if any, takes its place. */
  private shiftWaiter(): void {
    const more = this.moreWaiters;
    if (more === undefined || more.length === 0) {
      this.waitRes = this.waitRej = undefined;
      return;
    }
    this.waitRes = more.shift() as Resolve;
    this.waitRej = more.shift() as Reject;
  }

  /** Whether a `recv()` is waiting on this queue. */
  get hasWaiter(): boolean {
    return this.waitRej !== undefined;
  }

  /**
   * Ends the queue: waiting receivers reject (with a `PipeClosedError` caused by `err`, or with
   * `err` itself when `exact`); queued messages stay readable.
   */
  close(err?: Error, exact = false): void {
    this.isClosed = true;
    this.closeCause = err;
    this.closedErr = exact ? err : undefined;
    const first = this.waitRej;
    if (first === undefined) return;
    const more = this.moreWaiters ?? [];
    this.waitRes = this.waitRej = this.moreWaiters = undefined;
    const e = this.closedError;
    first(e);
    for (let i = 1; i < more.length; i += 2) (more[i] as Reject)(e);
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
