/**
 * The P2P node: listens everywhere, knows its addresses and NAT, signals over MQTT, and
 * connects to peers by address with the best strategy that works. The strategies live in
 * files of their own (strategy-direct.ts, strategy-punch.ts, strategy-relay.ts) and see the
 * node through a {@link NodeContext}.
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
import { ConnectError, InvalidArgumentError, StateError, TimeoutError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import type { X25519KeyPair } from '../crypto/noise.js';
import { secureServer, type SecurePipe, type SecureServer } from '../crypto/secure-pipe.js';
import { formatEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';
import { initP2pd, Interfaces, type Interface } from '../interfaces/interfaces.js';
import { detectNat, type NatDetection } from '../nat/detect/nat-type.js';
import { mapPort } from '../nat/portmap/map-port.js';
import type { PortMapping } from '../nat/portmap/mapping.js';
import { parseStunServer, stunGetMapping } from '../nat/stun/client.js';
import { turnServerEndpoint } from '../nat/turn/allocate.js';
import type { TurnPipe } from '../nat/turn/pipe.js';
import { pipeOpen } from '../pipes/open.js';
import type { Pipe } from '../pipes/pipe.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import { SUB_ALL, type Message } from '../pipes/types.js';
import type { UdpPipe } from '../pipes/udp.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { checkBrokerUrl, parseAddress, type PeerAddress, type SignalChannel } from './address.js';
import { startBroker, type Broker } from './broker.js';
import { buildAddress } from './build-address.js';
import { raceStrategies, START_AFTER } from './connect-race.js';
import { KEEPALIVE_MS, type NodeContext } from './context.js';
import { deriveSignalKey } from './envelope.js';
import { P2pConnectError, type StrategyFailure } from './errors.js';
import { asNodePipe, CONN_ID, decodeHello, errorOf, safe } from './hello.js';
import { loadPunch, type PunchModule } from './punch-api.js';
import { Signalling, type SignalMessage } from './signalling.js';
import { connectDirect, ReverseWaiters, serveReverse } from './strategy-direct.js';
import { connectPunch, servePunch } from './strategy-punch.js';
import { connectRelay, relayPossible, serveRelay } from './strategy-relay.js';
import {
  STRATEGIES, type ConnectOptions, type NodeEvent, type NodeMessageCallback, type NodePipe, type NodeTimeouts, type P2pNodeOptions,
  type PipePath, type Strategy,
} from './types.js';

const DEFAULT_TIMEOUTS: Required<NodeTimeouts> = { connect: 15_000, direct: 2_000, reverse: 4_000, punch: 6_000, relay: 10_000, handshake: 5_000, nat: 2_500 };
/** NAT types that filter by port: hole punching towards a symmetric NAT behind one of these fails. */
const PORT_FILTERING = new Set<string>(['PORT_RESTRICTED_CONE', 'SYMMETRIC', 'SYMMETRIC_UDP_FIREWALL']);

/**
 * True when UDP hole punching cannot work between NAT types `a` and `b` (one side maps per
 * destination, the other filters by port): the relay then starts with punching instead of
 * waiting for it to fail.
 */
export function punchHopeless(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return (a === 'SYMMETRIC' && PORT_FILTERING.has(b)) || (b === 'SYMMETRIC' && PORT_FILTERING.has(a));
}

