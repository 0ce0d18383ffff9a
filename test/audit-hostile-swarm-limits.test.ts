/**
 * Hostile-input audit of the swarm layer, with some limits scaled down (mocked constants) so
 * that the attacks run in milliseconds: a member table filled by throw-away announcements,
 * and a neighbour that never finishes its member snapshot.
 */
import { describe, expect, it, vi } from 'vitest';

vi.mock('../src/swarm/constants.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/swarm/constants.js')>();
  return { ...real, MAX_MEMBERS: 6, SNAPSHOT_TIMEOUT: 400 };
});

import { Identity } from '../src/crypto/identity.js';
import { toEndpoint } from '../src/interfaces/endpoint.js';
import { pipeOpen } from '../src/pipes/open.js';
import { PING_FRAME } from '../src/swarm/frames.js';
import { acceptLink, encodeMembers, resolveProtocol, signAnnouncement, type SwarmPeer } from '../src/swarm/index.js';
import { boundPeer, linkBetween, swarmOf, track, until } from './swarm-helpers.js';

describe('a member table full of throw-away announcements', () => {
  it('does not make the node refuse every new neighbour', async () => {
    const [v, m] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    // M gossips announcements of made-up members (fresh keys, a closed port) until V's table is full.
    const sybils: Buffer[] = [];
    for (let i = 0; i < 10; i++) sybils.push(signAnnouncement(Identity.generate(), m.protocolHash, { host: '127.0.0.1', port: 9, family: 4 }, Date.now()));
    for (const f of encodeMembers(sybils)) linkBetween(m, v).send(f);
    await until(() => v.members.length >= 6, 3000, 'the table filled');
    // An honest node that really dials V, proving its key on the link, still gets in.
    const c = await boundPeer();
    const info = await c.connect(v.endpoint, undefined, { timeout: 3000 });
    expect(info.idHex).toBe(v.idHex);
    await until(() => v.peers.some((p) => p.idHex === c.idHex), 3000, 'V links to C');
    expect(v.members.some((p) => p.idHex === c.idHex)).toBe(true);
  });
});

describe('a neighbour that never sends the end of its member snapshot', () => {
  it('connect() without a timeout still settles (TimeoutError), bounded by SNAPSHOT_TIMEOUT', async () => {
    // The attacker completes the link setup (preamble, Noise, a valid HELLO), then only pings.
    const server = track(await pipeOpen('tcp', undefined, { bind: { host: '127.0.0.1', port: 0 }, framing: 'raw' }));
    const id = Identity.generate();
    const protocol = resolveProtocol();
    const ep = toEndpoint({ host: '127.0.0.1', port: server.local.port });
    const ctx = { identity: id, protocol, announcement: () => signAnnouncement(id, protocol.hash, ep, Date.now()), now: Date.now };
    let pinger: NodeJS.Timeout | undefined;
    void (async () => {
      const p = await server.accept();
      const r = await acceptLink(ctx, p, { timeout: 5000 });
      r.io.setHandler(() => undefined);
      pinger = setInterval(() => r.io.send(PING_FRAME), 50);
    })().catch(() => undefined);
    try {
      const v = await boundPeer();
      const err = await v.connect(ep).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.name).toBe('TimeoutError'); // within the test's 10 s: SNAPSHOT_TIMEOUT is mocked down
    } finally {
      clearInterval(pinger);
    }
  }, 10_000);
});
