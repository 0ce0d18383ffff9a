/**
 * `createTestnet`: deterministic identities, convergence, the DHT riding on the swarm,
 * clean shutdown; and the swarm example.
 */
import { describe, expect, it } from 'vitest';
import { main as swarmEcho } from '../examples/swarm-echo.js';
import { createTestnet, isConverged } from '../src/testnet/index.js';
import { delay, testnet, until } from './swarm-helpers.js';

/** TCP handles currently open in this process. */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

describe('createTestnet', () => {
  it('builds n converged nodes; the same seed gives the same identities', async () => {
    const a = await testnet(6, { seed: 42 });
    const b = await createTestnet(6, { seed: 42 });
    try {
      expect(b.nodes.map((n) => n.idHex)).toEqual(a.nodes.map((n) => n.idHex));
      const ids = new Set(a.nodes.map((n) => n.idHex));
      for (const n of a.nodes) {
        expect(isConverged(n, ids)).toBe(true);
        expect(n.members.length).toBe(5);
        expect(n.endpoint.host).toBe('127.0.0.1');
      }
    } finally {
      await b.close();
    }
    const late = await a.addNode();
    await a.waitConverged({ timeout: 10_000 });
    expect(a.alive().length).toBe(7);
    expect(a.nodes[0]!.members.some((m) => m.idHex === late.idHex)).toBe(true);
  });

  it('dht: true runs a Kademlia node per swarm node over the swarm links', { timeout: 60_000 }, async () => {
    const net = await testnet(10, { seed: 'dht', dht: { requestTimeout: 2000, republishInterval: 0, refreshInterval: 0 } });
    expect(net.dhts.length).toBe(10);
    await net.dhts[3]!.set('color', 'blue');
    await net.dhts[7]!.set('list', [1, 'two', { three: 3 }]);
    for (const d of net.dhts) {
      expect(await d.get('color')).toBe('blue');
      expect(await d.get('list')).toEqual([1, 'two', { three: 3 }]);
    }
    expect(await net.dhts[0]!.get('missing', { default: null })).toBeNull();
    // A node added later joins the DHT too: it finds existing keys and others find its keys.
    await net.addNode();
    expect(net.dhts.length).toBe(11);
    const late = net.dhts[10]!;
    expect(await late.get('color')).toBe('blue');
    await late.set('late', 'here');
    for (const d of net.dhts.slice(0, 10)) expect(await d.get('late')).toBe('here');
  });

  it('close() leaves no socket, server or timer of the testnet behind', async () => {
    await delay(200);
    const before = tcpHandles();
    const net = await createTestnet(8, { seed: 'close' });
    expect(tcpHandles()).toBeGreaterThan(before);
    await net.nodes[0]!.broadcast('bye');
    await net.close();
    await until(() => tcpHandles() <= before, 5000, 'all TCP handles closed');
    for (const n of net.nodes) expect(n.closed).toBe(true);
  });

  it('examples/swarm-echo.ts: echo to an address, broadcast, synced key set before join', async () => {
    const lines: string[] = [];
    const r = await swarmEcho((l) => lines.push(l));
    expect(r.echoed).toBe('EM OHCE');
    expect(r.broadcastReceivedBy).toBe(2);
    expect(r.synced).toBe('hello from the first member');
    expect(lines.length).toBeGreaterThanOrEqual(5);
  });
});
