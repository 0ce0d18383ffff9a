/**
 * How a `PipeDhtTransport` (see `pipe-transport.ts`) gets its links: the outgoing side (the
 * connection cache keyed by contact, connecting and pinning the secure handshake to the
 * contact's id), the server side (accepting within `maxInbound`, the responder handshake), and
 * the wiring of a ready pipe to a {@link DhtConnection} (plain frames, per-link request
 * handler, misbehaviour and close accounting).
 * @module
 */
import { P2pdError, PipeClosedError } from '../errors.js';
import { unmapHost } from '../interfaces/endpoint.js';
import { pipeOpen } from '../pipes/open.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpPipe } from '../pipes/tcp.js';
import type { Message } from '../pipes/types.js';
import { cancellable } from '../util/abort.js';
import { DhtConnection } from './connection.js';
import { contactAddress, contactProblem, type Contact } from './contact.js';
import { idEquals, idToHex, type DhtId } from './id.js';
import { MAX_DHT_FRAME, type LinkUpgrade, type PipeDhtTransportStats, type UpgradedLink } from './pipe-transport-options.js';
import { FrameSink, Link, type LinkPool } from './pipe-transport-pool.js';
import type { DhtRequestHandler } from './transport.js';

/** What a {@link LinkManager} runs with (settled by the `PipeDhtTransport` constructor). */
export interface LinkManagerOptions {
  /** Our contact (its id is the DHT connections' local id). */
  readonly contact: Contact;
  /** The secure layer, `undefined` in plain mode. */
  readonly upgrade: LinkUpgrade | undefined;
  /** The transport's counters. */
  readonly stats: PipeDhtTransportStats;
  /** The transport's links, indexed. */
  readonly pool: LinkPool;
  /** Aborted when the transport closes: stops every connection attempt and handshake. */
  readonly closeSignal: AbortSignal;
  /** The request handler installed on the transport, if any. */
  readonly handler: () => DhtRequestHandler | undefined;
  /** Most accepted connections (handshakes included). */
  readonly maxInbound: number;
  /** TCP connect timeout, ms. */
  readonly connectTimeout: number;
  /** Secure handshake timeout, ms. */
  readonly handshakeTimeout: number;
  /** Per-link {@link DhtConnection} limits. */
  readonly connOpts: { maxMalformed?: number; maxPending?: number; maxServing?: number };
}

/** Opens, accepts and wires the links of one transport. */
export class LinkManager {
  /** Accepted raw pipes still in the handshake. */
  readonly handshaking = new Set<TcpPipe>();
  readonly #o: LinkManagerOptions;
  /** Connection attempts and handshakes in progress. */
  readonly #attempts = new Set<Promise<unknown>>();

  constructor(opts: LinkManagerOptions) {
    this.#o = opts;
  }

