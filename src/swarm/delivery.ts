/**
 * Local delivery of verified messages: built-in services first (by message kind), then the
 * `recv` hook, then the user handler chain (first truthy result wins and the message is not
 * queued), then `onMessage` callbacks or the `recv()` queue.
 *
 * Handlers may be async; while one is pending, later messages wait behind it (order is
 * kept), at most `MAX_PENDING_DELIVERIES` of them and `MAX_PENDING_DELIVERY_BYTES` of payload
 * (beyond that they are dropped and counted).
 * Relaying never waits for any of this.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { AbortOptions } from '../util/abort.js';
import { MAX_PENDING_DELIVERIES, MAX_PENDING_DELIVERY_BYTES, MAX_QUEUE_BYTES } from './constants.js';
import { FRAME_BCAST, KIND_USER, type Envelope } from './envelope.js';
import { Inbox } from './inbox.js';
import type { Link } from './link.js';
import { nodeIdOf } from './protocol.js';
import type { SendOptions, SwarmConnection, SwarmHandler, SwarmHooks, SwarmMessage, SwarmPeerInfo, SwarmStats } from './types.js';

/** A built-in service's handler for its message kind. */
export type BuiltinHandler = (env: Envelope, from: Link | undefined, src: SwarmPeerInfo) => void;

/** What delivery needs from the peer. */
export interface DeliveryDeps {
  readonly hooks: SwarmHooks;
  readonly maxQueue: number;
  info(idHex: string, publicKey: Buffer): SwarmPeerInfo;
  reply(to: Buffer, data: string | Uint8Array, opts?: SendOptions): Promise<void>;
  report(e: unknown): void;
  stats(): SwarmStats | undefined;
}

type MessageCb = (msg: SwarmMessage) => void | Promise<void>;

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as { then?: unknown }).then === 'function';
}

/** Delivery pipeline of one peer. */
export class Delivery {
  readonly #d: DeliveryDeps;
  readonly #builtins = new Map<number, BuiltinHandler>();
  #handlers: SwarmHandler[] = [];
  #callbacks: MessageCb[] = [];
  readonly #inbox: Inbox<SwarmMessage>;
  #chain: Promise<void> | undefined;
  #pending = 0;
  #pendingBytes = 0;

