/**
 * In-process {@link DhtTransport} for tests and benchmarks. Every request and response is
 * encoded and decoded with the real codec (`messages.ts`), so the codec is exercised, and
 * each direction is delayed by `setImmediate` (or `latency` ms) to model a network.
 *
 * The {@link MemoryNetwork} can kill nodes (`'refuse'`: requests fail at once, like a
 * closed port; `'blackhole'`: requests time out), drop a fraction of messages, and accept
 * raw frames from a test ({@link MemoryNetwork.sendRaw}). A request frame that fails to
 * decode is dropped (no reply); a sender that sends more than `maxMalformed` of them is cut
 * off (all its later requests dropped), so bad frames cost only the offending message or peer.
 * @module
 */
import { DecodeError, UnreachableError } from '../errors.js';
import { cancellable } from '../util/abort.js';
import type { Contact } from './contact.js';
import { idToHex, type DhtId } from './id.js';
import { decodeMessage, encodeMessage, isRequest, MAX_TXID, type DhtRequest, type DhtResponse } from './messages.js';
import type { DhtRequestHandler, DhtRequestOptions, DhtTransport } from './transport.js';

/** Default malformed frames tolerated from one sender before it is cut off. */
export const DEFAULT_MAX_MALFORMED = 3;
/** First port handed out by {@link MemoryNetwork.createTransport}. */
export const MEMORY_BASE_PORT = 4000;

/** How a killed node behaves. */
export type KillMode = 'refuse' | 'blackhole';

/** Options of {@link MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /** One-way delay in ms; `0` = one `setImmediate` turn. @default 0 */
  latency?: number;
  /** Probability (0–1) that any one message is lost. @default 0 */
  dropRate?: number;
  /** Random source for drops. @default `Math.random` */
  random?: () => number;
  /** Malformed request frames tolerated per sender. @default {@link DEFAULT_MAX_MALFORMED} */
  maxMalformed?: number;
}

/** Traffic counters of a {@link MemoryNetwork}. */
export interface MemoryNetworkStats {
  /** Request frames sent (whether or not they arrived). */
  requests: number;
  /** Reply frames delivered back to the requester. */
  responses: number;
  /** Bytes of all request frames sent and replies delivered. */
  bytes: number;
  /** Requests and replies lost to `dropRate`. */
  dropped: number;
  /** Frames that did not decode as a request at the receiver. */
  malformed: number;
}

/** Raw-frame hook: returns the reply frame, or `undefined` to send none. */
export type RawResponder = (frame: Uint8Array) => Uint8Array | undefined;

/** A simulated network of {@link MemoryTransport}s addressed by `host:port`. */
export class MemoryNetwork {
  /** Traffic counters. */
  readonly stats: MemoryNetworkStats = { requests: 0, responses: 0, bytes: 0, dropped: 0, malformed: 0 };
  /** Probability (0–1) that a message is lost; may be changed at any time. */
  dropRate: number;
  readonly #latency: number;
  readonly #random: () => number;
  readonly #maxMalformed: number;
  readonly #byAddr = new Map<string, MemoryTransport>();
  readonly #killed = new Map<string, KillMode>();
  readonly #malformed = new Map<string, number>();
  #next = 0;

  constructor(opts: MemoryNetworkOptions = {}) {
    this.#latency = opts.latency ?? 0;
    this.dropRate = opts.dropRate ?? 0;
    this.#random = opts.random ?? Math.random;
    this.#maxMalformed = opts.maxMalformed ?? DEFAULT_MAX_MALFORMED;
  }

  /**
   * A transport for node `id` at a fresh address `10.x.y.z:port` (or the given one). The
   * returned transport's `contact` is the node's contact.
   */
  createTransport(id: DhtId, opts: { host?: string; port?: number; publicKey?: Uint8Array } = {}): MemoryTransport {
    const n = this.#next++;
    const host = opts.host ?? `10.${(n >> 16) & 0xff}.${(n >> 8) & 0xff}.${n & 0xff}`;
    const port = opts.port ?? MEMORY_BASE_PORT + (n % 1000);
    const contact: Contact = opts.publicKey ? { id, host, port, family: 4, publicKey: opts.publicKey } : { id, host, port, family: 4 };
    const t = new MemoryTransport(this, contact);
    this.#byAddr.set(`${host}:${port}`, t);
    return t;
  }

  /** Kills the node with `id`: `'blackhole'` (default) requests time out, `'refuse'` they fail at once. */
  kill(id: DhtId, mode: KillMode = 'blackhole'): void {
    this.#killed.set(idToHex(id), mode);
  }

  /** Brings a killed node back. */
  revive(id: DhtId): void {
    this.#killed.delete(idToHex(id));
  }

  /** True unless the node was killed. */
  isAlive(id: DhtId): boolean {
    return !this.#killed.has(idToHex(id));
  }

