/**
 * `npm run matrix` (as root): the P2P node across the NAT lab's router kinds.
 *
 * For every pair (rtrA kind × rtrB kind, 36 pairs) a lab comes up with its own namespace
 * prefix, a node starts on b1 (`bench/matrix/peer.ts serve`) and a node on a1 connects to it
 * (`peer.ts client`): the winning strategy, transport and time to connect are recorded, 1 MiB
 * goes each way, then both stay idle for MATRIX_IDLE_MS and a ping goes each way. Extras in
 * one more lab: a1 ↔ a2 over the LAN (IPv4) and over IPv6 link-local, a1 ↔ pub1, the
 * throughput/RTT of a node pipe vs raw TCP a1 → pub1, and idle memory per connected peer.
 * Writes bench/matrix.md.
 *
 * Infrastructure: STUN + TURN = coturn on srv, signalling = mosquitto on srv. UPnP on the
 * routers is off and nodes do not ask for port mappings, so each path is earned by NAT
 * traversal (direct, reverse, punch or relay).
 *
 * Environment: MATRIX_IDLE_MS (default 120000), MATRIX_PARALLEL labs at once (default 4),
 * MATRIX_BUSY connect/transfer phases at once (default 1: connect times are not skewed by
 * other labs' CPU; idle phases overlap), MATRIX_PAIRS filter (comma-separated `natA/natB`
 * substrings, or `extras`), MATRIX_OUT output file (default bench/matrix.md), MATRIX_BULK_BYTES
 * (raw-vs-pipe transfer size, default 256 MiB), MATRIX_TSX=1 (run the peers through tsx instead
 * of tsc-compiled JavaScript), MATRIX_NODE_FLAGS (extra `node` flags for the compiled peers, e.g.
 * `--no-concurrent-array-buffer-sweeping`; named in the report).
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labUp, requireRoot, REPO_ROOT, type Lab, type NatKind, type NsProcess } from '../test/helpers/lab.js';

const KINDS: NatKind[] = ['full-cone', 'restricted-cone', 'port-restricted', 'symmetric', 'firewall', 'none'];
/** The lab README's UDP hole-punch matrix (rtrA × rtrB): false = FAIL. */
const PUNCHABLE: Record<NatKind, Record<NatKind, boolean>> = {
  'full-cone': { 'full-cone': true, 'restricted-cone': true, 'port-restricted': true, symmetric: true, firewall: true, none: true },
  'restricted-cone': { 'full-cone': true, 'restricted-cone': true, 'port-restricted': true, symmetric: true, firewall: true, none: true },
  'port-restricted': { 'full-cone': true, 'restricted-cone': true, 'port-restricted': true, symmetric: false, firewall: true, none: true },
  symmetric: { 'full-cone': true, 'restricted-cone': true, 'port-restricted': false, symmetric: false, firewall: false, none: true },
  firewall: { 'full-cone': true, 'restricted-cone': true, 'port-restricted': true, symmetric: false, firewall: true, none: true },
  none: { 'full-cone': true, 'restricted-cone': true, 'port-restricted': true, symmetric: true, firewall: true, none: true },
};

