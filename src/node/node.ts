/**
 * The P2P node: listens everywhere, knows its addresses and NAT, signals over MQTT, and
 * connects to peers by address with the best strategy that works.
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
import { randomBytes } from 'node:crypto';
import { ConnectError, InvalidArgumentError, StateError, TimeoutError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import type { X25519KeyPair } from '../crypto/noise.js';
import { connectSecure, secure, secureServer, type SecurePipe, type SecureServer } from '../crypto/secure-pipe.js';
import { formatEndpoint, toEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';
import { initP2pd, Interfaces, type Interface } from '../interfaces/interfaces.js';
import { detectNat, type NatDetection } from '../nat/detect/nat-type.js';
import { mapPort } from '../nat/portmap/map-port.js';
import type { PortMapping } from '../nat/portmap/mapping.js';
import { parseStunServer, stunGetMapping } from '../nat/stun/client.js';
import { turnAllocate, turnServerEndpoint } from '../nat/turn/allocate.js';
import type { TurnPipe } from '../nat/turn/pipe.js';
import { pipeOpen } from '../pipes/open.js';
import type { Pipe } from '../pipes/pipe.js';
import { TcpPipe } from '../pipes/tcp.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import { SUB_ALL, type Message } from '../pipes/types.js';
import type { UdpPipe } from '../pipes/udp.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { checkBrokerUrl, encodeAddress, parseAddress, MAX_ADDR_ENDPOINTS, MAX_ADDR_INTERFACES, MAX_ADDR_SIGNAL, type AddrEndpoint, type AddrInterface, type PeerAddress, type SignalChannel } from './address.js';
import { startBroker, type Broker } from './broker.js';
import { directCandidates } from './candidates.js';
import { deriveSignalKey } from './envelope.js';
import { AddressError, P2pConnectError, type StrategyFailure } from './errors.js';
import { loadPunch, type PunchModule } from './punch-api.js';
import { Signalling, type SignalMessage } from './signalling.js';
import {
  STRATEGIES, type ConnectOptions, type NodeEvent, type NodeMessageCallback, type NodePipe, type NodeTimeouts, type P2pNodeOptions,
  type PipePath, type Strategy, type TurnServerConfig,
} from './types.js';

const DEFAULT_TIMEOUTS: Required<NodeTimeouts> = { connect: 15_000, direct: 2_000, reverse: 4_000, punch: 6_000, relay: 10_000, handshake: 5_000, nat: 2_500 };
/** When each strategy starts if the earlier ones are still running (ms after `connect()`). */
const START_AFTER: Readonly<Record<Strategy, number>> = { direct: 0, reverse: 150, punch: 400, relay: 1_500 };
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

/** Gap between two direct attempts ("happy eyeballs"). */
const DIRECT_STAGGER = 25;
/** Most reverse/punch/relay requests served at once. */
const MAX_SERVING = 16;
/** TCP keep-alive on node pipes (ms): shorter than NAT binding timeouts. */
const KEEPALIVE_MS = 15_000;

/** The hello a connecting side sends in its (authenticated) handshake payload. */
interface Hello {
  v: 1;
  /** Strategy that made the connection. */
  s: Strategy;
  /** Connection id of a reverse/punch/relay exchange. */
  c?: string;
}

function encodeHello(h: Hello): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

function decodeHello(b: Buffer): Hello | undefined {
  if (b.length === 0 || b.length > 256) return undefined;
  try {
    const o = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    if (o.v !== 1 || typeof o.s !== 'string' || !(STRATEGIES as readonly string[]).includes(o.s)) return undefined;
    if (o.c !== undefined && (typeof o.c !== 'string' || !/^[0-9a-f]{32}$/.test(o.c))) return undefined;
    return { v: 1, s: o.s as Strategy, ...(typeof o.c === 'string' ? { c: o.c } : {}) };
  } catch {
    return undefined;
  }
}

const CONN_ID = /^[0-9a-f]{32}$/;

