/**
 * The swarm's seen-cache: eviction of the oldest entry at max size (counted), expiry after the
 * TTL, keying by (origin, id); and on a loopback swarm whose cache is smaller than the number
 * of broadcasts, the cache stays within its bound and every broadcast is delivered exactly once.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_CLOCK_SKEW, MAX_MESSAGE_AGE, SEEN_TTL, SeenCache, type SwarmPeer } from '../src/swarm/index.js';
import { swarmOf, until } from './swarm-helpers.js';

const origin = randomBytes(32);
const key = (i: number): string => SeenCache.key(origin, Buffer.alloc(16, i));

describe('SeenCache', () => {
  it('evicts the oldest entries beyond maxSize and counts them', () => {
    const c = new SeenCache<number>(3, 1000);
    for (let i = 1; i <= 5; i++) c.set(key(i), i, 0);
    expect(c.size).toBe(3);
    expect(c.evicted).toBe(2);
    expect([1, 2, 3, 4, 5].map((i) => c.get(key(i), 1))).toEqual([undefined, undefined, 3, 4, 5]);
    // Updating a live entry neither grows the cache nor evicts anything.
    c.set(key(4), 40, 2);
    expect(c.size).toBe(3);
    expect(c.evicted).toBe(2);
    expect(c.get(key(4), 3)).toBe(40);
    c.set(key(6), 6, 4);
    expect(c.evicted).toBe(3);
    expect(c.get(key(3), 5)).toBeUndefined(); // the oldest insertion went first
    expect(c.get(key(6), 5)).toBe(6);
  });

  it('entries expire after their TTL; an update keeps the original expiry; sweep drops expired ones', () => {
    const c = new SeenCache<string>(10, 100);
    c.set(key(1), 'a', 0);
    c.set(key(2), 'b', 50);
    expect(c.get(key(1), 99)).toBe('a');
    c.set(key(1), 'a2', 99); // update: still expires at 100
    expect(c.get(key(1), 99)).toBe('a2');
    expect(c.get(key(1), 100)).toBeUndefined();
    expect(c.size).toBe(1); // the expired entry was dropped on access
    expect(c.evicted).toBe(0); // expiry is not eviction
    expect(c.get(key(2), 149)).toBe('b');
    // Re-setting an expired id starts a new lifetime.
    c.set(key(1), 'again', 120);
    c.sweep(150); // key 2 expired at 150; key 1 lives until 220
    expect(c.size).toBe(1);
    expect(c.get(key(2), 150)).toBeUndefined();
    expect(c.get(key(1), 219)).toBe('again');
    c.sweep(220);
    expect(c.size).toBe(0);
    c.set(key(3), 'x', 0);
    c.clear();
    expect(c.size).toBe(0);
  });

  it('remembers, per origin, the newest timestamp it evicted: older messages of that origin count as seen', () => {
    const c = new SeenCache<number>(2, 1000);
    const other = randomBytes(32);
    const k2 = (o: Uint8Array, i: number): string => SeenCache.key(o, Buffer.alloc(16, i));
    c.set(k2(origin, 1), 1, 0, 100);
    c.set(k2(origin, 2), 2, 0, 200);
    expect(c.forgotten(k2(origin, 9), 100)).toBe(false);
    c.set(k2(origin, 3), 3, 0, 300); // evicts ts 100
    expect(c.forgotten(k2(origin, 1), 100)).toBe(true);
    expect(c.forgotten(k2(origin, 9), 99)).toBe(true);
    expect(c.forgotten(k2(origin, 9), 101)).toBe(false);
    expect(c.forgotten(k2(other, 1), 50)).toBe(false); // another origin is not affected
    c.clear();
    expect(c.forgotten(k2(origin, 1), 100)).toBe(false);
  });

  it('keys by origin and id together', () => {
    const id = randomBytes(16);
    const a = randomBytes(32);
    const b = randomBytes(32);
    expect(SeenCache.key(a, id)).not.toBe(SeenCache.key(b, id));
    expect(SeenCache.key(a, id)).toBe(SeenCache.key(Buffer.from(a), Buffer.from(id)));
    const c = new SeenCache<true>(4, 1000);
    c.set(SeenCache.key(a, id), true, 0);
    expect(c.get(SeenCache.key(b, id), 1)).toBeUndefined();
  });

  it('remembers an id at least as long as its message can still be accepted', () => {
    // A message stamped MAX_CLOCK_SKEW in the future stays acceptable until it is MAX_MESSAGE_AGE
    // old; a shorter memory would let a replay through once the id is forgotten.
    expect(SEEN_TTL).toBeGreaterThanOrEqual(MAX_MESSAGE_AGE + MAX_CLOCK_SKEW);
  });
});

describe('seen-cache on a swarm', () => {
  it('more broadcasts than the cache holds: size stays ≤ max, every broadcast delivered exactly once', async () => {
    const SIZE = 4;
    const ROUNDS = 15;
    const peers = await swarmOf(5, { seenCacheSize: SIZE });
    const got = new Map<string, number>();
    for (const p of peers) p.onMessage((m) => void got.set(`${p.idHex}|${m.data}`, (got.get(`${p.idHex}|${m.data}`) ?? 0) + 1));
    const sum = (f: (p: SwarmPeer) => number): number => peers.reduce((s, p) => s + f(p), 0);
    for (let i = 0; i < ROUNDS; i++) {
      const from = peers[i % peers.length] as SwarmPeer;
      await from.broadcast(`b${i}`);
      // Settled: every broadcast frame sent so far was received and either delivered or dropped as a duplicate.
      await until(() => sum((p) => p.stats.framesSent.bcast) === sum((p) => p.stats.delivered + p.stats.duplicates) && sum((p) => p.stats.delivered) >= (i + 1) * 4, 5000, `broadcast ${i} settled`);
      for (const p of peers) expect(p.core.router.seenBcast.size).toBeLessThanOrEqual(SIZE);
    }
    for (const p of peers) {
      expect(p.core.router.seenBcast.size).toBe(SIZE);
      expect(p.core.router.seenBcast.evicted).toBeGreaterThan(0);
    }
    expect(sum((p) => p.stats.duplicates)).toBeGreaterThan(0); // redundant copies did arrive, and were dropped
    for (let i = 0; i < ROUNDS; i++) {
      const from = peers[i % peers.length] as SwarmPeer;
      for (const p of peers) expect(got.get(`${p.idHex}|b${i}`)).toBe(p === from ? undefined : 1);
    }
    expect(sum((p) => p.stats.delivered)).toBe(ROUNDS * 4);
  });
});
