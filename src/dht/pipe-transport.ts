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
import { networkInterfaces } from 'node:os';
import { AbortError, InvalidArgumentError, P2pdError, PipeClosedError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { secure as securePipe } from '../crypto/secure-pipe.js';
import { unmapHost, type Endpoint, type EndpointLike, type Family } from '../interfaces/endpoint.js';
import { isUnspecified } from '../interfaces/scope.js';
import { pipeOpen } from '../pipes/open.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpPipe } from '../pipes/tcp.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import type { BindOptions, Message } from '../pipes/types.js';
import { cancellable } from '../util/abort.js';
import { DhtConnection } from './connection.js';
import { contactAddress, contactProblem, type Contact } from './contact.js';
import { idEquals, idToHex, isId, type DhtId } from './id.js';
import { MAX_MESSAGE_BYTES, type DhtRequest, type DhtResponse } from './messages.js';
import { linkSignals, type DhtRequestHandler, type DhtRequestOptions, type DhtTransport } from './transport.js';

/** Default most pooled outgoing connections. */
export const DEFAULT_MAX_CONNECTIONS = 64;
/** Default most accepted connections (handshakes in progress included). */
export const DEFAULT_MAX_INBOUND = 256;
/** Default time a link may stay idle before it is closed, ms. */
export const DEFAULT_IDLE_TIMEOUT = 60_000;
/** Default TCP connect timeout, ms (a request's own timeout bounds it too). */
export const DEFAULT_DHT_CONNECT_TIMEOUT = 5_000;
/** Default time a peer has to complete the secure handshake, ms. */
export const DEFAULT_DHT_HANDSHAKE_TIMEOUT = 10_000;
/** Largest DHT frame a link sends or accepts (one DHT message). */
export const MAX_DHT_FRAME = MAX_MESSAGE_BYTES;
/** Frames a secure link may receive before the transport has wired it (sent with the last handshake message). */
const MAX_EARLY_FRAMES = 64;

/** What the secure layer hands back: the pipe DHT frames travel on and the peer's authenticated id. */
export interface UpgradedLink {
  pipe: Pipe;
  remoteId: DhtId;
}

/** Options given to a {@link LinkUpgrade}. */
export interface LinkUpgradeOptions {
  /** `true` on the connecting side. */
  initiator: boolean;
  /** The id the peer must prove (outgoing links). */
  remoteId?: DhtId;
  /** Aborts the handshake (the transport closes). */
  signal: AbortSignal;
  /** Handshake timeout, ms. */
  timeout: number;
  /** Receives every DHT frame of the upgraded pipe, from the first one on. */
  onFrame(data: Buffer): void;
}

/**
 * The secure layer: runs a handshake over a raw (unframed) TCP pipe. Rejects (closing `raw`)
 * if the handshake fails, or `remoteId` is given and the peer proves another id.
 */
export type LinkUpgrade = (raw: TcpPipe, opts: LinkUpgradeOptions) => Promise<UpgradedLink>;

/** Options of {@link PipeDhtTransport.listen}. */
export interface PipeDhtTransportOptions {
  /**
   * Our node identity: gives our id and public key, and authenticates us in secure mode.
   * Without it `id` is required and only plain mode is possible.
   */
  identity?: Identity;
  /** Our node id when no `identity` is given (plain mode). */
  id?: DhtId;
  /** Run the Noise handshake on every link. Default `true` with an `identity`, else `false`. */
  secure?: boolean;
  /** Where to listen: `'host:port'`, `{ host, port }` or `{ host?, port?, iface? }`. Default `0.0.0.0:0`. */
  bind?: EndpointLike | BindOptions;
  /**
   * Host put in our contact (what other nodes connect to). Default: the bound address; for a
   * wildcard bind, the first non-internal address of the family, else loopback.
   */
  publicHost?: string;
  /** Port put in our contact. Default: the bound port. */
  publicPort?: number;
  /** Most pooled outgoing connections. Default {@link DEFAULT_MAX_CONNECTIONS}. */
  maxConnections?: number;
  /** Most accepted connections. Default {@link DEFAULT_MAX_INBOUND}. */
  maxInbound?: number;
  /** Idle links are closed after this many ms; `0` = never. Default {@link DEFAULT_IDLE_TIMEOUT}. */
  idleTimeout?: number;
  /** TCP connect timeout, ms. Default {@link DEFAULT_DHT_CONNECT_TIMEOUT}. */
  connectTimeout?: number;
  /** Secure handshake timeout, ms. Default {@link DEFAULT_DHT_HANDSHAKE_TIMEOUT}. */
  handshakeTimeout?: number;
  /** Malformed frames tolerated per link before it is closed. Default 3. */
  maxMalformed?: number;
  /** Requests in flight per link. Default 256. */
  maxPending?: number;
  /** Incoming requests served at once per link. Default 64. */
  maxServing?: number;
  /** The secure layer. Default: `secure()` of `src/crypto/secure-pipe.ts` with our identity. */
  upgrade?: LinkUpgrade;
}

/** Counters of a {@link PipeDhtTransport}. */
export interface PipeDhtTransportStats {
  /** Outgoing links established (handshake included). */
  connects: number;
  /** Outgoing connection attempts that failed (connect or handshake). */
  connectFailures: number;
  /** Requests retried on a fresh connection after their pooled link failed. */
  reconnects: number;
  /** Accepted connections that became links. */
  accepted: number;
  /** Accepted connections reset because `maxInbound` was reached. */
  refused: number;
  /** Secure handshakes that failed (either direction; `PeerIdMismatchError` included). */
  handshakeFailures: number;
  /** Links closed for malformed, oversized or truncated frames (or, secure, undecryptable ones). */
  misbehaving: number;
  /** Links closed to make room (pool or inbound limit). */
  evicted: number;
  /** Links closed for being idle. */
  idleClosed: number;
}

/** One connection carrying DHT messages. */
class Link {
  lastUsed = Date.now();
  /** Accepted secure link: pool key of the contact the peer advertises. */
  advertised: string | undefined;
  readonly conn: DhtConnection;
  constructor(
    readonly pipe: Pipe,
    readonly outbound: boolean,
    /** Pool key of an outgoing link. */
    readonly key: string | undefined,
    /** Authenticated peer id (secure mode). */
    readonly remoteId: DhtId | undefined,
    make: (link: Link) => DhtConnection,
  ) {
    this.conn = make(this);
  }

  get idle(): boolean {
    return this.conn.pending === 0;
  }

  receive(data: Buffer): void {
    this.lastUsed = Date.now();
    this.conn.receive(data);
  }
}

/** Buffers the frames a pipe delivers until their link exists. */
class FrameSink {
  #early: Buffer[] | undefined = [];
  #link: Link | undefined;

  readonly push = (data: Buffer): void => {
    if (this.#link) this.#link.receive(data);
    else if (this.#early && this.#early.length < MAX_EARLY_FRAMES) this.#early.push(data);
  };

  attach(link: Link): void {
    this.#link = link;
    const early = this.#early ?? [];
    this.#early = undefined;
    for (const f of early) link.receive(f);
  }
}

function option(v: number | undefined, dflt: number, what: string, allowZero = false): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < (allowZero ? 0 : 1)) {
    throw new InvalidArgumentError(`${what} must be a ${allowZero ? 'non-negative' : 'positive'} number`);
  }
  return v;
}

/** A host other nodes can reach us at when we are bound to a wildcard address. */
function guessHost(family: Family): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      if (family === 4 ? a.family === 'IPv4' : a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80')) return a.address;
    }
  }
  return family === 4 ? '127.0.0.1' : '::1';
}

