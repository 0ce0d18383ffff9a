/**
 * `send(…, { duplicates: k })`: the k extra copies leave over k + 1 different first-hop links
 * (as many as the node has), never two on one link, and the receiver delivers the message once.
 */
import { describe, expect, it, vi, type MockInstance } from 'vitest';
import { FRAME_DATA, decodeEnvelope, type SwarmPeer } from '../src/swarm/index.js';
import type { Link } from '../src/swarm/link.js';
import { delay, lineOf3, swarmOf, until } from './swarm-helpers.js';

/** Spies on every current link of `peer`; returns, per neighbour id, the payloads of DATA frames sent on it. */
function spyLinks(peer: SwarmPeer): { perLink: () => Map<string, string[]>; restore: () => void } {
  const spies: [Link, MockInstance<(frame: Buffer) => boolean>][] = [...peer.core.links.values()].map((l) => [l, vi.spyOn(l, 'send')]);
  return {
    perLink: () => {
      const out = new Map<string, string[]>();
      for (const [l, s] of spies) {
        const payloads = s.mock.calls.filter(([f]) => f[0] === FRAME_DATA).map(([f]) => decodeEnvelope(f).payload.toString());
        if (payloads.length > 0) out.set(l.remoteIdHex, payloads);
      }
      return out;
    },
    restore: () => {
      for (const [, s] of spies) s.mockRestore();
    },
  };
}

/** Counts deliveries per payload at `peer`. */
function deliveries(peer: SwarmPeer): Map<string, number> {
  const got = new Map<string, number>();
  peer.onMessage((m) => void got.set(m.data.toString(), (got.get(m.data.toString()) ?? 0) + 1));
  return got;
}

describe('send duplicates', () => {
  it('k extra copies go over k + 1 distinct first hops (direct link first); the receiver delivers once', async () => {
    const peers = await swarmOf(5);
    const [a, b] = peers as [SwarmPeer, SwarmPeer];
    expect(a.peers.length).toBe(4);
    const got = deliveries(b);
    for (const k of [0, 1, 2, 3]) {
      const spy = spyLinks(a);
      const dupsBefore = peers.reduce((s, p) => s + p.stats.duplicates, 0);
      const text = `dup-${k}`;
      await a.send(b, text, { duplicates: k });
      const perLink = spy.perLink();
      spy.restore();
      expect(perLink.size).toBe(k + 1); // k + 1 different links carried a copy …
      for (const payloads of perLink.values()) expect(payloads).toEqual([text]); // … one copy each
      expect(perLink.has(b.idHex)).toBe(true); // the direct link is one of them
      await until(() => got.get(text) === 1, 3000, `delivery of ${text}`);
      // The k relayed copies reach b too, and are dropped there as duplicates.
      await until(() => peers.reduce((s, p) => s + p.stats.duplicates, 0) - dupsBefore === k, 3000, `${k} duplicates dropped`);
    }
    await delay(100);
    expect([...got.entries()].sort()).toEqual([['dup-0', 1], ['dup-1', 1], ['dup-2', 1], ['dup-3', 1]]);
  });

  it('asking for more copies than there are links uses each link once', async () => {
    const peers = await swarmOf(4);
    const [a, b] = peers as [SwarmPeer, SwarmPeer];
    const got = deliveries(b);
    const spy = spyLinks(a);
    await a.send(b, 'many', { duplicates: 10 });
    const perLink = spy.perLink();
    spy.restore();
    expect(perLink.size).toBe(3);
    for (const payloads of perLink.values()) expect(payloads).toEqual(['many']);
    await until(() => got.get('many') === 1, 3000);
    await delay(100);
    expect(got.get('many')).toBe(1);
  });

  it('multi-hop with a single first hop: one copy on it, delivered once', async () => {
    const { a, r, b } = await lineOf3();
    const got = deliveries(b);
    const spy = spyLinks(a);
    await a.send(b, 'via r', { duplicates: 2 });
    const perLink = spy.perLink();
    spy.restore();
    expect([...perLink.entries()]).toEqual([[r.idHex, ['via r']]]);
    await until(() => got.get('via r') === 1, 3000);
    await delay(100);
    expect(got.get('via r')).toBe(1);
  });
});