const IDLE_MS = Number(process.env.MATRIX_IDLE_MS ?? 120_000);
const PARALLEL = Math.max(1, Number(process.env.MATRIX_PARALLEL ?? 4));
const BUSY = Math.max(1, Number(process.env.MATRIX_BUSY ?? 1));
const FILTER = (process.env.MATRIX_PAIRS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const OUT = path.resolve(REPO_ROOT, process.env.MATRIX_OUT ?? 'bench/matrix.md');
const BYTES = 1 << 20;
const BULK_BYTES = Number(process.env.MATRIX_BULK_BYTES ?? 256 << 20);
const TSX = !!process.env.MATRIX_TSX && process.env.MATRIX_TSX !== '0';
/** Extra `node` flags for the peers (diagnostics, e.g. `--no-concurrent-array-buffer-sweeping`); recorded in the report. */
const NODE_FLAGS = (process.env.MATRIX_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
/** Node arguments that run the peer script: compiled JavaScript (default) or the TS source through tsx. */
let PEER_ARGS: string[] = ['--import', 'tsx', path.join(REPO_ROOT, 'bench/matrix/peer.ts')];
const BUILD_DIR = path.join(REPO_ROOT, 'node_modules', '.cache', 'p2pd-matrix');

/**
 * Compiles bench/matrix/peer.ts (and src/ through its imports) with tsc, as users run the
 * package. Inside node_modules/.cache so that the compiled code resolves mqtt/aedes.
 */
function compilePeer(): void {
  rmSync(BUILD_DIR, { recursive: true, force: true });
  mkdirSync(BUILD_DIR, { recursive: true });
  writeFileSync(path.join(BUILD_DIR, 'package.json'), '{ "type": "module" }\n');
  const cfg = path.join(BUILD_DIR, 'tsconfig.json');
  writeFileSync(cfg, JSON.stringify({
    extends: path.join(REPO_ROOT, 'tsconfig.json'),
    compilerOptions: { noEmit: false, declaration: false, sourceMap: false, skipLibCheck: true, rootDir: REPO_ROOT, outDir: path.join(BUILD_DIR, 'out'), typeRoots: [path.join(REPO_ROOT, 'node_modules/@types')], types: ['node'] },
    files: [path.join(REPO_ROOT, 'bench/matrix/peer.ts')],
    include: [],
  }));
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', cfg], { encoding: 'utf8' });
  if (r.status !== 0) log(`tsc reported problems (code still emitted): ${(r.stdout + r.stderr).slice(0, 500)}`);
  const js = path.join(BUILD_DIR, 'out/bench/matrix/peer.js');
  if (!existsSync(js)) throw new Error('tsc produced no peer.js');
  PEER_ARGS = [...NODE_FLAGS, js];
}

type J = Record<string, unknown>;
const lines = (t: string): J[] =>
  t.split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return JSON.parse(l) as J;
    } catch {
      return {};
    }
  });
const find = (p: NsProcess, ev: string): J | undefined => lines(p.stdout()).find((l) => l.event === ev);

/** A counting semaphore. */
function semaphore(n: number): { acquire(): Promise<() => void> } {
  let free = n;
  const q: (() => void)[] = [];
  return {
    acquire: () =>
      new Promise((res) => {
        const grant = (): void => {
          free--;
          let done = false;
          res(() => {
            if (done) return;
            done = true;
            free++;
            q.shift()?.();
          });
        };
        if (free > 0) grant();
        else q.push(grant);
      }),
  };
}
const busy = semaphore(BUSY);
const log = (s: string): void => void process.stderr.write(`[matrix ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

interface Row {
  pair: string;
  natA?: NatKind;
  natB?: NatKind;
  punchable?: boolean;
  ok: boolean;
  strategy?: string;
  transport?: string;
  remote?: string;
  connectMs?: number;
  /** From the winning strategy's own start to the pipe (strategies start staggered). */
  ownMs?: number;
  startedAt?: number;
  upBytes?: number;
  downBytes?: number;
  upMBps?: number;
  downMBps?: number;
  rttMs?: number;
  idleOk?: boolean;
  idleNote?: string;
  serverStartMs?: number;
  clientStartMs?: number;
  failed?: string;
  error?: string;
}

function infra(lab: Lab, relay = true): string[] {
  const e = lab.env;
  const stun = e.NATLAB_STUN_HOST as string;
  return ['--broker', `mqtt://${e.NATLAB_MQTT_HOST}:1883`, '--stun', stun, ...(relay ? ['--turn', `${e.NATLAB_TURN_USER}:${e.NATLAB_TURN_PASS}@${stun}:3478`] : [])];
}

async function startServer(lab: Lab, host: string, extra: string[] = [], nodeArgs: string[] = []): Promise<{ proc: NsProcess; addr: string; startMs: number }> {
  const proc = lab.spawn(host, process.execPath, [...nodeArgs, ...PEER_ARGS, 'serve', ...infra(lab), ...extra], { timeoutMs: IDLE_MS + 300_000 });
  await proc.waitFor('"event":"address"', { timeoutMs: 30_000 });
  const a = find(proc, 'address') as J;
  return { proc, addr: a.addr as string, startMs: a.startMs as number };
}

