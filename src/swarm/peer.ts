/**
 * `SwarmPeer`: the socket-like facade of a swarm node (Cicada's `SwarmPeer` shape, working).
 * See `index.ts` for the design overview.
 * @module
 */
import { EventEmitter } from 'node:events';
import { AbortError, CongestedError, InvalidArgumentError, NotBoundError, PipeClosedError, RoutingError, StateError, type ProtocolDescriptor, type ProtocolMismatchError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import { toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { checkOptions } from '../util/args.js';
import { pipeOpen } from '../pipes/open.js';
import { handled } from '../pipes/pipe.js';
import { toBuffer } from '../pipes/tcp.js';
import { closeWithin, forceSignal, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { DEFAULT_MAX_QUEUE, MAX_EXCLUDE } from './constants.js';
import { SwarmCore } from './core.js';
import { Delivery, type BuiltinHandler } from './delivery.js';
import { FRAME_BCAST, FRAME_DATA, KIND_USER } from './envelope.js';
import type { Link } from './link.js';
import { PeerInfoCache } from './peer-infos.js';
import { checkBindAddress, checkCoreCounts, coreConfig, positiveInt } from './peer-options.js';
import { resolveProtocol, type ResolvedProtocol } from './protocol.js';
import { resolveTarget } from './target.js';
import {
  emptyStats, type BroadcastOptions, type SendOptions, type SwarmBindOptions, type SwarmHandler, type SwarmMessage, type SwarmPeerInfo,
  type SwarmPeerOptions, type SwarmStats, type SwarmTarget,
} from './types.js';

/** Events of a {@link SwarmPeer}. */
export interface SwarmPeerEvents {
  /** A new neighbour link. */
  peer: [peer: SwarmPeerInfo];
  /** A neighbour's last link closed. */
  peerLeft: [peer: SwarmPeerInfo, err: Error | undefined];
  /** Membership changed (`new`, `updated`, `left`, `expired`). */
  member: [peer: SwarmPeerInfo, change: string];
  /** A peer speaking another protocol was refused (incoming or outgoing). */
  protocolMismatch: [err: ProtocolMismatchError, remote: Endpoint | undefined];
  /** An error with no other place to go (a throwing hook or handler). */
  error: [err: Error];
}

/**
 * A swarm node. `bind()` first; then `connect()` to any member to join (or nothing, to be the
 * first); `send()`/`broadcast()`/`recv()`; `close()` at the end.
 *
 * @example
 * const a = new SwarmPeer(); await a.bind('127.0.0.1', 0);
 * const b = new SwarmPeer(); await b.bind('127.0.0.1', 0); await b.connect('127.0.0.1', a.endpoint.port);
 * await b.send(a.endpoint, 'hello');
 * const { src, data, more } = await a.recv(); // src.idHex === b.idHex
 */
export class SwarmPeer extends EventEmitter<SwarmPeerEvents> {
  /** Our identity. */
  readonly identity: Identity;
  /** Our node id (SHA-256 of our public key). */
  readonly id: Buffer;
  /** {@link id} in hex. */
  readonly idHex: string;
  /** Our protocol identity. */
  readonly protocol: ProtocolDescriptor;
  readonly #proto: ResolvedProtocol;
  readonly #opts: SwarmPeerOptions;
  readonly #delivery: Delivery;
  #core: SwarmCore | undefined;
  #binding: Promise<void> | undefined;
  /** A close with `opts` gave up waiting: whatever is still open is reset. */
  #forced = false;
  #closing: Promise<void> | undefined;
  readonly #infos = new PeerInfoCache(() => this.#core?.members);

  constructor(opts: SwarmPeerOptions = {}) {
    super({ captureRejections: false });
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('SwarmPeer options must be an object');
    if (opts.identity !== undefined && !(opts.identity instanceof Identity)) throw new InvalidArgumentError('identity must be an Identity');
    this.identity = opts.identity ?? Identity.generate();
    this.id = this.identity.id;
    this.idHex = this.identity.idHex;
    this.#proto = resolveProtocol(opts.protocol);
    this.protocol = Object.freeze({ name: this.#proto.name, version: this.#proto.version, encrypted: this.#proto.encrypted });
    checkCoreCounts(opts);
    this.#opts = opts;
    this.#delivery = new Delivery({
      hooks: opts.hooks ?? {},
      maxQueue: positiveInt(opts.maxQueue, DEFAULT_MAX_QUEUE, 'maxQueue'),
      info: (idHex, key) => this.#infos.info(idHex, key),
      reply: (to, data, o) => this.send(to, data, o),
      report: (e) => this.#report(e),
      stats: () => this.#core?.stats,
    });
  }

  /** True once `bind()` succeeded. */
  get bound(): boolean {
    return this.#core !== undefined;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The endpoint we advertise (others dial it); still readable after close. @throws {@link NotBoundError} before `bind()` */
  get endpoint(): Endpoint {
    if (!this.#core) throw new NotBoundError('you must call bind() first');
    return this.#core.endpoint;
  }

  /** Alias of {@link endpoint} (Cicada's `listener`). */
  get listener(): Endpoint {
    return this.endpoint;
  }

  /** Current neighbours (nodes we hold a link to). */
  get peers(): SwarmPeerInfo[] {
    return [...this.#need().links.values()].map((l) => this.#infos.member(l.member));
  }

  /** Every member we know (ourselves excluded). */
  get members(): SwarmPeerInfo[] {
    return [...this.#need().members.alive()].map((m) => this.#infos.member(m));
  }

  /** Counters (zeros before `bind()`). */
  get stats(): SwarmStats {
    return this.#core?.stats ?? emptyStats();
  }

  #need(): SwarmCore {
    if (this.#closing) throw new StateError('swarm peer is closed');
    if (!this.#core) throw new NotBoundError('you must call bind() before using the swarm peer');
    return this.#core;
  }

  #report(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(`p2pd swarm: ${err.message}`, { code: 'P2PD_SWARM' });
  }

  /**
   * Listens on `host:port` (port 0 = any free port) and starts the node. Must come first.
   * Binding a wildcard address (`0.0.0.0`, `::`) needs `externalHost` (the address others dial).
   * @throws {@link StateError} if already bound or closed; `BindError` if the address is taken.
   */
  async bind(host: string, port: number, opts: SwarmBindOptions & AbortOptions = {}): Promise<void> {
    checkOptions(opts, 'bind options');
    if (this.#closing) throw new StateError('swarm peer is closed');
    if (this.#binding) throw new StateError('bind() was already called');
    const ext = checkBindAddress(host, port, opts);
    throwIfAborted(opts.signal);
    this.#binding = (async () => {
      const server = await pipeOpen('tcp', undefined, { bind: { host, port }, framing: 'raw', signal: opts.signal, timeout: opts.timeout });
      server.onError(() => undefined);
      if (this.#closing) {
        await server.close();
        throw new StateError('swarm peer closed during bind()');
      }
      const endpoint = toEndpoint({ host: ext.host, port: opts.externalPort || server.local.port });
      this.#core = new SwarmCore(
        coreConfig(this.identity, this.#proto, this.#opts),
        {
          deliver: (env, from) => this.#delivery.deliver(env, from),
          linkUp: (l) => this.#safe(() => {
            const info = this.#infos.member(l.member);
            this.#opts.hooks?.newPeer?.(info);
            this.emit('peer', info);
          }),
          linkDown: (l, err) => this.#safe(() => this.emit('peerLeft', this.#infos.member(l.member), err)),
          mismatch: (err, remote) => this.#safe(() => this.emit('protocolMismatch', err, remote)),
          member: (m, change) => this.#safe(() => this.emit('member', this.#infos.member(m), change)),
        },
        server,
        endpoint,
      );
    })();
    try {
      await this.#binding;
    } catch (e) {
      this.#binding = undefined;
      throw e;
    }
  }

  #safe(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#report(e);
    }
  }

  /**
   * Joins the swarm through any member listening at `host:port`. Resolves with that member's
   * info once its member list arrived. Rejects with `ProtocolMismatchError` (also emitted as
   * `protocolMismatch`), `TimeoutError`, connection errors.
   */
  async connect(host: string | EndpointLike, port?: number, opts: AbortOptions = {}): Promise<SwarmPeerInfo> {
    checkOptions(opts, 'connect options');
    const core = this.#need();
    const dest = typeof host === 'string' && port !== undefined ? toEndpoint({ host, port }) : toEndpoint(host as EndpointLike);
    if (dest.host === core.endpoint.host && dest.port === core.endpoint.port) throw new InvalidArgumentError('cannot connect to ourselves');
    const link: Link = await core.connect(dest, opts);
    return this.#infos.member(link.member);
  }

  /**
   * Sends `data` to exactly one node — `target` is an endpoint (`'host:port'`, `[host, port]`,
   * `{ host, port }`), a node id (32 bytes or 64 hex), a `SwarmPeer` or a peer info — over as
   * many hops as needed. Resolves once handed to the first hop(s). `duplicates: k` sends k
   * extra copies over disjoint first hops; the receiver delivers once.
   *
   * As with `Pipe.send`, the returned promise is marked handled: a send nobody awaits
   * (`void peer.send(…)`) that fails is not an unhandled rejection; awaited, it rejects.
   * @throws `RoutingError` (unknown target), `CongestedError` (`ERR_CONGESTED`: every first hop's
   *   send buffer is full, nothing was sent), `InvalidArgumentError` (bad target type or options), `MessageTooBigError`.
   */
  send(target: SwarmTarget, data: string | Uint8Array, opts: SendOptions = {}): Promise<void> {
    return handled(this.#send(target, data, opts));
  }

  async #send(target: SwarmTarget, data: string | Uint8Array, opts: SendOptions): Promise<void> {
    checkOptions(opts, 'send options');
    const core = this.#need();
    throwIfAborted(opts.signal);
    const dup = opts.duplicates ?? 0;
    if (!Number.isInteger(dup) || dup < 0 || dup > 16) throw new InvalidArgumentError('duplicates must be an integer 0..16');
    const id = resolveTarget(target, core, this.id);
    const payload = toBuffer(data);
    this.#delivery.sendHook(id.equals(this.id) ? undefined : this.#infos.info(id.toString('hex'), Buffer.alloc(0)), payload, false);
    const { hops, accepted } = core.originate(FRAME_DATA, KIND_USER, payload, id, undefined, dup);
    if (hops === 0 && !id.equals(this.id)) throw new RoutingError('no link to any swarm member: the message could not be sent');
    if (hops > 0 && accepted === 0) {
      throw new CongestedError(`every first hop (${hops}) has a full send buffer: the message was not sent; slow down and retry`);
    }
  }

  /**
   * Sends `data` to every other member exactly once (never to ourselves). `exclude`d nodes
   * relay it but do not deliver it. The returned promise is marked handled, as for {@link send}.
   * @throws `InvalidArgumentError` (bad data, `exclude` or options), `StateError` / `NotBoundError`.
   */
  broadcast(data: string | Uint8Array, opts: BroadcastOptions = {}): Promise<void> {
    return handled(this.#broadcast(data, opts));
  }

  async #broadcast(data: string | Uint8Array, opts: BroadcastOptions): Promise<void> {
    checkOptions(opts, 'broadcast options');
    const core = this.#need();
    throwIfAborted(opts.signal);
    if (opts.exclude !== undefined && !Array.isArray(opts.exclude)) throw new InvalidArgumentError('exclude must be an array of targets');
    const exclude = (opts.exclude ?? []).map((t) => resolveTarget(t, core, this.id, false));
    if (exclude.length > MAX_EXCLUDE) throw new InvalidArgumentError(`exclude lists at most ${MAX_EXCLUDE} nodes`);
    const payload = toBuffer(data);
    this.#delivery.sendHook(undefined, payload, true);
    core.originate(FRAME_BCAST, KIND_USER, payload, undefined, exclude);
  }

  /**
   * Resolves with the next message not consumed by a handler: `{ src, data, more }` where
   * `more` tells whether further messages are already queued. After `close()` queued
   * messages stay readable, then it rejects with `PipeClosedError`.
   */
  recv(opts: AbortOptions = {}): Promise<SwarmMessage> {
    // After close, queued messages stay readable; then it rejects with PipeClosedError.
    if (!this.#closing && !this.#core) return Promise.reject(new NotBoundError('you must call bind() before recv()'));
    return this.#delivery.recv(opts);
  }

  /** Takes an already-queued message, or `undefined`. */
  tryRecv(): SwarmMessage | undefined {
    if (!this.#closing && !this.#core) throw new NotBoundError('you must call bind() before tryRecv()');
    return this.#delivery.tryRecv();
  }

  /** Messages waiting in the `recv()` queue. */
  get queued(): number {
    return this.#delivery.queued;
  }

  /**
   * Registers a message callback; returns a remover. While at least one callback is
   * registered, messages go to the callbacks and are not queued for `recv()`.
   */
  onMessage(cb: (msg: SwarmMessage) => void | Promise<void>): () => void {
    return this.#delivery.onMessage(cb);
  }

  /** Async iteration over received messages; ends when the peer closes and the queue is drained. */
  async *messages(opts: AbortOptions = {}): AsyncGenerator<SwarmMessage, void, undefined> {
    if (!this.#closing && !this.#core) throw new NotBoundError('you must call bind() before iterating');
    for (;;) {
      let m: SwarmMessage;
      try {
        m = await this.#delivery.recv({ ...(opts.signal ? { signal: opts.signal } : {}) });
      } catch (e) {
        if (e instanceof PipeClosedError) return;
        throw e;
      }
      yield m;
    }
  }

  /** `for await (const msg of peer)`. */
  [Symbol.asyncIterator](): AsyncGenerator<SwarmMessage, void, undefined> {
    return this.messages();
  }

  /**
   * Adds a handler after the built-in ones. It must declare exactly two parameters
   * `(msg, conn)`; else `InvalidArgumentError`. Returns a remover.
   */
  registerHandler(handler: SwarmHandler): () => void {
    return this.#delivery.registerHandler(handler);
  }

  /** @internal Built-in service hook: handles messages of `kind` (≠ 0) before user handlers. */
  registerBuiltin(kind: number, handler: BuiltinHandler): () => void {
    return this.#delivery.registerBuiltin(kind, handler);
  }

  /** @internal Sends a built-in service message (`kind` ≠ 0) to one node. */
  sendInternal(kind: number, target: Buffer, payload: Buffer): void {
    this.#need().originate(FRAME_DATA, kind, payload, target);
  }

  /** @internal Broadcasts a built-in service message (`kind` ≠ 0). */
  broadcastInternal(kind: number, payload: Buffer): void {
    this.#need().originate(FRAME_BCAST, kind, payload);
  }

  /** @internal Hash of our protocol identity (mixed into every signature of this swarm). */
  get protocolHash(): Buffer {
    return this.#proto.hash;
  }

  /** @internal The running core (testnet and tests). */
  get core(): SwarmCore {
    return this.#need();
  }

  /**
   * Leaves the swarm (signed goodbye), closes every link and the listener. Queued messages stay
   * readable. Idempotent. With `opts`, a signal that aborts or a timeout that passes first
   * resets the links still open and rejects with `AbortError` / `TimeoutError` once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    const graceful = (): Promise<void> =>
      (this.#closing ??= (async () => {
        await this.#binding?.catch(() => undefined);
        this.#delivery.close();
        await this.#core?.close(this.#forced ? { signal: forceSignal(new AbortError('swarm peer closed')) } : undefined).catch((e: unknown) => {
          if (!this.#forced) throw e;
        });
      })());
    return closeWithin(graceful, opts, () => {
      this.#forced = true;
      this.#core?.close({ signal: forceSignal(new AbortError('swarm peer closed')) }).catch(() => undefined);
    }, 'swarm peer close');
  }

  /** `await using peer = new SwarmPeer()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