  constructor(d: DeliveryDeps) {
    this.#d = d;
    this.#inbox = new Inbox(
      d.maxQueue,
      () => {
        const s = d.stats();
        if (s) s.queueDropped++;
      },
      MAX_QUEUE_BYTES,
      (m) => m.data.length,
    );
  }

  /** Messages in the `recv()` queue. */
  get queued(): number {
    return this.#inbox.length;
  }

  registerHandler(h: SwarmHandler): () => void {
    if (typeof h !== 'function') throw new InvalidArgumentError('a handler must be a function (msg, conn) => boolean');
    if (h.length !== 2) throw new InvalidArgumentError(`a handler must take exactly 2 parameters (msg, conn); this one takes ${h.length}`);
    this.#handlers = [...this.#handlers, h];
    return () => {
      this.#handlers = this.#handlers.filter((x) => x !== h);
    };
  }

  registerBuiltin(kind: number, h: BuiltinHandler): () => void {
    if (!Number.isInteger(kind) || kind < 1 || kind > 255) throw new InvalidArgumentError('built-in message kinds are 1..255');
    if (this.#builtins.has(kind)) throw new InvalidArgumentError(`message kind ${kind} already has a handler`);
    this.#builtins.set(kind, h);
    return () => {
      if (this.#builtins.get(kind) === h) this.#builtins.delete(kind);
    };
  }

  onMessage(cb: MessageCb): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onMessage expects a function');
    this.#callbacks = [...this.#callbacks, cb];
    return () => {
      this.#callbacks = this.#callbacks.filter((c) => c !== cb);
    };
  }

  /** The `send` hook for a message we originate. */
  sendHook(target: SwarmPeerInfo | undefined, data: Buffer, broadcast: boolean): void {
    const h = this.#d.hooks.send;
    if (!h) return;
    try {
      h({ target, data, broadcast });
    } catch (e) {
      this.#d.report(e);
    }
  }

  /** Entry point from the router. Never throws. */
  deliver(env: Envelope, from: Link | undefined): void {
    const src = this.#d.info(nodeIdOf(env.originKey).toString('hex'), Buffer.from(env.originKey));
    if (env.kind !== KIND_USER) {
      const b = this.#builtins.get(env.kind);
      if (b) {
        try {
          b(env, from, src);
        } catch (e) {
          this.#d.report(e);
        }
      }
      return;
    }
    const msg = this.#message(env, src);
    if (this.#d.hooks.recv) {
      try {
        this.#d.hooks.recv(msg);
      } catch (e) {
        this.#d.report(e);
      }
    }
    const conn = from ? this.#conn(from) : undefined;
    if (this.#chain) {
      const n = msg.data.length;
      if (this.#pending >= MAX_PENDING_DELIVERIES || this.#pendingBytes + n > MAX_PENDING_DELIVERY_BYTES) {
        const s = this.#d.stats();
        if (s) s.queueDropped++;
        return;
      }
      this.#pending++;
      this.#pendingBytes += n;
      this.#track(
        this.#chain.then(() => this.#runAsync(msg, conn, 0, undefined)).finally(() => {
          this.#pending--;
          this.#pendingBytes -= n;
        }),
      );
      return;
    }
    const hs = this.#handlers;
    for (let i = 0; i < hs.length; i++) {
      let r: unknown;
      try {
        r = (hs[i] as SwarmHandler)(msg, conn);
      } catch (e) {
        this.#d.report(e);
        continue;
      }
      if (isThenable(r)) {
        this.#track(this.#runAsync(msg, conn, i + 1, r));
        return;
      }
      if (r) return;
    }
    this.#queue(msg);
  }

  #track(p: Promise<void>): void {
    const chain = p.catch((e: unknown) => this.#d.report(e));
    this.#chain = chain;
    void chain.then(() => {
      if (this.#chain === chain) this.#chain = undefined;
    });
  }

  async #runAsync(msg: SwarmMessage, conn: SwarmConnection | undefined, from: number, first: PromiseLike<unknown> | undefined): Promise<void> {
    if (first) {
      try {
        if (await first) return;
      } catch (e) {
        this.#d.report(e);
      }
    }
    const hs = this.#handlers;
    for (let i = from; i < hs.length; i++) {
      try {
        if (await (hs[i] as SwarmHandler)(msg, conn)) return;
      } catch (e) {
        this.#d.report(e);
      }
    }
    this.#queue(msg);
  }

  #queue(msg: SwarmMessage): void {
    const cbs = this.#callbacks;
    if (cbs.length === 0) {
      this.#inbox.push(msg);
      return;
    }
    for (const cb of cbs) {
      try {
        const r = cb(msg);
        if (isThenable(r)) r.then(undefined, (e: unknown) => this.#d.report(e));
      } catch (e) {
        this.#d.report(e);
      }
    }
  }

  #message(env: Envelope, src: SwarmPeerInfo): SwarmMessage {
    const reply = (data: string | Uint8Array, opts?: SendOptions): Promise<void> => this.#d.reply(src.id, data, opts);
    return {
      src,
      data: env.payload,
      more: false,
      broadcast: env.type === FRAME_BCAST,
      msgId: Buffer.from(env.msgId),
      timestamp: env.timestamp,
      hops: env.hops,
      reply,
    };
  }

  #conn(link: Link): SwarmConnection {
    const peer = this.#d.info(link.remoteIdHex, link.member.publicKey);
    return { peer, remote: link.io.remote, send: (data, opts) => this.#d.reply(peer.id, data, opts) };
  }

  /** Next queued message, with `more` = whether others are still queued. */
  recv(opts: AbortOptions): Promise<SwarmMessage> {
    return this.#inbox.next(opts).then((m) => ({ ...m, more: this.#inbox.length > 0 }));
  }

  tryRecv(): SwarmMessage | undefined {
    const m = this.#inbox.take();
    return m ? { ...m, more: this.#inbox.length > 0 } : undefined;
  }

  close(): void {
    this.#inbox.close();
  }
}