/** Runs a client to the end; `release` is called when it goes idle (or ends). */
async function runClient(lab: Lab, host: string, addr: string, extra: string[], release: () => void, relay = true): Promise<{ ls: J[]; stderr: string; code: number | null }> {
  const p = lab.spawn(host, process.execPath, [...PEER_ARGS, 'client', addr, ...infra(lab, relay), '--idle', String(IDLE_MS), ...extra], { timeoutMs: IDLE_MS + 180_000 });
  void p.waitFor('"event":"idle-start"', { timeoutMs: IDLE_MS + 180_000 }).then(release, release);
  const r = await p.exited;
  release();
  return { ls: lines(r.stdout), stderr: r.stderr, code: r.code };
}

function rowFrom(pair: string, c: { ls: J[]; stderr: string; code: number | null }, server: NsProcess | undefined): Row {
  const row: Row = { pair, ok: false };
  const conn = c.ls.find((l) => l.event === 'connected');
  const started = c.ls.find((l) => l.event === 'started');
  if (started) row.clientStartMs = started.startMs as number;
  if (!conn) {
    const err = c.ls.find((l) => l.event === 'error');
    row.error = String(err?.error ?? `client exited ${c.code}: ${c.stderr.slice(-300)}`).split('\n')[0];
    const evs = (err?.events ?? []) as J[];
    row.failed = evs.filter((e) => e.type === 'strategy-fail').map((e) => `${e.strategy}: ${String(e.detail ?? '').slice(0, 60)}`).join('; ');
    return row;
  }
  row.ok = true;
  const p = conn.path as J;
  row.strategy = p.strategy as string;
  row.transport = p.transport as string;
  row.remote = p.remote as string;
  row.connectMs = p.ms as number;
  const evs = (conn.events ?? []) as J[];
  row.failed = evs.filter((e) => e.type === 'strategy-fail').map((e) => `${e.strategy}`).join(', ');
  const st = evs.find((e) => e.type === 'strategy-start' && e.strategy === row.strategy);
  if (st && typeof st.ms === 'number' && row.connectMs !== undefined) {
    row.startedAt = st.ms;
    row.ownMs = row.connectMs - st.ms;
  }
  const d = c.ls.find((l) => l.event === 'data');
  if (d) {
    row.upBytes = d.upBytes as number;
    row.downBytes = d.downBytes as number;
    if (d.upMs) row.upMBps = BYTES / 1e6 / ((d.upMs as number) / 1000);
    if (d.downMs) row.downMBps = BYTES / 1e6 / ((d.downMs as number) / 1000);
    row.rttMs = d.rttMs as number;
    if (d.dataError) row.error = `data: ${String(d.dataError)}`;
  }
  const idle = c.ls.find((l) => l.event === 'idle-done');
  if (idle) {
    const cp = idle.clientPing as J;
    const sp = server ? lines(server.stdout()).find((l) => l.event === 'server-ping' && (l.peer === undefined || l.peer === started?.id)) : undefined;
    row.idleOk = cp.ok === true && idle.serverPingReceived === true && sp?.ok === true;
    row.idleNote = `a→b ${cp.ok ? 'ok' : 'FAIL'}, b→a ${sp?.ok ? 'ok' : 'FAIL'}${idle.samePipe ? '' : ', pipe closed'}`;
  } else if (IDLE_MS > 0) {
    row.idleOk = false;
    row.idleNote = 'client ended before the idle check';
  }
  return row;
}

async function runPair(natA: NatKind, natB: NatKind): Promise<Row> {
  const pair = `${natA} → ${natB}`;
  let lab: Lab | undefined;
  let server: NsProcess | undefined;
  let release = await busy.acquire();
  try {
    lab = await labUp({ natA, natB, upnpA: false, upnpB: false });
    const s = await startServer(lab, 'b1');
    server = s.proc;
    log(`${pair}: lab up (${lab.upSeconds.toFixed(1)} s), b1 node started in ${s.startMs.toFixed(0)} ms; connecting`);
    const c = await runClient(lab, 'a1', s.addr, [], release);
    const row = rowFrom(pair, c, server);
    row.serverStartMs = s.startMs;
    Object.assign(row, { natA, natB, punchable: PUNCHABLE[natA][natB] });
    log(`${pair}: ${row.ok ? `${row.strategy}/${row.transport} in ${row.connectMs?.toFixed(0)} ms, idle ${row.idleOk ? 'ok' : 'FAIL'}` : `FAILED ${row.error}`}`);
    return row;
  } catch (e) {
    log(`${pair}: ERROR ${(e as Error).message.split('\n')[0]}`);
    return { pair, natA, natB, punchable: PUNCHABLE[natA][natB], ok: false, error: (e as Error).message.split('\n')[0] };
  } finally {
    release();
    release = () => undefined;
    await server?.stop().catch(() => undefined);
    await lab?.down().catch((e: unknown) => log(`down failed: ${(e as Error).message}`));
  }
}

