/**
 * DHT record expiry (Kademlia): a record expires `recordTtl` after its writer signed it.
 * Expired replicas are dropped (and stop filling the record quota), expired copies are
 * ignored by reads and refused by STORE, and a writer that stays online re-signs its records
 * at half their lifetime so they never expire; a writer's values outlive it by at most the TTL.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_RECORD_TTL, RecordStore, createMemoryDhtTestnet, createRecord, generateSigner, keyToId, type DhtNode, type MemoryDhtTestnet,
} from '../src/dht/index.js';

const TTL = 10_000;
let T = 1_700_000_000_000;
const now = (): number => T;
const nets: MemoryDhtTestnet[] = [];
afterEach(async () => {
  await Promise.all(nets.splice(0).map((n) => n.close()));
});

describe('RecordStore with a TTL', () => {
  const signer = generateSigner();
  const rec = (key: string, timestamp: number, seq = 1) => createRecord(signer, { key, value: key, seq, timestamp });

  it('refuses an expired record, drops a held one once it expires, and frees quota for new records', () => {
    T = 1_700_000_000_000;
    const s = new RecordStore({ now, ttl: TTL, maxRecords: 2 });
    expect(s.offer(rec('old', T - TTL))).toBe('stale');
    expect(s.offer(rec('a', T - TTL + 1000))).toBe('ok');
    expect(s.offer(rec('b', T))).toBe('ok');
    expect(s.offer(rec('c', T))).toBe('full'); // nothing expired yet
    T += 1000; // 'a' is now exactly TTL old
    expect(s.get(keyToId('a'))).toBeUndefined();
    expect(s.offer(rec('c', T))).toBe('ok'); // room again
    T += TTL;
    expect(s.expire()).toBe(2);
    expect(s.size).toBe(0);
    expect(DEFAULT_RECORD_TTL).toBe(24 * 60 * 60 * 1000);
  });

  it('without a TTL nothing expires', () => {
    T = 1_700_000_000_000;
    const s = new RecordStore({ now });
    expect(s.offer(rec('ancient', T - 10 * TTL))).toBe('ok');
    expect(s.expire()).toBe(0);
    expect(s.get(keyToId('ancient'))).toBeDefined();
  });
});

describe('DHT nodes with recordTtl', () => {
  async function net(n: number): Promise<MemoryDhtTestnet> {
    T = 1_700_000_000_000;
    const x = await createMemoryDhtTestnet(n, { now, recordTtl: TTL, republishInterval: 0, refreshInterval: 0, requestTimeout: 2000 });
    nets.push(x);
    return x;
  }

  it('a writer that stays online re-signs its records at half their lifetime: they never expire', async () => {
    const x = await net(4);
    const [a, b] = x.nodes as [DhtNode, DhtNode];
    await a.set('k', 'v1');
    const first = (await b.getRecord('k'))!;
    for (let i = 0; i < 4; i++) {
      T += 0.6 * TTL;
      await a.republish();
    }
    // 2.4 TTLs after the first signature, the value is still there, under a fresh signature.
    const later = (await b.getRecord('k'))!;
    expect(later.timestamp).toBeGreaterThan(first.timestamp + TTL);
    expect(later.seq).toBeGreaterThan(first.seq);
    expect(await b.get('k')).toBe('v1');
  });

  it("a writer's values are gone one TTL after it left: replicas dropped, reads find nothing", async () => {
    const x = await net(4);
    const [a, b, c] = x.nodes as [DhtNode, DhtNode, DhtNode];
    await a.set('k', 'v1');
    expect(await c.get('k')).toBe('v1');
    await x.kill(a);
    T += TTL / 2;
    for (const n of [b, c]) await n.republish({ force: true }); // holders keep republishing
    expect(await c.get('k')).toBe('v1'); // not yet expired
    T += TTL / 2;
    for (const n of [b, c]) await n.republish({ force: true });
    expect(await c.get('k', { default: null })).toBeNull();
    expect(await b.has('k')).toBe(false);
    for (const n of x.nodes.slice(1)) expect(n.storedRecords).toBe(0);
  });
});
