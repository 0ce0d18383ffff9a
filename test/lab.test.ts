/**
 * NAT lab smoke test: the lab comes up with a full-cone rtrA, a1 reaches pub1
 * through the NAT (ICMP and UDP, seen from pub1 as rtrA's WAN address), pub1
 * cannot reach a1's private address, and `down` leaves nothing behind.
 * Needs root + the lab packages (test/lab/install-deps.sh); fails in CI without them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAvailable, labDown, labExec, labUp, netnsExists, requireRoot, LAB_HOSTS, type Lab } from './helpers/lab.js';

const SUITE = 'NAT lab: a1 -> pub1 through a full-cone NAT';

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  let lab: Lab;

  beforeAll(async () => {
    requireRoot();
    lab = await labUp({ natA: 'full-cone', natB: 'symmetric' });
  });
  afterAll(async () => {
    await labDown();
  });

  it('describes itself through nat-lab env', () => {
    expect(lab.env.NATLAB_NAT_A).toBe('full-cone');
    expect(lab.env.NATLAB_NAT_B).toBe('symmetric');
    expect(lab.env.NATLAB_A1_IP4).toBe('192.168.1.11');
    expect(lab.env.NATLAB_RTRA_WAN4).toBe('198.51.100.10');
    expect(lab.env.NATLAB_PUB1_IP4).toBe('203.0.113.20');
    for (const h of LAB_HOSTS) expect(netnsExists(lab.ns(h))).toBe(true);
  });

  it('a1 pings pub1 through rtrA', async () => {
    const r = await labExec('a1', 'ping', ['-c1', '-W2', lab.env.NATLAB_PUB1_IP4!]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('a UDP datagram from a1 reaches pub1 with rtrA WAN address as source, and the reply comes back', async () => {
    const echo = lab.spawnNode('pub1', 'test/lab/fixtures/udp-echo.ts', ['0.0.0.0', '40000']);
    try {
      await echo.waitFor('"listening"', { timeoutMs: 15_000 });
      const r = await lab.exec('a1', process.execPath, ['--import', 'tsx', 'test/lab/fixtures/udp-probe.ts', lab.env.NATLAB_PUB1_IP4!, '40000', 'hello-nat', '5000', '41000'], { timeoutMs: 20_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; reply: { seen: { address: string; port: number }; data: string } };
      expect(out.ok).toBe(true);
      expect(out.reply.data).toBe('hello-nat');
      // pub1 saw the NAT's public address, not a1's private one; Linux keeps the port (EIM)
      expect(out.reply.seen.address).toBe(lab.env.NATLAB_RTRA_WAN4);
      expect(out.reply.seen.port).toBe(41000);
      await echo.waitFor(/"from":\{"address":"198\.51\.100\.10"/);
    } finally {
      await echo.stop();
    }
  });

  it('pub1 cannot reach a1 private address (RFC 1918 is not routed)', async () => {
    const r = await labExec('pub1', 'ping', ['-c1', '-W1', lab.env.NATLAB_A1_IP4!]);
    expect(r.code).not.toBe(0);
  });

  it('down removes every namespace', async () => {
    const names = LAB_HOSTS.map((h) => lab.ns(h));
    await labDown(lab);
    for (const n of names) expect(netnsExists(n)).toBe(false);
  });
});
