/**
 * The links of a `PipeDhtTransport` (see `pipe-transport.ts`): one {@link Link} per TCP
 * connection carrying DHT messages, the {@link FrameSink} that holds frames arriving before
 * their link exists, and the {@link LinkPool} that indexes links (outgoing pool, accepted,
 * accepted-by-advertised-contact, by pipe) and closes idle or least recently used ones.
 * @module
 */
import type { Pipe } from '../pipes/pipe.js';
import type { DhtConnection } from './connection.js';
import type { DhtId } from './id.js';
import type { PipeDhtTransportStats } from './pipe-transport-options.js';

/** Frames a secure link may receive before the transport has wired it (sent with the last handshake message). */
const MAX_EARLY_FRAMES = 64;

/** One connection carrying DHT messages. */
export class Link {
  /** When a frame last went either way (`Date.now()`). */
  lastUsed = Date.now();
  /** Accepted secure link: pool key of the contact the peer advertises. */
  advertised: string | undefined;
  /** The DHT connection (txids, requests both ways) running on the pipe. */
  readonly conn: DhtConnection;
  /**
   * @param pipe The pipe DHT frames travel on.
   * @param outbound `true` for a link we opened.
   * @param key Pool key of an outgoing link.
   * @param remoteId Authenticated peer id (secure mode).
   * @param make Builds the link's connection.
   */
  constructor(
    readonly pipe: Pipe,
    readonly outbound: boolean,
    readonly key: string | undefined,
    readonly remoteId: DhtId | undefined,
    make: (link: Link) => DhtConnection,
  ) {
    this.conn = make(this);
  }

  /** True when no request is in flight either way. */
  get idle(): boolean {
    return this.conn.pending === 0;
  }

  /** Hands one received frame to the connection. */
  receive(data: Buffer): void {
    this.lastUsed = Date.now();
    this.conn.receive(data);
  }
}

/** Buffers the frames a pipe delivers until their link exists. */
export class FrameSink {
  #early: Buffer[] | undefined = [];
  #link: Link | undefined;

  /** Takes one frame: to the link once attached, else into the buffer (at most 64 frames). */
  readonly push = (data: Buffer): void => {
    if (this.#link) this.#link.receive(data);
    else if (this.#early && this.#early.length < MAX_EARLY_FRAMES) this.#early.push(data);
  };

  /** Delivers the buffered frames to `link`, and every later one. */
  attach(link: Link): void {
    this.#link = link;
    const early = this.#early ?? [];
    this.#early = undefined;
    for (const f of early) link.receive(f);
  }
}

/** Every link of a transport, indexed, with the eviction rules. */
export class LinkPool {
  /** Outgoing links and connection attempts, by pool key. */
  readonly out = new Map<string, Link | Promise<Link>>();
  /** Accepted links. */
  readonly in = new Set<Link>();
  /**
   * Accepted secure links by the pool key of the peer's own contact (its authenticated id and
   * the address it advertises as `sender`), so our requests to that contact can use them.
   */
  readonly inByKey = new Map<string, Link>();
  /** Plain links by the pipe their frames arrive on. */
  readonly byPipe = new Map<Pipe, Link>();
  /** Every link. */
  readonly links = new Set<Link>();

  /**
   * @param stats Counters to update (`evicted`, `idleClosed`).
   * @param maxConnections Most pooled outgoing connections.
   */
  constructor(
    private readonly stats: PipeDhtTransportStats,
    private readonly maxConnections: number,
  ) {}

  /** Indexes a new link (`byPipe` too when `plain`). */
  add(link: Link, plain: boolean): void {
    this.links.add(link);
    if (plain) this.byPipe.set(link.pipe, link);
    if (!link.outbound) this.in.add(link);
  }

  /** Removes a link from every index (it is closing). */
  forget(link: Link): void {
    this.links.delete(link);
    this.byPipe.delete(link.pipe);
    if (link.key !== undefined && this.out.get(link.key) === link) this.out.delete(link.key);
    this.in.delete(link);
    if (link.advertised !== undefined && this.inByKey.get(link.advertised) === link) this.inByKey.delete(link.advertised);
  }

  /** Records that accepted `link` reaches the contact of pool key `key` (if it is still open). */
  advertise(link: Link, key: string): void {
    if (link.advertised === key || !this.links.has(link)) return;
    if (link.advertised !== undefined && this.inByKey.get(link.advertised) === link) this.inByKey.delete(link.advertised);
    link.advertised = key;
    this.inByKey.set(key, link);
  }

  /** Forgets and closes a link. */
  drop(link: Link): void {
    this.forget(link);
    void link.pipe.close().catch(() => undefined);
  }

  /** Closes the least recently used idle link of `links`; false if none is idle. */
  evict(links: Iterable<Link>): boolean {
    const victim = lru(links);
    if (!victim) return false;
    this.stats.evicted++;
    this.drop(victim);
    return true;
  }

  /** Before a new outgoing connection: close the least recently used idle one if the pool is full. */
  makeRoom(): void {
    if (this.out.size < this.maxConnections) return;
    // If every link is busy the pool goes over its limit for now; the sweep trims it later.
    this.evict(this.outLinks());
  }

  /** Closes every link idle for `idleTimeout` ms, then trims the pool. */
  sweepIdle(idleTimeout: number): void {
    const cutoff = Date.now() - idleTimeout;
    for (const l of [...this.links]) {
      if (l.idle && l.lastUsed < cutoff) {
        this.stats.idleClosed++;
        this.drop(l);
      }
    }
    this.trim();
  }

  /** Closes least recently used idle outgoing links while the pool is over its limit. */
  trim(): void {
    while (this.out.size > this.maxConnections && this.evict(this.outLinks()));
  }

  /** The established outgoing links (attempts excluded). */
  outLinks(): Link[] {
    const out: Link[] = [];
    for (const v of this.out.values()) if (v instanceof Link) out.push(v);
    return out;
  }
}

/** The least recently used idle link, if any. */
function lru(links: Iterable<Link>): Link | undefined {
  let best: Link | undefined;
  for (const l of links) if (l.idle && (!best || l.lastUsed < best.lastUsed)) best = l;
  return best;
}