function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Parses `host:port` text from a peer; undefined if malformed. */
function endpointFrom(v: unknown): Endpoint | undefined {
  if (typeof v !== 'string' || v.length > 64) return undefined;
  try {
    const e = toEndpoint(v);
    return e.port > 0 ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Attaches `path` to a secure pipe, making it a {@link NodePipe}. */
function asNodePipe(p: SecurePipe | Pipe, path: PipePath): NodePipe {
  Object.defineProperty(p, 'path', { value: path, enumerable: true, configurable: true });
  return p as NodePipe;
}

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
  private readonly reverseWaiters = new Map<string, { peer: string; resolve: (p: SecurePipe) => void }>();
  private serving = 0;
  private readonly life = new AbortController();
  private readonly relays = new Set<TurnPipe>();
  private readonly background = new Set<Promise<unknown>>();
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private closing: Promise<void> | undefined;
  private punchMod: PunchModule | null | undefined;

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
        this.udp.push(await pipeOpen('udp', undefined, { bind: { host, port: this.port }, ipv6Only: true, onMessage: () => undefined }));
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

  private async mapPorts(): Promise<void> {
    const def = this.nics.find((i) => i.up && !i.loopback && i.isDefault[4]);
    if (!def || !def.gateways[4]) return;
    const primary = def.primary(4);
    if (!primary || primary.scope === 'global') return;
    try {
      const m = await mapPort({
        internalPort: this.port,
        protocol: 'tcp',
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
      this.portMapping = m;
      this.rebuildAddr();
    } catch (e) {
      this.event({ type: 'warning', detail: `no port mapping: ${errorOf(e).message}` });
    }
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
    const interfaces: AddrInterface[] = [];
    const port = this.port;
    const loop = this.opts.listen === 'loopback';
    const defName = this.nics.find((i) => i.up && !i.loopback && i.isDefault[4])?.name ?? this.nics.find((i) => i.up && !i.loopback)?.name;
    if (!loop) {
      for (const i of this.nics) {
        if (!i.up || i.loopback) continue;
        const eps: AddrEndpoint[] = [];
        for (const a of i.addresses) {
          if (!this.families.has(a.family)) continue;
          const kind: AddrEndpoint['kind'] | undefined =
            a.scope === 'link-local' ? (a.family === 6 ? 'link-local' : undefined) : a.scope === 'global' ? 'global' : a.scope === 'loopback' ? undefined : 'lan';
          if (kind === undefined) continue;
          if (eps.some((e) => e.host === a.address)) continue;
          eps.push({ kind, proto: 'tcp', host: a.address, port, family: a.family });
        }
        const iface: AddrInterface = { nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: eps };
        if (i.name === defName) {
          const ext = this.nat?.external ?? this.externalUdp;
          if (this.nat) {
            iface.nat = this.nat.type;
            if (this.nat.delta) iface.delta = { type: this.nat.delta.type, value: Math.max(-32768, Math.min(32767, this.nat.delta.value)) };
          }
          if (ext && ext.family === 4 && !eps.some((e) => e.host === ext.host)) {
            eps.push({ kind: 'external', proto: 'tcp', host: ext.host, port, family: 4 });
          }
          if (this.externalUdp && !eps.some((e) => e.host === this.externalUdp?.host && e.proto === 'udp')) {
            eps.push({ kind: 'external', proto: 'udp', host: this.externalUdp.host, port: this.externalUdp.port, family: this.externalUdp.family });
          }
          const m = this.portMapping;
          if (m && m.state === 'active' && m.externalAddress) {
            try {
              const fam: Family = m.externalAddress.includes(':') ? 6 : 4;
              eps.push({ kind: 'mapped', proto: 'tcp', host: m.externalAddress, port: m.externalPort, family: fam });
            } catch {
              /* ignore */
            }
          }
        }
        if (eps.length > 0) interfaces.push({ ...iface, endpoints: sanitize(eps) });
      }
    }
    // Loopback: same-host connections (and the only endpoint of an offline machine).
    const lo: AddrEndpoint[] = [];
    if (this.families.has(4)) lo.push({ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port, family: 4 });
    else if (this.families.has(6)) lo.push({ kind: 'loopback', proto: 'tcp', host: '::1', port, family: 6 });
    interfaces.unshift({ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: lo });
    const signal: SignalChannel[] = [];
    if (this.broker) signal.push({ type: 'mqtt-self', port: this.broker.port });
    for (const url of this.signalling?.configured ?? []) if (url !== this.broker?.url) signal.push({ type: 'mqtt', url });
    // Most telling first: loopback, the default interface, then the rest; whatever does not
    // fit the address size limit is left out (a host with many bridges has more than fits).
    const defIdx = interfaces.findIndex((x) => x.nat !== 'UNKNOWN' || x.endpoints.some((e) => e.kind === 'external' || e.kind === 'mapped'));
    if (defIdx > 1) interfaces.splice(1, 0, ...interfaces.splice(defIdx, 1));
    let list = interfaces.slice(0, MAX_ADDR_INTERFACES).map((x) => ({ ...x, endpoints: x.endpoints.slice(0, MAX_ADDR_ENDPOINTS) }));
    let text: string;
    for (;;) {
      try {
        text = encodeAddress(this.identity, { signalKey: this.signalKey.publicKey, interfaces: list, signal: signal.slice(0, MAX_ADDR_SIGNAL) });
        break;
      } catch (e) {
        if (!(e instanceof AddressError) || e.field !== 'length' || list.length <= 1) throw e;
        const last = list[list.length - 1] as AddrInterface;
        list = last.endpoints.length > 1 ? [...list.slice(0, -1), { ...last, endpoints: last.endpoints.slice(0, -1) }] : list.slice(0, -1);
      }
    }
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
    const path: PipePath = { strategy: 'inbound', transport: 'tcp', local: p.local, remote: p.remote };
    if (hello?.c !== undefined) {
      const w = this.reverseWaiters.get(hello.c);
      if (w && w.peer === p.remoteIdHex && hello.s === 'reverse') {
        this.reverseWaiters.delete(hello.c);
        w.resolve(p);
        return;
      }
    }
    this.adopt(p, path, true);
  }

  private onSignal(m: SignalMessage): void {
    if (this.state !== 'running') return;
    this.event({ type: 'signal', peer: m.from, detail: m.type });
    switch (m.type) {
      case 'reverse':
        this.serve(m, (peer, conn) => this.serveReverse(peer, conn));
        break;
      case 'relay':
        this.serve(m, (peer, conn) => this.serveRelay(m, peer, conn));
        break;
      case 'punch':
        this.serve(m, (peer, conn) => this.servePunch(m, peer, conn));
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

  private async serveReverse(peer: PeerAddress, conn: string): Promise<void> {
    const signal = AbortSignal.any([this.life.signal, AbortSignal.timeout(this.timeouts.reverse)]);
    const p = await this.dialDirect(peer, { v: 1, s: 'reverse', c: conn }, signal);
    this.adopt(p, { strategy: 'reverse', transport: 'tcp', local: p.local, remote: p.remote }, true);
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
      let done = false;
      let running = 0;
      let next = 0;
      const timers: NodeJS.Timeout[] = [];
      const launch = (): void => {
        if (done || next >= plan.length) return;
        const s = plan[next++] as Strategy;
        running++;
        const st = performance.now();
        this.event({ type: 'strategy-start', strategy: s, peer: peer.idHex, ms: st - t0 });
        this.runStrategy(s, peer, signal, opts.via).then(
          (p) => {
            running--;
            if (done) {
              void p.close();
              return;
            }
            done = true;
            const path = { ...p.path, ms: performance.now() - t0 };
            Object.defineProperty(p, 'path', { value: path, enumerable: true, configurable: true });
            this.event({ type: 'strategy-win', strategy: s, peer: peer.idHex, ms: path.ms, detail: `${path.transport} ${formatEndpoint(path.remote)}` });
            resolve(p);
          },
          (e: unknown) => {
            running--;
            const err = errorOf(e);
            failures.push({ strategy: s, error: err });
            this.event({ type: 'strategy-fail', strategy: s, peer: peer.idHex, ms: performance.now() - t0, detail: err.message });
            if (done) return;
            if (next < plan.length) launch();
            else if (running === 0) {
              done = true;
              reject(new P2pConnectError(`cannot connect to ${peer.idHex.slice(0, 16)}…`, failures));
            }
          },
        );
      };
      launch();
      for (let i = 1; i < plan.length; i++) {
        const t = setTimeout(() => {
          // Start strategy i if it has not started yet (earlier failures start it sooner).
          if (next <= i) while (next <= i && !done) launch();
        }, startAfter(plan[i] as Strategy));
        t.unref();
        timers.push(t);
      }
      return () => {
        done = true;
        for (const t of timers) clearTimeout(t);
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
    const self = peer.id.equals(this.identity.id);
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
        this.punchMod ??= await loadPunch();
        return this.punchMod ? undefined : 'the hole punching module is not available';
      case 'relay':
        if (self) return 'not needed to reach ourselves';
        if (!this.signalling) return 'signalling is disabled';
        if (!peer.signal.length) return 'the peer has no signalling channel';
        if (!this.relayEnabled()) return 'no TURN server configured';
        this.punchMod ??= await loadPunch();
        return this.punchMod ? undefined : 'the reliable stream module (src/node/punch) is not available';
    }
  }

  private relayEnabled(): boolean {
    return (this.opts.turn ?? []).length > 0 && this.opts.relay !== false;
  }

  private runStrategy(s: Strategy, peer: PeerAddress, signal: AbortSignal, via: ConnectOptions['via']): Promise<NodePipe> {
    switch (s) {
      case 'direct':
        return this.dialDirect(peer, { v: 1, s: 'direct' }, signal, via).then((p) => this.adopt(p, { strategy: 'direct', transport: 'tcp', local: p.local, remote: p.remote }, false));
      case 'reverse':
        return this.reverse(peer, signal);
      case 'punch':
        return this.punch(peer, signal);
      case 'relay':
        return this.relay(peer, signal);
    }
  }

  /** Races TCP connects + handshakes to the peer's direct candidates; the first authenticated one wins. */
  private dialDirect(peer: PeerAddress, hello: Hello, signal: AbortSignal, via?: ConnectOptions['via']): Promise<SecurePipe> {
    const self = peer.id.equals(this.identity.id);
    const cands = directCandidates(peer, this.nics, { self }).filter((c) => !via || via.includes(c.kind));
    if (cands.length === 0) return Promise.reject(new ConnectError('no direct endpoint to try'));
    const ext = encodeHello(hello);
    return cancellable<SecurePipe>({ signal }, 'direct connect', (resolve, reject) => {
      const ac = new AbortController();
      const sig = AbortSignal.any([ac.signal, signal]);
      let done = false;
      let left = cands.length;
      const errors: string[] = [];
      const timers: NodeJS.Timeout[] = [];
      cands.forEach((c, i) => {
        const t = setTimeout(() => {
          if (done) return;
          connectSecure(c.dest, {
            identity: this.identity,
            remoteId: peer.id,
            extensions: ext,
            timeout: this.timeouts.direct,
            signal: sig,
            onMessage: this.dispatch,
          }).then(
            (p) => {
              if (done) {
                void p.close();
                return;
              }
              done = true;
              resolve(p);
            },
            (e: unknown) => {
              errors.push(`${formatEndpoint(c.dest)}: ${errorOf(e).message}`);
              if (--left === 0 && !done) {
                done = true;
                reject(new ConnectError(`no direct endpoint answered (${errors.join('; ')})`));
              }
            },
          );
        }, i * DIRECT_STAGGER);
        t.unref();
        timers.push(t);
      });
      return () => {
        for (const t of timers) clearTimeout(t);
        if (!done) done = true;
        ac.abort();
      };
    });
  }

  private async reverse(peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
    const sig = this.signalling as Signalling;
    const conn = randomBytes(16).toString('hex');
    const arrived = new Promise<SecurePipe>((resolve) => this.reverseWaiters.set(conn, { peer: peer.idHex, resolve }));
    try {
      const timeout = this.timeouts.reverse;
      const t0 = performance.now();
      await sig.send(peer, 'reverse', { addr: this.addr, conn }, { ttl: timeout, signal, timeout });
      const p = await cancellable<SecurePipe>({ signal, timeout: Math.max(1, timeout - (performance.now() - t0)) }, 'reverse connect', (resolve) => {
        void arrived.then(resolve);
      });
      return this.adopt(p, { strategy: 'reverse', transport: 'tcp', local: p.local, remote: p.remote }, false);
    } finally {
      this.reverseWaiters.delete(conn);
      // A pipe that came just as we gave up: nobody will use it.
      void arrived.then((p) => {
        if (!this.pipes.has(p as unknown as NodePipe)) void p.close();
      });
    }
  }

  // ------------------------------------------------------- secure over a datagram path --

  /**
   * Runs a reliable stream over `dgram` to `remote`, then the secure handshake over it
   * (`secure()` of the crypto layer: the same wire format as over TCP). The returned pipe owns
   * the stream and the datagram pipe: closing it closes both.
   */
  private async secureDatagram(
    mod: PunchModule,
    dgram: Pipe,
    remote: Endpoint,
    o: { initiator: boolean; peer: PeerAddress; hello?: Hello; signal: AbortSignal; rtt?: number },
  ): Promise<SecurePipe> {
    const stream = await mod.openReliable(dgram, remote, {
      initiator: o.initiator,
      signal: o.signal,
      timeout: this.timeouts.handshake,
      keepAlive: this.opts.keepAlive ?? KEEPALIVE_MS,
      ...(o.rtt !== undefined ? { rtt: Math.max(1, Math.round(o.rtt)) } : {}),
    });
    const common = {
      identity: this.identity,
      initiator: o.initiator,
      remoteId: o.peer.id,
      signal: o.signal,
      timeout: this.timeouts.handshake,
      onMessage: this.dispatch,
      ...(o.hello ? { extensions: encodeHello(o.hello) } : {}),
    };
    let sp: SecurePipe;
    try {
      if (!(stream instanceof TcpPipe)) throw new ConnectError('the reliable stream is not a TcpPipe: secure() cannot run over it');
      sp = await secure(stream, common);
    } catch (e) {
      await stream.close();
      throw e;
    }
    // The datagram pipe goes when the stream has finished its own close (FIN exchange).
    stream.onClose(() => void dgram.close());
    sp.onClose(() => {
      if (!stream.closed) void stream.close();
    });
    return sp;
  }

  // ---------------------------------------------------------------------------- relay --

  private async allocate(signal: AbortSignal): Promise<TurnPipe> {
    const errors: string[] = [];
    for (const t of this.opts.turn ?? []) {
      try {
        const r = await turnAllocate({
          server: t.server,
          username: t.username,
          password: t.password,
          ...(t.proto ? { proto: t.proto } : {}),
          signal,
          timeout: Math.min(5_000, this.timeouts.relay),
          onMessage: () => undefined, // the reliable stream reads it
        });
        this.relays.add(r);
        r.onClose(() => this.relays.delete(r));
        return r;
      } catch (e) {
        errors.push(errorOf(e).message);
        throwIfAborted(signal);
      }
    }
    throw new ConnectError(`no TURN allocation (${errors.join('; ') || 'no server'})`);
  }

  /**
   * Relay: each side allocates a relay on its own TURN server; the addresses are swapped over
   * signalling, each side permits the other's relay, and the reliable stream runs from relay
   * to relay. Works whatever the NATs are, as long as both reach a TURN server.
   */
  private async relay(peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
    const mod = this.punchMod as PunchModule;
    const sig = this.signalling as Signalling;
    const timeout = this.timeouts.relay;
    const sub = AbortSignal.any([signal, AbortSignal.timeout(timeout)]);
    const relay = await this.allocate(sub);
    try {
      const conn = randomBytes(16).toString('hex');
      const reply = await sig.request(peer, 'relay', { addr: this.addr, conn, relay: formatEndpoint(relay.relayed) }, { signal: sub, timeout: timeout / 2 });
      if (reply.type !== 'relay-ok') throw new ConnectError(`peer refused the relay: ${String(reply.body.error ?? reply.type).slice(0, 200)}`);
      const theirs = endpointFrom(reply.body.relay);
      if (!theirs) throw new ConnectError('peer sent a malformed relay address');
      await relay.permit(theirs.host);
      const sp = await this.secureDatagram(mod, relay, theirs, { initiator: true, peer, hello: { v: 1, s: 'relay', c: conn }, signal: sub });
      return this.adopt(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote: theirs, server: relay.server }, false);
    } catch (e) {
      await relay.close();
      throw e;
    }
  }

  private async serveRelay(m: SignalMessage, peer: PeerAddress, conn: string): Promise<void> {
    const sig = this.signalling as Signalling;
    const theirs = endpointFrom(m.body.relay);
    if (!theirs) return;
    this.punchMod ??= await loadPunch();
    const mod = this.punchMod;
    if (!this.relayEnabled() || !mod) {
      await sig.reply(m, peer, 'relay-err', { error: mod ? 'no TURN server here' : 'no reliable stream module here' }).catch(() => undefined);
      return;
    }
    const sub = AbortSignal.any([this.life.signal, AbortSignal.timeout(this.timeouts.relay)]);
    let relay: TurnPipe;
    try {
      relay = await this.allocate(sub);
    } catch (e) {
      await sig.reply(m, peer, 'relay-err', { error: errorOf(e).message.slice(0, 200) }).catch(() => undefined);
      return;
    }
    try {
      await relay.permit(theirs.host);
      await sig.reply(m, peer, 'relay-ok', { relay: formatEndpoint(relay.relayed) }, { signal: sub });
      const sp = await this.secureDatagram(mod, relay, theirs, { initiator: false, peer, signal: sub });
      if (decodeHello(sp.remoteExtensions)?.c !== conn) {
        await sp.close();
        return;
      }
      this.adopt(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote: theirs, server: relay.server }, true);
    } catch (e) {
      await relay.close();
      throw e;
    }
  }

  // ---------------------------------------------------------------------------- punch --

  /** Our UDP candidates for a punch socket: its reflexive address, then its LAN addresses. */
  private async udpCandidates(udp: UdpPipe, signal: AbortSignal): Promise<Endpoint[]> {
    const out: Endpoint[] = [];
    const stun = (this.opts.stun ?? [])[0];
    if (stun !== undefined) {
      try {
        const m = await stunGetMapping({ server: stun, pipe: udp, signal, timeout: 1500, rto: 200 });
        out.push(m.mapped);
      } catch {
        /* no reflexive candidate */
      }
    }
    for (const i of this.nics) {
      if (!i.up || i.loopback) continue;
      for (const a of i.addresses) if (a.family === 4 && a.scope !== 'link-local' && !out.some((o) => o.host === a.address)) out.push({ host: a.address, port: udp.local.port, family: 4 });
    }
    out.push({ host: '127.0.0.1', port: udp.local.port, family: 4 });
    return out.slice(0, 8);
  }

  /** The peer's NAT delta from its address, as a port prediction hint. */
  private static predictOf(peer: PeerAddress): { kind: string; value: number } | undefined {
    for (const i of peer.interfaces) if (i.delta.type === 'INDEPENDENT' || i.delta.type === 'DEPENDENT') return { kind: i.delta.type, value: i.delta.value };
    return undefined;
  }

  /**
   * Hole punching: each side opens a UDP socket, learns its reflexive address (STUN) and
   * sends its candidates through signalling; then both punch at once (probes authenticated
   * with a nonce shared through the encrypted signalling), and the reliable stream and the
   * secure handshake run over the punched path.
   */
  private async punch(peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
    const mod = this.punchMod as PunchModule;
    const sig = this.signalling as Signalling;
    const sub = AbortSignal.any([signal, AbortSignal.timeout(this.timeouts.punch)]);
    const udp = await pipeOpen('udp', undefined, { bind: { host: '0.0.0.0', port: 0 }, onMessage: () => undefined });
    try {
      const cands = await this.udpCandidates(udp, sub);
      const conn = randomBytes(16).toString('hex');
      const nonce = randomBytes(32);
      const reply = await sig.request(
        peer,
        'punch',
        { addr: this.addr, conn, nonce: nonce.toString('hex'), cands: cands.map((c) => formatEndpoint(c)) },
        { signal: sub, timeout: this.timeouts.punch / 2 },
      );
      if (reply.type !== 'punch-ok') throw new ConnectError(`peer refused to punch: ${String(reply.body.error ?? reply.type).slice(0, 200)}`);
      const theirs = Array.isArray(reply.body.cands) ? (reply.body.cands as unknown[]).slice(0, 8).map(endpointFrom).filter((e): e is Endpoint => e !== undefined) : [];
      if (theirs.length === 0) throw new ConnectError('peer sent no usable candidates');
      const predict = P2pNode.predictOf(peer);
      const r = await mod.punch({ pipe: udp, peerCandidates: theirs, nonce, signal: sub, timeout: this.timeouts.punch, ...(predict ? { predictDelta: predict } : {}) });
      const sp = await this.secureDatagram(mod, udp, r.remote, { initiator: true, peer, hello: { v: 1, s: 'punch', c: conn }, signal: sub, rtt: r.rtt });
      return this.adopt(sp, { strategy: 'punch', transport: 'udp', local: udp.local, remote: r.remote }, false);
    } catch (e) {
      await udp.close();
      throw e;
    }
  }

  private async servePunch(m: SignalMessage, peer: PeerAddress, conn: string): Promise<void> {
    const sig = this.signalling as Signalling;
    this.punchMod ??= await loadPunch();
    const mod = this.punchMod;
    const theirs = Array.isArray(m.body.cands) ? (m.body.cands as unknown[]).slice(0, 8).map(endpointFrom).filter((e): e is Endpoint => e !== undefined) : [];
    const nonceHex = m.body.nonce;
    if (!mod || theirs.length === 0 || typeof nonceHex !== 'string' || !/^[0-9a-f]{32,256}$/.test(nonceHex) || nonceHex.length % 2 !== 0) {
      await sig.reply(m, peer, 'punch-err', { error: mod ? 'bad punch request' : 'no hole punching here' }).catch(() => undefined);
      return;
    }
    const sub = AbortSignal.any([this.life.signal, AbortSignal.timeout(this.timeouts.punch)]);
    const udp = await pipeOpen('udp', undefined, { bind: { host: '0.0.0.0', port: 0 }, onMessage: () => undefined });
    try {
      const cands = await this.udpCandidates(udp, sub);
      await sig.reply(m, peer, 'punch-ok', { cands: cands.map((c) => formatEndpoint(c)) }, { signal: sub });
      const predict = P2pNode.predictOf(peer);
      const r = await mod.punch({ pipe: udp, peerCandidates: theirs, nonce: Buffer.from(nonceHex, 'hex'), signal: sub, timeout: this.timeouts.punch, ...(predict ? { predictDelta: predict } : {}) });
      const sp = await this.secureDatagram(mod, udp, r.remote, { initiator: false, peer, signal: sub, rtt: r.rtt });
      if (decodeHello(sp.remoteExtensions)?.c !== conn) {
        await sp.close();
        return;
      }
      this.adopt(sp, { strategy: 'punch', transport: 'udp', local: udp.local, remote: r.remote }, true);
    } catch (e) {
      await udp.close();
      throw e;
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
      ]);
      await Promise.allSettled([...this.background]);
      await this.broker?.close();
      this.portMapping = undefined;
      this.state = 'closed';
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Drops duplicate endpoints. */
function sanitize(eps: AddrEndpoint[]): AddrEndpoint[] {
  const seen = new Set<string>();
  return eps.filter((e) => {
    const k = `${e.kind}|${e.proto}|${e.host}|${e.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function safe(f: () => void): void {
  try {
    f();
  } catch (e) {
    process.emitWarning(`p2pd node: error in a callback: ${String(e)}`, { code: 'P2PD_CALLBACK_ERROR' });
  }
}

/** Creates and starts a node: `const node = await startP2pNode({ nics })`. */
export function startP2pNode(opts: P2pNodeOptions = {}, startOpts: AbortOptions = {}): Promise<P2pNode> {
  return new P2pNode(opts).start(startOpts);
}

