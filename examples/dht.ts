/**
 * A standalone Kademlia DHT on loopback (Cicada's "custom DHT", without the swarm): five nodes,
 * each on its own TCP port with Noise-authenticated links, join through the first one. Node B
 * writes keys; every node reads them; node C cannot overwrite or delete B's key (records are
 * signed by their writer); B deletes its own key.
 *
 * Run: npx tsx examples/dht.ts
 */
import { Identity, startDhtNode, type StandaloneDhtNode, RecordError } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the demo did, for the test that runs it. */
export interface DhtDemoResult {
  /** What every node read for `greeting`. */
  readBack: string[];
  /** The error code C got when it tried to overwrite B's key. */
  overwriteRefused: string;
  /** The error code C got when it tried to delete B's key. */
  deleteRefused: string;
  /** `get('greeting', { default })` after B deleted it. */
  afterDelete: unknown;
  /** `has('greeting')` after B deleted it. */
  hasAfterDelete: boolean;
  /** What A read for the keys B wrote with `update()`. */
  updated: Record<string, unknown>;
}

export async function main(log: (line: string) => void = console.log): Promise<DhtDemoResult> {
  const nodes: StandaloneDhtNode[] = [];
  try {
    const first = await startDhtNode({ identity: Identity.generate(), bind: '127.0.0.1:0' });
    nodes.push(first);
    log(`node A ${first.contactString.slice(0, 12)}… started a new network`);
    for (let i = 1; i < 5; i++) {
      // Contacts are shared as strings: <64 hex id>@host:port.
      nodes.push(await startDhtNode({ identity: Identity.generate(), bind: '127.0.0.1:0', bootstrap: [first.contactString], timeout: 5000 }));
    }
    const [a, b, c] = nodes as [StandaloneDhtNode, StandaloneDhtNode, StandaloneDhtNode];
    log(`${nodes.length - 1} more nodes joined through A`);

    await b.set('greeting', 'hello from B');
    const readBack = await Promise.all(nodes.map(async (n) => String(await n.get('greeting'))));
    log(`every node reads greeting = ${JSON.stringify(readBack[0])}`);

    const refused = async (op: () => Promise<unknown>): Promise<string> => {
      try {
        await op();
        return 'accepted';
      } catch (e) {
        if (e instanceof RecordError) return e.code;
        throw e;
      }
    };
    const overwriteRefused = await refused(() => c.set('greeting', 'C was here'));
    const deleteRefused = await refused(() => c.delete('greeting'));
    log(`C overwriting B's key: ${overwriteRefused}; C deleting it: ${deleteRefused}`);

    await b.update({ color: 'blue', size: 42 });
    const updated = { color: await a.get('color'), size: await a.get('size') };
    log(`B wrote two keys with update(); A reads ${JSON.stringify(updated)}`);

    await b.delete('greeting');
    const afterDelete = await a.get('greeting', { default: '(gone)' });
    const hasAfterDelete = await c.has('greeting');
    log(`after B deleted it: get → ${JSON.stringify(afterDelete)}, has → ${hasAfterDelete}`);
    return { readBack, overwriteRefused, deleteRefused, afterDelete, hasAfterDelete, updated };
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
}

runMain(import.meta.url, () => main());
