/**
 * The P2P node: listens everywhere, knows its addresses and NAT, signals over MQTT, and
 * connects to peers by address with the best strategy that works. The strategies live in
 * files of their own (strategy-direct.ts, strategy-punch.ts, strategy-relay.ts) and see the
 * node through a {@link NodeContext}; its states and close order are in node-lifecycle.ts.
 *
 * ```ts
 * const nics = await initP2pd();
 * const node = await startP2pNode({ nics });
 * node.addMsgCb(async (msg, pipe) => { if (msg.toString() === 'PING') await pipe.send('PONG'); });
 * console.log(node.addr);                       // give this to peers
 * const pipe = await other.connect(node.addr);  // encrypted, authenticated to node's key
 * ```
 * @module
 */
import { AbortError, StateError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import type { X25519KeyPair } from '../crypto/x25519.js';
import { secureServer, type SecurePipe, type SecureServer } from '../crypto/secure-pipe.js';
import { formatEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';
import { initP2pd, Interfaces, type Interface } from '../interfaces/interfaces.js';
import type { NatDetection } from '../nat/detect/nat-type.js';
import type { PortMapping } from '../nat/portmap/mapping.js';
import type { TurnPipe } from '../nat/turn/pipe.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import { SUB_ALL, type Message } from '../pipes/types.js';
import type { UdpPipe } from '../pipes/udp.js';
import { closeWithin, throwIfAborted, unlimitedController, type AbortOptions } from '../util/abort.js';
import { toPeerAddress, type PeerAddress, type SignalChannel } from './address.js';
import type { Broker } from './broker.js';
import { NodeAddress } from './build-address.js';
import { peerOnThisHost } from './candidates.js';
import { DEFAULT_MAX_PEERS, KEEPALIVE_MS, nodeContext, type NodeContext } from './context.js';
import { deriveSignalKey } from './envelope.js';
import { asNodePipe } from './hello.js';
import { loadPunch, type PunchModule } from './punch-api.js';
import type { Signalling, SignalMessage } from './signalling.js';
import { startNodeSignalling } from './node-signalling.js';
import { ReverseWaiters } from './strategy-direct.js';
import { connectPeer } from './connect.js';
import { listenEverywhere } from './listen.js';
import { NodeHandlers } from './handlers.js';
import { RequestServer } from './requests.js';
import { learnExternal, mapListenPorts } from './external.js';
import { DEFAULT_TIMEOUTS, validateNodeOptions } from './options.js';
import { NodeLifecycle } from './node-lifecycle.js';
import { defaultMaxInbound, PeerSlots } from './peer-slots.js';
import type { ConnectOptions, NodeEvent, NodeMessageCallback, NodePipe, NodeTimeouts, P2pNodeOptions, PipePath } from './types.js';

export { punchHopeless } from './connect.js';

/**
 * A P2P node. Create with {@link startP2pNode} (or `new P2pNode(opts).start()`), give
 * {@link P2pNode.addr} to peers, `connect()` to theirs, handle messages with
 * {@link P2pNode.addMsgCb}, and `close()` when done.
 */
export class P2pNode implements AsyncDisposable {
  /** The node's identity (its public key is in the address). */
  readonly identity: Identity;
  /** Node id, hex. */
  readonly idHex: string;
  /** Live pipes to peers (inbound and outbound). */
  readonly pipes: Set<NodePipe>;
  /** NAT detection result, when STUN servers were given and it finished. */
  nat: NatDetection | undefined;
  /** The gateway port mapping of the TCP listen port, when one was made. */
  portMapping: PortMapping | undefined;
  /** The gateway port mapping of the UDP listen port, when one was made. */
  udpPortMapping: PortMapping | undefined;
  /** The embedded broker, when running. */
  broker: Broker | undefined;
  /** Signalling, unless disabled. */
  signalling: Signalling | undefined;

  private readonly opts: P2pNodeOptions;
  private readonly timeouts: Required<NodeTimeouts>;
  private readonly signalKey: X25519KeyPair;
  private nics: readonly Interface[] = [];
  private servers: SecureServer[] = [];
  private tcpServers: TcpServer[] = [];
  private udp: UdpPipe[] = [];
  private port = 0;
  private families = new Set<Family>();
  private externalUdp: Endpoint | undefined;
  private readonly address_ = new NodeAddress((detail) => this.event({ type: 'warning', detail }));
  private readonly reverseWaiters = new ReverseWaiters();
  private readonly requests: RequestServer;
  private readonly lc = new NodeLifecycle();
  private readonly relays = new Set<TurnPipe>();
  /** Aborted when a bounded `close(opts)` gives up waiting: every part then closes at once. */
  private readonly force = unlimitedController();
  private readonly slots: PeerSlots;
  private punchMod: PunchModule | null | undefined;
  private readonly ctx: NodeContext;
  private readonly handlers: NodeHandlers;

  constructor(opts: P2pNodeOptions = {}) {
    validateNodeOptions(opts);
    this.opts = opts;
    this.handlers = new NodeHandlers(opts);
    this.timeouts = { ...DEFAULT_TIMEOUTS };
    for (const [k, v] of Object.entries(opts.timeouts ?? {})) if (v !== undefined) this.timeouts[k as keyof NodeTimeouts] = v;
    this.identity = opts.identity ?? Identity.generate();
    this.idHex = this.identity.idHex;
    this.signalKey = deriveSignalKey(this.identity);
    this.pipes = this.lc.pipes;
    const maxPeers = opts.maxPeers ?? DEFAULT_MAX_PEERS;
    this.slots = new PeerSlots(this.lc.pipes, maxPeers, opts.maxInboundPeers ?? defaultMaxInbound(maxPeers));
    this.ctx = nodeContext({
      identity: this.identity,
      opts,
      timeouts: this.timeouts,
      lifeSignal: this.lc.signal,
      relays: this.relays,
      dispatch: this.dispatch,
      live: { nics: () => this.nics, signalling: () => this.signalling, addr: () => this.addr, natType: () => this.nat?.type },
      adopt: (p, path, announce) => this.adopt(p, path, announce),
      punchModule: async () => (this.punchMod ??= await loadPunch()),
      event: (e) => this.event(e),
    });
    this.requests = new RequestServer(this.ctx, (p) => this.lc.track(p));
  }

  // ------------------------------------------------------------------------------ start --

  /**
   * Starts the node: listens (TCP and UDP, IPv4 and IPv6, every interface), connects to its
   * brokers (or starts the embedded one), learns its external address and NAT kind when STUN
   * servers are configured, and asks the gateway for a port mapping in the background.
   * Offline (no brokers, no STUN reachable) it still starts, LAN and loopback work; a
   * `warning` event names each configured broker or STUN server it could not reach, once.
   * @throws BindError when the port is taken; AbortError/TimeoutError via `signal`/`timeout`.
   */
  async start(opts: AbortOptions = {}): Promise<this> {
    this.lc.begin();
    throwIfAborted(opts.signal);
    // Load the punch/relay module while the node starts, not in the first connect().
    if (this.opts.signalling !== false) void this.ctx.punchModule();
    try {
      const nics = this.opts.nics ?? (await initP2pd({ signal: opts.signal }));
      this.nics = nics instanceof Interfaces ? nics.list : [...nics];
      await this.listen();
      const tasks: Promise<unknown>[] = [this.startSignalling(opts), this.learnExternal(opts)];
      await Promise.all(tasks);
      this.lc.state = 'running';
      this.rebuildAddr();
      if (this.opts.portMapping !== false && this.opts.listen !== 'loopback') this.lc.track(this.mapPorts());
      return this;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  private async listen(): Promise<void> {
    const l = await listenEverywhere({ loopback: this.opts.listen === 'loopback', port: this.opts.port ?? 0 });
    ({ port: this.port, families: this.families, tcp: this.tcpServers, udp: this.udp } = l);
    const o = { identity: this.identity, timeout: this.timeouts.handshake, onMessage: this.dispatch, onHandshakeError: () => undefined };
    this.servers = this.tcpServers.map((s) => secureServer(s, { ...o, onPipe: (p) => this.onInbound(p) }));
  }

  private startSignalling(opts: AbortOptions): Promise<void> {
    const cfg = this.opts.signalling;
    if (cfg === false) return Promise.resolve();
    return startNodeSignalling({
      cfg,
      loopback: this.opts.listen === 'loopback',
      identity: this.identity,
      signalKey: this.signalKey,
      onMessage: (m) => this.onSignal(m),
      sameHost: (peer) => peer.id.equals(this.identity.id) || peerOnThisHost(peer, this.nics),
      onBroker: (b) => (this.broker = b),
      onSignalling: (sig) => (this.signalling = sig),
      warn: (detail) => this.event({ type: 'warning', detail }),
    }, opts);
  }

  private async learnExternal(opts: AbortOptions): Promise<void> {
    const stun = this.opts.stun ?? [];
    if (stun.length === 0 || this.opts.listen === 'loopback') return;
    const v = await learnExternal({
      stun,
      udp4: this.udp.find((u) => u.local.family === 4),
      detect: this.opts.natDetection !== false,
      budget: this.timeouts.nat,
      signal: opts.signal ? AbortSignal.any([opts.signal, this.lc.signal]) : this.lc.signal,
      warn: (detail) => this.event({ type: 'warning', detail }),
    });
    this.nat = v.nat;
    this.externalUdp = v.externalUdp;
  }

  /** Asks the gateway to map the TCP and the UDP listen ports (renewed until close). */
  private mapPorts(): Promise<void> {
    return mapListenPorts({
      nics: this.nics,
      port: this.port,
      protocols: this.udp.some((u) => u.local.family === 4) ? ['tcp', 'udp'] : ['tcp'],
      signal: this.lc.signal,
      onMapping: (m) => {
        if (this.lc.state !== 'running') return false;
        if (m.protocol === 'tcp') this.portMapping = m;
        else this.udpPortMapping = m;
        this.rebuildAddr();
        return true;
      },
      onChange: () => this.rebuildAddr(),
      warn: (detail) => this.event({ type: 'warning', detail }),
    });
  }

  // ---------------------------------------------------------------------------- address --

  /** The node's address: give it to peers. Changes when the node learns more (port mapping). */
  get addr(): string {
    return this.address_.addr;
  }

  /** {@link addr}, parsed. */
  get address(): PeerAddress {
    return this.address_.address;
  }

  /** The TCP/UDP listen port. */
  get listenPort(): number {
    return this.port;
  }

  /** Registers a callback for address changes; returns a remover. */
  onAddrChange(cb: (addr: string) => void): () => void {
    return this.handlers.addrs.add(cb);
  }

  private rebuildAddr(): void {
    if (this.lc.state !== 'running') return;
    const signal: SignalChannel[] = [];
    if (this.broker) signal.push({ type: 'mqtt-self', port: this.broker.port });
    for (const url of this.signalling?.configured ?? []) if (url !== this.broker?.url) signal.push({ type: 'mqtt', url });
    const changed = this.address_.rebuild({
      identity: this.identity,
      signalKey: this.signalKey.publicKey,
      nics: this.nics,
      families: this.families,
      port: this.port,
      loopbackOnly: this.opts.listen === 'loopback',
      nat: this.nat,
      externalUdp: this.externalUdp,
      mappings: [this.portMapping, this.udpPortMapping],
      signal,
    });
    if (changed !== undefined) this.handlers.addrChanged(changed);
  }

  // ------------------------------------------------------------------------ messages --

  /** Adds the protocol handler called for every message from every peer (P2PD's `add_msg_cb`). Returns a remover. */
  addMsgCb(cb: NodeMessageCallback): () => void {
    return this.handlers.addMessage(cb);
  }

  /** Same as {@link addMsgCb}. */
  onMessage(cb: NodeMessageCallback): () => void {
    return this.handlers.addMessage(cb);
  }

  /** Removes a handler added with {@link addMsgCb}. */
  delMsgCb(cb: NodeMessageCallback): void {
    this.handlers.messages.remove(cb);
  }

  /** Called with each new pipe a peer opened to us (and each pipe made for a peer's reverse/punch/relay request). */
  onPipe(cb: (pipe: NodePipe) => void): () => void {
    return this.handlers.pipes.add(cb);
  }

  /** Errors thrown by message callbacks. Without a listener they become process warnings. */
  onError(cb: (e: Error) => void): () => void {
    return this.handlers.errors.add(cb);
  }

  private readonly dispatch = (m: Message): void => this.handlers.dispatch(m);

  private readonly hasMessageCallbacks = (): boolean => this.handlers.messages.list.length > 0;

  private event(e: NodeEvent): void {
    this.handlers.event(e);
  }

  /** Registers a pipe with the node (callbacks, keep-alive, bookkeeping). */
  private adopt(p: SecurePipe | Pipe, path: PipePath, announce: boolean): NodePipe {
    const np = asNodePipe(p, path);
    // Inbound beyond the caps: refused (outbound ones were checked when connect() began).
    const full = announce ? this.slots.refuseInbound() : undefined;
    if (full !== undefined) {
      this.event({ type: 'warning', peer: np.remoteIdHex, detail: `inbound pipe refused: ${full}` });
      void np.close().catch(() => undefined);
      return np;
    }
    if (!this.lc.keep(np)) return np;
    if (announce) this.slots.addInbound(np);
    const inner = (p as { inner?: { socket?: { setKeepAlive?: (on: boolean, ms: number) => void } } }).inner;
    inner?.socket?.setKeepAlive?.(true, this.opts.keepAlive ?? KEEPALIVE_MS);
    if (announce) {
      this.event({ type: 'inbound', peer: np.remoteIdHex, detail: `${path.strategy} ${path.transport} ${formatEndpoint(path.remote)}` });
      this.handlers.pipeOpened(np);
    }
    return np;
  }

  // -------------------------------------------------------------------- inbound side --

  private onInbound(p: SecurePipe): void {
    if (this.reverseWaiters.claim(p, (detail) => this.event({ type: 'warning', peer: p.remoteIdHex, detail }))) return;
    this.adopt(p, { strategy: 'inbound', transport: 'tcp', local: p.local, remote: p.remote }, true);
  }

  private onSignal(m: SignalMessage): void {
    if (this.lc.state !== 'running') return;
    this.event({ type: 'signal', peer: m.from, detail: m.type });
    this.requests.handle(m);
  }

  // ------------------------------------------------------------------------- connect --

  /**
   * Connects to the node at `addr` and returns an encrypted pipe authenticated to the key in
   * `addr`. Strategies run in order, later ones starting early when earlier ones fail or take
   * long (direct at once, reverse after 150 ms, punch after 400 ms, relay after 1.5 s); the
   * first authenticated pipe wins and `pipe.path` says which. `connect(node.addr)` connects to
   * itself.
   * @throws AddressError (bad address), P2pConnectError (every strategy failed; `attempts`),
   *   TimeoutError, AbortError, StateError (node not running), LimitError (`maxPeers` pipes
   *   are open).
   */
  async connect(addr: string | PeerAddress, opts: ConnectOptions = {}): Promise<NodePipe> {
    this.lc.expect('running');
    throwIfAborted(opts.signal);
    this.slots.checkOutbound();
    // The queue for recv(). By default it is the pipe's default queue: if it fills up without
    // ever being read while the node has message callbacks (which saw every message), it is
    // dropped instead of pausing the pipe, so nothing stalls for want of a recv() nobody calls.
    const prepare = (p: Pipe): void => {
      if (opts.queue === true) p.subscribe(SUB_ALL);
      else if (opts.queue === undefined && !p.isSubscribed(SUB_ALL)) p.subscribeDefault(this.hasMessageCallbacks);
    };
    const pipe = await connectPeer(this.ctx, this.reverseWaiters, toPeerAddress(addr), opts, prepare);
    prepare(pipe);
    // Only the winner of the race becomes one of the node's pipes (the strategies do not adopt).
    this.adopt(pipe, pipe.path, false);
    if (this.lc.ended) throw new StateError('node closed while connecting');
    return pipe;
  }

  // ---------------------------------------------------------------------------- close --

  /**
   * Closes every pipe, listener, broker connection, relay allocation and port mapping.
   * Idempotent. Each part's close is bounded on its own (TCP: `CLOSE_TIMEOUT`; TURN and port
   * mapping deletions: their close timeouts). With `opts`, a signal that aborts or a timeout
   * that passes first stops waiting: connections are reset, pending TURN and port-mapping
   * deletions are abandoned (they expire on their servers), and the promise rejects with
   * `AbortError` / `TimeoutError` once everything is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    const f = { signal: this.force.signal };
    const graceful = (): Promise<void> => this.lc.close(
      () => [
        ...this.servers.map((s) => s.close(f)),
        ...this.tcpServers.map((s) => s.close(f)),
        ...this.udp.map((u) => u.close(f)),
        ...[...this.relays].map((r) => r.close(f)),
        this.signalling?.close(),
        this.portMapping?.close(f),
        this.udpPortMapping?.close(f),
      ],
      async () => {
        await this.broker?.close();
        this.portMapping = undefined;
        this.udpPortMapping = undefined;
      },
      this.force.signal,
    );
    return closeWithin(graceful, opts, () => this.force.abort(new AbortError('node closed')), 'node close');
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Creates and starts a node: `const node = await startP2pNode({ nics })`. Bad options reject with `InvalidArgumentError`. */
export async function startP2pNode(opts: P2pNodeOptions = {}, startOpts: AbortOptions = {}): Promise<P2pNode> {
  return new P2pNode(opts).start(startOpts);
}