  get #closed(): boolean {
    return this.#o.closeSignal.aborted;
  }

  /** Plain mode: hands a frame received on any link's pipe to that link. */
  readonly onPlainFrame = (m: Message): void => {
    this.#o.pool.byPipe.get(m.pipe)?.receive(m.data);
  };

  /** Resolves once every connection attempt and handshake in progress has settled. */
  settle(): Promise<unknown> {
    return Promise.allSettled([...this.#attempts]);
  }

  /**
   * The link requests to `to` use: a pooled outgoing one, an accepted one the peer advertised
   * as `to`, else a new connection (`fresh`), shared with concurrent requesters.
   */
  async linkFor(to: Contact, signal: AbortSignal): Promise<{ link: Link; fresh: boolean }> {
    const pool = this.#o.pool;
    const key = this.#poolKey(to);
    const have = pool.out.get(key);
    if (have instanceof Link) {
      have.lastUsed = Date.now();
      return { link: have, fresh: false };
    }
    if (have === undefined) {
      const inbound = pool.inByKey.get(key);
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

  /** An accepted connection: a link at once (plain) or after the handshake (secure). */
  accept(raw: TcpPipe): void {
    const { pool, stats, upgrade } = this.#o;
    if (this.#closed || (pool.in.size + this.handshaking.size >= this.#o.maxInbound && !pool.evict(pool.in))) {
      stats.refused++;
      raw.reset();
      return;
    }
    if (!upgrade) {
      this.#addLink(raw, false, undefined, undefined);
      stats.accepted++;
      return;
    }
    this.handshaking.add(raw);
    const sink = new FrameSink();
    this.#track(
      (async () => {
        try {
          const up = await upgrade(raw, { initiator: false, signal: this.#o.closeSignal, timeout: this.#o.handshakeTimeout, onFrame: sink.push });
          if (this.#closed) {
            await up.pipe.close().catch(() => undefined);
            return;
          }
          sink.attach(this.#addLink(up.pipe, false, undefined, up.remoteId));
          stats.accepted++;
        } catch {
          if (!this.#closed) stats.handshakeFailures++;
          if (!raw.closed) await raw.close().catch(() => undefined);
        } finally {
          this.handshaking.delete(raw);
        }
      })(),
    );
  }

  #poolKey(to: Contact): string {
    const addr = contactAddress(to);
    return this.#o.upgrade !== undefined ? `${idToHex(to.id)}@${addr}` : addr;
  }

  /** Opens (and in secure mode authenticates) a link to `to`, pooled under `key`. */
  #connect(key: string, to: Contact): Promise<Link> {
    const { pool, stats, upgrade } = this.#o;
    pool.makeRoom();
    const signal = this.#o.closeSignal;
    let attempt: Promise<Link> | undefined;
    attempt = (async (): Promise<Link> => {
      let raw: TcpPipe | undefined;
      try {
        raw = await pipeOpen('tcp', { host: to.host, port: to.port }, {
          framing: upgrade ? 'raw' : 'length',
          maxMessageSize: MAX_DHT_FRAME,
          timeout: this.#o.connectTimeout,
          signal,
          ...(upgrade ? {} : { onMessage: this.onPlainFrame }),
        });
        let link: Link;
        if (upgrade) {
          const sink = new FrameSink();
          let up: UpgradedLink;
          try {
            up = await upgrade(raw, { initiator: true, remoteId: to.id, signal, timeout: this.#o.handshakeTimeout, onFrame: sink.push });
          } catch (e) {
            if (!this.#closed) stats.handshakeFailures++;
            throw e;
          }
          if (this.#closed) {
            await up.pipe.close().catch(() => undefined);
            throw new PipeClosedError('DHT transport is closed');
          }
          link = this.#addLink(up.pipe, true, key, up.remoteId);
          sink.attach(link);
        } else {
          if (this.#closed) throw new PipeClosedError('DHT transport is closed');
          link = this.#addLink(raw, true, key, undefined);
        }
        pool.out.set(key, link);
        stats.connects++;
        return link;
      } catch (e) {
        stats.connectFailures++;
        if (pool.out.get(key) === attempt) pool.out.delete(key);
        if (raw && !raw.closed) await raw.close().catch(() => undefined);
        throw e;
      }
    })();
    pool.out.set(key, attempt);
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
    const { pool, stats } = this.#o;
    const remote = pipe.remote;
    const host = remote ? unmapHost(remote.host) : undefined;
    const link = new Link(pipe, outbound, key, remoteId, (l) =>
      new DhtConnection({
        ...this.#o.connOpts,
        send: (frame) => {
          l.lastUsed = Date.now();
          return pipe.send(frame);
        },
        handler: () => this.#handlerFor(l),
        localId: this.#o.contact.id,
        context: {
          ...(remoteId ? { remoteId } : {}),
          ...(remote && host ? { remoteAddress: { host, port: remote.port, family: host.includes(':') ? 6 : 4 } } : {}),
        },
        onMisbehaving: () => {
          stats.misbehaving++;
          pool.drop(l);
        },
      }),
    );
    pool.add(link, this.#o.upgrade === undefined);
    pipe.onError(() => undefined);
    pipe.onClose((err) => {
      pool.forget(link);
      link.conn.close(err);
      // A frame over the size limit (or undecryptable) closes the pipe: the peer misbehaved.
      if (err instanceof P2pdError && (err.code === 'ERR_FRAME' || err.code === 'ERR_DECRYPT' || err.code === 'ERR_MESSAGE_TOO_BIG')) {
        stats.misbehaving++;
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
    const h = this.#o.handler();
    if (!h || link.outbound || !link.remoteId) return h;
    return (req, ctx) => {
      const s = req.sender;
      if (s && idEquals(s.id, link.remoteId as DhtId) && contactProblem(s) === undefined) {
        this.#o.pool.advertise(link, this.#poolKey(s));
      }
      return h(req, ctx);
    };
  }
}
