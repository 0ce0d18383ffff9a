/**
 * In-memory DHT testnets for tests and benchmarks: N nodes with fresh Ed25519 signers on a
 * {@link MemoryNetwork}, each joined through a random earlier node.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Contact } from './contact.js';
import { MemoryNetwork, type KillMode, type MemoryNetworkOptions, type MemoryTransport } from './memory-transport.js';
import { DhtNode } from './node.js';
import type { DhtNodeOptions } from './options.js';
import { generateSigner, type Signer } from './record.js';

/** Options of {@link createMemoryDhtTestnet}. */
export interface MemoryDhtTestnetOptions extends Omit<DhtNodeOptions, 'transport' | 'contact' | 'signer'> {
  /** Options of the memory network. */
  network?: MemoryNetworkOptions;
  /** After all joins, refresh every bucket of every node once. @default `true` */
  settle?: boolean;
  /** Random source for bootstrap choice. @default `Math.random` */
  random?: () => number;
}

/** A running testnet. */
export interface MemoryDhtTestnet {
  readonly network: MemoryNetwork;
  /** All nodes, killed ones included, in join order. */
  readonly nodes: DhtNode[];
  readonly signers: Signer[];
  readonly transports: MemoryTransport[];
  /** Nodes not killed. */
  alive(): DhtNode[];
  /** Kills a node on the network (it stays open but unreachable) and closes it. */
  kill(node: DhtNode, mode?: KillMode): Promise<void>;
  /** Adds and joins one more node. */
  addNode(): Promise<DhtNode>;
  /** Closes every node. */
  close(): Promise<void>;
}

/** Builds and joins an `n`-node DHT on a memory network. */
export async function createMemoryDhtTestnet(n: number, opts: MemoryDhtTestnetOptions = {}): Promise<MemoryDhtTestnet> {
  const { network: netOpts, settle = true, random = Math.random, ...nodeOpts } = opts;
  const network = new MemoryNetwork(netOpts);
  const nodes: DhtNode[] = [];
  const signers: Signer[] = [];
  const transports: MemoryTransport[] = [];
  const dead = new Set<DhtNode>();

  const make = (): DhtNode => {
    const signer = generateSigner();
    const id = new Uint8Array(createHash('sha256').update(signer.publicKey).digest());
    const transport = network.createTransport(id, { publicKey: signer.publicKey });
    const node = new DhtNode({ ...nodeOpts, transport, contact: transport.contact, signer });
    nodes.push(node);
    signers.push(signer);
    transports.push(transport);
    return node;
  };
  const join = async (node: DhtNode): Promise<void> => {
    const others = nodes.filter((x) => x !== node && !dead.has(x));
    if (others.length === 0) return;
    const boot: Contact = (others[Math.floor(random() * others.length)] as DhtNode).contact;
    await node.join([boot]);
  };

  for (let i = 0; i < n; i++) await join(make());
  if (settle) for (const node of nodes) await node.refresh({ force: true });

  return {
    network,
    nodes,
    signers,
    transports,
    alive: () => nodes.filter((x) => !dead.has(x)),
    async kill(node, mode = 'blackhole') {
      dead.add(node);
      network.kill(node.id, mode);
      await node.close();
    },
    async addNode() {
      const node = make();
      await join(node);
      return node;
    },
    async close() {
      await Promise.all(nodes.map((x) => x.close()));
      for (const t of transports) t.close();
    },
  };
}
