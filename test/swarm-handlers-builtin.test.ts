/**
 * Built-in services run before user handlers: on the relay of a line `a — r — b` whose only
 * user handler claims every message, directed multi-hop sends and broadcasts still cross the
 * relay, and the synced dict (kind 1) and the DHT (kind 2) riding on the swarm still work on
 * the relay and through it. The user handler only ever sees application messages.
 */
import { describe, expect, it } from 'vitest';
import { DhtNode } from '../src/dht/node.js';
import type { SwarmMessage, SwarmPeer } from '../src/swarm/index.js';
import { SyncDict } from '../src/sync/index.js';
import { SwarmDhtTransport } from '../src/testnet/index.js';
import { delay, lineOf3, track, until } from './swarm-helpers.js';

/** Makes `peer`'s first user handler claim everything; returns the payloads it saw. */
function greedyHandler(peer: SwarmPeer): string[] {
  const seen: string[] = [];
  peer.registerHandler((msg: SwarmMessage, _conn) => {
    seen.push(msg.data.toString());
    return true;
  });
  return seen;
}

/** A DHT node riding on `peer`, closed after the test. */
function dhtOn(peer: SwarmPeer): DhtNode {
  const transport = new SwarmDhtTransport(peer);
  const contact = SwarmDhtTransport.contactOf({ id: peer.id, publicKey: peer.identity.publicKey, endpoint: peer.endpoint });
  const node = new DhtNode({ transport, contact, signer: peer.identity, requestTimeout: 3000, republishInterval: 0, refreshInterval: 0 });
  track({
    close: async () => {
      await node.close();
      transport.close();
    },
  });
  return node;
}

describe('built-in handlers before user handlers', () => {
  it('directed sends and broadcasts cross a relay whose user handler claims everything', async () => {
    const { a, r, b } = await lineOf3();
    const atRelay = greedyHandler(r);
    const relayedBefore = r.stats.relayed;
    const bcastBefore = r.stats.framesSent.bcast;
    await a.send(b, 'a→b');
    const m1 = await b.recv({ timeout: 3000 });
    expect(m1.data.toString()).toBe('a→b');
    expect(m1.src.idHex).toBe(a.idHex);
    expect(m1.hops).toBe(1); // relayed once, by r
    await b.send(a, 'b→a');
    expect((await a.recv({ timeout: 3000 })).data.toString()).toBe('b→a');
    await a.broadcast('from a');
    expect((await b.recv({ timeout: 3000 })).data.toString()).toBe('from a');
    await b.broadcast('from b');
    expect((await a.recv({ timeout: 3000 })).data.toString()).toBe('from b');
    await a.send(r, 'for r');
    await until(() => atRelay.length === 3, 3000, 'the relay handler saw its three messages');
    expect(atRelay.sort()).toEqual(['for r', 'from a', 'from b']);
    expect(r.stats.relayed - relayedBefore).toBe(2); // a→b and b→a
    expect(r.stats.framesSent.bcast - bcastBefore).toBe(2); // each broadcast forwarded to the other end
    await delay(50);
    expect(r.queued).toBe(0); // claimed by the handler
    expect(a.queued + b.queued).toBe(0); // and nothing arrived twice
  });

  it('the synced dict replicates to and through the relay; its messages never reach the user handler', async () => {
    const { a, r, b } = await lineOf3();
    const atRelay = greedyHandler(r);
    const [da, dr, db] = [new SyncDict(a), new SyncDict(r), new SyncDict(b)] as [SyncDict, SyncDict, SyncDict];
    await da.set('colour', 'blue');
    await until(() => dr.get('colour')?.toString() === 'blue' && db.get('colour')?.toString() === 'blue', 3000, 'replication to r and b');
    await db.set('size', 'XL');
    await until(() => dr.get('size')?.toString() === 'XL' && da.get('size')?.toString() === 'XL', 3000, 'replication to r and a');
    await dr.set('at-relay', '1');
    await until(() => da.has('at-relay') && db.has('at-relay'), 3000, 'replication from r');
    await a.broadcast('app');
    await until(() => atRelay.length === 1);
    expect(atRelay).toEqual(['app']);
  });

  it('the DHT over the swarm serves on the relay and routes through it', async () => {
    const { a, r, b } = await lineOf3();
    const atRelay = greedyHandler(r);
    const [ha, hr, hb] = [dhtOn(a), dhtOn(r), dhtOn(b)] as [DhtNode, DhtNode, DhtNode];
    const relayInfo = a.peers.find((p) => p.idHex === r.idHex);
    expect(relayInfo).toBeDefined();
    await hr.join([SwarmDhtTransport.contactOf(a.peers[0]!)]);
    await ha.join([SwarmDhtTransport.contactOf(relayInfo!)]);
    await hb.join([SwarmDhtTransport.contactOf(b.peers[0]!)]);
    expect(await hb.ping(ha.contact)).toBe(true); // b → a crosses r
    await ha.set('key', 'value');
    expect(hr.localRecord('key')).toBeDefined(); // the relay stored its replica
    expect(hb.localRecord('key')).toBeDefined();
    expect(await hb.get('key')).toBe('value');
    await hb.set('other', 42);
    expect(await ha.get('other')).toBe(42);
    expect(hr.metrics.requestsReceived).toBeGreaterThan(0);
    expect(atRelay).toEqual([]);
  });
});
