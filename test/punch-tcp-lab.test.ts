/**
 * TCP hole punching (simultaneous open) in the NAT lab: a1 (behind rtrA) and b1 (behind
 * rtrB) each run test/punch-tcp-lab-peer.ts, learn the external TCP mapping of a local port
 * from the lab's coturn over TCP (keeping that connection open), get each other's mapped
 * and LAN endpoints through files written by this test (the signalling stand-in), punch
 * from that port at an agreed time, and exchange 64 KiB each way over the connection.
 * Pairs where TCP punching works must succeed within 1 s of the meeting time (tens of ms
 * measured). Pairs where it cannot (both NATs map per destination, or one does and the
 * other filters by port) must fail on both sides with a TimeoutError within the timeout,
 * leaving no socket open. Needs root + the lab packages; in CI a missing prerequisite fails
 * the suite.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitEvent as waitFor, type Line } from './helpers/json-lines.js';
import { labAvailable, labDown, labUp, requireRoot, type NatKind, type NsProcess } from './helpers/lab.js';

/** Waits for one of `events` from `p`. */
const waitEvent = (p: NsProcess, events: string[], timeoutMs = 20_000): Promise<Line> => waitFor(p, events, timeoutMs, 20);


const SUITE = 'TCP hole punching (simultaneous open) through the NAT lab';
const PEER = 'test/punch-tcp-lab-peer.ts';

interface Case {
  natA: NatKind;
  natB: NatKind;
  expect: 'ok' | 'fail';
  /** How each side must have got its connection, where only one way is possible. */
  via?: [a: 'connect' | 'accept', b: 'connect' | 'accept'];
}

const CASES: Case[] = [
  { natA: 'full-cone', natB: 'full-cone', expect: 'ok' },
  { natA: 'restricted-cone', natB: 'port-restricted', expect: 'ok' },
  { natA: 'port-restricted', natB: 'port-restricted', expect: 'ok' },
  // The cone side's SYNs go to the symmetric side's STUN-learned port, which its NAT drops;
  // the symmetric side's SYN comes from a fresh port that no pending connect() of the cone
  // side matches, so the cone side's listener must accept it.
  { natA: 'symmetric', natB: 'full-cone', expect: 'ok', via: ['connect', 'accept'] },
  { natA: 'symmetric', natB: 'restricted-cone', expect: 'ok', via: ['connect', 'accept'] },
  { natA: 'symmetric', natB: 'port-restricted', expect: 'fail' },
  { natA: 'symmetric', natB: 'symmetric', expect: 'fail' },
];
const PUNCH_TIMEOUT = 4000;
/** Success must come this soon after the meeting time (ms). */
const FAST = 1000;

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  const procs: NsProcess[] = [];
  let dir = '';
  beforeAll(() => {
    requireRoot();
    dir = mkdtempSync(path.join(tmpdir(), 'p2pd-punch-tcp-lab-'));
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await labDown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(`${c.natA} × ${c.natB}: ${c.expect === 'ok' ? 'punches a TCP connection, then 64 KiB each way' : 'fails with TimeoutError in time, no socket left'}`, async () => {
      const lab = await labUp({ natA: c.natA, natB: c.natB, upnpA: false });
      try {
        const sub = mkdtempSync(path.join(dir, `${c.natA}-${c.natB}-`));
        const common = [`dir=${sub}`, `stun=${lab.env.NATLAB_STUN_HOST}:3478`, `timeout=${PUNCH_TIMEOUT}`, `bytes=${1 << 16}`];
        const a = lab.spawnNode('a1', PEER, ['role=a', ...common], { timeoutMs: 60_000 });
        const b = lab.spawnNode('b1', PEER, ['role=b', ...common], { timeoutMs: 60_000 });
        procs.push(a, b);
        const [ma, mb] = await Promise.all([waitEvent(a, ['mapped']), waitEvent(b, ['mapped'])]);
        expect(String(ma.mapped).startsWith(`${lab.env.NATLAB_RTRA_WAN4}:`)).toBe(true);
        expect(String(mb.mapped).startsWith(`${lab.env.NATLAB_RTRB_WAN4}:`)).toBe(true);
        // Signalling stand-in: each gets the other's endpoints, one nonce, one meeting time.
        const nonce = randomBytes(32).toString('hex');
        const startAt = Date.now() + 300;
        writeFileSync(path.join(sub, 'a.in.json'), JSON.stringify({ remotes: [mb.mapped, mb.local], nonce, startAt }));
        writeFileSync(path.join(sub, 'b.in.json'), JSON.stringify({ remotes: [ma.mapped, ma.local], nonce, startAt }));
        const [pa, pb] = await Promise.all([waitEvent(a, ['punched', 'punch-failed']), waitEvent(b, ['punched', 'punch-failed'])]);
        console.log(`[punch-tcp-lab] ${c.natA} × ${c.natB}: a ${JSON.stringify(pa)}\n[punch-tcp-lab] ${c.natA} × ${c.natB}: b ${JSON.stringify(pb)}`);
        if (c.expect === 'fail') {
          for (const p of [pa, pb]) {
            expect(p.event).toBe('punch-failed');
            expect(p.name).toBe('TimeoutError');
            expect(p.code).toBe('ERR_TIMEOUT');
            expect(Number(p.elapsed)).toBeGreaterThanOrEqual(PUNCH_TIMEOUT - 50);
            expect(Number(p.elapsed)).toBeLessThan(PUNCH_TIMEOUT + 1000);
            expect(p.openSockets).toBe(0);
          }
          return;
        }
        expect(pa.event, JSON.stringify(pa)).toBe('punched');
        expect(pb.event, JSON.stringify(pb)).toBe('punched');
        // exactly one side selected; each sees the other's router, never a private address
        expect(pa.controlling).not.toBe(pb.controlling);
        expect(String(pa.remote).startsWith(`${lab.env.NATLAB_RTRB_WAN4}:`)).toBe(true);
        expect(String(pb.remote).startsWith(`${lab.env.NATLAB_RTRA_WAN4}:`)).toBe(true);
        if (c.via) expect([pa.via, pb.via]).toEqual(c.via);
        expect(Number(pa.sinceStart)).toBeLessThan(FAST);
        expect(Number(pb.sinceStart)).toBeLessThan(FAST);
        const [da, db] = await Promise.all([waitEvent(a, ['done'], 20_000), waitEvent(b, ['done'], 20_000)]);
        expect(da.ok).toBe(true);
        expect(db.ok).toBe(true);
        const [xa, xb] = await Promise.all([a.exited, b.exited]);
        expect(xa.code, a.stderr()).toBe(0);
        expect(xb.code, b.stderr()).toBe(0);
      } finally {
        await Promise.all(procs.splice(0).map((p) => p.stop()));
        await lab.down();
      }
    }, 60_000);
  }
});
