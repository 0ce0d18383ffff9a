/**
 * `createTestnet(n, opts)`: n swarm nodes (optionally each with a Kademlia DHT node riding on
 * the swarm) on loopback in one process — for users' tests and ours.
 *
 * ```ts
 * const net = await createTestnet(10, { seed: 1 });
 * await net.waitConverged();
 * await net.nodes[0].send(net.nodes[9], 'hi');
 * await net.close();
 * ```
 * @module
 */
import { createHash } from 'node:crypto';
import { Identity } from '../crypto/identity.js';
import { DhtNode } from '../dht/node.js';
import type { DhtNodeOptions } from '../dht/options.js';
import { AbortError, InvalidArgumentError, TimeoutError } from '../errors.js';
import { badTimeout, closeWithin, forceSignal, sleep, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { SwarmDhtTransport } from '../swarm/dht-transport.js';
import { SwarmPeer } from '../swarm/peer.js';
import type { SwarmProtocol } from '../swarm/protocol.js';
import type { SwarmPeerOptions } from '../swarm/types.js';

/** Options of {@link createTestnet}. */
export interface TestnetOptions extends AbortOptions {
  /** Protocol identity of every node. @default the `SwarmPeer` default */
  protocol?: SwarmProtocol;
  /** Also run a DHT node on each swarm node (over the swarm's links). @default false */
  dht?: boolean | Omit<DhtNodeOptions, 'transport' | 'contact' | 'signer'>;
  /** Seed for deterministic identities and join order. @default random */
  seed?: string | number;
  /** Loopback address to bind. @default '127.0.0.1' */
  host?: string;
  /** Further options of every `SwarmPeer` (identity and protocol are set by the testnet). */
  peer?: Omit<SwarmPeerOptions, 'identity' | 'protocol'>;
  /** Wait for convergence before resolving. @default true */
  converge?: boolean;
}

/** A running testnet. */
export interface Testnet {
  /** Swarm nodes, in join order (closed ones included). */
  readonly nodes: SwarmPeer[];
  /** DHT nodes (same order), when `dht` was set. */
  readonly dhts: DhtNode[];
  /** Nodes not closed (nor killed). */
  alive(): SwarmPeer[];
  /** Adds and joins one more node; `opts` bound its join (default timeout 10 s), as well as the testnet's own signal. */
  addNode(opts?: AbortOptions): Promise<SwarmPeer>;
  /**
   * Resolves once every live node knows every other live node and has a link into each of its
   * non-empty XOR buckets (so routing and broadcast are complete). `TimeoutError` after
   * `timeout` (default 30 s).
   */
  waitConverged(opts?: AbortOptions): Promise<void>;
  /**
   * Closes every node (and DHT node). Idempotent. With `opts`, a signal that aborts or a
   * `timeout` that passes resets whatever is still open and rejects with `AbortError` /
   * `TimeoutError` (a bad `timeout` or `signal`: closed all the same, then
   * `InvalidArgumentError`).
   */
  close(opts?: AbortOptions): Promise<void>;
  /** `await using net = await createTestnet(…)` closes it at the end of the scope (same as {@link close}). */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Bound, not closed and not killed. */
function isLive(p: SwarmPeer): boolean {
  return p.bound && !p.closed && !p.core.closed;
}

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * True when `node` knows all of `ids` and has a link into each bucket holding a member it can
 * reach. (Crashed members linger in views until their announcement expires; they do not
 * matter for routing once found unreachable.)
 */
export function isConverged(node: SwarmPeer, ids: ReadonlySet<string>): boolean {
  if (!node.bound || node.closed || node.core.closed) return true;
  const core = node.core;
  for (const id of ids) {
    if (id === node.idHex) continue;
    const m = core.members.get(id);
    if (!m || m.leaving) return false;
  }
  for (let b = 0; b < 256; b++) {
    if (core.reachableCount(b) > 0 && core.links.bucket(b).length === 0) return false;
  }
  return true;
}

/** Builds an `n`-node swarm on loopback; see {@link Testnet}. */
export async function createTestnet(n: number, opts: TestnetOptions = {}): Promise<Testnet> {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('n must be a positive integer');
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('testnet options must be an object');
  const host = opts.host ?? '127.0.0.1';
  const seedText = opts.seed === undefined ? undefined : String(opts.seed);
  const random = seedText === undefined ? Math.random : prng(createHash('sha256').update(seedText).digest().readUInt32BE(0));
  const nodes: SwarmPeer[] = [];
  const dhts: DhtNode[] = [];
  const transports: SwarmDhtTransport[] = [];
  const dhtOpts = typeof opts.dht === 'object' ? opts.dht : {};

  const identityFor = (i: number): Identity =>
    seedText === undefined ? Identity.generate() : Identity.fromPrivateKey(createHash('sha256').update(`p2pd-testnet\0${seedText}\0${i}`).digest());

  let ready = false;
  const addNode = async (call: AbortOptions = {}): Promise<SwarmPeer> => {
    throwIfAborted(opts.signal);
    throwIfAborted(call.signal);
    const signals = [opts.signal, call.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    const peer = new SwarmPeer({ ...opts.peer, identity: identityFor(nodes.length), ...(opts.protocol ? { protocol: opts.protocol } : {}) });
    peer.on('error', () => undefined);
    const others = nodes.filter(isLive);
    nodes.push(peer);
    await peer.bind(host, 0);
    if (others.length > 0) {
      const entry = others[Math.floor(random() * others.length)] as SwarmPeer;
      await peer.connect(entry.endpoint, undefined, { timeout: call.timeout ?? 10_000, ...(signal ? { signal } : {}) });
    }
    if (opts.dht) {
      const transport = new SwarmDhtTransport(peer);
      const contact = SwarmDhtTransport.contactOf({ id: peer.id, publicKey: peer.identity.publicKey, endpoint: peer.endpoint });
      const dht = new DhtNode({ ...dhtOpts, transport, contact, signer: peer.identity });
      transports.push(transport);
      dhts.push(dht);
      // A node added after set-up joins the DHT at once, through the swarm member it joined by.
      const nb = peer.peers[0];
      if (ready && nb) await dht.join([SwarmDhtTransport.contactOf(nb)], signal ? { signal } : undefined);
    }
    return peer;
  };

  const waitConverged = async (w: AbortOptions = {}): Promise<void> => {
    const bad = badTimeout(w.timeout);
    if (bad) throw bad;
    const limit = w.timeout ?? 30_000; // 0 or Infinity: no limit (as everywhere)
    const deadline = limit > 0 ? performance.now() + limit : Number.POSITIVE_INFINITY;
    for (;;) {
      throwIfAborted(w.signal);
      const live = nodes.filter(isLive);
      const ids = new Set(live.map((x) => x.idHex));
      if (live.every((x) => isConverged(x, ids))) return;
      if (performance.now() > deadline) throw new TimeoutError(`testnet did not converge within ${limit} ms`);
      await sleep(20, w.signal ? { signal: w.signal } : undefined);
    }
  };

  const closeAll = async (): Promise<void> => {
    await Promise.all(dhts.map((d) => d.close()));
    for (const t of transports) t.close();
    await Promise.all(nodes.map((x) => x.close()));
  };
  let closing: Promise<void> | undefined;
  const force = (): void => {
    const now = { signal: forceSignal(new AbortError('testnet closed by force')) };
    for (const d of dhts) void d.close(now).catch(() => undefined);
    for (const x of nodes) void x.close(now).catch(() => undefined);
  };
  const close = (o?: AbortOptions): Promise<void> => closeWithin(() => (closing ??= closeAll()), o, force, 'testnet close');

  try {
    for (let i = 0; i < n; i++) await addNode();
    if (opts.converge !== false) await waitConverged({ timeout: opts.timeout ?? 60_000, ...(opts.signal ? { signal: opts.signal } : {}) });
    if (opts.dht) {
      // Each DHT node bootstraps from a swarm neighbour, once the swarm routes everywhere.
      await Promise.all(
        dhts.map(async (d, i) => {
          const peer = nodes[i] as SwarmPeer;
          const nb = peer.peers[0];
          if (nb) await d.join([SwarmDhtTransport.contactOf(nb)]);
        }),
      );
    }
    ready = true;
  } catch (e) {
    await (closing ??= closeAll());
    throw e;
  }

  return {
    nodes,
    dhts,
    alive: () => nodes.filter(isLive),
    addNode,
    waitConverged,
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}

export { SwarmDhtTransport };
