/**
 * Synced dict under digest spam: a digest costs its sender one small signed message, a state
 * reply costs the receiver a signature over its whole state. Non-neighbours' digests get no
 * reply at all; a neighbour gets at most one per MIN_STATE_REPLY_INTERVAL.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { FRAME_DATA, buildEnvelope, type SwarmPeer } from '../src/swarm/index.js';
import { KIND_SYNC, MIN_STATE_REPLY_INTERVAL, SyncDict } from '../src/sync/index.js';
import { delay, linkBetween, swarmOf, until } from './swarm-helpers.js';

const MSG_DIGEST = 2;
const MSG_STATE = 3;

function digestMessage(d: SyncDict, digest: Buffer): Buffer {
  return Buffer.concat([Buffer.from([MSG_DIGEST]), d.namespace, digest]);
}

/** Counts the state messages `v` sends to `to` (and to anyone). */
function stateReplies(v: SwarmPeer): { to(id: Buffer): number; total(): number } {
  const spy = vi.spyOn(v, 'sendInternal');
  const states = (): [number, Buffer, Buffer][] => spy.mock.calls.filter(([kind, , payload]) => kind === KIND_SYNC && payload[0] === MSG_STATE);
  return { to: (id) => states().filter(([, target]) => target.equals(id)).length, total: () => states().length };
}

/** A victim `v` whose dict holds a few keys (its state fits one message), and a neighbour `m`. */
async function victim(): Promise<{ m: SwarmPeer; v: SwarmPeer; dv: SyncDict }> {
  const [m, v] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
  const dv = new SyncDict(v);
  for (let i = 0; i < 8; i++) await dv.set(`key ${i}`, Buffer.alloc(1000, i));
  return { m, v, dv };
}

describe('synced dict: digests from non-neighbours', () => {
  it('a digest signed by a throw-away key (not a member, no link) gets no state reply: nothing is signed or sent', async () => {
    const { m, v, dv } = await victim();
    const replies = stateReplies(v);
    const delivered = v.stats.delivered;
    const n = 50;
    for (let i = 0; i < n; i++) {
      // Relayed by the neighbour m, signed by a fresh key each time: a valid swarm message to v.
      const env = buildEnvelope(Identity.generate(), m.protocolHash, { type: FRAME_DATA, kind: KIND_SYNC, target: v.id, payload: digestMessage(dv, randomBytes(32)), timestamp: Date.now() });
      linkBetween(m, v).send(env.raw);
    }
    await until(() => v.stats.delivered >= delivered + n, 5000, 'the digests delivered');
    await delay(50);
    expect(replies.total()).toBe(0);
    expect(dv.stats.digestsIgnored).toBe(n);
    expect(dv.stats.stateReplies).toBe(0);
  });
});

describe('synced dict: digest spam from a neighbour', () => {
  it(`at most one state reply per MIN_STATE_REPLY_INTERVAL; digests meanwhile coalesce into one reply after it`, async () => {
    const { m, v, dv } = await victim();
    const replies = stateReplies(v);
    const delivered = v.stats.delivered;
    const n = 50;
    for (let i = 0; i < n; i++) m.sendInternal(KIND_SYNC, v.id, digestMessage(dv, randomBytes(32)));
    await until(() => v.stats.delivered >= delivered + n, 5000, 'the digests delivered');
    await delay(100);
    expect(replies.to(m.id)).toBe(1);
    expect(dv.stats.stateRepliesCoalesced).toBe(n - 1);
    // When the interval has passed: one reply to the latest digest, no more.
    await until(() => replies.to(m.id) === 2, MIN_STATE_REPLY_INTERVAL + 2000, 'the held-back reply');
    await delay(300);
    expect(replies.to(m.id)).toBe(2);
    expect(dv.stats.stateReplies).toBe(2);
  });

  it('a held-back reply is dropped when the neighbour\'s latest digest matches ours (it caught up meanwhile)', async () => {
    const { m, v, dv } = await victim();
    const replies = stateReplies(v);
    const delivered = v.stats.delivered;
    for (let i = 0; i < 20; i++) m.sendInternal(KIND_SYNC, v.id, digestMessage(dv, randomBytes(32)));
    m.sendInternal(KIND_SYNC, v.id, digestMessage(dv, dv.digest()));
    await until(() => v.stats.delivered >= delivered + 21, 5000, 'the digests delivered');
    await delay(MIN_STATE_REPLY_INTERVAL + 500);
    expect(replies.to(m.id)).toBe(1);
    expect(dv.stats.stateReplies).toBe(1);
  });
});
