/**
 * Swarm routing at scale on loopback: every ordered pair of a 30-node swarm, `duplicates`,
 * 50-node broadcast exactly once, exclude lists, relaying without `recv()`, churn.
 */
import { describe, expect, it } from 'vitest';
import type { SwarmPeer } from '../src/swarm/index.js';
import { isConverged } from '../src/testnet/index.js';
import { delay, testnet, until } from './swarm-helpers.js';

/** Counts deliveries per (receiver, payload) with callbacks. */
function collect(nodes: SwarmPeer[]): Map<string, number> {
  const got = new Map<string, number>();
  for (const n of nodes) n.onMessage((m) => void got.set(`${n.idHex}|${m.src.idHex}|${m.data}`, (got.get(`${n.idHex}|${m.src.idHex}|${m.data}`) ?? 0) + 1));
  return got;
}

/**
 * Sends `tag` from every node to every other and waits until all arrive. The swarm has no
 * end-to-end acks, so a message that meets a link being replaced is lost: pairs still missing
 * after `ms` are sent once more. Returns how many were resent (callers bound it).
 */
async function allPairs(nodes: SwarmPeer[], tag: string, got: Map<string, number>, ms: number): Promise<number> {
  const missing = (): [SwarmPeer, SwarmPeer][] =>
    nodes.flatMap((a) => nodes.filter((b) => b !== a && !got.has(`${b.idHex}|${a.idHex}|${tag}`)).map((b): [SwarmPeer, SwarmPeer] => [a, b]));
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.send(b, tag);
  const done = (): boolean => missing().length === 0;
  const end = performance.now() + ms;
  while (!done() && performance.now() < end) await delay(20);
  if (done()) return 0;
  const again = missing();
  for (const [a, b] of again) await a.send(b, tag);
  await until(done, ms, `${tag}: every pair`);
  return again.length;
}

