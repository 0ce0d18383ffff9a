/**
 * `PipeDhtTransport`: a {@link DhtTransport} over TCP pipes, for DHT nodes that run without
 * the swarm (see `standalone.ts`).
 *
 * - A listening {@link TcpServer} accepts peers; every accepted connection becomes a *link*.
 * - Outgoing connections are pooled per contact (at most `maxConnections`; the least recently
 *   used idle one is closed to make room), shared by every request to that contact, and
 *   re-opened when they fail: a request whose pooled link turns out to be dead is retried
 *   once on a fresh connection, within the same timeout.
 * - A link idle (no frame either way, nothing in flight) for `idleTimeout` is closed. At most
 *   `maxInbound` accepted connections (handshakes included) are kept: the least recently used
 *   idle one makes room for a newcomer, else the newcomer is reset.
 * - Each link carries one {@link DhtConnection} (txids, concurrent requests both ways,
 *   limits). A peer that keeps sending frames that do not decode (more than `maxMalformed`),
 *   or one frame over the size limit, is disconnected; no other link is affected.
 *
 * ## Secure and plain modes
 * `secure: true` (the default when an `identity` is given) runs the p2pd Noise XX handshake
 * (`secure()` of `src/crypto/secure-pipe.ts`) on every link. Outgoing handshakes are pinned to
 * the contact's id, so whoever listens at an address cannot pass for another node; the
 * peer's authenticated id is given to the DHT as `remoteId`, so a request whose `sender`
 * claims another id is dropped. An accepted link authenticated as node X, on which X sent a
 * request advertising its contact (`sender`), is reused for our own requests to exactly that
 * contact (same id and address).
 *
 * `secure: false` sends plain length-framed DHT messages. Ids are then **unauthenticated**:
 * anyone can claim any id in a `sender` or `responder` field (the node pings a new sender at
 * its claimed address before adding it to its routing table), and traffic is neither
 * confidential nor integrity-protected. Records are still signature-checked end to end, so a
 * peer can withhold records but cannot forge or alter them.
 *
 * Every timer is `unref`'d; {@link PipeDhtTransport.close} closes the server, every link and
 * every connection attempt.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, InvalidArgumentError, P2pdError, PipeClosedError } from '../errors.js';
import { unmapHost, type Endpoint, type Family } from '../interfaces/endpoint.js';
import { isUnspecified } from '../interfaces/scope.js';
import { pipeOpen } from '../pipes/open.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpPipe } from '../pipes/tcp.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import type { Message } from '../pipes/types.js';
import { cancellable, closeWithin, forceSignal, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { DhtConnection } from './connection.js';
import { contactAddress, contactProblem, type Contact } from './contact.js';
import { idEquals, idToHex, type DhtId } from './id.js';
import type { DhtRequest, DhtResponse } from './messages.js';
import {
  DEFAULT_DHT_CONNECT_TIMEOUT, DEFAULT_DHT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INBOUND, MAX_DHT_FRAME,
  type LinkUpgrade, type PipeDhtTransportOptions, type PipeDhtTransportStats, type UpgradedLink,
} from './pipe-transport-options.js';
import { FrameSink, Link, LinkPool } from './pipe-transport-pool.js';
import { checkListenOptions, guessHost, option } from './pipe-transport-setup.js';
import { linkSignals, type DhtRequestHandler, type DhtRequestOptions, type DhtTransport } from './transport.js';

export {
  DEFAULT_DHT_CONNECT_TIMEOUT, DEFAULT_DHT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INBOUND, MAX_DHT_FRAME,
  type LinkUpgrade, type LinkUpgradeOptions, type PipeDhtTransportOptions, type PipeDhtTransportStats, type UpgradedLink,
} from './pipe-transport-options.js';
export { noiseUpgrade } from './pipe-transport-setup.js';

/** A DHT transport over TCP pipes, secure (Noise) or plain. */
export class PipeDhtTransport implements DhtTransport {
  /** Our contact: id, the address others reach us at, and our public key when known. */
  readonly contact: Contact;
  /** The listening server. */
  readonly server: TcpServer;
  /** True if every link runs the secure handshake. */
  readonly secure: boolean;
  /** Counters. */
  readonly stats: PipeDhtTransportStats = {
    connects: 0, connectFailures: 0, reconnects: 0, accepted: 0, refused: 0, handshakeFailures: 0, misbehaving: 0, evicted: 0, idleClosed: 0,
  };
  readonly #upgrade: LinkUpgrade | undefined;
  readonly #maxConnections: number;
  readonly #maxInbound: number;
  readonly #idleTimeout: number;
  readonly #connectTimeout: number;
  readonly #handshakeTimeout: number;
  readonly #connOpts: { maxMalformed?: number; maxPending?: number; maxServing?: number };
  readonly #closeCtrl = new AbortController();
  /** Every link, indexed. */
  readonly #pool: LinkPool;
  /** Accepted raw pipes still in the handshake. */
  readonly #handshaking = new Set<TcpPipe>();
  /** Connection attempts and handshakes in progress. */
  readonly #attempts = new Set<Promise<unknown>>();
  #handler: DhtRequestHandler | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  private constructor(server: TcpServer, contact: Contact, upgrade: LinkUpgrade | undefined, opts: PipeDhtTransportOptions) {
    setMaxListeners(0, this.#closeCtrl.signal); // every connection attempt listens for close
    this.server = server;
    this.contact = contact;
    this.secure = upgrade !== undefined;
    this.#upgrade = upgrade;
    this.#maxConnections = option(opts.maxConnections, DEFAULT_MAX_CONNECTIONS, 'maxConnections');
    this.#maxInbound = option(opts.maxInbound, DEFAULT_MAX_INBOUND, 'maxInbound');
    this.#idleTimeout = option(opts.idleTimeout, DEFAULT_IDLE_TIMEOUT, 'idleTimeout', true);
    this.#connectTimeout = option(opts.connectTimeout, DEFAULT_DHT_CONNECT_TIMEOUT, 'connectTimeout');
    this.#handshakeTimeout = option(opts.handshakeTimeout, DEFAULT_DHT_HANDSHAKE_TIMEOUT, 'handshakeTimeout');
    this.#pool = new LinkPool(this.stats, this.#maxConnections);
    this.#connOpts = {
      ...(opts.maxMalformed !== undefined ? { maxMalformed: opts.maxMalformed } : {}),
      ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
      ...(opts.maxServing !== undefined ? { maxServing: opts.maxServing } : {}),
    };
    server.onConnection((p) => this.#accept(p));
    server.onError(() => undefined); // our callbacks do not throw; nothing to report
    if (this.#idleTimeout > 0) {
      this.#sweep = setInterval(() => this.#pool.sweepIdle(this.#idleTimeout), Math.max(50, Math.min(this.#idleTimeout / 2, 30_000)));
      this.#sweep.unref();
    }
  }

