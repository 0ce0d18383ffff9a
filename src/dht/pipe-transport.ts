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
 *
 * Links are opened, accepted and wired in `pipe-transport-links.ts` and indexed in
 * `pipe-transport-pool.ts`; options are checked in `pipe-transport-setup.ts`.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, InvalidArgumentError, PipeClosedError } from '../errors.js';
import type { Endpoint, Family } from '../interfaces/endpoint.js';
import { isUnspecified } from '../interfaces/scope.js';
import { pipeOpen } from '../pipes/open.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import type { Message } from '../pipes/types.js';
import { closeWithin, forceSignal, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { contactAddress, contactProblem, type Contact } from './contact.js';
import type { DhtRequest, DhtResponse } from './messages.js';
import {
  DEFAULT_DHT_CONNECT_TIMEOUT, DEFAULT_DHT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INBOUND, MAX_DHT_FRAME,
  type LinkUpgrade, type PipeDhtTransportOptions, type PipeDhtTransportStats,
} from './pipe-transport-options.js';
import { LinkManager } from './pipe-transport-links.js';
import { LinkPool } from './pipe-transport-pool.js';
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
  readonly #maxConnections: number;
  readonly #idleTimeout: number;
  readonly #closeCtrl = new AbortController();
  /** Every link, indexed. */
  readonly #pool: LinkPool;
  /** Opens, accepts and wires links. */
  readonly #links: LinkManager;
  #handler: DhtRequestHandler | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  private constructor(server: TcpServer, contact: Contact, upgrade: LinkUpgrade | undefined, opts: PipeDhtTransportOptions) {
    setMaxListeners(0, this.#closeCtrl.signal); // every connection attempt listens for close
    this.server = server;
    this.contact = contact;
    this.secure = upgrade !== undefined;
    this.#maxConnections = option(opts.maxConnections, DEFAULT_MAX_CONNECTIONS, 'maxConnections');
    const maxInbound = option(opts.maxInbound, DEFAULT_MAX_INBOUND, 'maxInbound');
    this.#idleTimeout = option(opts.idleTimeout, DEFAULT_IDLE_TIMEOUT, 'idleTimeout', true);
    const connectTimeout = option(opts.connectTimeout, DEFAULT_DHT_CONNECT_TIMEOUT, 'connectTimeout');
    const handshakeTimeout = option(opts.handshakeTimeout, DEFAULT_DHT_HANDSHAKE_TIMEOUT, 'handshakeTimeout');
    this.#pool = new LinkPool(this.stats, this.#maxConnections);
    const connOpts = {
      ...(opts.maxMalformed !== undefined ? { maxMalformed: opts.maxMalformed } : {}),
      ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
      ...(opts.maxServing !== undefined ? { maxServing: opts.maxServing } : {}),
    };
    this.#links = new LinkManager({
      contact, upgrade, stats: this.stats, pool: this.#pool, closeSignal: this.#closeCtrl.signal, handler: () => this.#handler,
      maxInbound, connectTimeout, handshakeTimeout, connOpts,
    });
    server.onConnection((p) => this.#links.accept(p));
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
      ...(secure ? {} : { onMessage: (m: Message) => (self ? self.#links.onPlainFrame(m) : undefined) }),
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
    return { outbound, inbound: this.#pool.links.size - outbound, handshaking: this.#links.handshaking.size };
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
        const { link, fresh } = await this.#links.linkFor(to, ls.signal);
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
      await this.#links.settle();
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
}
