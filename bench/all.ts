/**
 * `npm run bench`: every benchmark, one after another, each in its own processes.
 *   pipes (bench/run.ts) · secure pipes (bench/secure.ts) · STUN + NAT detection (bench/stun.ts)
 *   · TURN relay (bench/turn.ts, lab) · DHT testnets (bench/dht.ts) · swarm (bench/swarm.ts)
 *   · hole punching / reliable stream (bench/punch.ts)
 * The lab parts need root and the lab packages; without them those parts say so and are skipped.
 * BENCH_SUITES=pipes,secure,… runs a subset. Not a test: nothing here fails the build.
 *
 * The summary gives, per suite, how busy the machine was and the hypervisor's steal time (CPU
 * time the host gave to other guests: on a shared VM the main source of run-to-run drift), from
 * `/proc/stat` (Linux; left out elsewhere).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** The aggregate `cpu` line of /proc/stat: busy, steal and total jiffies, or undefined. */
function cpuTimes(): { busy: number; steal: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    if (f.length < 8 || f.some((x) => !Number.isFinite(x))) return undefined;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    const busy = user + nice + system + irq + softirq;
    return { busy, steal, total: busy + idle + iowait + steal };
  } catch {
    return undefined;
  }
}

/** "machine busy N %, host steal M %" between two samples, or '' without /proc/stat. */
function load(a: ReturnType<typeof cpuTimes>, b: ReturnType<typeof cpuTimes>): string {
  if (!a || !b || b.total <= a.total) return '';
  const t = b.total - a.total;
  return ` (machine busy ${((100 * (b.busy - a.busy)) / t).toFixed(0)} %, host steal ${((100 * (b.steal - a.steal)) / t).toFixed(1)} %)`;
}

const SUITES: { name: string; file: string; args?: string[]; needsRoot?: boolean }[] = [
  { name: 'pipes', file: 'bench/run.ts' },
  { name: 'secure', file: 'bench/secure.ts' },
  { name: 'stun', file: 'bench/stun.ts' },
  { name: 'turn', file: 'bench/turn.ts', needsRoot: true },
  { name: 'dht', file: 'bench/dht.ts', args: ['--expose-gc'] },
  { name: 'swarm', file: 'bench/swarm.ts' },
  { name: 'punch', file: 'bench/punch.ts' },
];

const only = process.env['BENCH_SUITES']?.split(',').filter(Boolean);
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const summary: string[] = [];
for (const s of SUITES) {
  if (only && !only.includes(s.name)) continue;
  if (!existsSync(s.file)) {
    summary.push(`${s.name}: missing (${s.file})`);
    continue;
  }
  if (s.needsRoot && !root) {
    summary.push(`${s.name}: skipped (needs root and the NAT lab)`);
    continue;
  }
  console.log(`\n######## ${s.name}: ${s.file}\n`);
  const t0 = Date.now();
  const c0 = cpuTimes();
  const nodeArgs = [...(s.args ?? []), '--import', 'tsx', s.file];
  const r = spawnSync(process.execPath, nodeArgs, { stdio: 'inherit' });
  summary.push(`${s.name}: ${r.status === 0 ? 'done' : `exit ${r.status ?? r.signal}`} in ${((Date.now() - t0) / 1000).toFixed(0)} s${load(c0, cpuTimes())}`);
}
console.log(`\n######## summary\n${summary.join('\n')}`);
