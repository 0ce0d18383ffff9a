/**
 * Port mapping against the NAT lab's miniupnpd (rtrA: UPnP IGD + NAT-PMP + PCP, WAN address
 * in a documentation range). For each method, a1 runs a small p2pd script that maps a UDP
 * port with `mapPort()` (default gateway, default interface); pub1 sends to the external
 * port and a1 must receive it; after the first lifetime (renewals) it still must; after
 * `close()` it must not. Every probe uses a fresh source port (a new conntrack flow).
 * Root-only: skipped with a notice outside CI, failed in CI (see test/helpers/lab.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, labAvailable, labUp, requireRoot, type Lab, type NsProcess } from './helpers/lab.js';

const SUITE = 'port mapping on miniupnpd (NAT lab)';
const src = (p: string): string => JSON.stringify(path.join(REPO_ROOT, p));

/** The p2pd script a1 runs: maps, prints JSON lines, SIGUSR1 = close() the mapping. */
const AGENT = `
import { mapPort } from ${src('src/nat/portmap/index.ts')};
import { pipeOpen } from ${src('src/pipes/index.ts')};
const cfg = JSON.parse(process.argv[2]);
const out = (o) => console.log(JSON.stringify(o));
const pipe = await pipeOpen('udp', undefined, {
  bind: cfg.family === 6 ? { host: '::', port: cfg.internalPort } : { host: '0.0.0.0', port: cfg.internalPort },
  family: cfg.family ?? 4,
  onMessage: (m) => out({ recv: m.data.toString(), from: m.from.host }),
});
let m;
try {
  m = await mapPort({ ...cfg, protocol: 'udp',
    onRenew: (x) => out({ renewed: x.toJSON() }), onRenewFailed: (e) => out({ renewFailed: e.message }), onExpire: () => out({ expired: true }) });
} catch (e) {
  out({ failed: String(e && e.message) });
  await pipe.close();
  process.exit(2);
}
out({ mapped: m.toJSON() });
process.on('SIGUSR1', () => m.close().then(() => out({ closed: true }), (e) => out({ closeFailed: String(e) })));
process.on('SIGTERM', () => { m.close().catch(() => {}).finally(() => pipe.close().then(() => process.exit(0))); });
setInterval(() => {}, 1 << 30);
`;

/** pub1 side: a fresh socket sends PAYLOAD three times to HOST PORT, then exits. */
const PROBE = `
const [host, port, payload] = process.argv.slice(1);
const s = require('node:dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
let n = 0;
const t = setInterval(() => { s.send(payload, Number(port), host); if (++n === 3) { clearInterval(t); setTimeout(() => s.close(), 50); } }, 100);
`;

interface Mapped {
  method: string;
  externalAddress?: string;
  externalPort: number;
  internalAddress: string;
  lifetime: number;
  expiresAt?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  let lab: Lab;
  let dir: string;
  let agentFile: string;

  beforeAll(async () => {
    requireRoot();
    dir = mkdtempSync(path.join(tmpdir(), 'p2pd-portmap-'));
    agentFile = path.join(dir, 'agent.mts'); // .mts: ESM with top-level await wherever it lives
    writeFileSync(agentFile, AGENT);
    lab = await labUp({ natA: 'port-restricted' });
  }, 90_000);