interface Extras {
  rows: Row[];
  bulk: J[];
  memory?: J;
  startMs: number[];
  notes: string[];
}

async function runExtras(): Promise<Extras> {
  const ex: Extras = { rows: [], bulk: [], startMs: [], notes: [] };
  let lab: Lab | undefined;
  const procs: NsProcess[] = [];
  let release = await busy.acquire();
  try {
    lab = await labUp({ natA: 'port-restricted', natB: 'port-restricted', upnpA: false, upnpB: false });
    const a2 = await startServer(lab, 'a2', ['--port', '40102']);
    const pub1 = await startServer(lab, 'pub1', ['--port', '40103', '--raw-port', '40200'], ['--expose-gc']);
    procs.push(a2.proc, pub1.proc);
    ex.startMs.push(a2.startMs, pub1.startMs);
    log(`extras: a2 / pub1 nodes started (${a2.startMs.toFixed(0)} / ${pub1.startMs.toFixed(0)} ms)`);
    // throughput and memory first, while nothing else runs in this lab
    const pub4 = lab.env.NATLAB_PUB1_IP4 as string;
    const b = await lab.exec('a1', process.execPath, [...PEER_ARGS, 'bulk', pub1.addr, '--raw', `${pub4}:40200`, '--bytes', String(BULK_BYTES), '--rounds', '5'], { timeoutMs: 300_000 });
    ex.bulk = lines(b.stdout).filter((l) => l.event === 'bulk' || l.event === 'connected' || l.event === 'aead');
    if (!ex.bulk.some((l) => l.event === 'bulk')) ex.notes.push(`bulk run failed: ${b.stdout.slice(-300)} ${b.stderr.slice(-300)}`);
    log(`extras: bulk done (${ex.bulk.length} lines)`);
    // run the link-level clients (they go idle), then the memory check while they idle
    const clients: Promise<void>[] = [];
    const one = (pair: string, addr: string, extra: string[], server: NsProcess): Promise<void> => {
      let rel!: () => void;
      const gone = new Promise<void>((r) => (rel = r));
      const done = runClient(lab as Lab, 'a1', addr, extra, rel).then((c) => void ex.rows.push(rowFrom(pair, c, server)));
      clients.push(done);
      return gone;
    };
    await one('a1 → a2 (LAN, IPv4)', a2.addr, ['--via', 'lan'], a2.proc);
    await one('a1 → a2 (IPv6 link-local)', a2.addr, ['--via', 'link-local'], a2.proc);
    await one('a1 → pub1', pub1.addr, [], pub1.proc);
    const m = await lab.exec('a1', process.execPath, [...PEER_ARGS, 'many', pub1.addr, '--count', '50'], { timeoutMs: 120_000 });
    ex.memory = lines(m.stdout).find((l) => l.event === 'memory');
    if (!ex.memory) ex.notes.push(`memory run failed: ${m.stdout.slice(-300)} ${m.stderr.slice(-300)}`);
    release();
    release = () => undefined;
    await Promise.all(clients);
    for (const r of ex.rows) log(`${r.pair}: ${r.ok ? `${r.strategy}/${r.transport} ${r.remote} in ${r.connectMs?.toFixed(1)} ms, idle ${r.idleOk ? 'ok' : 'FAIL'}` : `FAILED ${r.error}`}`);
  } catch (e) {
    ex.notes.push(`extras failed: ${(e as Error).message.split('\n')[0]}`);
    log(`extras: ERROR ${(e as Error).message}`);
  } finally {
    release();
    await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
    await lab?.down().catch(() => undefined);
  }
  return ex;
}

