/**
 * `npx tsx bench/stun.ts`: STUN benchmarks.
 *
 * 1. Loopback round trips, in the same run: a STUN Binding (p2pd's `StunClient.binding()`
 *    against p2pd's `StunServer`) versus a raw UDP echo (`node:dgram` client and server, the
 *    same payload size). The servers run in a child process, the clients here; each mode runs
 *    `N` sequential round trips per round, modes interleaved over `RUNS` rounds (rotating their
 *    order) after a warm-up round. Reported: median RTT per mode and the median of the
 *    per-round ratios STUN / raw echo (target ≤ 1.3×). A third mode, a raw dgram client sending
 *    pre-encoded requests to p2pd's server, separates server cost from client cost.
 * 2. NAT detection wall time per NAT kind in the lab (root + lab packages only; skipped
 *    otherwise, or with `BENCH_LAB=0`): `p2pd nat --json` inside a1/b1 for each of the six
 *    router kinds, coturn (RFC 5780) and stund (RFC 3489); the time inside detectNat and the
 *    whole command (node + tsx start-up included).
 *
 * The library is compiled with tsc into a temporary directory first (as users run it);
 * `BENCH_TSX=1` measures the TypeScript sources through tsx instead. `BENCH_RUNS`, `BENCH_N`
 * tune the loopback part. Results also go to bench/results/stun.json.
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env['BENCH_RUNS'] ?? 7);
const N = Number(process.env['BENCH_N'] ?? 4000);
const TSX = process.env['BENCH_TSX'] === '1';

type Lib = typeof import('../src/nat/index.js');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Compiles src/nat/index.ts with tsc into a temp dir; returns the module path and a remover. */
function compile(): { lib: string; remove(): void } {
  if (TSX) return { lib: join(ROOT, 'src/nat/index.ts'), remove: () => undefined };
  const dir = mkdtempSync(join(os.tmpdir(), 'p2pd-bench-stun-'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  const cfg = join(dir, 'tsconfig.json');
  writeFileSync(cfg, JSON.stringify({
    extends: join(ROOT, 'tsconfig.json'),
    compilerOptions: { noEmit: false, declaration: false, sourceMap: false, skipLibCheck: true, rootDir: ROOT, outDir: join(dir, 'out'), typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'] },
    files: [join(ROOT, 'src/nat/index.ts')],
    include: [],
  }));
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', cfg], { encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(`tsc reported problems (code still emitted):\n${(r.stdout + r.stderr).slice(0, 800)}\n`);
  return { lib: join(dir, 'out/src/nat/index.js'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function loadLib(path: string): Promise<Lib> {
  return (await import(pathToFileURL(path).href)) as Lib;
}

// ------------------------------------------------------------------------ server role --

async function serverRole(libPath: string): Promise<void> {
  const lib = await loadLib(libPath);
  const stun = await lib.startStunServer({ addresses: ['127.0.0.1'], ports: [0], rateLimit: false });
  const echo = createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  process.stdout.write(`${JSON.stringify({ stun: stun.primary.port, echo: echo.address().port })}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    echo.close();
    void stun.close().then(() => process.exit(0));
  });
}

// ------------------------------------------------------------------------ client modes --

type Mode = 'udp-echo' | 'stun' | 'stun-raw-client';

async function rawRtts(sock: UdpSocket, port: number, payload: () => Buffer, n: number): Promise<number[]> {
  const out: number[] = [];
  let resolve: (() => void) | undefined;
  const on = (): void => resolve?.();
  sock.on('message', on);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const got = new Promise<void>((r) => (resolve = r));
    sock.send(payload(), port, '127.0.0.1');
    await got;
    out.push(performance.now() - t0);
  }
  sock.off('message', on);
  return out;
}

async function loopback(lib: Lib, ports: { stun: number; echo: number }): Promise<Record<string, unknown>> {
  const client = await lib.StunClient.open({ server: { host: '127.0.0.1', port: ports.stun } });
  const raw = createSocket('udp4');
  raw.bind(0, '127.0.0.1');
  await once(raw, 'listening');
  // Same request as the client sends (SOFTWARE + FINGERPRINT), for the echo and the raw client;
  // the raw client only bumps a counter in the transaction id and fixes the FINGERPRINT.
  const fixed = lib.encodeStun(
    { method: lib.METHOD.BINDING, cls: lib.CLASS.REQUEST, transactionId: lib.newTransactionId(), attributes: [{ type: lib.ATTR.SOFTWARE, value: 'p2pd' }] },
    { fingerprint: true },
  );
  const size = fixed.length;
  let counter = 0;
  const req = (): Buffer => {
    const b = Buffer.from(fixed);
    b.writeUInt32BE(++counter >>> 0, 16);
    b.writeUInt32BE(lib.fingerprintOf(b.subarray(0, b.length - 8)), b.length - 4);
    return b;
  };
  const modes: Record<Mode, (n: number) => Promise<number[]>> = {
    'udp-echo': (n) => rawRtts(raw, ports.echo, () => fixed, n),
    stun: async (n) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await client.binding();
        out.push(performance.now() - t0);
      }
      return out;
    },
    'stun-raw-client': (n) => rawRtts(raw, ports.stun, req, n),
  };
  const names = Object.keys(modes) as Mode[];
  const perRound: Record<Mode, number[]> = { 'udp-echo': [], stun: [], 'stun-raw-client': [] };
  for (const m of names) await modes[m](Math.min(N, 1000)); // warm-up
  for (let r = 0; r < RUNS; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length] as Mode);
    for (const m of order) perRound[m].push(median(await modes[m](N)) * 1000);
  }
  await client.close();
  raw.close();
  const ratios = perRound.stun.map((s, i) => s / (perRound['udp-echo'][i] as number));
  const rawRatios = perRound['stun-raw-client'].map((s, i) => s / (perRound['udp-echo'][i] as number));
  return {
    requestBytes: size,
    n: N,
    runs: RUNS,
    medianRttUs: Object.fromEntries(names.map((m) => [m, median(perRound[m])])),
    perRoundUs: perRound,
    ratio: median(ratios),
    ratioMin: Math.min(...ratios),
    ratioMax: Math.max(...ratios),
    rawClientRatio: median(rawRatios),
  };
}

// ------------------------------------------------------------------------ lab part --

interface LabRow {
  kind: string;
  host: string;
  server: string;
  type: string;
  mapping: string;
  filtering: string;
  delta: string;
  detectMs: number;
  commandMs: number;
}

async function labTimes(): Promise<LabRow[] | string> {
  if (process.env['BENCH_LAB'] === '0') return 'skipped (BENCH_LAB=0)';
  const lab = await import('../test/helpers/lab.js');
  const problems = lab.labProblems();
  if (problems.length) return `skipped: needs ${problems.join('; ')}`;
  const pairs: [string, string][] = [['full-cone', 'restricted-cone'], ['port-restricted', 'symmetric'], ['firewall', 'none']];
  const rows: LabRow[] = [];
  for (const [a, b] of pairs) {
    const l = await lab.labUp({ natA: a as 'none', natB: b as 'none', upnpA: false });
    try {
      for (const [kind, host] of [[a, 'a1'], [b, 'b1']] as const) {
        for (const [name, ip] of [['coturn (RFC 5780)', l.env['NATLAB_STUN_HOST']], ['stund (RFC 3489)', l.env['NATLAB_STUND_HOST']]] as const) {
          const c = lab.nodeCommand('src/cli/main.ts', ['nat', '--stun', ip as string, '--json', '-q', '--no-portmap']);
          const t0 = performance.now();
          const r = await l.exec(host, c.cmd, c.args, { timeoutMs: 30_000 });
          const commandMs = performance.now() - t0;
          if (r.code !== 0) throw new Error(`p2pd nat in ${host} failed: ${r.stderr}`);
          const j = JSON.parse(r.stdout) as { type: string; mapping: string; filtering: string; delta?: { type: string }; ms: number };
          rows.push({ kind, host, server: name, type: j.type, mapping: j.mapping, filtering: j.filtering, delta: j.delta?.type ?? '-', detectMs: j.ms, commandMs });
        }
      }
    } finally {
      await l.down();
    }
  }
  return rows;
}

// ------------------------------------------------------------------------ main --

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--role-server') return serverRole(argv[1] as string);
  const built = compile();
  let child: ChildProcess | undefined;
  try {
    const lib = await loadLib(built.lib);
    // The role script is TypeScript (tsx); the library it loads is the compiled one.
    child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--role-server', built.lib], { stdio: ['pipe', 'pipe', 'inherit'], cwd: ROOT });
    const ports = await new Promise<{ stun: number; echo: number }>((resolve, reject) => {
      let buf = '';
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)) as { stun: number; echo: number });
      });
      child!.once('exit', (c) => reject(new Error(`server role exited (${c})`)));
    });
    console.log(`STUN loopback round trips (${TSX ? 'tsx sources' : 'tsc-compiled'}; ${RUNS} rounds × ${N} sequential requests per mode)`);
    const lb = await loopback(lib, ports);
    const med = lb['medianRttUs'] as Record<string, number>;
    const ratio = lb['ratio'] as number;
    console.log('| mode | median RTT (µs) |');
    console.log('|---|---|');
    for (const [m, v] of Object.entries(med)) console.log(`| ${m} | ${v.toFixed(1)} |`);
    console.log(`\nSTUN Binding / raw UDP echo: ${ratio.toFixed(3)}× (rounds ${(lb['ratioMin'] as number).toFixed(3)}–${(lb['ratioMax'] as number).toFixed(3)}), target ≤ 1.3×: ${ratio <= 1.3 ? 'PASS' : 'FAIL'}`);
    console.log(`raw client → p2pd server / raw echo: ${(lb['rawClientRatio'] as number).toFixed(3)}× (p2pd server, no p2pd client)\n`);
    child.stdin!.end();

    console.log('NAT detection wall time per NAT kind in the lab');
    const labRows = await labTimes();
    if (typeof labRows === 'string') console.log(labRows);
    else {
      console.log('| router kind | host | server | type | mapping | filtering | delta | detectNat (ms) | whole command (ms) |');
      console.log('|---|---|---|---|---|---|---|---|---|');
      for (const r of labRows) {
        console.log(`| ${r.kind} | ${r.host} | ${r.server} | ${r.type} | ${r.mapping} | ${r.filtering} | ${r.delta} | ${r.detectMs.toFixed(0)} | ${r.commandMs.toFixed(0)} |`);
      }
    }
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/stun.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loopback: lb, lab: labRows }, null, 2));
  } finally {
    if (child && child.exitCode === null) child.kill();
    built.remove();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
