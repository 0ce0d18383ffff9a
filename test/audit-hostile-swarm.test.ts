/**
 * Hostile-input audit of the swarm layer (loopback, in-process). The attacker is a member with
 * a valid link (`m`) that writes raw frames on it, signed by itself or by throw-away keys.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { FRAME_BCAST, FRAME_DATA, KIND_USER, MAX_CLOCK_SKEW, SeenCache, buildEnvelope, type SwarmPeer } from '../src/swarm/index.js';
import { delay, linkBetween, swarmOf, until } from './swarm-helpers.js';

/** A frame signed by a fresh throw-away identity (not a member), stamped `timestamp`. */
function sybilFrame(m: SwarmPeer, target: SwarmPeer | undefined, timestamp: number, i: number): Buffer {
  return buildEnvelope(Identity.generate(), m.protocolHash, {
    type: target ? FRAME_DATA : FRAME_BCAST,
    kind: KIND_USER,
    ...(target ? { target: target.id } : {}),
    payload: Buffer.from(`sybil ${i}`),
    timestamp,
  }).raw;
}

describe('seen-cache floors under a flood of throw-away origins', () => {
  it('SeenCache: floors of future-stamped messages fold into the shared floor no later than their arrival', () => {
    const c = new SeenCache<true>(4, 60_000);
    const t0 = 1_000_000;
    // A sustained flood: one message every 10 ms, each from a fresh origin, each stamped as far
    // ahead as the swarm tolerates. The cache, then the per-origin floors, overflow.
    const n = 100;
    for (let i = 0; i < n; i++) c.set(SeenCache.key(randomBytes(32), randomBytes(16)), true, t0 + 10 * i, t0 + 10 * i + MAX_CLOCK_SKEW - 1);
    expect(c.evicted).toBe(n - 4);
    const last = t0 + 10 * (n - 1);
    // An honest origin, never seen, with a message stamped when the last flood message arrived.
    const honest = SeenCache.key(randomBytes(32), randomBytes(16));
    expect(c.forgotten(honest, last)).toBe(false);
    // Still never twice for what was not stamped in our future: a message stamped before the
    // folded entries arrived counts as possibly seen.
    expect(c.forgotten(honest, t0 + 10)).toBe(true);
  });

  it('a member flooding future-stamped messages under throw-away keys cannot make the victim drop every honest message as a duplicate', async () => {
    const [a, m, v] = (await swarmOf(3, { seenCacheSize: 8 })) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const ahead = Date.now() + MAX_CLOCK_SKEW - 5_000; // within the tolerated skew: valid
    const n = 40;
    for (let i = 0; i < n; i++) linkBetween(m, v).send(sybilFrame(m, i % 2 ? v : undefined, ahead, i));
    await until(() => v.stats.delivered + v.stats.duplicates >= n, 5000, 'the flood handled');
    while (v.tryRecv()) {
      /* drain */
    }
    expect(v.core.router.seenData.evicted + v.core.router.seenBcast.evicted).toBeGreaterThan(16);
    await delay(5);
    // Honest traffic sent after the flood, directed and broadcast, still arrives.
    const dups = v.stats.duplicates;
    await a.send(v.id, 'directed, after the flood');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('directed, after the flood');
    expect(v.stats.duplicates).toBe(dups);
    await a.broadcast('broadcast, after the flood');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('broadcast, after the flood');
  });
});

describe('large messages the application does not take at once', () => {
  /** The byte bound the queues keep to (DEFAULT_MAX_QUEUE_BYTES / MAX_PENDING_DELIVERY_BYTES). */
  const CAP = 64 * 1024 * 1024;
  const N = 100;

  /** M sends N messages of ~1 MB to V, pacing itself on V's deliveries (no congestion drops). */
  async function flood(m: SwarmPeer, v: SwarmPeer): Promise<void> {
    const big = Buffer.alloc(1_000_000, 7);
    for (let i = 0; i < N; i += 8) {
      const k = Math.min(N, i + 8);
      for (let j = i; j < k; j++) await m.send(v.id, big);
      await until(() => v.stats.delivered >= k, 10_000, `${k} deliveries`);
    }
  }

  it('the recv() queue is bounded in bytes, not only in messages', async () => {
    const [m, v] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    await flood(m, v);
    let bytes = 0;
    let count = 0;
    for (let x = v.tryRecv(); x; x = v.tryRecv()) {
      bytes += x.data.length;
      count++;
    }
    expect(bytes).toBeLessThanOrEqual(CAP);
    expect(v.stats.queueDropped).toBe(N - count);
  }, 30_000);

  it('so are the messages waiting behind a pending async handler', async () => {
    const [m, v] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    v.registerHandler((_msg, _conn) => new Promise<boolean>(() => undefined)); // never settles
    await flood(m, v);
    // One message is with the handler; at most CAP bytes wait behind it; the rest were dropped.
    expect(v.stats.queueDropped).toBeGreaterThanOrEqual(N - 1 - Math.floor(CAP / 1_000_000));
  }, 30_000);
});

describe('DHT over the swarm: requests from throw-away origins', () => {
  it('the per-origin connection states stay within MAX_CONNECTIONS while the oldest one has a request in flight', async () => {
    const { KIND_DHT, MAX_CONNECTIONS, SwarmDhtTransport } = await import('../src/swarm/dht-transport.js');
    const { encodeMessage } = await import('../src/dht/messages.js');
    const [m, v] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const t = new SwarmDhtTransport(v);
    try {
      // V asks M something M never answers (M runs no DHT): the oldest connection state is busy.
      const pending = t.request(SwarmDhtTransport.contactOf({ id: m.id, publicKey: m.identity.publicKey, endpoint: m.endpoint }), { type: 'PING' }, { timeout: 20_000 });
      pending.catch(() => undefined);
      const ping = Buffer.from(encodeMessage({ type: 'PING' }, 1));
      const n = MAX_CONNECTIONS + 200;
      const link = linkBetween(m, v);
      for (let i = 0; i < n; i++) {
        link.send(buildEnvelope(Identity.generate(), m.protocolHash, { type: FRAME_DATA, kind: KIND_DHT, target: v.id, payload: ping, timestamp: Date.now() }).raw);
        if (i % 256 === 255) await delay(1); // let V keep up (no congestion drops)
      }
      await until(() => v.stats.delivered >= n, 20_000, 'the flood delivered');
      expect(t.connections).toBeLessThanOrEqual(MAX_CONNECTIONS);
    } finally {
      t.close();
    }
  }, 30_000);
});
