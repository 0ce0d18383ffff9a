/**
 * `SwarmCore`: the running part of a bound swarm node — listening, link setup and dedupe,
 * membership gossip, neighbour maintenance, and frame dispatch to the {@link Router}.
 * `SwarmPeer` is the public facade over it.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, DecodeError, MessageTooBigError, PipeClosedError, ProtocolMismatchError } from '../errors.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import { cancellable, closeWithin, forceSignal, linkSignals, type AbortOptions } from '../util/abort.js';
import {
  ANNOUNCE_INTERVAL, HARD_MAX_LINKS, MAX_LINK_MALFORMED, MAX_PAYLOAD_SIZE, MAX_PENDING_SETUPS, SEEN_TTL, SNAPSHOT_TIMEOUT,
} from './constants.js';
import { buildEnvelope, decodeEnvelope, FRAME_BCAST, FRAME_DATA, type Envelope } from './envelope.js';
import { GossipQueue } from './gossip.js';
import { decodeMembers, encodeMembers, FRAME_MEMBERS, FRAME_PING, MEMBERS_END_OF_SNAPSHOT } from './frames.js';
import { Link, resetPipe } from './link.js';
import { LinkSet } from './links.js';
import { Neighbours } from './neighbours.js';
import { MemberTable, nodeIdHex, signAnnouncement, type MakeRoom } from './member.js';
import { Router } from './routing.js';
import { acceptLink, dialLink, type SetupContext, type SetupResult } from './setup.js';
import { emptyStats, type SwarmStats } from './types.js';
import type { CoreConfig, CoreEvents } from './core-config.js';

export type { CoreConfig, CoreEvents } from './core-config.js';

/** The running swarm node. */
export class SwarmCore {
  /** Known members (verified announcements). */
  readonly members: MemberTable;
  /** Our neighbours' links. */
  readonly links: LinkSet;
  /** Routes DATA and BCAST frames. */
  readonly router: Router;
  /** Counters. */
  readonly stats: SwarmStats = emptyStats();
  readonly #cfg: CoreConfig;
  readonly #ev: CoreEvents;
  readonly #server: TcpServer;
  /** The links the close is closing (a forced close resets them). */
  #closingLinks: Link[] = [];
  readonly #closeCtrl = new AbortController();
  readonly #ctx: SetupContext;
  readonly #snapshotWaiters = new Set<() => void>();
  readonly #nb: Neighbours;
  readonly #gossip: GossipQueue;
  #announcement: Buffer;
  #seq: number;
  #pendingSetups = 0;
  #timer: NodeJS.Timeout;
  #soon: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  /** A full member table drops a member for a peer whose HELLO came over a live link (never a linked one). */
  readonly #room: MakeRoom = {
    keep: (id) => this.links.get(id) !== undefined, unreachable: (id) => this.#nb.isUnreachable(id),
    evicted: (m) => { this.#nb.reachable(m.idHex); this.#ev.member(m, 'expired'); },
  };

