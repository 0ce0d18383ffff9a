/**
 * Helpers shared by the swarm and sync suites (test/swarm-*.test.ts, test/sync-*.test.ts):
 * peers closed after each test, polling, and raw frame injection over a peer's own links.
 * @module
 */
import { createServer } from 'node:net';
import { afterEach, expect } from 'vitest';
import { SwarmPeer, type SwarmPeerOptions } from '../src/swarm/index.js';
import type { Link } from '../src/swarm/link.js';
import { createTestnet, type Testnet, type TestnetOptions } from '../src/testnet/index.js';

const open: { close(): Promise<unknown> }[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close().catch(() => undefined)));
});

/** Registers something to close after the current test. */
export function track<T extends { close(): Promise<unknown> }>(x: T): T {
  open.push(x);
  return x;
}

/** A bound peer on 127.0.0.1, closed after the test. */
export async function boundPeer(opts: SwarmPeerOptions = {}): Promise<SwarmPeer> {
  const p = track(new SwarmPeer(opts));
  p.on('error', () => undefined);
  await p.bind('127.0.0.1', 0);
  return p;
}

/** A few (≤ 5) peers joined through the first; resolves once every pair is linked directly. */
export async function swarmOf(n: number, opts: SwarmPeerOptions = {}): Promise<SwarmPeer[]> {
  const peers: SwarmPeer[] = [];
  for (let i = 0; i < n; i++) {
    const p = await boundPeer(opts);
    if (i > 0) await p.connect('127.0.0.1', (peers[0] as SwarmPeer).endpoint.port, { timeout: 5000 });
    peers.push(p);
  }
  await until(() => peers.every((p) => p.peers.length === n - 1), 5000, 'full mesh');
  return peers;
}

/**
 * Three peers in a line, `a — r — b`: `a` and `b` link only to the relay `r`. Each end
 * advertises the port of its own loopback listener that resets every connection, so their
 * dials of each other fail and no direct `a — b` link ever forms (traffic between them must
 * cross `r`). Resolves once both ends gave up dialing each other (the steady state: each counts
 * the other as unreachable).
 */
export async function lineOf3(opts: SwarmPeerOptions = {}): Promise<{ a: SwarmPeer; r: SwarmPeer; b: SwarmPeer }> {
  const r = await boundPeer(opts);
  const edge = async (): Promise<SwarmPeer> => {
    const sink = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    track({ close: () => new Promise<void>((resolve) => sink.close(() => resolve())) });
    const p = track(new SwarmPeer(opts));
    p.on('error', () => undefined);
    await p.bind('127.0.0.1', 0, { externalPort: (sink.address() as { port: number }).port });
    await p.connect(r.endpoint, undefined, { timeout: 5000 });
    return p;
  };
  const a = await edge();
  const b = await edge();
  await until(() => a.members.length === 2 && b.members.length === 2 && r.peers.length === 2, 5000, 'line membership');
  await until(() => a.core.isUnreachable(b.idHex) && b.core.isUnreachable(a.idHex), 20_000, 'the ends gave up dialing each other');
  expect(a.core.links.get(b.idHex)).toBeUndefined();
  expect(b.core.links.get(a.idHex)).toBeUndefined();
  return { a, r, b };
}

/** A testnet closed after the test. */
export async function testnet(n: number, opts: TestnetOptions = {}): Promise<Testnet> {
  const net = await createTestnet(n, opts);
  return track(net);
}

/** Polls `cond` every 10 ms until true; fails after `timeout`. */
export async function until(cond: () => boolean, timeout = 5000, what = 'condition'): Promise<void> {
  const end = performance.now() + timeout;
  while (!cond()) {
    if (performance.now() > end) expect.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `from`'s active link to `to`. */
export function linkBetween(from: SwarmPeer, to: SwarmPeer): Link {
  const l = from.core.links.get(to.idHex);
  if (!l) throw new Error('no link between these peers');
  return l;
}

/** Collects rejections of a promise as the error. */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  const r = await p.then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  if (!r) expect.fail('expected a rejection');
  return r;
}
