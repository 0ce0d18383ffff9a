/**
 * Two network namespaces joined by one veth pair that carries nothing but
 * IPv6 link-local addresses: the smallest setup for link-local pipe tests
 * (`fe80::...%ifname`). Needs root (see {@link labAvailable} / {@link requireRoot}
 * in ./lab.ts with {@link NETNS_NEEDS}).
 *
 * ```ts
 * describe.runIf(labAvailable('link-local pipes', NETNS_NEEDS))('link-local pipes', () => {
 *   let pair: LinkLocalPair;
 *   beforeAll(async () => { requireRoot(NETNS_NEEDS); pair = await createLinkLocalPair(); });
 *   afterAll(() => pair?.teardown());
 *   it('...', async () => { await labExec(pair.a.ns, 'ping', ['-6', '-c1', pair.b.scoped]); });
 * });
 * ```
 * @module
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { pidAlive, requireRoot, type LabNeeds } from './lab.js';

/** What {@link createLinkLocalPair} needs: root and iproute2. */
export const NETNS_NEEDS: LabNeeds = { services: false, binaries: ['ip'] };

/** One end of the pair. */
export interface LinkLocalEnd {
  /** Namespace name, unique per process and pair (e.g. `p2pdll1234n0a`). */
  ns: string;
  /** Interface name inside `ns`. */
  ifname: string;
  /** Its link-local address, e.g. `fe80::ff:fe00:1`. */
  ll: string;
  /** `ll%ifname`: the address with its zone, as node:dgram / node:net take it. */
  scoped: string;
  mac: string;
}

export interface LinkLocalPair {
  a: LinkLocalEnd;
  b: LinkLocalEnd;
  /** Kills every process inside both namespaces and deletes them (and the veth pair). Idempotent. */
  teardown(): Promise<void>;
}

export interface LinkLocalOptions {
  /** Interface names (default `ll0` on both sides: the pair lives in two namespaces). */
  ifnameA?: string;
  ifnameB?: string;
  /** Milliseconds to wait until both addresses are usable. Default 5000. */
  timeoutMs?: number;
}

let counter = 0;
const live = new Set<string>();
const NS_RE = /^p2pdll(\d+)n\d+[ab]$/;

function ip(args: string[], allowFail = false): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 && !allowFail) {
    throw new Error(`ip ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`.trim());
  }
  return r.stdout ?? '';
}

function sysctl(ns: string, kv: string[]): void {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', ...kv], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`sysctl in ${ns} failed: ${r.stderr}`);
}

function nsPids(ns: string): number[] {
  return ip(['netns', 'pids', ns], true)
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

async function deleteNamespaces(names: string[]): Promise<void> {
  const present = new Set(ip(['netns', 'list'], true).split('\n').map((l) => l.split(' ')[0]));
  const todo = names.filter((n) => present.has(n));
  // SIGTERM everything inside, SIGKILL after 2 s (by PID only)
  for (let i = 0; i < 40; i++) {
    const pids = todo.flatMap(nsPids);
    if (pids.length === 0) break;
    const sig = i === 0 ? 'SIGTERM' : i === 20 ? 'SIGKILL' : undefined;
    if (sig) for (const p of pids) try { process.kill(p, sig); } catch { /* gone */ }
    await sleep(100);
  }
  for (const n of todo) ip(['netns', 'del', n], true);
  for (const n of names) live.delete(n);
}

/** Deletes pairs left behind by test processes that died (names p2pdll<pid>n<k>a|b, pid gone). */
export async function sweepStalePairs(): Promise<string[]> {
  const stale = ip(['netns', 'list'], true)
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => {
      const m = NS_RE.exec(n);
      return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
    });
  if (stale.length) await deleteNamespaces(stale);
  return stale;
}

function linkLocal(ns: string, ifname: string): { ll?: string; tentative: boolean } {
  const out = ip(['-n', ns, '-j', '-6', 'addr', 'show', 'dev', ifname, 'scope', 'link'], true);
  try {
    const j = JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ local?: string; tentative?: boolean; dadfailed?: boolean }> }>;
    const a = j[0]?.addr_info?.find((x) => x.local?.startsWith('fe80:'));
    return { ll: a?.local, tentative: Boolean(a?.tentative || a?.dadfailed) };
  } catch {
    return { tentative: true };
  }
}

/**
 * Creates namespaces `<p>a` and `<p>b` joined by a veth pair (created inside
 * the namespaces: nothing touches the root namespace), with fixed MACs and
 * DAD disabled, brings both ends and `lo` up, and waits until each end has a
 * usable (non-tentative) link-local address. No IPv4 and no global IPv6
 * addresses are configured.
 */
export async function createLinkLocalPair(opts: LinkLocalOptions = {}): Promise<LinkLocalPair> {
  requireRoot(NETNS_NEEDS);
  await sweepStalePairs();
  const base = `p2pdll${process.pid}n${counter++}`;
  const k = counter & 0xff;
  const a = { ns: `${base}a`, ifname: opts.ifnameA ?? 'll0', mac: `02:00:00:00:${k.toString(16).padStart(2, '0')}:0a` };
  const b = { ns: `${base}b`, ifname: opts.ifnameB ?? 'll0', mac: `02:00:00:00:${k.toString(16).padStart(2, '0')}:0b` };
  const names = [a.ns, b.ns];
  const teardown = (): Promise<void> => deleteNamespaces(names);
  try {
    for (const end of [a, b]) {
      ip(['netns', 'add', end.ns]);
      live.add(end.ns);
      // before any interface exists, so the defaults apply to the veth ends
      sysctl(end.ns, [
        'net.ipv6.conf.all.accept_dad=0',
        'net.ipv6.conf.default.accept_dad=0',
        'net.ipv6.conf.all.accept_ra=0',
        'net.ipv6.conf.default.accept_ra=0',
        'net.ipv6.conf.default.addr_gen_mode=0',
      ]);
      ip(['-n', end.ns, 'link', 'set', 'lo', 'up']);
    }
    ip(['-n', a.ns, 'link', 'add', a.ifname, 'address', a.mac, 'type', 'veth', 'peer', 'name', b.ifname, 'address', b.mac, 'netns', b.ns]);
    ip(['-n', a.ns, 'link', 'set', a.ifname, 'up']);
    ip(['-n', b.ns, 'link', 'set', b.ifname, 'up']);
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (;;) {
      const la = linkLocal(a.ns, a.ifname);
      const lb = linkLocal(b.ns, b.ifname);
      if (la.ll && lb.ll && !la.tentative && !lb.tentative) {
        return {
          a: { ...a, ll: la.ll, scoped: `${la.ll}%${a.ifname}` },
          b: { ...b, ll: lb.ll, scoped: `${lb.ll}%${b.ifname}` },
          teardown,
        };
      }
      if (Date.now() > deadline) {
        throw new Error(`link-local addresses not ready after ${opts.timeoutMs ?? 5000} ms: a=${JSON.stringify(la)} b=${JSON.stringify(lb)}`);
      }
      await sleep(20);
    }
  } catch (e) {
    await teardown();
    throw e;
  }
}

// Last resort when a worker exits without its afterAll.
process.once('exit', () => {
  for (const n of live) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: 5000 });
});