  constructor(cfg: CoreConfig, events: CoreEvents, server: TcpServer, readonly endpoint: Endpoint) {
    setMaxListeners(0, this.#closeCtrl.signal); // every link setup listens for close
    this.#cfg = cfg;
    this.#ev = events;
    this.#server = server;
    const selfId = cfg.identity.id;
    this.members = new MemberTable(selfId, cfg.protocol.hash);
    this.links = new LinkSet(selfId);
    this.#gossip = new GossipQueue(this.links, this.stats, () => this.closed);
    this.router = new Router(
      {
        selfId,
        protocolHash: cfg.protocol.hash,
        links: this.links,
        reachable: (b) => this.#nb.reachableCount(b),
        memberCount: (b) => this.members.bucketCount(b),
        isMember: (id) => this.members.get(id)?.leaving === false,
        stats: this.stats,
        redundancy: cfg.redundancy,
        now: cfg.now,
        deliver: (env, from) => {
          this.stats.delivered++;
          events.deliver(env, from);
        },
        penalize: (link, reason) => this.#penalize(link, reason),
      },
      cfg.seenCacheSize,
      SEEN_TTL,
    );
    this.#nb = new Neighbours({
      links: this.links,
      members: this.members,
      linksPerBucket: cfg.linksPerBucket,
      maxLinks: cfg.maxLinks,
      now: cfg.now,
      dial: async (m) => {
        try {
          this.#register(await dialLink(this.#ctx, m.endpoint, { timeout: cfg.linkTimeout, signal: this.#closeCtrl.signal }));
        } catch (e) {
          this.#setupFailed(e, m.endpoint);
          throw e;
        }
      },
    });
    this.#seq = cfg.now();
    this.#announcement = signAnnouncement(cfg.identity, cfg.protocol.hash, endpoint, this.#seq);
    this.#ctx = { identity: cfg.identity, protocol: cfg.protocol, announcement: () => this.#announcement, now: cfg.now };
    this.#timer = setInterval(() => this.#maintain(), cfg.maintainInterval);
    this.#timer.unref();
    void this.#acceptLoop();
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Our signed announcement. */
  get announcement(): Buffer {
    return this.#announcement;
  }

