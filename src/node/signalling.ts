/**
 * Signalling over MQTT: every node subscribes to its inbox topic (`p2pd/1/<node id hex>`) on
 * each broker it uses; a message to a peer is an {@link sealEnvelope | envelope} (signed by
 * us, encrypted to the peer, with an expiry and an id) published on the peer's inbox on a
 * broker both use. Which broker: one we are connected to that the peer's address names;
 * failing that, a connection is opened to one of the peer's brokers (a URL from its address,
 * or the broker the peer hosts itself, at its addresses). Replies travel back through the
 * broker the request came on.
 *
 * Everything that arrives is checked before it is looked at ({@link openEnvelope}): bad
 * signature, wrong recipient, expired, too long a TTL, replayed, undecryptable or malformed
 * messages are dropped and counted in {@link Signalling.stats}.
 * @module
 */
import { cancellable, throwIfAborted, type AbortOptions } from '../util/abort.js';
import type { PeerAddress } from './address.js';
import { inboxTopic } from './broker.js';
import { openEnvelope, ReplayCache, sealEnvelope } from './envelope.js';
import { SignalError, type SignalRejection } from './errors.js';
import { InvalidArgumentError } from '../errors.js';
import { brokerUrlsFor, isLoopbackHost, openBroker, type Conn } from './signalling-broker.js';
import {
  BROKER_CONNECT_TIMEOUT, DEFAULT_REPLAY_CACHE_SIZE, DEFAULT_SIGNAL_TTL, MAX_PEER_BROKERS, type SignalMessage, type SignallingOptions, type SignallingStats,
} from './signalling-types.js';

export {
  BROKER_CONNECT_TIMEOUT, DEFAULT_REPLAY_CACHE_SIZE, DEFAULT_SIGNAL_TTL, MAX_PEER_BROKERS, type SignalMessage, type SignallingOptions, type SignallingStats,
} from './signalling-types.js';

/**
 * Peers remembered at most as expecting an answer from (see `Signalling`; each entry lives one
 * message TTL). Past it the oldest are forgotten: their answers then compete for the replay
 * cache's general budget like anyone's.
 */
export const MAX_EXPECTED_SENDERS = 1024;

/** One node's signalling endpoint: broker connections, inbox, request/response. */
export class Signalling {
  /** Counters. */
  readonly stats: SignallingStats = { sent: 0, received: 0, rejected: {} };
  private readonly opts: SignallingOptions;
  private readonly conns = new Map<string, Conn>();
  private readonly replay: ReplayCache;
  /** Peers we sent a message of our own to (not a reply), until when we expect to hear back. */
  private readonly expected = new Map<string, number>();
  private readonly pending = new Map<string, { from: string; resolve: (m: SignalMessage) => void }>();
  private readonly listeners: ((m: SignalMessage) => void)[] = [];
  private readonly topic: string;
  private closed = false;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(opts: SignallingOptions) {
    this.opts = opts;
    const size = opts.replayCacheSize ?? DEFAULT_REPLAY_CACHE_SIZE;
    if (!Number.isSafeInteger(size) || size < 1) throw new InvalidArgumentError('replayCacheSize must be a positive integer');
    this.replay = new ReplayCache(size);
    this.topic = inboxTopic(opts.identity.idHex);
    if (opts.onMessage) this.listeners.push(opts.onMessage);
  }