  /** True if requests from `id` are dropped for sending too many malformed frames. */
  isCutOff(id: DhtId): boolean {
    return (this.#malformed.get(idToHex(id)) ?? 0) > this.#maxMalformed;
  }

  /** Removes a transport's address. */
  detach(t: MemoryTransport): void {
    const key = `${t.contact.host}:${t.contact.port}`;
    if (this.#byAddr.get(key) === t) this.#byAddr.delete(key);
  }

  #delay(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#latency > 0) setTimeout(resolve, this.#latency);
      else setImmediate(resolve);
    });
  }

  #lost(): boolean {
    if (this.dropRate > 0 && this.#random() < this.dropRate) {
      this.stats.dropped++;
      return true;
    }
    return false;
  }

  /**
   * Delivers a raw request frame to the node at `to`'s address, as if sent by `from`
   * (`undefined` = an anonymous/unauthenticated sender). Resolves with the reply frame or
   * `undefined` if none comes (dropped, malformed, cut off, killed in `'blackhole'` mode).
   * Rejects with `UnreachableError` for a missing or `'refuse'`-killed node.
   */
  async sendRaw(from: Contact | undefined, to: Pick<Contact, 'host' | 'port'>, frame: Uint8Array): Promise<Uint8Array | undefined> {
    this.stats.requests++;
    this.stats.bytes += frame.length;
    await this.#delay();
    const dst = this.#byAddr.get(`${to.host}:${to.port}`);
    const mode = dst ? this.#killed.get(idToHex(dst.contact.id)) : undefined;
    if (!dst || mode === 'refuse' || (from && this.#killed.get(idToHex(from.id)) === 'refuse')) {
      throw new UnreachableError(`no DHT node at ${to.host}:${to.port}`);
    }
    if (mode === 'blackhole' || (from && this.#killed.has(idToHex(from.id))) || this.#lost()) return undefined;
    if (from && this.isCutOff(from.id)) return undefined;
    const reply = await dst.serve(frame, from, (bad) => this.#strike(from, bad));
    if (reply === undefined || this.#lost()) return undefined;
    await this.#delay();
    if (this.#killed.has(idToHex(dst.contact.id))) return undefined;
    this.stats.responses++;
    this.stats.bytes += reply.length;
    return reply;
  }

  #strike(from: Contact | undefined, _err: unknown): void {
    this.stats.malformed++;
    if (!from) return;
    const hex = idToHex(from.id);
    this.#malformed.set(hex, (this.#malformed.get(hex) ?? 0) + 1);
  }
}

/** One node's endpoint on a {@link MemoryNetwork}. */
export class MemoryTransport implements DhtTransport {
  /** This endpoint's contact (address assigned by the network). */
  readonly contact: Contact;
  readonly #net: MemoryNetwork;
  #handler: DhtRequestHandler | undefined;
  #raw: RawResponder | undefined;
  #txid = 1;

  constructor(net: MemoryNetwork, contact: Contact) {
    this.#net = net;
    this.contact = contact;
  }

  /** Test hook: answer raw frames with `fn` instead of the DHT handler (adversarial peers). */
  setRawResponder(fn: RawResponder | undefined): void {
    this.#raw = fn;
  }

  /** Encodes `req`, delivers it, decodes and checks the reply (txid, kind). */
  request(to: Contact, req: DhtRequest, opts: DhtRequestOptions): Promise<DhtResponse> {
    const txid = this.#txid;
    this.#txid = this.#txid >= MAX_TXID ? 1 : this.#txid + 1;
    let frame: Uint8Array;
    try {
      frame = encodeMessage(req, txid);
    } catch (e) {
      return Promise.reject(e);
    }
    return cancellable<DhtResponse>(opts, `DHT ${req.type} to ${to.host}:${to.port}`, (resolve, reject) => {
      this.#net.sendRaw(this.contact, to, frame).then((reply) => {
        if (reply === undefined) return; // lost: the timeout fires
        const f = decodeMessage(reply);
        if (f.txid !== txid) throw new DecodeError('DHT reply with a foreign txid');
        if (isRequest(f.message)) throw new DecodeError('DHT reply is a request');
        resolve(f.message);
      }).catch(reject);
    });
  }

  /** Installs the request handler. */
  onRequest(handler: DhtRequestHandler | undefined): void {
    this.#handler = handler;
  }

  /** Removes this endpoint from the network. */
  close(): void {
    this.#handler = undefined;
    this.#net.detach(this);
  }

  /** Network side: decodes a request frame, runs the handler, encodes the reply. */
  async serve(frame: Uint8Array, from: Contact | undefined, strike: (err: unknown) => void): Promise<Uint8Array | undefined> {
    if (this.#raw) return this.#raw(frame);
    const handler = this.#handler;
    if (!handler) return undefined;
    let decoded;
    try {
      decoded = decodeMessage(frame);
      if (!isRequest(decoded.message)) throw new DecodeError('not a request');
    } catch (e) {
      strike(e);
      return undefined;
    }
    const ctx = from ? { remoteId: from.id, remoteAddress: { host: from.host, port: from.port, family: from.family } } : {};
    const res = await handler(decoded.message, ctx).catch(() => undefined);
    return res === undefined ? undefined : encodeMessage(res, decoded.txid);
  }
}