  /**
   * Opens the listening socket and returns the transport; give it to a `DhtNode` with
   * `contact: transport.contact`.
   * @throws InvalidArgumentError on bad options (e.g. `secure` without an identity);
   *   BindError if the address cannot be bound; AbortError / TimeoutError from `abort`.
   */
  static async listen(opts: PipeDhtTransportOptions, abort: AbortOptions = {}): Promise<PipeDhtTransport> {
    throwIfAborted(abort.signal);
    const { identity, id, upgrade } = checkListenOptions(opts);
    const secure = upgrade !== undefined;
    let self: PipeDhtTransport | undefined;
    // Plain: a server-level callback delivers every accepted pipe's frames (and keeps them
    // from queueing for recv()). Secure: no server callback, the secure layer owns the pipes.
    const server = await pipeOpen('tcp', undefined, {
      bind: opts.bind ?? { host: '0.0.0.0', port: 0 },
      framing: secure ? 'raw' : 'length',
      maxMessageSize: MAX_DHT_FRAME,
      ...(secure ? {} : { onMessage: (m: Message) => (self ? self.#onPlainFrame(m) : undefined) }),
      ...(abort.signal ? { signal: abort.signal } : {}),
      ...(abort.timeout !== undefined ? { timeout: abort.timeout } : {}),
    });
    try {
      const local = server.local;
      const host = opts.publicHost ?? (isUnspecified(local.host) ? guessHost(local.family) : local.host);
      const port = opts.publicPort ?? local.port;
      const family: Family = host.includes(':') ? 6 : 4;
      const contact: Contact = identity
        ? { id, host, port, family, publicKey: new Uint8Array(identity.publicKey) }
        : { id, host, port, family };
      const problem = contactProblem(contact);
      if (problem) throw new InvalidArgumentError(`DHT contact ${host}:${port}: ${problem}`);
      self = new PipeDhtTransport(server, contact, upgrade, opts);
      return self;
    } catch (e) {
      await server.close();
      throw e;
    }
  }

  /** The address we listen on. */
  get local(): Endpoint {
    return this.server.local;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closeCtrl.signal.aborted;
  }

  /** Open links (outgoing, accepted) and accepted connections still in the handshake. */
  get connections(): { outbound: number; inbound: number; handshaking: number } {
    let outbound = 0;
    for (const l of this.#pool.links) if (l.outbound) outbound++;
    return { outbound, inbound: this.#pool.links.size - outbound, handshaking: this.#handshaking.size };
  }

  /** Installs the handler serving incoming requests. */
  onRequest(handler: DhtRequestHandler | undefined): void {
    this.#handler = handler;
  }

  /** Sends `req` to `to` over a pooled (or new) link and resolves with the response. */
  async request(to: Contact, req: DhtRequest, opts: DhtRequestOptions = {}): Promise<DhtResponse> {
    if (this.closed) throw new PipeClosedError('DHT transport is closed');
    const problem = contactProblem(to);
    if (problem) throw new InvalidArgumentError(`DHT contact: ${problem}`);
    const ls = linkSignals(opts, [this.#closeCtrl.signal], `DHT ${req.type} to ${contactAddress(to)}`);
    try {
      for (let attempt = 0; ; attempt++) {
        const { link, fresh } = await this.#linkFor(to, ls.signal);
        try {
          return await link.conn.request(req, { signal: ls.signal });
        } catch (e) {
          // A pooled link that died under us (peer restarted, closed it as idle): once more on a new one.
          if (fresh || attempt > 0 || ls.signal.aborted || !(e instanceof PipeClosedError)) throw e;
          this.stats.reconnects++;
        }
      }
    } finally {
      ls.done();
      if (this.#pool.out.size > this.#maxConnections) this.#pool.trim();
    }
  }

  /**
   * Closes the server, every link and every connection attempt. Idempotent. With `opts`, a
   * signal that aborts or a timeout that passes first resets what is still open and rejects
   * with `AbortError` / `TimeoutError` once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.#closeGracefully(), opts, () => {
      const now = forceSignal(new AbortError('DHT transport closed'));
      for (const l of this.#pool.links) l.pipe.close({ signal: now }).catch(() => undefined);
      this.server.close({ signal: now }).catch(() => undefined);
    }, 'DHT transport close');
  }

  #closeGracefully(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closeCtrl.abort(new AbortError('DHT transport closed'));
    this.#handler = undefined;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#closing = (async () => {
      // Attempts see the abort and close their own pipes.
      await Promise.allSettled([...this.#attempts]);
      // Links first (a secure link sends its authenticated close), then the server.
      const links = [...this.#pool.links].map((l) => l.pipe.close());
      await Promise.allSettled([...links, this.server.close()]);
      this.#pool.out.clear();
    })();
    return this.#closing;
  }

  /** `await using t = await PipeDhtTransport.listen(…)` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- internals ----------------------------------------------------------------------

  readonly #onPlainFrame = (m: Message): void => {
    this.#pool.byPipe.get(m.pipe)?.receive(m.data);
  };

  #poolKey(to: Contact): string {
    const addr = contactAddress(to);
    return this.secure ? `${idToHex(to.id)}@${addr}` : addr;
  }

  async #linkFor(to: Contact, signal: AbortSignal): Promise<{ link: Link; fresh: boolean }> {
    const key = this.#poolKey(to);
    const have = this.#pool.out.get(key);
    if (have instanceof Link) {
      have.lastUsed = Date.now();
      return { link: have, fresh: false };
    }
    if (have === undefined) {
      const inbound = this.#pool.inByKey.get(key);
      if (inbound) {
        inbound.lastUsed = Date.now();
        return { link: inbound, fresh: false };
      }
    }
    const pending = have ?? this.#connect(key, to);
    // Each requester waits with its own signal; the attempt itself is bounded by its timeouts.
    const link = await cancellable<Link>({ signal }, `connect to ${contactAddress(to)}`, (resolve, reject) => {
      pending.then(resolve, reject);
    });
    return { link, fresh: true };
  }

  /** Opens (and in secure mode authenticates) a link to `to`, pooled under `key`. */
  #connect(key: string, to: Contact): Promise<Link> {
    this.#pool.makeRoom();
    const signal = this.#closeCtrl.signal;
    const upgrade = this.#upgrade;
    let attempt: Promise<Link> | undefined;
    attempt = (async (): Promise<Link> => {
      let raw: TcpPipe | undefined;
      try {
        raw = await pipeOpen('tcp', { host: to.host, port: to.port }, {
          framing: upgrade ? 'raw' : 'length',
          maxMessageSize: MAX_DHT_FRAME,
          timeout: this.#connectTimeout,
          signal,
          ...(upgrade ? {} : { onMessage: this.#onPlainFrame }),
        });
        let link: Link;
        if (upgrade) {
          const sink = new FrameSink();
          let up: UpgradedLink;
          try {
            up = await upgrade(raw, { initiator: true, remoteId: to.id, signal, timeout: this.#handshakeTimeout, onFrame: sink.push });
          } catch (e) {
            if (!this.closed) this.stats.handshakeFailures++;
            throw e;
          }
          if (this.closed) {
            await up.pipe.close().catch(() => undefined);
            throw new PipeClosedError('DHT transport is closed');
          }
          link = this.#addLink(up.pipe, true, key, up.remoteId);
          sink.attach(link);
        } else {
          if (this.closed) throw new PipeClosedError('DHT transport is closed');
          link = this.#addLink(raw, true, key, undefined);
        }
        this.#pool.out.set(key, link);
        this.stats.connects++;
        return link;
      } catch (e) {
        this.stats.connectFailures++;
        if (this.#pool.out.get(key) === attempt) this.#pool.out.delete(key);
        if (raw && !raw.closed) await raw.close().catch(() => undefined);
        throw e;
      }
    })();
    this.#pool.out.set(key, attempt);
    this.#track(attempt);
    return attempt;
  }

  #track(p: Promise<unknown>): void {
    this.#attempts.add(p);
    const done = (): void => void this.#attempts.delete(p);
    p.then(done, done);
  }

  /** Wires a ready pipe to a new DhtConnection. */
  #addLink(pipe: Pipe, outbound: boolean, key: string | undefined, remoteId: DhtId | undefined): Link {
    const remote = pipe.remote;
    const host = remote ? unmapHost(remote.host) : undefined;
    const link = new Link(pipe, outbound, key, remoteId, (l) =>
      new DhtConnection({
        ...this.#connOpts,
        send: (frame) => {
          l.lastUsed = Date.now();
          return pipe.send(frame);
        },
        handler: () => this.#handlerFor(l),
        localId: this.contact.id,
        context: {
          ...(remoteId ? { remoteId } : {}),
          ...(remote && host ? { remoteAddress: { host, port: remote.port, family: host.includes(':') ? 6 : 4 } } : {}),
        },
        onMisbehaving: () => {
          this.stats.misbehaving++;
          this.#pool.drop(l);
        },
      }),
    );
    this.#pool.add(link, !this.secure);
    pipe.onError(() => undefined);
    pipe.onClose((err) => {
      this.#pool.forget(link);
      link.conn.close(err);
      // A frame over the size limit (or undecryptable) closes the pipe: the peer misbehaved.
      if (err instanceof P2pdError && (err.code === 'ERR_FRAME' || err.code === 'ERR_DECRYPT' || err.code === 'ERR_MESSAGE_TOO_BIG')) {
        this.stats.misbehaving++;
      }
    });
    return link;
  }

  /**
   * The request handler as seen by one link. On an accepted secure link, a request whose
   * `sender` is the authenticated peer tells us where that peer listens: the link then also
   * serves our requests to that very contact (never to the same id at another address, which
   * would let a third party make us vouch for an address the peer does not use).
   */
  #handlerFor(link: Link): DhtRequestHandler | undefined {
    const h = this.#handler;
    if (!h || link.outbound || !link.remoteId) return h;
    return (req, ctx) => {
      const s = req.sender;
      if (s && idEquals(s.id, link.remoteId as DhtId) && contactProblem(s) === undefined) {
        this.#pool.advertise(link, this.#poolKey(s));
      }
      return h(req, ctx);
    };
  }

  /** An accepted connection: a link at once (plain) or after the handshake (secure). */
  #accept(raw: TcpPipe): void {
    if (this.closed || (this.#pool.in.size + this.#handshaking.size >= this.#maxInbound && !this.#pool.evict(this.#pool.in))) {
      this.stats.refused++;
      raw.reset();
      return;
    }
    const upgrade = this.#upgrade;
    if (!upgrade) {
      this.#addLink(raw, false, undefined, undefined);
      this.stats.accepted++;
      return;
    }
    this.#handshaking.add(raw);
    const sink = new FrameSink();
    this.#track(
      (async () => {
        try {
          const up = await upgrade(raw, { initiator: false, signal: this.#closeCtrl.signal, timeout: this.#handshakeTimeout, onFrame: sink.push });
          if (this.closed) {
            await up.pipe.close().catch(() => undefined);
            return;
          }
          sink.attach(this.#addLink(up.pipe, false, undefined, up.remoteId));
          this.stats.accepted++;
        } catch {
          if (!this.closed) this.stats.handshakeFailures++;
          if (!raw.closed) await raw.close().catch(() => undefined);
        } finally {
          this.#handshaking.delete(raw);
        }
      })(),
    );
  }
}
