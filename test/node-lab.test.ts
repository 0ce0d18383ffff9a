/**
 * The P2P node in the NAT lab. Nodes run in the namespaces through the CLI (`p2pd node`,
 * `p2pd ping`, JSON output) against the lab's mosquitto and coturn (STUN + TURN).
 * - Both routers symmetric: a1 ↔ a2 on one LAN over IPv4 and over IPv6 link-local; a1's
 *   port mapping (UPnP on rtrA) in its address and used by b1; a1 ↔ pub1 both ways (direct,
 *   reverse); a1 → b1 (symmetric × symmetric: no direct path, no punch) through TURN.
 * - Hole punching: full-cone × symmetric, port-restricted × port-restricted,
 *   symmetric × restricted-cone, over UDP (TCP punching off) and by default (TCP preferred).
 * - Keep-alive: a punched path outlives 8 s of silence with 3 s NAT binding timeouts.
 * Needs root and the lab packages; in CI a missing prerequisite fails the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAddress } from '../src/node/address.js';
import { execNodeInNs, labAvailable, labDown, labUp, requireRoot, type Lab, type NsProcess } from './helpers/lab.js';

const SUITE = 'P2P node in the NAT lab (LAN, link-local, public host, symmetric × symmetric via TURN)';
const CLI = 'src/cli/main.ts';

type Line = Record<string, unknown> & { event: string };
const lines = (t: string): Line[] => t.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  let lab: Lab;
  const procs: NsProcess[] = [];
  const addrs: Record<string, string> = {};

  const infra = (): string[] => {
    const e = lab.env;
    const stun = e.NATLAB_STUN_HOST as string;
    return ['--broker', `mqtt://${e.NATLAB_MQTT_HOST}:1883`, '--stun', stun, '--turn', `${e.NATLAB_TURN_USER}:${e.NATLAB_TURN_PASS}@${stun}:3478`];
  };

  // Distinct ports: a1 and a2 share rtrA, whose UPnP would give the second one another external port.
  const PORTS: Record<string, number> = { a1: 40101, a2: 40102, pub1: 40103, b1: 40104, b1NoTurn: 40105, a2Close: 40111 };
  /** The infrastructure arguments without the TURN server. */
  const noTurn = (): string[] => {
    const a = infra();
    const i = a.indexOf('--turn');
    return [...a.slice(0, i), ...a.slice(i + 2)];
  };

  async function startNode(host: string, opts: { key?: string; turn?: boolean } = {}): Promise<string> {
    const p = lab.spawnNode(host, CLI, ['node', '--json', '--port', String(PORTS[opts.key ?? host]), ...(opts.turn === false ? noTurn() : infra())], { timeoutMs: 300_000 });
    procs.push(p);
    await p.waitFor('"event":"address"', { timeoutMs: 20_000 });
    const addr = lines(p.stdout()).find((l) => l.event === 'address')?.addr as string;
    parseAddress(addr);
    return addr;
  }

  async function ping(from: string, to: string, extra: string[] = []): Promise<{ connected: Line; summary: Line; stderr: string }> {
    const r = await execNodeInNs(lab.ns(from), CLI, ['ping', to, '--json', '--count', '3', '--interval', '50', ...infra(), ...extra], { timeoutMs: 40_000 });
    const ls = lines(r.stdout);
    const connected = ls.find((l) => l.event === 'connected');
    const summary = ls.find((l) => l.event === 'summary');
    if (!connected || !summary) throw new Error(`ping from ${from} failed (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
    return { connected, summary, stderr: r.stderr };
  }

  beforeAll(async () => {
    requireRoot();
    lab = await labUp({ natA: 'symmetric', natB: 'symmetric' });
    const [a2, pub1, b1, a1] = await Promise.all(['a2', 'pub1', 'b1', 'a1'].map((h) => startNode(h)));
    Object.assign(addrs, { a2, pub1, b1, a1 });
  }, 90_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await labDown();
  });

  it('the address of a node behind the NAT carries its LAN, link-local, global v6 and external addresses and NAT kind', () => {
    const a = parseAddress(addrs.a2 as string);
    const eps = a.interfaces.flatMap((i) => i.endpoints);
    expect(eps).toContainEqual(expect.objectContaining({ kind: 'lan', host: lab.env.NATLAB_A2_IP4 }));
    expect(eps).toContainEqual(expect.objectContaining({ kind: 'link-local', host: lab.env.NATLAB_A2_LL6 }));
    expect(eps).toContainEqual(expect.objectContaining({ kind: 'global', host: lab.env.NATLAB_A2_IP6 }));
    expect(eps).toContainEqual(expect.objectContaining({ kind: 'external', host: lab.env.NATLAB_RTRA_WAN4 }));
    expect(a.interfaces.map((i) => i.nat)).toContain('SYMMETRIC');
    expect(a.signal).toEqual([{ type: 'mqtt', url: `mqtt://${lab.env.NATLAB_MQTT_HOST}:1883` }]);
  });

  it('the gateway (UPnP on rtrA) maps the TCP and UDP listen ports; the address is updated with it; b1 reaches a1 through it', async () => {
    const p = procs[procs.length - 1] as NsProcess; // a1's node
    await p.waitFor(/"event":"address".*\n.*"event":"address"/, { timeoutMs: 15_000 });
    // TCP and UDP are mapped one after the other: wait for the address carrying both.
    const mappedOf = (): { proto: string; host: string; port: number }[] => {
      const all = lines(p.stdout()).filter((l) => l.event === 'address');
      return parseAddress(all[all.length - 1]?.addr as string).interfaces.flatMap((i) => i.endpoints).filter((e) => e.kind === 'mapped');
    };
    for (let i = 0; i < 100 && mappedOf().length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    const all = lines(p.stdout()).filter((l) => l.event === 'address');
    const last = parseAddress(all[all.length - 1]?.addr as string);
    expect(last.interfaces.flatMap((i) => i.endpoints)).toContainEqual(expect.objectContaining({ kind: 'mapped', proto: 'tcp', host: lab.env.NATLAB_RTRA_WAN4, port: 40101 }));
    expect(last.interfaces.flatMap((i) => i.endpoints)).toContainEqual(expect.objectContaining({ kind: 'mapped', proto: 'udp', host: lab.env.NATLAB_RTRA_WAN4, port: 40101 }));
    addrs.a1 = last.text;
    const r = await ping('b1', addrs.a1, ['--strategy', 'direct']);
    expect(r.connected.path).toMatchObject({ strategy: 'direct', remote: `${lab.env.NATLAB_RTRA_WAN4}:40101` });
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
  });

  it('a node stopped with SIGTERM closes gracefully: its port mappings on the gateway are removed', async () => {
    const rules = async (): Promise<string> => (await lab.exec('rtrA', 'nft', ['list', 'chain', 'inet', 'natlab', 'prerouting_miniupnpd'])).stdout;
    const port = PORTS.a2Close as number;
    const p = lab.spawnNode('a2', CLI, ['node', '--json', '--port', String(port), ...infra()], { timeoutMs: 120_000 });
    const mapped = (): number =>
      lines(p.stdout())
        .filter((l) => l.event === 'address')
        .map((l) => parseAddress(l.addr as string).interfaces.flatMap((i) => i.endpoints).filter((e) => e.kind === 'mapped').length)
        .reduce((a, b) => Math.max(a, b), 0);
    for (let i = 0; i < 200 && mapped() < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(mapped()).toBe(2);
    expect(await rules()).toContain(`dport ${port}`);
    const r = await p.stop(8000);
    expect(r.signal ?? 'exited').not.toBe('SIGKILL');
    expect(await rules()).not.toContain(`dport ${port}`);
  });

  it('a1 → a2 on the LAN over IPv4', async () => {
    const r = await ping('a1', addrs.a2 as string, ['--via', 'lan']);
    expect(r.connected.path).toMatchObject({ strategy: 'direct', transport: 'tcp' });
    expect(String((r.connected.path as Line).remote)).toBe(`${lab.env.NATLAB_A2_IP4}:40102`);
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
  });

  it('a1 → a2 over IPv6 link-local', async () => {
    const r = await ping('a1', addrs.a2 as string, ['--via', 'link-local']);
    expect(r.connected.path).toMatchObject({ strategy: 'direct', transport: 'tcp' });
    expect(String((r.connected.path as Line).remote)).toMatch(new RegExp(`^\\[${lab.env.NATLAB_A2_LL6}%eth0\\]:40102$`));
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
  });

  it('a1 → pub1 directly; pub1 → a1 (behind the NAT) by reverse connect', async () => {
    const r = await ping('a1', addrs.pub1 as string);
    expect(r.connected.path).toMatchObject({ strategy: 'direct' });
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
    const back = await ping('pub1', addrs.a1 as string, ['--strategy', 'reverse']);
    expect(back.connected.path).toMatchObject({ strategy: 'reverse', transport: 'tcp' });
    expect(back.summary).toMatchObject({ received: 3, lost: 0 });
  });

  it('a1 → b1, symmetric × symmetric: through the TURN relay', async () => {
    // No port mapping on a1's side (rtrA has UPnP: b1 could otherwise connect back to it).
    const r = await ping('a1', addrs.b1 as string, ['--no-portmap']);
    expect(r.connected.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
    expect((r.connected.path as Line).ms as number).toBeLessThan(6000);
  });

  it('a1 → b1, symmetric × symmetric, TURN on one side only (either side): relayed through that side\'s allocation', async () => {
    const b1NoTurn = await startNode('b1', { key: 'b1NoTurn', turn: false });
    // a1 has the TURN server, b1 has none: b1 sends from a plain UDP socket to a1's relay.
    const r = await ping('a1', b1NoTurn, ['--no-portmap', '--strategy', 'relay']);
    expect(r.connected.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(r.summary).toMatchObject({ received: 3, lost: 0 });
    // a1 has none, b1 has one: a1 sends to b1's relay.
    const back = await execNodeInNs(lab.ns('a1'), CLI, ['ping', addrs.b1 as string, '--json', '--count', '3', '--interval', '50', '--no-portmap', '--strategy', 'relay', ...noTurn()], { timeoutMs: 40_000 });
    const ls = lines(back.stdout);
    expect(ls.find((l) => l.event === 'connected')?.path, back.stderr).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(ls.find((l) => l.event === 'summary')).toMatchObject({ received: 3, lost: 0 });
  });
});

/**
 * Hole punching pairs of the CI subset: a1 → b1 for NAT pairs where the lab's UDP punch
 * matrix succeeds. No port mappings (they would give a direct path), so the path must be
 * punched: reverse connect cannot pass the NATs, and the relay is left out.
 */
const PUNCH_PAIRS: [NatKindName, NatKindName][] = [
  ['full-cone', 'symmetric'],
  ['port-restricted', 'port-restricted'],
  ['symmetric', 'restricted-cone'],
];
type NatKindName = 'full-cone' | 'restricted-cone' | 'port-restricted' | 'symmetric';

for (const [natA, natB] of PUNCH_PAIRS) {
  const S = `P2P node in the NAT lab: a1 (${natA}) → b1 (${natB}) by hole punching`;
  describe.runIf(labAvailable(S))(S, () => {
    let lab: Lab;
    let peer: NsProcess | undefined;
    beforeAll(async () => {
      requireRoot();
      lab = await labUp({ natA, natB, upnpA: false });
    }, 60_000);
    afterAll(async () => {
      await peer?.stop();
      await labDown();
    });

    async function pingPeer(extra: string[]): Promise<Line[]> {
      const e = lab.env;
      const common = ['--json', '--no-portmap', '--broker', `mqtt://${e.NATLAB_MQTT_HOST}:1883`, '--stun', e.NATLAB_STUN_HOST as string];
      if (!peer) {
        peer = lab.spawnNode('b1', CLI, ['node', ...common], { timeoutMs: 120_000 });
        await peer.waitFor('"event":"address"', { timeoutMs: 20_000 });
      }
      const addr = lines(peer.stdout()).find((l) => l.event === 'address')?.addr as string;
      expect(parseAddress(addr).interfaces.map((i) => i.nat)).toContain(natB === 'full-cone' ? 'FULL_CONE' : natB === 'symmetric' ? 'SYMMETRIC' : natB === 'restricted-cone' ? 'RESTRICTED_CONE' : 'PORT_RESTRICTED_CONE');
      const r = await execNodeInNs(lab.ns('a1'), CLI, ['ping', addr, '--count', '3', '--interval', '50', ...common, ...extra], { timeoutMs: 40_000 });
      const ls = lines(r.stdout);
      if (!ls.some((l) => l.event === 'connected')) throw new Error(`no connection:\n${r.stdout}\n${r.stderr}`);
      return ls;
    }

    it('connects over a punched UDP path (TCP punching off); data both ways', async () => {
      const ls = await pingPeer(['--no-tcp-punch']);
      const connected = ls.find((l) => l.event === 'connected') as Line;
      expect(connected.path).toMatchObject({ strategy: 'punch', transport: 'udp' });
      expect((connected.path as Line).ms as number).toBeLessThan(2500);
      expect(ls.find((l) => l.event === 'summary')).toMatchObject({ received: 3, lost: 0 });
    });

    it('by default prefers a punched TCP connection (simultaneous open / listener); data both ways', async () => {
      const ls = await pingPeer([]);
      const connected = ls.find((l) => l.event === 'connected') as Line;
      expect(connected.path).toMatchObject({ strategy: 'punch', transport: 'tcp' });
      expect((connected.path as Line).ms as number).toBeLessThan(2500);
      expect(ls.find((l) => l.event === 'summary')).toMatchObject({ received: 3, lost: 0 });
    });
  });
}

/**
 * Keep-alives: the routers forget idle UDP bindings after 3 s (`--ct-udp-timeout 3`); with
 * 1 s keep-alives a punched path still carries data after 8 s of silence.
 */
{
  const S = 'P2P node in the NAT lab: a punched path survives idle time longer than the NAT binding timeout';
  describe.runIf(labAvailable(S))(S, () => {
    let lab: Lab;
    let peer: NsProcess | undefined;
    beforeAll(async () => {
      requireRoot();
      lab = await labUp({ natA: 'port-restricted', natB: 'port-restricted', upnpA: false, ctUdpTimeout: 3 });
    }, 60_000);
    afterAll(async () => {
      await peer?.stop();
      await labDown();
    });

    it('ping, 8 s idle, ping: both answered on the same path', async () => {
      const e = lab.env;
      const common = ['--json', '--no-portmap', '--no-tcp-punch', '--keepalive', '1000', '--broker', `mqtt://${e.NATLAB_MQTT_HOST}:1883`, '--stun', e.NATLAB_STUN_HOST as string];
      peer = lab.spawnNode('b1', CLI, ['node', ...common], { timeoutMs: 120_000 });
      await peer.waitFor('"event":"address"', { timeoutMs: 20_000 });
      const addr = lines(peer.stdout()).find((l) => l.event === 'address')?.addr as string;
      const r = await execNodeInNs(lab.ns('a1'), CLI, ['ping', addr, '--count', '2', '--interval', '8000', '--strategy', 'punch', ...common], { timeoutMs: 60_000 });
      const ls = lines(r.stdout);
      expect(ls.find((l) => l.event === 'connected')?.path).toMatchObject({ strategy: 'punch' });
      expect(ls.find((l) => l.event === 'summary'), r.stdout + r.stderr).toMatchObject({ received: 2, lost: 0 });
    }, 60_000);
  });
}