  /** Registers a message listener; returns a remover. */
  onMessage(cb: (m: SignalMessage) => void): () => void {
    this.listeners.push(cb);
    return () => {
      const i = this.listeners.indexOf(cb);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Connects to every configured broker (in parallel). Resolves when each has connected or
   * failed its first attempt (bounded by `connectTimeout`); failed brokers keep retrying in
   * the background, so a node starts offline and picks its brokers up later. Each broker whose
   * first attempt failed is told to `onBrokerFailure`, once.
   */
  async start(opts: AbortOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    this.pruneTimer = setInterval(() => {
      this.replay.prune();
      this.pruneExpected(Date.now());
    }, 30_000);
    this.pruneTimer.unref();
    const all = [...new Set(this.opts.brokers ?? [])].map((url) =>
      this.open(url, true).ready.catch((e: unknown) => {
        if (this.closed || opts.signal?.aborted) return;
        try {
          this.opts.onBrokerFailure?.(url, e instanceof SignalError ? e : new SignalError('not-connected', String(e), { cause: e }));
        } catch {
          /* a throwing callback must not fail the start */
        }
      }),
    );
    await Promise.all(all);
  }

  /** Broker URLs we are connected to now. */
  get connected(): string[] {
    return [...this.conns.values()].filter((c) => c.up).map((c) => c.url);
  }

  /** Configured broker URLs (connected or not). */
  get configured(): string[] {
    return [...this.conns.values()].filter((c) => c.configured).map((c) => c.url);
  }

  private open(url: string, configured: boolean): Conn {
    const existing = this.conns.get(url);
    if (existing) {
      if (configured) existing.configured = true;
      return existing;
    }
    const conn = openBroker(url, configured, {
      topic: this.topic,
      connectTimeout: this.opts.connectTimeout ?? BROKER_CONNECT_TIMEOUT,
      reconnectPeriod: this.opts.reconnectPeriod ?? 1000,
      onMessage: (payload) => this.receive(payload, url),
      onDown: (c) => {
        if (!c.configured && !this.closed) this.drop(c);
      },
    });
    this.conns.set(url, conn);
    return conn;
  }

  private drop(conn: Conn): void {
    if (this.conns.get(conn.url) === conn) this.conns.delete(conn.url);
    conn.client.end(true);
  }

  /**
   * Remembers that we wait for `peer` to answer until `until` (Unix ms): its messages use the
   * replay cache's reserved budget, so a flood from other identities cannot shut out the
   * answers to our own requests. At most {@link MAX_EXPECTED_SENDERS} peers, oldest dropped.
   */
  private expect(peer: string, until: number): void {
    this.expected.delete(peer);
    this.expected.set(peer, until);
    if (this.expected.size > MAX_EXPECTED_SENDERS) this.pruneExpected(Date.now());
    while (this.expected.size > MAX_EXPECTED_SENDERS) this.expected.delete(this.expected.keys().next().value as string);
  }

  private pruneExpected(now: number): void {
    for (const [k, until] of this.expected) if (until < now) this.expected.delete(k);
  }

  private reject(reason: SignalRejection): void {
    this.stats.rejected[reason] = (this.stats.rejected[reason] ?? 0) + 1;
  }

  private receive(payload: Buffer, via: string): void {
    if (this.closed) return;
    let env;
    try {
      env = openEnvelope(payload, {
        identity: this.opts.identity,
        signalKey: this.opts.signalKey,
        replay: this.replay,
        expected: (id) => (this.expected.get(id) ?? 0) >= Date.now(),
        ...(this.opts.clockSkew !== undefined ? { clockSkew: this.opts.clockSkew } : {}),
      });
    } catch (e) {
      this.reject(e instanceof SignalError ? e.reason : 'malformed');
      return;
    }
    const p = env.payload;
    const type = p.t;
    const body = p.b;
    const re = p.re;
    if (typeof type !== 'string' || type.length > 32 || body === null || typeof body !== 'object' || Array.isArray(body) || (re !== undefined && (typeof re !== 'string' || !/^[0-9a-f]{32}$/.test(re)))) {
      this.reject('malformed');
      return;
    }
    this.stats.received++;
    const m: SignalMessage = { from: env.senderIdHex, senderKey: env.senderKey, type, body: body as Record<string, unknown>, msgId: env.msgId, re, via, expires: env.expires };
    if (re !== undefined) {
      const w = this.pending.get(re);
      if (w) {
        if (w.from !== m.from) {
          this.reject('unexpected-sender');
          return;
        }
        this.pending.delete(re);
        w.resolve(m);
        return;
      }
    }
    for (const cb of [...this.listeners]) {
      try {
        cb(m);
      } catch (e) {
        process.emitWarning(`p2pd: error in a signalling listener: ${String(e)}`, { code: 'P2PD_CALLBACK_ERROR' });
      }
    }
  }

  /** Broker URLs that may reach `peer`, best first: shared configured ones, then the peer's own. */
  brokersFor(peer: PeerAddress): string[] {
    const same = this.opts.sameHost?.(peer) ?? peer.interfaces.every((i) => i.endpoints.every((e) => isLoopbackHost(e.host)));
    return brokerUrlsFor(peer, same);
  }

  /** A connected broker that reaches `peer`, connecting to one of its brokers if needed. */
  private async brokerFor(peer: PeerAddress, via: string | undefined, opts: AbortOptions): Promise<Conn> {
    if (via !== undefined) {
      const c = this.conns.get(via);
      if (c?.up) return c;
    }
    const urls = this.brokersFor(peer);
    for (const u of urls) {
      const c = this.conns.get(u);
      if (c?.up) return c;
    }
    if (urls.length === 0) throw new SignalError('no-broker', `peer ${peer.idHex.slice(0, 16)}… has no signalling channel in its address`);
    // Configured but still connecting: wait for those first.
    const connecting = urls.map((u) => this.conns.get(u)).filter((c): c is Conn => c !== undefined);
    if (urls.some((u) => !this.conns.has(u)) && this.peerBrokerCount() >= MAX_PEER_BROKERS) this.evictIdlePeerBroker();
    const fresh = urls.filter((u) => !this.conns.has(u)).slice(0, Math.max(0, MAX_PEER_BROKERS - this.peerBrokerCount()));
    const candidates = [...connecting, ...fresh.map((u) => this.open(u, false))];
    if (candidates.length === 0) throw new SignalError('no-broker', 'too many broker connections open');
    return cancellable<Conn>(opts, 'broker connection', (resolve, reject) => {
      let left = candidates.length;
      const errors: unknown[] = [];
      for (const c of candidates) {
        c.ready.then(
          () => resolve(c),
          (e: unknown) => {
            errors.push(e);
            if (--left === 0) reject(new SignalError('no-broker', `no broker of peer ${peer.idHex.slice(0, 16)}… is reachable (${urls.join(', ')})`, { cause: errors[0] }));
          },
        );
      }
    });
  }

  /**
   * Closes the least recently used connection opened for a peer that nothing waits on (no
   * publish in flight, no request waiting for its answer), so that new peers can still be
   * reached once {@link MAX_PEER_BROKERS} were opened over time.
   */
  private evictIdlePeerBroker(): void {
    let lru: Conn | undefined;
    for (const c of this.conns.values()) {
      if (c.configured || !c.up || c.pins > 0 || c.inFlight.size > 0) continue;
      if (!lru || c.lastUsed < lru.lastUsed) lru = c;
    }
    if (lru) this.drop(lru);
  }

  private peerBrokerCount(): number {
    let n = 0;
    for (const c of this.conns.values()) if (!c.configured) n++;
    return n;
  }

  /**
   * Sends a message to `peer`. Resolves with the envelope id once the broker has it.
   * @throws SignalError (`'no-broker'`, `'not-connected'`, `'closed'`), TimeoutError, AbortError.
   */
  send(
    peer: PeerAddress,
    type: string,
    body: Record<string, unknown>,
    opts: AbortOptions & { ttl?: number; re?: string; via?: string } = {},
  ): Promise<string> {
    return this.publish(peer, type, body, opts, undefined);
  }

  private async publish(
    peer: PeerAddress,
    type: string,
    body: Record<string, unknown>,
    opts: AbortOptions & { ttl?: number; re?: string; via?: string },
    onId: ((msgId: string, conn: Conn) => void) | undefined,
  ): Promise<string> {
    if (this.closed) throw new SignalError('closed', 'signalling is closed');
    throwIfAborted(opts.signal);
    const conn = await this.brokerFor(peer, opts.via, opts);
    conn.lastUsed = performance.now();
    const ttl = Math.min(opts.ttl ?? DEFAULT_SIGNAL_TTL, 120_000);
    const payload: Record<string, unknown> = { t: type, b: body };
    if (opts.re !== undefined) payload.re = opts.re;
    const { bytes, msgId } = sealEnvelope(this.opts.identity, peer, payload, ttl);
    if (opts.re === undefined) this.expect(peer.idHex, Date.now() + ttl + (this.opts.clockSkew ?? 5_000));
    // The answer may come back before the broker's PUBACK: be ready for it first.
    onId?.(msgId, conn);
    await cancellable<void>(opts, `publish to ${conn.url}`, (resolve, reject) => {
      if (!conn.up) {
        reject(new SignalError('not-connected', `broker ${conn.url} is not connected`));
        return;
      }
      conn.client.publish(inboxTopic(peer.idHex), bytes, { qos: 1 }, (err) =>
        err ? reject(new SignalError('not-connected', `publish to ${conn.url} failed: ${err.message}`, { cause: err })) : resolve(),
      );
      // A broker that vanishes mid-publish: fail now rather than wait for the caller's timeout
      // (through the connection's one shared close listener; see `Conn.inFlight`).
      const onClose = (): void => reject(new SignalError('not-connected', `broker ${conn.url} went away`));
      conn.inFlight.add(onClose);
      return () => conn.inFlight.delete(onClose);
    });
    this.stats.sent++;
    return msgId;
  }

  /**
   * Sends a message and waits for the peer's answer (a message whose `re` is this one's id,
   * from that peer). The TTL defaults to the timeout.
   * @throws SignalError, TimeoutError, AbortError.
   */
  async request(
    peer: PeerAddress,
    type: string,
    body: Record<string, unknown>,
    opts: AbortOptions & { ttl?: number; via?: string } = {},
  ): Promise<SignalMessage> {
    let id: string | undefined;
    let pinned: Conn | undefined;
    let got: SignalMessage | undefined;
    let wake: ((m: SignalMessage) => void) | undefined;
    const reply = new Promise<SignalMessage>((resolve) => (wake = resolve));
    const t0 = performance.now();
    try {
      await this.publish(peer, type, body, { ...opts, ttl: opts.ttl ?? opts.timeout ?? DEFAULT_SIGNAL_TTL }, (msgId, conn) => {
        id = msgId;
        // The answer comes back through this broker: keep it open until then.
        pinned = conn;
        conn.pins++;
        this.pending.set(msgId, { from: peer.idHex, resolve: (m) => ((got = m), wake?.(m)) });
      });
      const left = opts.timeout ? Math.max(1, opts.timeout - (performance.now() - t0)) : undefined;
      return await cancellable<SignalMessage>({ signal: opts.signal, timeout: left }, `${type} reply from ${peer.idHex.slice(0, 16)}…`, (resolve) => {
        if (got) resolve(got);
        else void reply.then(resolve);
      });
    } finally {
      if (id !== undefined) this.pending.delete(id);
      if (pinned) {
        pinned.pins--;
        pinned.lastUsed = performance.now();
      }
    }
  }

  /** Answers `m` (through the broker it came on). */
  reply(m: SignalMessage, peer: PeerAddress, type: string, body: Record<string, unknown>, opts: AbortOptions & { ttl?: number } = {}): Promise<string> {
    return this.send(peer, type, body, { ...opts, re: m.msgId, via: m.via });
  }

  /** Disconnects from every broker. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.expected.clear();
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((c) => c.client.endAsync(true).catch(() => undefined)));
  }
}
