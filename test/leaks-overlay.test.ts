/**
 * No leaks over repeated lifecycles, overlay layer: P2P nodes on loopback (start, connect
 * direct and reverse through the embedded broker, close), SwarmPeer bind/connect/send/close
 * with a SyncDict on each member, standalone DHT nodes joining a long-lived one, and whole
 * testnets. The checks are those of test/helpers/leaks.ts (resources, timers, collectable
 * closed sockets, warnings, listeners on long-lived signals — a node's life signal, a swarm's
 * or DHT node's close signal — and heap).
 *
 * Expected, not leaks: a long-lived swarm member keeps a departed member's signed leave
 * announcement (tombstone) until `MEMBER_TTL`, and a DHT node keeps departed contacts in its
 * (bounded) k-buckets and the records it stores; the reverse strategy's `AbortSignal.timeout`
 * timers are unref'd and end with their delay (the probe waits for them). On Node 20,
 * `AbortSignal.any()` keeps a WeakRef per call in each long-lived source signal (nodejs/node
 * #55351, fixed in newer Node.js releases); that is not an 'abort' listener and is not checked here.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { startDhtNode, type StartDhtNodeOptions } from '../src/dht/index.js';
import { startP2pNode, type P2pNode, type P2pNodeOptions } from '../src/node/index.js';
import { SwarmPeer } from '../src/swarm/index.js';
import { SyncDict } from '../src/sync/index.js';
import { createTestnet } from '../src/testnet/index.js';
import { expectResourcesBack, resources, useLeakProbe } from './helpers/leaks.js';
import { guardUnhandled, waitFor } from './helpers/pipes.js';

guardUnhandled();
const probe = useLeakProbe();

const OPTS = { timeout: 120_000 };
const NODE: P2pNodeOptions = { listen: 'loopback', portMapping: false };
const DHT: StartDhtNodeOptions = { bind: '127.0.0.1:0', requestTimeout: 5_000, republishInterval: 0, refreshInterval: 0 };

/** Answers every `PING…` with `PONG…`. */
function pong(n: P2pNode): void {
  n.addMsgCb(async (msg, pipe) => {
    const t = msg.toString();
    if (t.startsWith('PING')) await pipe.send(`PONG${t.slice(4)}`);
  });
}

describe('overlays: repeated lifecycles leave nothing behind', () => {
  it('P2pNode: connect direct and reverse between two long-lived nodes; a third node started and closed each cycle', OPTS, async () => {
    const outer = resources();
    const a = await startP2pNode({ ...NODE, identity: Identity.generate() });
    const b = await startP2pNode({ ...NODE, identity: Identity.generate() });
    pong(b);
    const cId = Identity.generate();
    const signal = new AbortController().signal;
    try {
      const r = await probe.cycles(12, async (i) => {
        for (const strategy of ['direct', 'reverse'] as const) {
          const p = await a.connect(b.addr, { strategies: [strategy], signal, timeout: 10_000 });
          expect(p.path.strategy).toBe(strategy);
          await p.send(`PING ${i}`);
          expect((await p.recv({ signal, timeout: 5000 })).data.toString()).toBe(`PONG ${i}`);
          await p.close();
        }
        const c = await startP2pNode({ ...NODE, identity: cId });
        const q = await c.connect(b.addr, { strategies: ['reverse'], signal, timeout: 10_000 });
        await q.send('PING c');
        expect((await q.recv({ signal, timeout: 5000 })).data.toString()).toBe('PONG c');
        await c.close();
        expect(q.closed).toBe(true);
        await waitFor(() => a.pipes.size === 0 && b.pipes.size === 0, 'every peer pipe closed');
      }, { signal });
      expect(r.signals).toBeGreaterThanOrEqual(2); // at least a's and b's life signals were watched
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    await expectResourcesBack(outer);
  });

  it('SwarmPeer and SyncDict: bind, connect to a long-lived member, send both ways, sync a key, close', OPTS, async () => {
    const outer = resources();
    const a = new SwarmPeer({ identity: Identity.generate() });
    await a.bind('127.0.0.1', 0);
    const aDict = new SyncDict(a, { name: 'leaks' });
    const signal = new AbortController().signal;
    try {
      const r = await probe.cycles(20, async (i) => {
        const b = new SwarmPeer();
        await b.bind('127.0.0.1', 0, { signal });
        const bDict = new SyncDict(b, { name: 'leaks' });
        await b.connect(a.endpoint.host, a.endpoint.port, { timeout: 10_000, signal });
        await b.send(a.id, `to a ${i}`, { signal, timeout: 5000 });
        expect((await a.recv({ signal, timeout: 5000 })).data.toString()).toBe(`to a ${i}`);
        await a.send(b.id, `to b ${i}`, { signal, timeout: 5000 });
        expect((await b.recv({ signal, timeout: 5000 })).data.toString()).toBe(`to b ${i}`);
        await bDict.set(`from b ${i}`, 'v', { signal });
        await waitFor(() => aDict.has(`from b ${i}`), 'the key reaches a');
        // A dict is closed on its own: one left open keeps its unref'd anti-entropy interval
        // (and so its closed peer) until its next round, up to syncInterval (30 s) later.
        bDict.close();
        await b.close();
        await waitFor(() => a.peers.length === 0, 'a drops its link to b');
      }, { signal, emitters: [a, aDict] });
      expect(r.signals).toBeGreaterThanOrEqual(1); // a's close signal
      expect(a.members).toHaveLength(0); // departed members are not listed (their tombstones expire)
    } finally {
      aDict.close();
      await a.close();
    }
    await expectResourcesBack(outer);
  });

  it('DHT: a node joins a long-lived node, sets and gets, leaves', OPTS, async () => {
    const outer = resources();
    const a = await startDhtNode({ ...DHT, identity: Identity.generate() });
    const signal = new AbortController().signal;
    try {
      const r = await probe.cycles(20, async (i) => {
        const b = await startDhtNode({ ...DHT, identity: Identity.generate(), bootstrap: [a.contactString], signal });
        await b.set(`key ${i}`, { i }, { signal, timeout: 10_000 });
        expect(await a.get(`key ${i}`, { signal, timeout: 10_000 })).toEqual({ i });
        await a.set('shared', i, { signal, timeout: 10_000 });
        expect(await b.get('shared', { signal, timeout: 10_000 })).toBe(i);
        await b.close();
        await waitFor(() => a.transport.server.connections.size === 0, "a's accepted links close");
      }, { signal, emitters: [a.transport.server.server] });
      expect(r.sockets).toBeGreaterThanOrEqual(40);
      expect(a.transport.connections).toMatchObject({ inbound: 0, handshaking: 0 });
    } finally {
      await a.close();
    }
    await expectResourcesBack(outer);
  });

  it('createTestnet(n) → broadcast → close', OPTS, async () => {
    const outer = resources();
    await probe.cycles(5, async (i) => {
      const net = await createTestnet(4, { seed: `leaks ${i}`, dht: { requestTimeout: 5000, republishInterval: 0, refreshInterval: 0 } });
      await net.dhts[1]!.set('k', i);
      expect(await net.dhts[3]!.get('k')).toBe(i);
      await net.nodes[0]!.broadcast(`hello ${i}`);
      for (const n of net.nodes.slice(1)) expect((await n.recv({ timeout: 5000 })).data.toString()).toBe(`hello ${i}`);
      await net.close();
      for (const n of net.nodes) expect(n.closed).toBe(true);
    });
    await expectResourcesBack(outer);
  });
});