const median = (xs: number[]): number | undefined => {
  if (!xs.length) return undefined;
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const f = (x: number | undefined, d = 0): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
const kib = (x: number | undefined): string => (x === undefined ? '–' : `${(x / 1024).toFixed(0)} KiB`);

function report(rows: Row[], ex: Extras | undefined, t0: number): string {
  const pairRows = rows.filter((r) => r.natA);
  const all = [...pairRows, ...(ex?.rows ?? [])];
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  let md = `# Connection matrix: the P2P node across the NAT lab\n\n`;
  md += `_Generated by \`npm run matrix\` (\`bench/matrix.ts\`) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC — ${os.cpus().length} vCPU ${os.cpus()[0]?.model.trim() ?? ''}, node ${process.version}, Linux ${os.release()}, load average ${load} at the end; ${((performance.now() - t0) / 60000).toFixed(1)} min in all; idle time ${IDLE_MS / 1000} s; ${PARALLEL} labs in parallel, ${BUSY} connect/transfer phase(s) at a time._\n\n`;
  md += `Setup: one lab per pair (\`labUp({ natA, natB, upnpA: false, upnpB: false })\`), a node on b1 (\`bench/matrix/peer.ts serve\`), a node on a1 connects to it with every strategy available (direct, reverse, punch, relay; the node races them). STUN/TURN = coturn on srv, signalling = mosquitto on srv; no port mappings (UPnP off, nodes without port mapping), so every path is earned by NAT traversal. Data: ${BYTES >> 20} MiB each way through the encrypted pipe (64 KiB messages), then 10 round trips, then ${IDLE_MS / 1000} s with no application traffic (keep-alives only, default 15 s), then one ping a1→b1 and one b1→a1 on the same pipe. Peers run ${TSX ? 'the TypeScript sources through tsx' : 'tsc-compiled JavaScript (node_modules/.cache/p2pd-matrix)'}.\n\n`;
  const connected = pairRows.filter((r) => r.ok).length;
  const punchable = pairRows.filter((r) => r.punchable);
  const nonRelayed = (r: Row): boolean => r.ok && r.transport !== 'turn';
  const directWhere = punchable.filter(nonRelayed).length;
  const extraOk = (ex?.rows ?? []).filter((r) => r.ok).length;
  const idleOk = all.filter((r) => r.idleOk).length;
  md += `## Summary\n\n`;
  md += `- **Connected: ${connected}/${pairRows.length}** router pairs (target 36/36), plus ${extraOk}/${ex?.rows.length ?? 0} extras (LAN IPv4, IPv6 link-local, public host).\n`;
  md += `- **Non-relayed path where the lab's UDP punch matrix says punchable: ${directWhere}/${punchable.length}** (the lab README's table has 31 punchable pairs of 36).`;
  const missing = punchable.filter((r) => !nonRelayed(r)).map((r) => r.pair);
  md += missing.length ? ` Relayed or failed although punchable: ${missing.join('; ')}.\n` : '\n';
  const beyond = pairRows.filter((r) => !r.punchable && nonRelayed(r)).map((r) => `${r.pair} (${r.strategy}/${r.transport})`);
  if (beyond.length) md += `- Non-relayed although the UDP punch matrix says FAIL: ${beyond.join('; ')}.\n`;
  md += `- **Data both ways**: ${all.filter((r) => r.upBytes === BYTES && r.downBytes === BYTES).length}/${all.length} connections moved ${BYTES >> 20} MiB each way.\n`;
  md += `- **Survived ${IDLE_MS / 1000} s idle** (ping both ways on the same pipe): ${idleOk}/${all.length}.\n\n`;
  // per-strategy medians
  md += `### Time to connect per winning strategy (ms)\n\n"connect" is \`pipe.path.ms\`, from \`connect()\` to the authenticated pipe. The node starts its strategies staggered (direct at once, reverse after 150 ms, punch after 400 ms, relay after 1.5 s, or sooner when the earlier ones fail), so "own" subtracts the winning strategy's start: the time the strategy itself took.\n\n| strategy/transport | n | connect median | min | max | own median | own min–max | target |\n|---|---|---|---|---|---|---|---|\n`;
  const groups = new Map<string, Row[]>();
  for (const r of all) if (r.ok && r.connectMs !== undefined) groups.set(`${r.strategy}/${r.transport}`, [...(groups.get(`${r.strategy}/${r.transport}`) ?? []), r]);
  const target: Record<string, string> = { direct: '< 50', punch: '< 2000', relay: '< 1000', reverse: '–' };
  for (const [k, rs] of [...groups].sort()) {
    const v = rs.map((r) => r.connectMs as number);
    const o = rs.map((r) => r.ownMs).filter((x): x is number => x !== undefined);
    md += `| ${k} | ${v.length} | ${f(median(v), 1)} | ${f(Math.min(...v), 1)} | ${f(Math.max(...v), 1)} | ${f(median(o), 1)} | ${o.length ? `${f(Math.min(...o), 1)}–${f(Math.max(...o), 1)}` : '–'} | ${target[k.split('/')[0] as string] ?? '–'} |\n`;
  }
  const starts = [...all.flatMap((r) => [r.serverStartMs, r.clientStartMs]), ...(ex?.startMs ?? [])].filter((x): x is number => x !== undefined);
  md += `\n**Node start time** (\`startP2pNode\` with STUN NAT detection, MQTT broker connect; in-process, without Node's own start-up): median ${f(median(starts))} ms, min ${f(Math.min(...starts))}, max ${f(Math.max(...starts))} (n = ${starts.length}).\n\n`;
  // table
  md += `## Per pair (a1 behind rtrA → b1 behind rtrB)\n\n| rtrA → rtrB | punch matrix | strategy | transport | connect ms (own) | bytes a1→b1 | bytes b1→a1 | MB/s up / down | RTT ms | idle ${IDLE_MS / 1000} s | strategies that failed first / error |\n|---|---|---|---|---|---|---|---|---|---|---|\n`;
  for (const r of [...pairRows, ...(ex?.rows ?? [])]) {
    md += `| ${r.pair} | ${r.punchable === undefined ? '–' : r.punchable ? 'ok' : 'FAIL'} | ${r.ok ? `**${r.strategy}**` : '**not connected**'} | ${r.transport ?? '–'} | ${f(r.connectMs, 1)}${r.ownMs !== undefined ? ` (${f(r.ownMs, 0)})` : ''} | ${r.upBytes ?? '–'} | ${r.downBytes ?? '–'} | ${f(r.upMBps, 1)} / ${f(r.downMBps, 1)} | ${f(r.rttMs, 2)} | ${r.idleOk === undefined ? '–' : r.idleOk ? 'yes' : `**no** (${r.idleNote})`} | ${[r.failed, r.error].filter(Boolean).join('; ').replace(/\|/g, '/') || ''} |\n`;
  }
  md += `\nRemote endpoints of the winning paths: ${all.filter((r) => r.ok).map((r) => `${r.pair}: ${r.remote}`).join('; ')}.\n`;
  // bulk
  if (ex) {
    md += `\n## Node pipe vs raw TCP, a1 → pub1 (direct path through rtrA, ${(BULK_BYTES / 2 ** 20).toFixed(0)} MiB each way, 5 interleaved rounds after a 64 MiB warm-up; medians)\n\n`;
    const bulk = ex.bulk.filter((l) => l.event === 'bulk');
    const conn = ex.bulk.find((l) => l.event === 'connected');
    if (conn) md += `Node pipe path: ${JSON.stringify(conn.path)}. The node pipe is encrypted (Noise XX, ChaCha20-Poly1305) and framed; raw TCP is plain \`node:net\` with TCP_NODELAY, same 64 KiB writes. RTT = median of 50 round trips of a 64-byte message. ${TSX ? 'Both processes run through tsx.' : 'Both processes run tsc-compiled JavaScript.'}${NODE_FLAGS.length && !TSX ? ` Peers started with \`node ${NODE_FLAGS.join(' ')}\`.` : ''}\n\n`;
    const med = (mode: string, k: string): number | undefined => median(bulk.filter((l) => l.mode === mode).map((l) => l[k] as number));
    md += `| | raw TCP | node pipe | node/raw | target |\n|---|---|---|---|---|\n`;
    for (const [k, label] of [['upMBps', 'a1→pub1 MB/s'], ['downMBps', 'pub1→a1 MB/s'], ['rttMs', 'RTT ms']] as const) {
      const r = med('raw', k);
      const n = med('node', k);
      md += `| ${label} | ${f(r, k === 'rttMs' ? 3 : 1)} | ${f(n, k === 'rttMs' ? 3 : 1)} | ${r && n ? (n / r).toFixed(2) : '–'} | ${k === 'rttMs' ? '–' : '≥ 0.5'} |\n`;
    }
    const aead = ex.bulk.find((l) => l.event === 'aead');
    if (aead) md += ceilingText(med, aead.encMsPerMB as number, aead.decMsPerMB as number);
    if (ex.memory) {
      const m = ex.memory;
      md += `\n## Idle memory per connected peer\n\npub1's node (\`--expose-gc\`, after 3 GCs) before and after ${m.peers as number} more peers connected from a1 (each its own P2pNode, direct TCP, encrypted pipe, idle): heapUsed ${kib(m.heapPerPeer as number)}/peer, external ${kib(m.externalPerPeer as number)}/peer, RSS ${kib(m.rssPerPeer as number)}/peer (RSS moves by whole pages and the allocator returns memory, so at this scale it is noise; heapUsed + external is the figure).\n`;
    }
    if (ex.notes.length) md += `\nNotes: ${ex.notes.join(' ')}\n`;
  }
  return md;
}