/** The default secure layer: the p2pd Noise XX handshake with `identity`. */
export function noiseUpgrade(identity: Identity): LinkUpgrade {
  return async (raw, o) => {
    const sp = await securePipe(raw, {
      identity,
      initiator: o.initiator,
      ...(o.remoteId ? { remoteId: o.remoteId } : {}),
      signal: o.signal,
      timeout: o.timeout,
      maxMessageSize: MAX_DHT_FRAME,
      onMessage: (m) => o.onFrame(m.data),
    });
    return { pipe: sp, remoteId: new Uint8Array(sp.remoteId) };
  };
}

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
  /** Outgoing links and connection attempts, by pool key. */
  readonly #out = new Map<string, Link | Promise<Link>>();
  /** Accepted links. */
  readonly #in = new Set<Link>();
  /**
   * Accepted secure links by the pool key of the peer's own contact (its authenticated id and
   * the address it advertises as `sender`), so our requests to that contact can use them.
   */
  readonly #inByKey = new Map<string, Link>();
  /** Accepted raw pipes still in the handshake. */
  readonly #handshaking = new Set<TcpPipe>();
  /** Plain links by the pipe their frames arrive on. */
  readonly #byPipe = new Map<Pipe, Link>();
  /** Every link. */
  readonly #links = new Set<Link>();
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
    this.#connOpts = {
      ...(opts.maxMalformed !== undefined ? { maxMalformed: opts.maxMalformed } : {}),
      ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
      ...(opts.maxServing !== undefined ? { maxServing: opts.maxServing } : {}),
    };
    server.onConnection((p) => this.#accept(p));
    server.onError(() => undefined); // our callbacks do not throw; nothing to report
    if (this.#idleTimeout > 0) {
      this.#sweep = setInterval(() => this.#sweepIdle(), Math.max(50, Math.min(this.#idleTimeout / 2, 30_000)));
      this.#sweep.unref();
    }
  }

  /**
   * Opens the listening socket and returns the transport; give it to a `DhtNode` with
   * `contact: transport.contact`.
   * @throws InvalidArgumentError on bad options (e.g. `secure` without an identity);
   *   BindError if the address cannot be bound.
   */
  static async listen(opts: PipeDhtTransportOptions): Promise<PipeDhtTransport> {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('PipeDhtTransport.listen needs options');
    const identity = opts.identity;
    const id = identity ? new Uint8Array(identity.id) : opts.id;
    if (!isId(id)) throw new InvalidArgumentError('a DHT transport needs an identity or a 32-byte id');
    if (identity && opts.id !== undefined && !(isId(opts.id) && idEquals(opts.id, id))) throw new InvalidArgumentError('id does not match the identity');
    const secure = opts.secure ?? identity !== undefined;
    if (secure && !identity && !opts.upgrade) throw new InvalidArgumentError('secure mode needs an identity');
    if (opts.publicHost !== undefined && (typeof opts.publicHost !== 'string' || opts.publicHost.length === 0)) {
      throw new InvalidArgumentError('publicHost must be an IP address');
    }
    const upgrade = secure ? opts.upgrade ?? noiseUpgrade(identity as Identity) : undefined;
    let self: PipeDhtTransport | undefined;
    // Plain: a server-level callback delivers every accepted pipe's frames (and keeps them
    // from queueing for recv()). Secure: no server callback, the secure layer owns the pipes.
    const server = await pipeOpen('tcp', undefined, {
      bind: opts.bind ?? { host: '0.0.0.0', port: 0 },
      framing: secure ? 'raw' : 'length',
      maxMessageSize: MAX_DHT_FRAME,
      ...(secure ? {} : { onMessage: (m: Message) => (self ? self.#onPlainFrame(m) : undefined) }),
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
    for (const l of this.#links) if (l.outbound) outbound++;
    return { outbound, inbound: this.#links.size - outbound, handshaking: this.#handshaking.size };
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
      if (this.#out.size > this.#maxConnections) this.#trim();
    }
  }

  /** Closes the server, every link and every connection attempt. Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closeCtrl.abort(new AbortError('DHT transport closed'));
    this.#handler = undefined;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#closing = (async () => {
      // Attempts see the abort and close their own pipes.
      await Promise.allSettled([...this.#attempts]);
      // Links first (a secure link sends its authenticated close), then the server.
      const links = [...this.#links].map((l) => l.pipe.close());
      await Promise.allSettled([...links, this.server.close()]);
      this.#out.clear();
    })();
    return this.#closing;
  }

  /** `await using t = await PipeDhtTransport.listen(…)` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- internals ----------------------------------------------------------------------

  readonly #onPlainFrame = (m: Message): void => {
    this.#byPipe.get(m.pipe)?.receive(m.data);
  };

  #poolKey(to: Contact): string {
    const addr = contactAddress(to);
    return this.secure ? `${idToHex(to.id)}@${addr}` : addr;
  }

  async #linkFor(to: Contact, signal: AbortSignal): Promise<{ link: Link; fresh: boolean }> {
    const key = this.#poolKey(to);
    const have = this.#out.get(key);
    if (have instanceof Link) {
      have.lastUsed = Date.now();
      return { link: have, fresh: false };
    }
    if (have === undefined) {
      const inbound = this.#inByKey.get(key);
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
    this.#makeRoom();
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
        this.#out.set(key, link);
        this.stats.connects++;
        return link;
      } catch (e) {
        this.stats.connectFailures++;
        if (this.#out.get(key) === attempt) this.#out.delete(key);
        if (raw && !raw.closed) await raw.close().catch(() => undefined);
        throw e;
      }
    })();
    this.#out.set(key, attempt);
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
          this.#drop(l);
        },
      }),
    );
    this.#links.add(link);
    if (!this.secure) this.#byPipe.set(pipe, link);
    if (!outbound) this.#in.add(link);
    pipe.onError(() => undefined);
    pipe.onClose((err) => {
      this.#forget(link);
      link.conn.close(err);
      // A frame over the size limit (or undecryptable) closes the pipe: the peer misbehaved.
      if (err instanceof P2pdError && (err.code === 'ERR_FRAME' || err.code === 'ERR_DECRYPT' || err.code === 'ERR_MESSAGE_TOO_BIG')) {
        this.stats.misbehaving++;
      }
    });
    return link;
  }

  /** Removes a link from every index (it is closing). */
  #forget(link: Link): void {
    this.#links.delete(link);
    this.#byPipe.delete(link.pipe);
    if (link.key !== undefined && this.#out.get(link.key) === link) this.#out.delete(link.key);
    this.#in.delete(link);
    if (link.advertised !== undefined && this.#inByKey.get(link.advertised) === link) this.#inByKey.delete(link.advertised);
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
        const key = this.#poolKey(s);
        if (link.advertised !== key && this.#links.has(link)) {
          if (link.advertised !== undefined && this.#inByKey.get(link.advertised) === link) this.#inByKey.delete(link.advertised);
          link.advertised = key;
          this.#inByKey.set(key, link);
        }
      }
      return h(req, ctx);
    };
  }

  /** Forgets and closes a link. */
  #drop(link: Link): void {
    this.#forget(link);
    void link.pipe.close().catch(() => undefined);
  }

  /** An accepted connection: a link at once (plain) or after the handshake (secure). */
  #accept(raw: TcpPipe): void {
    if (this.closed || (this.#in.size + this.#handshaking.size >= this.#maxInbound && !this.#evict(this.#in))) {
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

  /** Closes the least recently used idle link of `links`; false if none is idle. */
  #evict(links: Iterable<Link>): boolean {
    const victim = lru(links);
    if (!victim) return false;
    this.stats.evicted++;
    this.#drop(victim);
    return true;
  }

  /** Before a new outgoing connection: close the least recently used idle one if the pool is full. */
  #makeRoom(): void {
    if (this.#out.size < this.#maxConnections) return;
    // If every link is busy the pool goes over its limit for now; the sweep trims it later.
    this.#evict(this.#outLinks());
  }

  #outLinks(): Link[] {
    const out: Link[] = [];
    for (const v of this.#out.values()) if (v instanceof Link) out.push(v);
    return out;
  }

  #sweepIdle(): void {
    const cutoff = Date.now() - this.#idleTimeout;
    for (const l of [...this.#links]) {
      if (l.idle && l.lastUsed < cutoff) {
        this.stats.idleClosed++;
        this.#drop(l);
      }
    }
    this.#trim();
  }

  /** Closes least recently used idle outgoing links while the pool is over its limit. */
  #trim(): void {
    while (this.#out.size > this.#maxConnections && this.#evict(this.#outLinks()));
  }
}

/** The least recently used idle link, if any. */
function lru(links: Iterable<Link>): Link | undefined {
  let best: Link | undefined;
  for (const l of links) if (l.idle && (!best || l.lastUsed < best.lastUsed)) best = l;
  return best;
}