describe('swarm at scale', () => {
  it('30 nodes: every ordered pair delivers a directed message exactly once, to the right node', { timeout: 60_000 }, async () => {
    const net = await testnet(30, { seed: 'pairs' });
    const nodes = net.nodes;
    // Multi-hop is really exercised: some pairs are not neighbours.
    const nonNeighbours = nodes.flatMap((a) => nodes.filter((b) => b !== a && !a.core.links.get(b.idHex))).length;
    expect(nonNeighbours).toBeGreaterThan(0);
    const got = collect(nodes);
    let sent = 0;
    for (const a of nodes) for (const b of nodes) if (a !== b) {
      await a.send(b, `to:${b.idHex}`);
      sent++;
    }
    expect(sent).toBe(870);
    await until(() => got.size === 870, 30_000, 'all 870 deliveries');
    await delay(100);
    for (const [k, count] of got) {
      const [receiver, , data] = k.split('|');
      expect(count).toBe(1);
      expect(data).toBe(`to:${receiver}`); // delivered to exactly the addressed node
    }
    const relayed = nodes.reduce((s, n) => s + n.stats.relayed, 0);
    expect(relayed).toBeGreaterThan(0);
    expect(nodes.reduce((s, n) => s + n.stats.invalid, 0)).toBe(0);
  });

  it('duplicates: k extra copies over disjoint first hops, still delivered once', { timeout: 60_000 }, async () => {
    const net = await testnet(20, { seed: 'dups' });
    const nodes = net.nodes;
    const got = collect(nodes);
    const a = nodes[0] as SwarmPeer;
    const framesBefore = a.stats.framesSent.data;
    const targets = nodes.slice(1);
    for (const b of targets) await a.send(b, 'dup', { duplicates: 3 });
    await until(() => got.size === targets.length, 10_000);
    await delay(200);
    for (const count of got.values()) expect(count).toBe(1);
    expect(a.stats.framesSent.data - framesBefore).toBe(targets.length * 4);
    expect(nodes.reduce((s, n) => s + n.stats.duplicates, 0)).toBeGreaterThan(0);
  });

  it('50 nodes: a broadcast reaches every other node exactly once, the origin never', { timeout: 60_000 }, async () => {
    const net = await testnet(50, { seed: 'bcast' });
    const nodes = net.nodes;
    const got = collect(nodes);
    const origin = nodes[17] as SwarmPeer;
    const before = nodes.reduce((s, n) => s + n.stats.framesSent.bcast, 0);
    await origin.broadcast('hello all');
    await until(() => got.size === 49, 10_000, '49 deliveries');
    await delay(200);
    expect(got.size).toBe(49);
    for (const [k, count] of got) {
      expect(count).toBe(1);
      expect(k.startsWith(origin.idHex)).toBe(false);
    }
    const frames = nodes.reduce((s, n) => s + n.stats.framesSent.bcast, 0) - before;
    // Tree broadcast: about redundancy × (n − 1) frames, far below flooding (≈ 2 × edges).
    const edges = nodes.reduce((s, n) => s + n.peers.length, 0) / 2;
    expect(frames).toBeLessThan(2 * edges);
    expect(frames).toBeLessThanOrEqual(3 * 49);
  });

  it('exclude: excluded nodes relay but do not deliver; relaying does not need recv()', { timeout: 60_000 }, async () => {
    const net = await testnet(16, { seed: 'exclude' });
    const nodes = net.nodes;
    const excluded = nodes.slice(1, 6);
    // Nobody calls recv(): messages pile up in queues; relaying must still happen.
    await (nodes[0] as SwarmPeer).broadcast('x', { exclude: excluded });
    await until(() => nodes.slice(6).every((n) => n.queued === 1), 5000, 'deliveries');
    await delay(100);
    for (const n of excluded) expect(n.queued).toBe(0);
    expect((nodes[0] as SwarmPeer).queued).toBe(0);
  });

  it('redundancy 1 sends exactly n − 1 frames per broadcast', { timeout: 60_000 }, async () => {
    const net = await testnet(24, { seed: 'r1', peer: { broadcastRedundancy: 1 } });
    const nodes = net.nodes;
    const before = nodes.reduce((s, n) => s + n.stats.framesSent.bcast, 0);
    await (nodes[3] as SwarmPeer).broadcast('one');
    await until(() => nodes.filter((n) => n.queued === 1).length === 23, 5000);
    await delay(100);
    expect(nodes.reduce((s, n) => s + n.stats.framesSent.bcast, 0) - before).toBe(23);
  });

  it('churn: after nodes leave, the rest reconverges and still delivers everywhere', { timeout: 60_000 }, async () => {
    const net = await testnet(16, { seed: 'churn' });
    await Promise.all(net.nodes.slice(4, 8).map((n) => n.close()));
    await net.waitConverged({ timeout: 20_000 });
    const alive = net.alive();
    expect(alive.length).toBe(12);
    const ids = new Set(alive.map((n) => n.idHex));
    expect(alive.every((n) => isConverged(n, ids))).toBe(true);
    const got = collect(alive);
    expect(await allPairs(alive, 'after churn', got, 10_000)).toBeLessThanOrEqual(3);
    expect(got.size).toBe(12 * 11);
    // Crashes (no goodbye): the others find them unreachable and route around them.
    const killed = net.nodes.slice(8, 10);
    await Promise.all(killed.map((n) => n.core.kill()));
    // Messages sent while a link dies are lost (no end-to-end acks); wait until the crash is noticed.
    await until(() => net.alive().every((n) => killed.every((k) => !n.core.links.get(k.idHex))), 5000, 'crash noticed');
    await net.waitConverged({ timeout: 30_000 });
    const alive2 = net.alive();
    expect(alive2.length).toBe(10);
    const got2 = collect(alive2);
    expect(await allPairs(alive2, 'after crash', got2, 10_000)).toBeLessThanOrEqual(3);
    expect(got2.size).toBe(alive2.length * (alive2.length - 1));
    const late = await net.addNode();
    await net.waitConverged({ timeout: 20_000 });
    await late.broadcast('newcomer');
    await until(() => alive2.every((n) => got.get(`${n.idHex}|${late.idHex}|newcomer`) === 1), 5000, 'newcomer broadcast');
  });
});