/** Most reverse/punch/relay requests served at once. */
const MAX_SERVING = 16;

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
  readonly pipes = new Set<NodePipe>();
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
  private addrText = '';
  private addrParsed: PeerAddress | undefined;
  private msgCbs: NodeMessageCallback[] = [];
  private pipeCbs: ((p: NodePipe) => void)[] = [];
  private addrCbs: ((addr: string) => void)[] = [];
  private errorCbs: ((e: Error) => void)[] = [];
  private readonly reverseWaiters = new ReverseWaiters();
  private serving = 0;
  private readonly life = new AbortController();
  private readonly relays = new Set<TurnPipe>();
  private readonly background = new Set<Promise<unknown>>();
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private closing: Promise<void> | undefined;
  private punchMod: PunchModule | null | undefined;
  private readonly ctx: NodeContext;

  constructor(opts: P2pNodeOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('P2pNode options must be an object');
    if (opts.identity !== undefined && !(opts.identity instanceof Identity)) throw new InvalidArgumentError('identity must be an Identity');
    if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535)) throw new InvalidArgumentError('port must be 0-65535');
    if (opts.listen !== undefined && opts.listen !== 'all' && opts.listen !== 'loopback') throw new InvalidArgumentError("listen must be 'all' or 'loopback'");
    if (opts.keepAlive !== undefined && !(Number.isFinite(opts.keepAlive) && opts.keepAlive >= 100)) throw new InvalidArgumentError('keepAlive must be >= 100 ms');
    for (const s of opts.strategies ?? []) if (!STRATEGIES.includes(s)) throw new InvalidArgumentError(`unknown strategy ${JSON.stringify(s)}`);
    for (const s of opts.stun ?? []) {
      try {
        parseStunServer(s);
      } catch (e) {
        throw new InvalidArgumentError(`bad STUN server ${JSON.stringify(s)}: ${errorOf(e).message}`, { cause: e });
      }
    }
    for (const t of opts.turn ?? []) {
      if (t === null || typeof t !== 'object' || typeof t.username !== 'string' || typeof t.password !== 'string') {
        throw new InvalidArgumentError('a TURN server needs { server, username, password }');
      }
      try {
        turnServerEndpoint(t.server);
      } catch (e) {
        throw new InvalidArgumentError(`bad TURN server ${JSON.stringify(t.server)}: ${errorOf(e).message}`, { cause: e });
      }
    }
    if (opts.signalling) {
      for (const url of opts.signalling.brokers ?? []) {
        try {
          checkBrokerUrl(url);
        } catch (e) {
          throw new InvalidArgumentError(`bad broker URL ${JSON.stringify(url)}: ${errorOf(e).message}`, { cause: e });
        }
      }
    }
    this.opts = opts;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.identity = opts.identity ?? Identity.generate();
    this.idHex = this.identity.idHex;
    this.signalKey = deriveSignalKey(this.identity);
    this.ctx = this.makeContext();
  }

  private makeContext(): NodeContext {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    return {
      identity: this.identity,
      opts: this.opts,
      timeouts: this.timeouts,
      get nics() {
        return node.nics;
      },
      get signalling() {
        return node.signalling;
      },
      get addr() {
        return node.addr;
      },
      lifeSignal: this.life.signal,
      get natType() {
        return node.nat?.type;
      },
      relays: this.relays,
      dispatch: this.dispatch,
      adopt: (p, path, announce) => this.adopt(p, path, announce),
      punchModule: async () => (this.punchMod ??= await loadPunch()),
      event: (e) => this.event(e),
      isSelf: (peer) => peer.id.equals(this.identity.id),
    };
  }

  // ------------------------------------------------------------------------------ start --

  /**
   * Starts the node: listens (TCP and UDP, IPv4 and IPv6, every interface), connects to its
   * brokers (or starts the embedded one), learns its external address and NAT kind when STUN
   * servers are configured, and asks the gateway for a port mapping in the background.
   * Offline (no brokers, no STUN reachable) it still starts; LAN and loopback work.
   * @throws BindError when the port is taken; AbortError/TimeoutError via `signal`/`timeout`.
   */
  async start(opts: AbortOptions = {}): Promise<this> {
    if (this.state !== 'new') throw new StateError(`node is ${this.state}`);
    this.state = 'starting';
    throwIfAborted(opts.signal);
    try {
      const nics = this.opts.nics ?? (await initP2pd({ signal: opts.signal }));
      this.nics = nics instanceof Interfaces ? nics.list : [...nics];
      await this.listen();
      const tasks: Promise<unknown>[] = [this.startSignalling(opts), this.learnExternal(opts)];
      await Promise.all(tasks);
      this.state = 'running';
      this.rebuildAddr();
      if (this.opts.portMapping !== false && this.opts.listen !== 'loopback') this.track(this.mapPorts());
      return this;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  private async listen(): Promise<void> {
    const loop = this.opts.listen === 'loopback';
    const hosts: [string, Family][] = loop ? [['127.0.0.1', 4], ['::1', 6]] : [['0.0.0.0', 4], ['::', 6]];
    const fixed = this.opts.port ?? 0;
    for (let attempt = 0; ; attempt++) {
      const opened: [TcpServer, Family][] = [];
      let port = fixed;
      try {
        for (const [host, family] of hosts) {
          try {
            const s = await pipeOpen('tcp', undefined, { bind: { host, port }, framing: 'raw', ipv6Only: true });
            opened.push([s, family]);
            port = s.local.port;
          } catch (e) {
            // A family this machine does not have is skipped; a taken port is not.
            if ((e as { code?: string }).code === 'ERR_ADDRESS_IN_USE') throw e;
          }
        }
        if (opened.length === 0) throw new StateError('could not listen on any address');
        this.port = port;
        for (const [s, family] of opened) {
          this.tcpServers.push(s);
          this.families.add(family);
        }
        break;
      } catch (e) {
        await Promise.all(opened.map(([s]) => s.close()));
        // Port 0 gave IPv4 a port already taken on IPv6: try another.
        if (fixed !== 0 || attempt >= 5 || (e as { code?: string }).code !== 'ERR_ADDRESS_IN_USE') throw e;
      }
    }
    for (const s of this.tcpServers) {
      this.servers.push(
        secureServer(s, {
          identity: this.identity,
          timeout: this.timeouts.handshake,
          onMessage: this.dispatch,
          onPipe: (p) => this.onInbound(p),
          onHandshakeError: () => undefined,
        }),
      );
    }
    // UDP on the same port where it is free (hole punching, datagrams); not fatal.
    for (const [host, family] of hosts) {
      if (!this.families.has(family)) continue;
      try {
        this.udp.push(await pipeOpen('udp', undefined, { bind: { host, port: this.port }, ...(family === 6 ? { ipv6Only: true } : {}), onMessage: () => undefined }));
      } catch {
        /* port taken for UDP: TCP is what matters */
      }
    }
  }

  private async startSignalling(opts: AbortOptions): Promise<void> {
    const cfg = this.opts.signalling;
    if (cfg === false) return;
    const brokers = [...(cfg?.brokers ?? [])];
    const embedded = cfg?.embedded ?? brokers.length === 0;
    if (embedded) {
      const e = typeof embedded === 'object' ? embedded : {};
      this.broker = await startBroker({
        host: e.host ?? (this.opts.listen === 'loopback' ? '127.0.0.1' : undefined),
        ...(e.port !== undefined ? { port: e.port } : {}),
      });
      brokers.unshift(this.broker.url);
    }
    this.signalling = new Signalling({
      identity: this.identity,
      signalKey: this.signalKey,
      brokers,
      ...(cfg?.connectTimeout !== undefined ? { connectTimeout: cfg.connectTimeout } : {}),
      onMessage: (m) => this.onSignal(m),
    });
    await this.signalling.start(opts);
  }

  private async learnExternal(opts: AbortOptions): Promise<void> {
    const stun = this.opts.stun ?? [];
    if (stun.length === 0 || this.opts.listen === 'loopback') return;
    const signal = opts.signal ? AbortSignal.any([opts.signal, this.life.signal]) : this.life.signal;
    const budget = this.timeouts.nat;
    const udp4 = this.udp.find((u) => u.local.family === 4);
    const v4 = stun.filter((s) => {
      try {
        return parseStunServer(s).family === 4;
      } catch {
        return false;
      }
    });
    const jobs: Promise<void>[] = [];
    if (this.opts.natDetection !== false && v4.length > 0) {
      jobs.push(
        detectNat({ servers: v4, family: 4, signal, timeout: budget, bindingTimeout: Math.min(1000, budget), delta: { count: 4 } }).then(
          (r) => {
            this.nat = r;
          },
          (e: unknown) => this.event({ type: 'warning', detail: `NAT detection failed: ${errorOf(e).message}` }),
        ),
      );
    }
    if (udp4 && v4[0] !== undefined) {
      jobs.push(
        stunGetMapping({ server: v4[0], pipe: udp4, signal, timeout: Math.min(1500, budget), rto: 200 }).then(
          (m) => {
            this.externalUdp = m.mapped;
          },
          () => undefined,
        ),
      );
    }
    await Promise.all(jobs);
  }

  /** Asks the gateway to map the TCP and the UDP listen ports (renewed until close). */
  private async mapPorts(): Promise<void> {
    const def = this.nics.find((i) => i.up && !i.loopback && i.isDefault[4]);
    if (!def || !def.gateways[4]) return;
    const primary = def.primary(4);
    if (!primary || primary.scope === 'global') return;
    const one = async (protocol: 'tcp' | 'udp'): Promise<void> => {
      try {
        const m = await mapPort({
          internalPort: this.port,
          protocol,
          interface: def.name,
          methodTimeout: 2_000,
          signal: this.life.signal,
          onChange: () => this.rebuildAddr(),
          onExpire: () => this.rebuildAddr(),
        });
        if (this.state !== 'running') {
          await m.close();
          return;
        }
        if (protocol === 'tcp') this.portMapping = m;
        else this.udpPortMapping = m;
        this.rebuildAddr();
      } catch (e) {
        this.event({ type: 'warning', detail: `no ${protocol.toUpperCase()} port mapping: ${errorOf(e).message}` });
      }
    };
    await one('tcp');
    if (this.udp.some((u) => u.local.family === 4)) await one('udp');
  }

  private track<T>(p: Promise<T>): void {
    const q = p.catch(() => undefined);
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  // ---------------------------------------------------------------------------- address --

  /** The node's address: give it to peers. Changes when the node learns more (port mapping). */
  get addr(): string {
    if (!this.addrText) throw new StateError('the node is not started');
    return this.addrText;
  }

  /** {@link addr}, parsed. */
  get address(): PeerAddress {
    if (!this.addrParsed) throw new StateError('the node is not started');
    return this.addrParsed;
  }

  /** The TCP/UDP listen port. */
  get listenPort(): number {
    return this.port;
  }

  /** Registers a callback for address changes; returns a remover. */
  onAddrChange(cb: (addr: string) => void): () => void {
    this.addrCbs.push(cb);
    return () => (this.addrCbs = this.addrCbs.filter((c) => c !== cb));
  }

  private rebuildAddr(): void {
    if (this.state !== 'running') return;
    const signal: SignalChannel[] = [];
    if (this.broker) signal.push({ type: 'mqtt-self', port: this.broker.port });
    for (const url of this.signalling?.configured ?? []) if (url !== this.broker?.url) signal.push({ type: 'mqtt', url });
    const text = buildAddress({
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
    this.addrParsed = parseAddress(text);
    const changed = text !== this.addrText;
    this.addrText = text;
    if (changed) for (const cb of this.addrCbs) safe(() => cb(text));
  }

  // ------------------------------------------------------------------------ messages --

  /** Adds the protocol handler called for every message from every peer (P2PD's `add_msg_cb`). Returns a remover. */
  addMsgCb(cb: NodeMessageCallback): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('addMsgCb expects a function');
    this.msgCbs = [...this.msgCbs, cb];
    return () => (this.msgCbs = this.msgCbs.filter((c) => c !== cb));
  }

  /** Same as {@link addMsgCb}. */
  onMessage(cb: NodeMessageCallback): () => void {
    return this.addMsgCb(cb);
  }

  /** Removes a handler added with {@link addMsgCb}. */
  delMsgCb(cb: NodeMessageCallback): void {
    this.msgCbs = this.msgCbs.filter((c) => c !== cb);
  }

  /** Called with each new pipe a peer opened to us (and each pipe made for a peer's reverse/punch/relay request). */
  onPipe(cb: (pipe: NodePipe) => void): () => void {
    this.pipeCbs.push(cb);
    return () => (this.pipeCbs = this.pipeCbs.filter((c) => c !== cb));
  }

  /** Errors thrown by message callbacks. Without a listener they become process warnings. */
  onError(cb: (e: Error) => void): () => void {
    this.errorCbs.push(cb);
    return () => (this.errorCbs = this.errorCbs.filter((c) => c !== cb));
  }

  private report(e: unknown): void {
    const err = errorOf(e);
    if (this.errorCbs.length === 0) process.emitWarning(`p2pd node: error in a message callback: ${err.message}`, { code: 'P2PD_CALLBACK_ERROR' });
    for (const cb of this.errorCbs) safe(() => cb(err));
  }

  private readonly dispatch = (m: Message): void => {
    const pipe = m.pipe as NodePipe;
    for (const cb of this.msgCbs) {
      try {
        const r = cb(m.data, pipe);
        if (r && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).then(undefined, (e: unknown) => this.report(e));
      } catch (e) {
        this.report(e);
      }
    }
  };

  private event(e: NodeEvent): void {
    const cb = this.opts.onEvent;
    if (cb) safe(() => cb(e));
  }

  /** Registers a pipe with the node (callbacks, keep-alive, bookkeeping). */
  private adopt(p: SecurePipe | Pipe, path: PipePath, announce: boolean): NodePipe {
    const np = asNodePipe(p, path);
    if (this.state === 'closing' || this.state === 'closed') {
      void np.close();
      return np;
    }
    this.pipes.add(np);
    np.onClose(() => this.pipes.delete(np));
    const inner = (p as { inner?: { socket?: { setKeepAlive?: (on: boolean, ms: number) => void } } }).inner;
    inner?.socket?.setKeepAlive?.(true, this.opts.keepAlive ?? KEEPALIVE_MS);
    if (announce) {
      this.event({ type: 'inbound', peer: np.remoteIdHex, detail: `${path.strategy} ${path.transport} ${formatEndpoint(path.remote)}` });
      for (const cb of this.pipeCbs) safe(() => cb(np));
    }
    return np;
  }

  // -------------------------------------------------------------------- inbound side --

  private onInbound(p: SecurePipe): void {
    const hello = decodeHello(p.remoteExtensions);
    if (this.reverseWaiters.offer(hello?.c, hello?.s, p)) return;
    this.adopt(p, { strategy: 'inbound', transport: 'tcp', local: p.local, remote: p.remote }, true);
  }

  private onSignal(m: SignalMessage): void {
    if (this.state !== 'running') return;
    this.event({ type: 'signal', peer: m.from, detail: m.type });
    switch (m.type) {
      case 'reverse':
        this.serve(m, (peer, conn) => serveReverse(this.ctx, peer, conn));
        break;
      case 'relay':
        this.serve(m, (peer, conn) => serveRelay(this.ctx, m, peer, conn));
        break;
      case 'punch':
        this.serve(m, (peer, conn) => servePunch(this.ctx, m, peer, conn));
        break;
      default:
        break;
    }
  }

  /** Validates a request (its address must be the sender's) and runs `fn` within the concurrency limit. */
  private serve(m: SignalMessage, fn: (peer: PeerAddress, conn: string) => Promise<void>): void {
    const conn = m.body.conn;
    if (typeof conn !== 'string' || !CONN_ID.test(conn)) return;
    let peer: PeerAddress;
    try {
      peer = parseAddress(m.body.addr as string);
    } catch {
      return;
    }
    if (peer.idHex !== m.from) return; // an address of someone else: refused
    if (this.serving >= MAX_SERVING) return;
    this.serving++;
    this.track(
      fn(peer, conn)
        .catch((e: unknown) => this.event({ type: 'warning', peer: m.from, detail: `${m.type} for peer failed: ${errorOf(e).message}` }))
        .finally(() => this.serving--),
    );
  }

  // ------------------------------------------------------------------------- connect --

  /**
   * Connects to the node at `addr` and returns an encrypted pipe authenticated to the key in
   * `addr`. Strategies run in order, later ones starting early when earlier ones fail or take
   * long (direct at once, reverse after 150 ms, punch after 400 ms, relay after 1.5 s); the
   * first authenticated pipe wins and `pipe.path` says which. `connect(node.addr)` connects to
   * itself.
   * @throws AddressError (bad address), P2pConnectError (every strategy failed; `attempts`),
   *   TimeoutError, AbortError, StateError (node not running).
   */
  async connect(addr: string | PeerAddress, opts: ConnectOptions = {}): Promise<NodePipe> {
    if (this.state !== 'running') throw new StateError(`node is ${this.state}`);
    throwIfAborted(opts.signal);
    const peer = typeof addr === 'string' ? parseAddress(addr) : addr;
    const wanted = opts.strategies ?? this.opts.strategies ?? [...STRATEGIES];
    for (const s of wanted) if (!STRATEGIES.includes(s)) throw new InvalidArgumentError(`unknown strategy ${JSON.stringify(s)}`);
    const timeout = opts.timeout ?? this.timeouts.connect;
    const t0 = performance.now();
    const ac = new AbortController();
    const signals = [ac.signal, this.life.signal, ...(opts.signal ? [opts.signal] : [])];
    const signal = AbortSignal.any(signals);
    const failures: StrategyFailure[] = [];
    const plan: Strategy[] = [];
    for (const s of wanted) {
      const why = await this.unavailable(s, peer);
      if (why) failures.push({ strategy: s, error: new ConnectError(`skipped: ${why}`) });
      else if (!plan.includes(s)) plan.push(s);
    }
    if (plan.length === 0) throw new P2pConnectError(`cannot connect to ${peer.idHex.slice(0, 16)}…: no usable strategy`, failures);
    const peerNat = peer.interfaces.find((i) => i.nat !== 'UNKNOWN')?.nat;
    const hopeless = punchHopeless(this.nat?.type, peerNat);
    const startAfter = (s: Strategy): number => (s === 'relay' && hopeless ? START_AFTER.punch : START_AFTER[s]);
    const pipe = await cancellable<NodePipe>({ signal: opts.signal, timeout }, `connect to ${peer.idHex.slice(0, 16)}…`, (resolve, reject) => {
      const stop = raceStrategies<NodePipe>(
        {
          plan,
          startAfter,
          run: (s) => this.runStrategy(s, peer, signal, opts.via),
          discard: (p) => void p.close(),
          onStart: (s) => this.event({ type: 'strategy-start', strategy: s, peer: peer.idHex, ms: performance.now() - t0 }),
          onWin: (s, p) => {
            const path = { ...p.path, ms: performance.now() - t0 };
            Object.defineProperty(p, 'path', { value: path, enumerable: true, configurable: true });
            this.event({ type: 'strategy-win', strategy: s, peer: peer.idHex, ms: path.ms, detail: `${path.transport} ${formatEndpoint(path.remote)}` });
          },
          onFail: (s, err) => this.event({ type: 'strategy-fail', strategy: s, peer: peer.idHex, ms: performance.now() - t0, detail: err.message }),
        },
        resolve,
        (f) => reject(new P2pConnectError(`cannot connect to ${peer.idHex.slice(0, 16)}…`, f)),
        failures,
      );
      return () => {
        stop();
        ac.abort(new TimeoutError('connect ended'));
      };
    }).catch((e: unknown) => {
      if (e instanceof TimeoutError && failures.length > 0) {
        throw new TimeoutError(`${e.message} (${failures.map((f) => `${f.strategy}: ${f.error.message}`).join('; ')})`, { cause: new P2pConnectError('strategies failed', failures) });
      }
      throw e;
    });
    if (opts.queue !== false) pipe.subscribe(SUB_ALL);
    if (!this.pipes.has(pipe)) this.adopt(pipe, pipe.path, false);
    return pipe;
  }

  /** Why `s` cannot be used for `peer`, or undefined. */
  private async unavailable(s: Strategy, peer: PeerAddress): Promise<string | undefined> {
    const self = this.ctx.isSelf(peer);
    switch (s) {
      case 'direct':
        return peer.interfaces.some((i) => i.endpoints.some((e) => e.proto === 'tcp')) ? undefined : 'no TCP endpoint in the address';
      case 'reverse':
        if (self) return 'not needed to reach ourselves';
        if (!this.signalling) return 'signalling is disabled';
        return peer.signal.length ? undefined : 'the peer has no signalling channel';
      case 'punch':
        if (self) return 'not needed to reach ourselves';
        if (!this.signalling) return 'signalling is disabled';
        if (!peer.signal.length) return 'the peer has no signalling channel';
        if ((this.opts.stun ?? []).length === 0) return 'no STUN server configured';
        return (await this.ctx.punchModule()) ? undefined : 'the hole punching module is not available';
      case 'relay':
        if (self) return 'not needed to reach ourselves';
        if (!this.signalling) return 'signalling is disabled';
        if (!peer.signal.length) return 'the peer has no signalling channel';
        if (this.opts.relay === false) return 'relaying is disabled';
        if (!relayPossible(this.ctx)) return 'no TURN server configured (and no STUN server to use the peer\'s relay)';
        return (await this.ctx.punchModule()) ? undefined : 'the reliable stream module (src/node/punch) is not available';
    }
  }

  private async runStrategy(s: Strategy, peer: PeerAddress, signal: AbortSignal, via: ConnectOptions['via']): Promise<NodePipe> {
    switch (s) {
      case 'direct':
        return connectDirect(this.ctx, peer, signal, via);
      case 'reverse':
        return this.reverseWaiters.connect(this.ctx, peer, signal);
      case 'punch':
        return connectPunch(this.ctx, this.punchMod as PunchModule, peer, signal);
      case 'relay':
        return connectRelay(this.ctx, this.punchMod as PunchModule, peer, signal);
    }
  }

  // ---------------------------------------------------------------------------- close --

  /** Closes every pipe, listener, broker connection, relay allocation and port mapping. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const was = this.state;
    this.state = 'closing';
    this.life.abort(new StateError('node closed'));
    this.closing = (async () => {
      if (was === 'new') {
        this.state = 'closed';
        return;
      }
      await Promise.allSettled([...this.pipes].map((p) => p.close()));
      await Promise.allSettled([
        ...this.servers.map((s) => s.close()),
        ...this.tcpServers.map((s) => s.close()),
        ...this.udp.map((u) => u.close()),
        ...[...this.relays].map((r) => r.close()),
        this.signalling?.close(),
        this.portMapping?.close(),
        this.udpPortMapping?.close(),
      ]);
      await Promise.allSettled([...this.background]);
      await this.broker?.close();
      this.portMapping = undefined;
      this.udpPortMapping = undefined;
      this.state = 'closed';
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Creates and starts a node: `const node = await startP2pNode({ nics })`. */
export function startP2pNode(opts: P2pNodeOptions = {}, startOpts: AbortOptions = {}): Promise<P2pNode> {
  return new P2pNode(opts).start(startOpts);
}

