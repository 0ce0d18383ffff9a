/**
 * Two namespaces joined by a veth pair carrying only IPv6 link-local addresses:
 * ping6 and a node UDP exchange across fe80::%ifname, then a teardown that
 * leaves nothing behind. Needs root; fails in CI without it.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execNodeInNs, labAvailable, labExec, netnsExists, requireRoot, spawnNodeInNs } from './helpers/lab.js';
import { createLinkLocalPair, NETNS_NEEDS, type LinkLocalPair } from './helpers/netns.js';

/** Gone, or a zombie waiting for a lazy PID 1 to reap it (no namespace, no resources). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

const SUITE = 'netns: IPv6 link-local veth pair';

describe.runIf(labAvailable(SUITE, NETNS_NEEDS))(SUITE, () => {
  let pair: LinkLocalPair | undefined;

  beforeAll(async () => {
    requireRoot(NETNS_NEEDS);
    pair = await createLinkLocalPair();
  });
  afterAll(async () => {
    await pair?.teardown();
  });

  it('has only link-local addresses on the veth ends', async () => {
    const p = pair!;
    expect(p.a.ns).not.toBe(p.b.ns);
    expect(p.a.ll).toMatch(/^fe80:/);
    expect(p.b.ll).toMatch(/^fe80:/);
    expect(p.a.scoped).toBe(`${p.a.ll}%${p.a.ifname}`);
    const r = await labExec(p.a.ns, 'ip', ['-br', 'addr', 'show', 'dev', p.a.ifname]);
    expect(r.code).toBe(0);
    const addrs = r.stdout.trim().split(/\s+/).slice(2);
    expect(addrs).toEqual([`${p.a.ll}/64`]);
  });

  it('ping6 crosses the pair in both directions', async () => {
    const p = pair!;
    const ab = await labExec(p.a.ns, 'ping', ['-6', '-c1', '-W2', p.b.scoped]);
    expect(ab.code, ab.stdout + ab.stderr).toBe(0);
    const ba = await labExec(p.b.ns, 'ping', ['-6', '-c1', '-W2', p.a.scoped]);
    expect(ba.code, ba.stdout + ba.stderr).toBe(0);
  });

  it('node UDP over fe80::%ifname', async () => {
    const p = pair!;
    const echo = spawnNodeInNs(p.b.ns, 'test/lab/fixtures/udp-echo.ts', [`${p.b.ll}%${p.b.ifname}`, '40001']);
    try {
      await echo.waitFor('"listening"', { timeoutMs: 15_000 });
      const r = await execNodeInNs(p.a.ns, 'test/lab/fixtures/udp-probe.ts', [p.b.scoped, '40001', 'hello-ll', '5000']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; reply: { seen: { address: string }; data: string } };
      expect(out.reply.data).toBe('hello-ll');
      // the echo saw a's link-local address (node prints it with its zone)
      expect(out.reply.seen.address.split('%')[0]).toBe(p.a.ll);
    } finally {
      await echo.stop();
    }
  });

  it('teardown leaves nothing behind and is idempotent', async () => {
    const p = pair!;
    const sleeper = await labExec(p.a.ns, 'sh', ['-c', 'sleep 60 >/dev/null 2>&1 & echo $!']);
    const pid = Number(sleeper.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    await p.teardown();
    await p.teardown();
    expect(netnsExists(p.a.ns)).toBe(false);
    expect(netnsExists(p.b.ns)).toBe(false);
    expect(processGone(pid)).toBe(true);
  });
});