async function main(): Promise<void> {
  requireRoot();
  const t0 = performance.now();
  if (!TSX) compilePeer();
  log(`peer: ${PEER_ARGS.join(' ')}`);
  const want = (name: string): boolean => FILTER.length === 0 || FILTER.some((f) => name.includes(f));
  const tasks: (() => Promise<void>)[] = [];
  const rows: Row[] = [];
  let ex: Extras | undefined;
  if (want('extras')) tasks.push(async () => void (ex = await runExtras()));
  for (const a of KINDS) for (const b of KINDS) if (want(`${a}/${b}`)) tasks.push(async () => void rows.push(await runPair(a, b)));
  log(`${tasks.length} labs, ${PARALLEL} at once, idle ${IDLE_MS} ms`);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, tasks.length) }, async () => {
      while (next < tasks.length) await (tasks[next++] as () => Promise<void>)();
    }),
  );
  const order = (r: Row): number => KINDS.indexOf(r.natA as NatKind) * 6 + KINDS.indexOf(r.natB as NatKind);
  rows.sort((x, y) => order(x) - order(y));
  const md = report(rows, ex, t0);
  writeFileSync(OUT, md);
  writeFileSync(OUT.replace(/\.md$/, '') + '.json', JSON.stringify({ date: new Date().toISOString(), idleMs: IDLE_MS, rows, extras: ex }, null, 1) + '\n');
  process.stdout.write(md);
  log(`wrote ${OUT}`);
  process.exit(0);
}

