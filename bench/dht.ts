/**
 * DHT benchmark on in-memory testnets (every RPC goes through the real codec).
 *
 *   npx tsx bench/dht.ts [--sizes=100,500] [--keys=100] [--gets=1000] [--latency=0] [--kill=0.2]
 *   node --expose-gc --import tsx bench/dht.ts      # more accurate memory figures
 *
 * For each size N: builds the network (each node joins through a random earlier node, then
 * refreshes its buckets once), stores `keys` keys from random nodes, runs `gets` gets of
 * random keys from random nodes (plus up to 300 FIND_NODE lookups of random ids), then kills `kill`·N random nodes (blackholed: their RPCs
 * time out) and runs the gets again from survivors. Reports median/p95 hops (hop at which
 * the first copy was found) against the goal ⌈log₂N⌉/2+1, latency, success rate,
 * messages per get, and heap per node. `--latency` adds a one-way delay (ms) per message.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { createMemoryDhtTestnet, randomId, type DhtNode } from '../src/dht/index.js';

function arg(name: string, dflt: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : dflt;
}
const SIZES = arg('sizes', '100,500').split(',').map(Number);
const KEYS = Number(arg('keys', '100'));
const GETS = Number(arg('gets', '1000'));
const LATENCY = Number(arg('latency', '0'));
const KILL = Number(arg('kill', '0.2'));
const REQUEST_TIMEOUT = 250;

const gc = (globalThis as { gc?: () => void }).gc;
function heap(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}
function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

interface Phase { hops: number[]; ms: number[]; ok: number; total: number; msgs: number }

async function gets(nodes: readonly DhtNode[], keys: readonly string[]): Promise<Phase> {
  const ph: Phase = { hops: [], ms: [], ok: 0, total: 0, msgs: 0 };
  for (let i = 0; i < GETS; i++) {
    const node = pick(nodes);
    const key = pick(keys);
    const t0 = performance.now();
    const v = await node.get(key, { default: undefined }).catch(() => undefined);
    ph.ms.push(performance.now() - t0);
    ph.total++;
    if (v === `value-of-${key}`) ph.ok++;
    const last = node.metrics.lastLookup;
    if (last) {
      ph.hops.push(last.hops);
      ph.msgs += last.messages;
    }
  }
  return ph;
}

async function lookups(nodes: readonly DhtNode[]): Promise<Phase> {
  const ph: Phase = { hops: [], ms: [], ok: 0, total: 0, msgs: 0 };
  for (let i = 0; i < Math.min(GETS, 300); i++) {
    const t0 = performance.now();
    const r = await pick(nodes).lookup(randomId());
    ph.ms.push(performance.now() - t0);
    ph.total++;
    if (r.closest.length > 0) ph.ok++;
    ph.hops.push(r.hops);
    ph.msgs += r.messages;
  }
  return ph;
}

function row(n: number, label: string, ph: Phase, extra: string): string {
  const hs = [...ph.hops].sort((a, b) => a - b);
  const ms = [...ph.ms].sort((a, b) => a - b);
  const goal = Math.ceil(Math.log2(n)) / 2 + 1;
  return [
    String(n).padStart(4), label.padEnd(12), `${median(hs)}`.padStart(6), `${pct(hs, 0.95)}`.padStart(5), `${goal}`.padStart(5),
    median(ms).toFixed(2).padStart(8), pct(ms, 0.95).toFixed(2).padStart(8),
    `${((100 * ph.ok) / ph.total).toFixed(2)}%`.padStart(8), (ph.msgs / ph.total).toFixed(1).padStart(6), extra,
  ].join(' │ ');
}

const lines: string[] = [];
for (const n of SIZES) {
  const h0 = heap();
  const t0 = performance.now();
  const net = await createMemoryDhtTestnet(n, {
    requestTimeout: REQUEST_TIMEOUT, republishInterval: 0, refreshInterval: 0, network: { latency: LATENCY },
  });
  const buildS = (performance.now() - t0) / 1000;
  const perNodeKiB = (heap() - h0) / n / 1024;
  const keys = Array.from({ length: KEYS }, (_, i) => `bench-key-${n}-${i}`);
  for (let i = 0; i < keys.length; i += 10) {
    await Promise.all(keys.slice(i, i + 10).map((k) => pick(net.nodes).set(k, `value-of-${k}`)));
  }
  const tables = median(net.nodes.map((x) => x.table.size));
  lines.push(row(n, 'FIND_NODE', await lookups(net.nodes), 'random target ids; hops = hop of the closest node found'));
  console.error(lines.at(-1));
  const healthy = await gets(net.nodes, keys);
  lines.push(row(n, 'all alive', healthy, `build ${buildS.toFixed(1)} s, heap ${perNodeKiB.toFixed(0)} KiB/node, table ${tables}`));
  console.error(lines.at(-1));
  const victims = [...net.nodes].sort(() => Math.random() - 0.5).slice(0, Math.round(KILL * n));
  await Promise.all(victims.map((v) => net.kill(v)));
  const killed = await gets(net.alive(), keys);
  lines.push(row(n, `${Math.round(KILL * 100)}% killed`, killed, `no republish, RPC timeout ${REQUEST_TIMEOUT} ms`));
  console.error(lines.at(-1));
  await net.close();
}

console.log(`\nDHT benchmark: k=20 α=3, ${KEYS} keys, ${GETS} gets per row, one-way latency ${LATENCY ? `${LATENCY} ms` : 'setImmediate'}${gc ? '' : ' (run with --expose-gc for exact heap)'}`);
console.log(['   N', 'phase       ', 'hops50', 'hops95', ' goal', 'lat50 ms', 'lat95 ms', ' success', ' msgs', 'notes'].join(' │ '));
for (const l of lines) console.log(l);
