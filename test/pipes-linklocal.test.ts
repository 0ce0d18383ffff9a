/**
 * IPv6 link-local pipes end to end: two network namespaces joined by a veth pair that carries
 * only fe80:: addresses. A p2pd server binds `fe80::…%if` in one namespace; a p2pd client in the
 * other binds by interface name and connects to `[fe80::…%if]:port`, for TCP and UDP.
 * Needs root (fails in CI without it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execNodeInNs, labAvailable, requireRoot, spawnNodeInNs, type NsProcess } from './helpers/lab.js';
import { createLinkLocalPair, NETNS_NEEDS, type LinkLocalPair } from './helpers/netns.js';

const SUITE = 'pipes: IPv6 link-local between namespaces';
const PEER = 'test/fixtures/ll-pipe-peer.ts';

describe.runIf(labAvailable(SUITE, NETNS_NEEDS))(SUITE, () => {
  let pair: LinkLocalPair | undefined;
  const servers: NsProcess[] = [];

  beforeAll(async () => {
    requireRoot(NETNS_NEEDS);
    pair = await createLinkLocalPair();
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await pair?.teardown();
  });

  it.each(['tcp', 'udp'] as const)('%s: bind a scoped fe80 address, connect to [fe80::…(zone)]:port, from carries the scope', async (proto) => {
    const p = pair!;
    const port = proto === 'tcp' ? 41001 : 41002;
    const server = spawnNodeInNs(p.b.ns, PEER, ['server', proto, p.b.scoped, String(port)]);
    servers.push(server);
    const line = await server.waitFor(/\{"listening".*\}/, { timeoutMs: 20_000 });
    const listening = JSON.parse(line).listening;
    expect(listening).toMatchObject({ host: p.b.ll, port, family: 6, scopeId: p.b.ifname });

    const r = await execNodeInNs(p.a.ns, PEER, ['client', proto, `[${p.b.scoped}]:${port}`, p.a.ifname], { timeoutMs: 20_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    // the client bound its interface's link-local address and reports scopes
    expect(out.local).toMatchObject({ host: p.a.ll, family: 6, scopeId: p.a.ifname });
    expect(out.remote).toMatchObject({ host: p.b.ll, port, scopeId: p.b.ifname });
    expect(out.replyFrom).toMatchObject({ host: p.b.ll, port, family: 6, scopeId: out.remote.scopeId });
    // the server saw the client's link-local address with its own interface as the zone
    expect(out.reply.data).toBe('hello link-local');
    expect(out.reply.from).toMatchObject({ host: p.a.ll, port: out.local.port, family: 6, scopeId: p.b.ifname });
    expect(out.to).toBe(`[${p.b.scoped}]:${port}`);
  });
});
