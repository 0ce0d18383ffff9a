/**
 * Swarm benchmark on loopback testnets (one process, real TCP + Noise links).
 *
 *   npx tsx bench/swarm.ts [--sizes=20,50,100] [--broadcasts=20] [--directed=300]
 *   node --expose-gc --import tsx bench/swarm.ts      # more accurate memory figures
 *
 * For each size N and each broadcast redundancy r (1 and the default 2): builds a testnet,
 * waits for convergence, then
 * - **broadcast**: `--broadcasts` broadcasts from random nodes; reports BCAST frames sent per
 *   node per message (lower is better), checks every other node delivered each exactly once,
 *   and compares with what flooding (py2p's "waterfall", ≈ 2·edges − degree(origin)) would send
 *   on the same topology;
 * - **directed**: `--directed` messages between random pairs, one at a time; reports DATA
 *   frames per message (= links crossed) and send → delivery latency;
 * - **memory**: heap and RSS per node (links, member table, caches), after GC.
 * @module
 */
import { performance } from 'node:perf_hooks';
import type { SwarmPeer } from '../src/swarm/index.js';
import { createTestnet, type Testnet } from '../src/testnet/index.js';

function arg(name: string, dflt: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : dflt;
}
const SIZES = arg('sizes', '20,50,100').split(',').map(Number);
const BROADCASTS = Number(arg('broadcasts', '20'));
const DIRECTED = Number(arg('directed', '300'));
const REDUNDANCIES = arg('redundancy', '1,2').split(',').map(Number);

const gc = (globalThis as { gc?: () => void }).gc;
function mem(): { heap: number; rss: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor(p * s.length))] as number) : NaN;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
const sum = (nodes: readonly SwarmPeer[], f: (n: SwarmPeer) => number): number => nodes.reduce((s, n) => s + f(n), 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(5);
  }
  return true;
}

interface Row {
  n: number;
  r: number;
  buildMs: number;
  degree: number;
  bcastFramesPerNode: number;
  floodFramesPerNode: number;
  bcastExact: boolean;
  bcastMs: number;
  dataFramesPerMsg: number;
  directedP50: number;
  directedP95: number;
  directedOk: number;
  heapPerNodeKiB: number;
  rssPerNodeKiB: number;
}

async function run(n: number, r: number): Promise<Row> {
  const m0 = mem();
  const t0 = performance.now();
  const net: Testnet = await createTestnet(n, { peer: { broadcastRedundancy: r } });
  const buildMs = performance.now() - t0;
  const nodes = net.nodes;
  await sleep(200);
  const m1 = mem();
  const edges = sum(nodes, (x) => x.peers.length) / 2;

  // Broadcast.
  const counts = new Map<string, number>();
  let bcastDelivered = 0;
  let lastDelivery = 0;
  for (const x of nodes) {
    x.onMessage((msg) => {
      const k = `${x.idHex}|${msg.data}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
      if (msg.broadcast) bcastDelivered++;
      lastDelivery = performance.now();
      const sent = (msg.data.toString().startsWith('d:') && Number(msg.data.toString().split(':')[1])) || 0;
      if (sent) latencies.push(performance.now() - sent);
    });
  }
  const latencies: number[] = [];
  const before = sum(nodes, (x) => x.stats.framesSent.bcast);
  let flood = 0;
  const tb = performance.now();
  for (let i = 0; i < BROADCASTS; i++) {
    const origin = pick(nodes);
    flood += 2 * edges - origin.peers.length;
    await origin.broadcast(`b${i}`);
  }
  await waitFor(() => bcastDelivered >= BROADCASTS * (n - 1), 10_000);
  const bcastMs = (lastDelivery - tb) / BROADCASTS;
  await sleep(100);
  const bcastFrames = sum(nodes, (x) => x.stats.framesSent.bcast) - before;
  let exact = bcastDelivered === BROADCASTS * (n - 1);
  for (const [k, c] of counts) if (k.includes('|b') && c !== 1) exact = false;

  // Directed.
  const dBefore = sum(nodes, (x) => x.stats.framesSent.data);
  const deliveredBefore = latencies.length;
  for (let i = 0; i < DIRECTED; i++) {
    const a = pick(nodes);
    let b = pick(nodes);
    while (b === a) b = pick(nodes);
    const want = latencies.length + 1;
    await a.send(b, `d:${performance.now()}`);
    await waitFor(() => latencies.length >= want, 2000); // one at a time: latency, not queueing
  }
  const dataFrames = sum(nodes, (x) => x.stats.framesSent.data) - dBefore;

  await net.close();
  return {
    n,
    r,
    buildMs,
    degree: (2 * edges) / n,
    bcastFramesPerNode: bcastFrames / BROADCASTS / n,
    floodFramesPerNode: flood / BROADCASTS / n,
    bcastExact: exact,
    bcastMs,
    dataFramesPerMsg: dataFrames / DIRECTED,
    directedP50: pct(latencies, 0.5),
    directedP95: pct(latencies, 0.95),
    directedOk: latencies.length - deliveredBefore,
    heapPerNodeKiB: (m1.heap - m0.heap) / n / 1024,
    rssPerNodeKiB: (m1.rss - m0.rss) / n / 1024,
  };
}

const rows: Row[] = [];
for (const n of SIZES) {
  for (const r of REDUNDANCIES) {
    const row = await run(n, r);
    rows.push(row);
    console.error(`done n=${n} r=${r}`);
    await sleep(500);
  }
}
const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '—');
console.log(`\nSwarm benchmark — node ${process.version}, ${gc ? 'with' : 'without'} --expose-gc, ${BROADCASTS} broadcasts, ${DIRECTED} directed per size\n`);
console.log('| nodes | r | build (ms) | avg degree | BCAST frames / node / msg | flooding would send | exactly once | bcast spread (ms) | DATA frames / msg | directed p50 / p95 (ms) | delivered | heap / node (KiB) | RSS / node (KiB) |');
console.log('|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.n} | ${r.r} | ${f(r.buildMs, 0)} | ${f(r.degree, 1)} | **${f(r.bcastFramesPerNode)}** | ${f(r.floodFramesPerNode)} | ${r.bcastExact ? 'yes' : 'NO'} | ${f(r.bcastMs, 1)} | ${f(r.dataFramesPerMsg)} | ${f(r.directedP50, 1)} / ${f(r.directedP95, 1)} | ${r.directedOk}/${DIRECTED} | ${f(r.heapPerNodeKiB, 0)} | ${f(r.rssPerNodeKiB, 0)} |`,
  );
}
