/**
 * Hole punching in the NAT lab: a1 (behind rtrA) and b1 (behind rtrB) each run
 * test/punch-lab-peer.ts, learn their mapped address from the lab's coturn over the UDP pipe
 * they punch from, get each other's candidates (mapped + LAN address, the latter unreachable
 * across sites) through files written by this test (the signalling stand-in), punch at an
 * agreed time, then open a reliable stream on the punched path and exchange 1 MiB both ways
 * (with Noise on top for one pair). Pairs that can punch must; symmetric × symmetric must
 * fail with a PunchTimeoutError within its timeout. Needs root + the lab packages; in CI a
 * missing prerequisite fails the suite.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lines, waitEvent as waitFor, type Line } from './helpers/json-lines.js';
import { labAvailable, labDown, labUp, requireRoot, type NatKind, type NsProcess } from './helpers/lab.js';

/** Waits for one of `events` from `p`. */
const waitEvent = (p: NsProcess, events: string[], timeoutMs = 20_000): Promise<Line> => waitFor(p, events, timeoutMs, 50);


const SUITE = 'UDP hole punching + reliable streams through the NAT lab';
const PEER = 'test/punch-lab-peer.ts';

interface Case {
  natA: NatKind;
  natB: NatKind;
  expect: 'ok' | 'fail';
  secure?: boolean;
}

const CASES: Case[] = [
  { natA: 'port-restricted', natB: 'port-restricted', expect: 'ok', secure: true },
  { natA: 'full-cone', natB: 'symmetric', expect: 'ok' },
  { natA: 'symmetric', natB: 'restricted-cone', expect: 'ok' },
  { natA: 'symmetric', natB: 'symmetric', expect: 'fail' },
];
const PUNCH_TIMEOUT = 6000;

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  const procs: NsProcess[] = [];
  let dir = '';
  beforeAll(() => {
    requireRoot();
    dir = mkdtempSync(path.join(tmpdir(), 'p2pd-punch-lab-'));
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await labDown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(`${c.natA} × ${c.natB}: ${c.expect === 'ok' ? `punches, then 1 MiB each way over a reliable stream${c.secure ? ' + Noise' : ''}` : 'fails with PunchTimeoutError in time'}`, async () => {
      const lab = await labUp({ natA: c.natA, natB: c.natB, upnpA: false });
      try {
        const sub = mkdtempSync(path.join(dir, `${c.natA}-${c.natB}-`));
        const common = [`dir=${sub}`, `stun=${lab.env.NATLAB_STUN_HOST}:3478`, `timeout=${PUNCH_TIMEOUT}`, `bytes=${1 << 20}`, ...(c.secure ? ['secure=1'] : [])];
        const a = lab.spawnNode('a1', PEER, ['role=a', ...common], { timeoutMs: 60_000 });
        const b = lab.spawnNode('b1', PEER, ['role=b', ...common], { timeoutMs: 60_000 });
        procs.push(a, b);
        const [ma, mb] = await Promise.all([waitEvent(a, ['mapped']), waitEvent(b, ['mapped'])]);
        expect(String(ma.mapped).startsWith(`${lab.env.NATLAB_RTRA_WAN4}:`)).toBe(true);
        expect(String(mb.mapped).startsWith(`${lab.env.NATLAB_RTRB_WAN4}:`)).toBe(true);
        // Signalling stand-in: each gets the other's candidates, one nonce, one meeting time.
        const nonce = randomBytes(32).toString('hex');
        const startAt = Date.now() + 300;
        writeFileSync(path.join(sub, 'a.in.json'), JSON.stringify({ candidates: [mb.mapped, mb.local], nonce, startAt }));
        writeFileSync(path.join(sub, 'b.in.json'), JSON.stringify({ candidates: [ma.mapped, ma.local], nonce, startAt }));
        const [pa, pb] = await Promise.all([waitEvent(a, ['punched', 'punch-failed']), waitEvent(b, ['punched', 'punch-failed'])]);
        console.log(`[punch-lab] ${c.natA} × ${c.natB}: a ${JSON.stringify(pa)}\n[punch-lab] ${c.natA} × ${c.natB}: b ${JSON.stringify(pb)}`);
        if (c.expect === 'fail') {
          for (const p of [pa, pb]) {
            expect(p.event).toBe('punch-failed');
            expect(p.name).toBe('PunchTimeoutError');
            expect(p.code).toBe('ERR_TIMEOUT');
            expect(Number(p.elapsed)).toBeLessThan(PUNCH_TIMEOUT + 1000);
          }
          return;
        }
        expect(pa.event, JSON.stringify(pa)).toBe('punched');
        expect(pb.event, JSON.stringify(pb)).toBe('punched');
        expect(pa.controlling).not.toBe(pb.controlling);
        // each side's remote is the other's router, never a private LAN address
        expect(String(pa.remote).startsWith(`${lab.env.NATLAB_RTRB_WAN4}:`)).toBe(true);
        expect(String(pb.remote).startsWith(`${lab.env.NATLAB_RTRA_WAN4}:`)).toBe(true);
        const [da, db] = await Promise.all([waitEvent(a, ['done'], 40_000), waitEvent(b, ['done'], 40_000)]);
        console.log(`[punch-lab] ${c.natA} × ${c.natB}: transfer a ${da.ms} ms, b ${db.ms} ms`);
        expect(da.ok).toBe(true);
        expect(db.ok).toBe(true);
        if (c.secure) {
          expect(lines(a.stdout()).some((l) => l.event === 'secured')).toBe(true);
          expect(lines(b.stdout()).some((l) => l.event === 'secured')).toBe(true);
        }
        const [xa, xb] = await Promise.all([a.exited, b.exited]);
        expect(xa.code, a.stderr()).toBe(0);
        expect(xb.code, b.stderr()).toBe(0);
      } finally {
        await Promise.all(procs.splice(0).map((p) => p.stop()));
        await lab.down();
      }
    }, 90_000);
  }
});