void main();

/**
 * The best node/raw ratio a1's one thread allows, from figures measured in the same run: a1's
 * CPU per MB in the raw rounds (kernel send or receive path, Cs/Cr) plus bare ChaCha20-Poly1305
 * on a1 (E/D). A node pipe moving a MB through a1 needs at least Cs + E (up) or Cr + D (down)
 * of a1's CPU, so it cannot run faster than 1000 / (Cs + E) MB/s. pub1's side is not counted
 * (a bound from a1 alone, so an upper bound).
 */
function ceilingText(med: (mode: string, k: string) => number | undefined, enc: number, dec: number): string {
  let t = `\n**Ceiling from a1's CPU** (same run): bare ChaCha20-Poly1305 on a1 costs E = ${enc.toFixed(2)} ms/MB to encrypt and D = ${dec.toFixed(2)} ms/MB to decrypt (64 KiB frames, one cipher object each). A node pipe needs at least the raw rounds' CPU on a1 plus the AEAD for each MB that a1 sends or receives, on a1's one thread:\n\n`;
  t += `| direction | a1 CPU per MB, raw | + AEAD | ceiling MB/s | ceiling node/raw | node pipe a1 CPU per MB | measured / ceiling |\n|---|---|---|---|---|---|---|\n`;
  for (const [dir, k, cpuK, aead, label] of [['up', 'upMBps', 'upCpuMsPerMB', enc, 'a1→pub1 (a1 sends: Cs + E)'], ['down', 'downMBps', 'downCpuMsPerMB', dec, 'pub1→a1 (a1 receives: Cr + D)']] as const) {
    void dir;
    const raw = med('raw', k);
    const node = med('node', k);
    const c = med('raw', cpuK);
    const nc = med('node', cpuK);
    if (raw === undefined || node === undefined || c === undefined) continue;
    const ceil = Math.min(raw, 1000 / (c + aead));
    t += `| ${label} | ${c.toFixed(2)} ms | ${(c + aead).toFixed(2)} ms | ${ceil.toFixed(0)} | ${(ceil / raw).toFixed(2)} | ${nc === undefined ? '–' : `${nc.toFixed(2)} ms`} | ${(node / ceil).toFixed(2)} |\n`;
  }
  return t;
}