  afterAll(async () => {
    await lab?.down();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  const startAgent = async (host: string, cfg: Record<string, unknown>): Promise<{ agent: NsProcess; mapped: Mapped }> => {
    const agent = lab.spawnNode(host, agentFile, [JSON.stringify(cfg)], { timeoutMs: 300_000 });
    const line = await agent.waitFor(/\{"(mapped|failed)":.*\}\n/, { timeoutMs: 30_000 });
    const obj = JSON.parse(line) as { mapped?: Mapped; failed?: string };
    if (!obj.mapped) throw new Error(`${host} could not map: ${obj.failed}\n${agent.stderr()}`);
    return { agent, mapped: obj.mapped };
  };

  const probe = async (to: string, port: number, payload: string): Promise<void> => {
    const r = await lab.exec('pub1', process.execPath, ['-e', PROBE, to, String(port), payload]);
    expect(r.code, r.stderr).toBe(0);
  };
  const arrives = async (agent: NsProcess, to: string, port: number, payload: string): Promise<void> => {
    await probe(to, port, payload);
    await agent.waitFor(`"recv":"${payload}"`, { timeoutMs: 3_000 });
  };
  const blocked = async (agent: NsProcess, to: string, port: number, payload: string): Promise<void> => {
    await probe(to, port, payload);
    await sleep(1_500);
    expect(agent.stdout()).not.toContain(`"recv":"${payload}"`);
  };
  const rules = async (chain: 'prerouting_miniupnpd' | 'miniupnpd'): Promise<string> =>
    (await lab.exec('rtrA', 'nft', ['list', 'chain', 'inet', 'natlab', chain])).stdout;

  // miniupnpd: NAT-PMP grants what is asked, PCP at least min_lifetime (120 s), UPnP the lease asked.
  const CASES = [
    { method: 'upnp', internalPort: 7001, externalPort: 8001, lifetime: 20 },
    { method: 'nat-pmp', internalPort: 7002, externalPort: 8002, lifetime: 6 },
    { method: 'pcp', internalPort: 7003, externalPort: 8003, lifetime: 30 },
  ] as const;

  describe.concurrent('each method: map, reach, renew past the first lifetime, close', () => {
    for (const c of CASES) {
      it(c.method, async () => {
        const wan = lab.env.NATLAB_RTRA_WAN4 as string;
        const { agent, mapped } = await startAgent('a1', { ...c, methods: [c.method] });
        try {
          expect(mapped).toMatchObject({ method: c.method, externalAddress: wan, externalPort: c.externalPort, internalAddress: lab.env.NATLAB_A1_IP4 });
          expect(await rules('prerouting_miniupnpd')).toContain(`dport ${c.externalPort} dnat ip to ${lab.env.NATLAB_A1_IP4}:${c.internalPort}`);
          await arrives(agent, wan, c.externalPort, `first-${c.method}`);

          // past the first lifetime: only renewals keep it
          const until = Date.parse(mapped.expiresAt as string) + 3_000;
          await sleep(Math.max(0, until - Date.now()));
          expect(agent.stdout()).toContain('"renewed"');
          expect(agent.stdout()).not.toContain('"expired"');
          await arrives(agent, wan, c.externalPort, `renewed-${c.method}`);

          agent.child.kill('SIGUSR1');
          await agent.waitFor('"closed":true', { timeoutMs: 10_000 });
          expect(await rules('prerouting_miniupnpd')).not.toContain(`dport ${c.externalPort} `);
          await blocked(agent, wan, c.externalPort, `closed-${c.method}`);
          expect(agent.stderr()).toBe('');
        } finally {
          await agent.stop();
        }
      }, 240_000);
    }

    it('control: without renewal the NAT-PMP mapping dies after its lifetime', async () => {
      const wan = lab.env.NATLAB_RTRA_WAN4 as string;
      const { agent, mapped } = await startAgent('a1', { method: 'nat-pmp', methods: ['nat-pmp'], internalPort: 7004, externalPort: 8004, lifetime: 4, autoRenew: false });
      try {
        await arrives(agent, wan, 8004, 'control-first');
        await sleep(Math.max(0, Date.parse(mapped.expiresAt as string) + 3_000 - Date.now()));
        await agent.waitFor('"expired":true', { timeoutMs: 1_000 });
        await blocked(agent, wan, 8004, 'control-late');
      } finally {
        await agent.stop();
      }
    }, 60_000);

    it('UPnP IPv6 pinhole (WANIPv6FirewallControl): reach, renew, close', async () => {
      const me = lab.env.NATLAB_A1_IP6 as string;
      const { agent, mapped } = await startAgent('a1', { methods: ['upnp'], family: 6, internalPort: 7005, lifetime: 20 });
      try {
        expect(mapped).toMatchObject({ method: 'upnp', externalAddress: me, externalPort: 7005, internalAddress: me });
        await arrives(agent, me, 7005, 'pinhole-first');
        await sleep(Math.max(0, Date.parse(mapped.expiresAt as string) + 3_000 - Date.now()));
        expect(agent.stdout()).toContain('"renewed"');
        await arrives(agent, me, 7005, 'pinhole-renewed');
        agent.child.kill('SIGUSR1');
        await agent.waitFor('"closed":true', { timeoutMs: 10_000 });
        await blocked(agent, me, 7005, 'pinhole-closed');
      } finally {
        await agent.stop();
      }
    }, 120_000);
  });

  it('examples/map-port.ts: 8888 taken by a2, so a1 gets 8889; deleted at the end', async () => {
    const { agent: a2 } = await startAgent('a2', { methods: ['upnp'], internalPort: 7777, externalPort: 8888, lifetime: 600 });
    try {
      const ex = lab.spawnNode('a1', 'examples/map-port.ts', ['--hold', '3'], { timeoutMs: 120_000 });
      await ex.waitFor(/mapped udp .* via upnp/, { timeoutMs: 60_000 });
      expect(await rules('prerouting_miniupnpd')).toContain(`dport 8889 dnat ip to ${lab.env.NATLAB_A1_IP4}:7777`);
      const done = await ex.exited;
      expect(done.code, done.stderr).toBe(0);
      const result = JSON.parse(done.stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>;
      expect(result).toMatchObject({ tried: [8888, 8889], method: 'upnp', externalPort: 8889, externalAddress: lab.env.NATLAB_RTRA_WAN4, deleted: true });
      const after = await rules('prerouting_miniupnpd');
      expect(after).not.toContain('dport 8889 ');
      expect(after).toContain(`dport 8888 dnat ip to ${lab.env.NATLAB_A2_IP4}:7777`); // a2's is untouched
    } finally {
      await a2.stop();
    }
  }, 120_000);
});