  // -------------------------------------------------------------------------------- links --

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let p;
      try {
        p = await this.#server.accept();
      } catch {
        return; // server closed
      }
      if (this.closed || this.#pendingSetups >= MAX_PENDING_SETUPS || this.links.all.size >= HARD_MAX_LINKS) {
        resetPipe(p);
        continue;
      }
      this.#pendingSetups++;
      const remote = p.remote;
      acceptLink(this.#ctx, p, { timeout: this.#cfg.linkTimeout, signal: this.#closeCtrl.signal }).then(
        (r) => {
          this.#pendingSetups--;
          this.#register(r);
        },
        (e: unknown) => {
          this.#pendingSetups--;
          this.#setupFailed(e, remote);
        },
      );
    }
  }

  #setupFailed(e: unknown, remote: Endpoint | undefined): void {
    if (e instanceof ProtocolMismatchError) {
      this.stats.protocolMismatches++;
      this.#ev.mismatch(e, remote);
    } else if (!this.closed) this.stats.setupFailures++;
  }

  /** Registers a set-up link; returns it (even when it lost a duplicate race), or undefined when refused. */
  #register(r: SetupResult): Link | undefined {
    const now = this.#cfg.now();
    if (this.closed) {
      void r.io.close();
      return undefined;
    }
    const res = this.members.apply(r.hello, now, this.#room);
    const idHex = nodeIdHex(r.hello.publicKey);
    const member = this.members.get(idHex);
    if (res === 'invalid' || res === 'full' || !member || member.leaving) {
      this.stats.setupFailures++;
      r.io.reset();
      return undefined;
    }
    const link = new Link(r.io, member, r.initiator);
    const hadNeighbor = this.links.get(idHex) !== undefined;
    const loser = this.links.add(link);
    r.io.onClose((err) => this.#onLinkClosed(link, err));
    r.io.setHandler((f) => this.#onFrame(link, f));
    if (r.io.closed) return link;
    this.#sendSnapshot(link);
    if (loser) void loser.io.close();
    if (res === 'new' || res === 'updated') {
      this.#gossip.queue([member.raw]);
      this.#ev.member(member, res);
    }
    if (!hadNeighbor && this.links.get(idHex) === link) this.#ev.linkUp(link);
    this.#nb.reachable(idHex);
    this.#maintainSoon();
    return link;
  }

  #onLinkClosed(link: Link, err: Error | undefined): void {
    const wasActive = this.links.remove(link);
    for (const w of [...this.#snapshotWaiters]) w();
    if (wasActive && !this.links.get(link.remoteIdHex)) {
      this.#ev.linkDown(link, err);
      this.#maintainSoon();
    }
  }

  #sendSnapshot(link: Link): void {
    const all = [this.#announcement];
    for (const m of this.members.all()) all.push(m.raw);
    for (const f of encodeMembers(all, MEMBERS_END_OF_SNAPSHOT)) if (link.send(f)) this.stats.framesSent.members++;
  }

  #penalize(link: Link, _reason: string): void {
    this.stats.invalid++;
    if (++link.malformed > MAX_LINK_MALFORMED) {
      link.retired = true;
      link.io.reset();
    }
  }

  /**
   * Dials `dest` and registers the link; resolves once the neighbour's member snapshot has arrived, within
   * `opts.timeout` (by default {@link SNAPSHOT_TIMEOUT}; the link stays). Rejects with the setup error (e.g. {@link ProtocolMismatchError}).
   */
  async connect(dest: Endpoint, opts: AbortOptions): Promise<Link> {
    const t0 = performance.now();
    let r: SetupResult;
    const link0 = linkSignals({ signal: opts.signal }, [this.#closeCtrl.signal], 'link setup');
    try {
      r = await dialLink(this.#ctx, dest, { timeout: opts.timeout ?? this.#cfg.linkTimeout, signal: link0.signal });
    } catch (e) {
      this.#setupFailed(e, dest);
      throw e;
    } finally {
      link0.done();
    }
    const link = this.#register(r);
    if (!link) throw new PipeClosedError('the link was refused (node closing, or a bad announcement)');
    const total = opts.timeout ?? SNAPSHOT_TIMEOUT; // an explicit 0: none, as asked
    const left = total > 0 ? Math.max(1, total - (performance.now() - t0)) : 0;
    await cancellable<void>({ signal: opts.signal, timeout: left }, 'member snapshot', (resolve, reject) => {
      const check = (): void => {
        const active = this.links.get(link.remoteIdHex);
        if (link.snapshotDone || (active && active.snapshotDone)) resolve();
        else if (link.io.closed && !active) reject(new PipeClosedError('the link closed before the member snapshot arrived'));
      };
      this.#snapshotWaiters.add(check);
      check();
      return () => this.#snapshotWaiters.delete(check);
    });
    return link;
  }

  // ------------------------------------------------------------------------------- frames --

  #onFrame(link: Link, frame: Buffer): void {
    this.stats.framesReceived++;
    link.lastRecv = performance.now();
    try {
      switch (frame[0]) {
        case FRAME_PING:
          if (frame.length !== 1) throw new DecodeError('malformed PING');
          break;
        case FRAME_MEMBERS:
          this.#onMembers(link, frame);
          break;
        case FRAME_DATA:
          this.router.onData(link, decodeEnvelope(frame));
          break;
        case FRAME_BCAST:
          this.router.onBcast(link, decodeEnvelope(frame));
          break;
        default:
          throw new DecodeError(`unknown swarm frame type ${String(frame[0])}`);
      }
    } catch (e) {
      // Never let a frame take the process down: a decode error is the sender's fault; anything
      // else is ours, reported, and the frame is dropped.
      if (e instanceof DecodeError) this.#penalize(link, e.message);
      else {
        this.stats.invalid++;
        process.emitWarning(`p2pd swarm: error handling a frame: ${e instanceof Error ? e.stack ?? e.message : String(e)}`, { code: 'P2PD_SWARM' });
      }
    }
  }

  #onMembers(link: Link, frame: Buffer): void {
    const { flags, announcements } = decodeMembers(frame);
    const now = this.#cfg.now();
    const fresh: Buffer[] = [];
    let bad = false;
    for (const a of announcements) {
      const res = this.members.apply(a, now);
      if (res === 'new' || res === 'updated' || res === 'left') {
        fresh.push(a.raw);
        this.#nb.reachable(nodeIdHex(a.publicKey)); // a newer announcement: worth trying again
        const m = this.members.get(nodeIdHex(a.publicKey));
        if (m) this.#ev.member(m, res);
      } else if (res === 'invalid') bad = true;
    }
    if (bad) this.#penalize(link, 'invalid member announcement');
    if (fresh.length > 0) {
      this.#gossip.queue(fresh);
      this.#maintainSoon();
    }
    if (flags & MEMBERS_END_OF_SNAPSHOT) {
      link.snapshotDone = true;
      for (const w of [...this.#snapshotWaiters]) w();
    }
  }

  // ----------------------------------------------------------------------------- messages --

  /**
   * Builds, signs and routes a message we originate. Returns the envelope and the number of
   * first hops it went to (directed; 0 when delivered locally).
   */
  originate(type: typeof FRAME_DATA | typeof FRAME_BCAST, kind: number, payload: Buffer, target?: Buffer, exclude?: Buffer[], duplicates = 0): { env: Envelope; hops: number; accepted: number } {
    if (payload.length > MAX_PAYLOAD_SIZE) throw new MessageTooBigError(`swarm message of ${payload.length} bytes exceeds ${MAX_PAYLOAD_SIZE}`);
    const env = buildEnvelope(this.#cfg.identity, this.#cfg.protocol.hash, {
      type, kind, payload, timestamp: this.#cfg.now(), ...(target ? { target } : {}), ...(exclude ? { exclude } : {}),
    });
    if (type === FRAME_DATA) return { env, ...this.router.originateData(env, duplicates) };
    this.router.originateBcast(env);
    return { env, hops: this.links.size, accepted: this.links.size };
  }

  // -------------------------------------------------------------------------- maintenance --

  /** Live members in `bucket` that we do not consider unreachable. */
  reachableCount(bucket: number): number {
    return this.#nb.reachableCount(bucket);
  }

  /** Whether we gave up dialing this member for now. */
  isUnreachable(idHex: string): boolean {
    return this.#nb.isUnreachable(idHex);
  }

  #maintainSoon(): void {
    if (this.#soon || this.closed) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#maintain();
    }, 20);
    this.#soon.unref();
  }

  #maintain(): void {
    if (this.closed) return;
    const now = this.#cfg.now();
    this.router.seenData.sweep(now);
    this.router.seenBcast.sweep(now);
    for (const m of this.members.expire(now, (id) => this.links.get(id) !== undefined)) {
      this.#nb.reachable(m.idHex);
      this.#ev.member(m, 'expired');
    }
    if (now - this.#seq >= ANNOUNCE_INTERVAL) {
      this.#seq = Math.max(now, this.#seq + 1);
      this.#announcement = signAnnouncement(this.#cfg.identity, this.#cfg.protocol.hash, this.endpoint, this.#seq);
      this.#gossip.queue([this.#announcement]);
    }
    this.#nb.tick();
  }

  /** Stops at once without a goodbye: links reset, listener closed (simulates a crash; tests). */
  kill(): Promise<void> {
    return this.#shutdown(false);
  }

  /**
   * Says goodbye (signed leaving announcement), closes every link, the server and the timers.
   * Idempotent. With `opts`, a signal that aborts or a timeout that passes first resets the
   * links still open and rejects with `AbortError` / `TimeoutError` once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.#shutdown(true), opts, () => {
      for (const l of this.#closingLinks) l.io.reset();
      this.#server.close({ signal: forceSignal(new AbortError('swarm node closed')) }).catch(() => undefined);
    }, 'swarm close');
  }

  #shutdown(graceful: boolean): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closeCtrl.abort(new PipeClosedError('swarm node closed'));
    clearInterval(this.#timer);
    if (this.#soon) clearTimeout(this.#soon);
    for (const w of [...this.#snapshotWaiters]) w();
    const links = [...this.links.all];
    this.#closingLinks = links;
    if (!graceful) {
      for (const l of links) l.io.reset();
      this.#closing = this.#server.close();
      return this.#closing;
    }
    const bye = signAnnouncement(this.#cfg.identity, this.#cfg.protocol.hash, this.endpoint, Math.max(this.#cfg.now(), this.#seq + 1), true);
    for (const l of links) for (const f of encodeMembers([bye])) l.send(f);
    this.#closing = (async () => {
      await Promise.all(links.map((l) => l.io.close().catch(() => undefined)));
      await this.#server.close();
    })();
    return this.#closing;
  }
}
