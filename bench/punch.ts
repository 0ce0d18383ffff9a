/**
 * Hole punching and reliable streams (src/node/punch). Run from the repository root:
 *
 *   npx tsx bench/punch.ts            # loopback: punch latency, stream throughput/RTT vs TCP, loss
 *   sudo npx tsx bench/punch.ts lab   # + the NAT lab: punch + 256 KiB each way for every NAT pair
 *
 * Loopback (both ends in this process, so each figure includes both ends' CPU):
 * - punch: time until both sides resolved, `PUNCH_BENCH_PUNCHES` runs (default 30);
 * - bulk: `PUNCH_BENCH_MB` MiB (default 16) one way over a ReliablePipe on UDP vs a TcpPipe,
 *   `await send()` of 64 KiB chunks, median of `PUNCH_BENCH_ROUNDS` (default 3) interleaved rounds;
 * - RTT: 2000 sequential 64-byte ping-pongs, median and p99, ReliablePipe vs TcpPipe;
 * - loss: 8 MiB one way through a lossy relay (1 %, 5 %, 10 %, 20 % drop + 2 % duplicates +
 *   5 % reordered), goodput and retransmissions.
 *
 * Lab (root + the lab packages): brings the lab up for each (rtrA, rtrB) NAT pair in turn
 * (`PUNCH_BENCH_NATS=full-cone,symmetric` limits the kinds), runs test/punch-lab-peer.ts on a1
 * and b1, and prints the matrix: punch time after the agreed start (ms) or FAIL.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openReliable, punch } from '../src/node/punch/index.js';
import { pipeOpen, SUB_ALL, type Pipe, type TcpPipe, type TcpServer, type UdpPipe } from '../src/pipes/index.js';
import { labUp, requireRoot, type NatKind, type NsProcess } from '../test/helpers/lab.js';
import { LossyRelay } from '../test/punch-relay.js';

const ROUNDS = Number(process.env.PUNCH_BENCH_ROUNDS ?? 3);
const MB = Number(process.env.PUNCH_BENCH_MB ?? 16);
const PUNCHES = Number(process.env.PUNCH_BENCH_PUNCHES ?? 30);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? (s[s.length >> 1] as number) : ((s[(s.length >> 1) - 1] as number) + (s[s.length >> 1] as number)) / 2;
};
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;

async function udp(): Promise<UdpPipe> {
  const p = (await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })) as UdpPipe;
  p.unsubscribe(SUB_ALL);
  return p;
}

/** Two connected pipes of the given kind, and a cleanup. */
async function connect(kind: 'reliable' | 'tcp', relay?: { loss: number }): Promise<{ a: Pipe; b: Pipe; close: () => Promise<void>; extra: () => string }> {
  if (kind === 'tcp') {
    const server = (await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' })) as TcpServer;
    const [a, b] = await Promise.all([pipeOpen('tcp', server.local) as Promise<TcpPipe>, server.accept()]);
    a.unsubscribe(SUB_ALL);
    b.unsubscribe(SUB_ALL);
    return { a, b, extra: () => '', close: async () => void (await Promise.all([a.close(), b.close()]), await server.close()) };
  }
  const [ua, ub] = [await udp(), await udp()];
  const r = relay ? await LossyRelay.start(ua.local, ub.local, { loss: relay.loss, duplicate: 0.02, reorder: 0.05, seed: 42 }) : undefined;
  const [a, b] = await Promise.all([
    openReliable(ua, r ? r.forA : ub.local, { initiator: true }),
    openReliable(ub, r ? r.forB : ua.local, { initiator: false }),
  ]);
  a.unsubscribe(SUB_ALL);
  b.unsubscribe(SUB_ALL);
  return {
    a,
    b,
    extra: () => `retransmits ${a.arq.retransmits}, timeouts ${a.arq.timeouts}, cwnd ${a.arq.cwnd.toFixed(1)}`,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await r?.close();
      await Promise.all([ua.close(), ub.close()]);
    },
  };
}

async function bulk(kind: 'reliable' | 'tcp', mib: number, relay?: { loss: number }): Promise<{ mbps: number; extra: string }> {
  const c = await connect(kind, relay);
  const total = mib << 20;
  let n = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  c.b.onMessage((m) => {
    n += m.data.length;
    if (n >= total) done();
  });
  const chunk = Buffer.alloc(64 * 1024, 7);
  const t0 = performance.now();
  for (let off = 0; off < total; off += chunk.length) await c.a.send(chunk);
  await all;
  const s = (performance.now() - t0) / 1000;
  const extra = c.extra();
  await c.close();
  return { mbps: total / s / 1e6, extra };
}

async function rtt(kind: 'reliable' | 'tcp', n = 2000): Promise<number[]> {
  const c = await connect(kind);
  c.b.onMessage((m) => void c.b.send(m.data));
  const msg = Buffer.alloc(64, 1);
  const out: number[] = [];
  c.a.subscribe(SUB_ALL);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await c.a.send(msg);
    await c.a.recv();
    out.push((performance.now() - t0) * 1000);
  }
  await c.close();
  return out;
}

async function punchLatency(): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < PUNCHES; i++) {
    const [a, b] = [await udp(), await udp()];
    const nonce = randomBytes(16);
    const t0 = performance.now();
    await Promise.all([
      punch({ pipe: a, peerCandidates: [b.local], nonce, linger: 0 }),
      punch({ pipe: b, peerCandidates: [a.local], nonce, linger: 0 }),
    ]);
    out.push(performance.now() - t0);
    await Promise.all([a.close(), b.close()]);
  }
  return out;
}

async function loopback(): Promise<void> {
  console.log(`# punch + reliable streams on loopback (node ${process.version}, both ends in one process)\n`);
  const p = await punchLatency();
  console.log(`punch, both sides resolved: median ${median(p).toFixed(2)} ms, p90 ${pct(p, 0.9).toFixed(2)} ms (${PUNCHES} runs)`);
  const res: Record<string, number[]> = { reliable: [], tcp: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const k of (r % 2 ? ['tcp', 'reliable'] : ['reliable', 'tcp']) as ('reliable' | 'tcp')[]) res[k]?.push((await bulk(k, MB)).mbps);
  }
  const rel = median(res.reliable as number[]);
  const tcp = median(res.tcp as number[]);
  console.log(`bulk ${MB} MiB one way: reliable/UDP ${rel.toFixed(1)} MB/s, TcpPipe ${tcp.toFixed(1)} MB/s (${(rel / tcp).toFixed(2)}×), medians of ${ROUNDS}`);
  const rr = await rtt('reliable');
  const rt = await rtt('tcp');
  console.log(`RTT 64 B ping-pong: reliable p50 ${median(rr).toFixed(0)} µs p99 ${pct(rr, 0.99).toFixed(0)} µs; TcpPipe p50 ${median(rt).toFixed(0)} µs p99 ${pct(rt, 0.99).toFixed(0)} µs`);
  for (const loss of [0.01, 0.05, 0.1, 0.2]) {
    const b = await bulk('reliable', 8, { loss });
    console.log(`8 MiB through ${loss * 100} % loss (+2 % dup, 5 % reorder): ${b.mbps.toFixed(1)} MB/s, ${b.extra}`);
  }
}

const KINDS: NatKind[] = ['full-cone', 'restricted-cone', 'port-restricted', 'symmetric', 'firewall', 'none'];

async function waitLine(p: NsProcess, events: string[], ms: number): Promise<Record<string, unknown>> {
  const end = Date.now() + ms;
  for (;;) {
    for (const l of p.stdout().split('\n')) {
      if (!l.startsWith('{')) continue;
      const o = JSON.parse(l) as Record<string, unknown>;
      if (events.includes(String(o.event)) || o.event === 'error') return o;
    }
    if (Date.now() > end) return { event: 'timeout' };
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function lab(): Promise<void> {
  requireRoot();
  const kinds = process.env.PUNCH_BENCH_NATS ? (process.env.PUNCH_BENCH_NATS.split(',') as NatKind[]) : KINDS;
  const dir = mkdtempSync(path.join(tmpdir(), 'p2pd-punch-bench-'));
  const cell: Record<string, string> = {};
  try {
    for (const na of kinds) {
      for (const nb of kinds) {
        const l = await labUp({ natA: na, natB: nb, upnpA: false });
        try {
          const sub = mkdtempSync(path.join(dir, `${na}-${nb}-`));
          const common = [`dir=${sub}`, `stun=${l.env.NATLAB_STUN_HOST}:3478`, 'timeout=5000', `bytes=${256 << 10}`];
          const a = l.spawnNode('a1', 'test/punch-lab-peer.ts', ['role=a', ...common], { timeoutMs: 40_000 });
          const b = l.spawnNode('b1', 'test/punch-lab-peer.ts', ['role=b', ...common], { timeoutMs: 40_000 });
          const [ma, mb] = await Promise.all([waitLine(a, ['mapped'], 15_000), waitLine(b, ['mapped'], 15_000)]);
          const nonce = randomBytes(32).toString('hex');
          const startAt = Date.now() + 300;
          writeFileSync(path.join(sub, 'a.in.json'), JSON.stringify({ candidates: [mb.mapped, mb.local], nonce, startAt }));
          writeFileSync(path.join(sub, 'b.in.json'), JSON.stringify({ candidates: [ma.mapped, ma.local], nonce, startAt }));
          const [pa, pb] = await Promise.all([waitLine(a, ['punched', 'punch-failed'], 15_000), waitLine(b, ['punched', 'punch-failed'], 15_000)]);
          if (pa.event === 'punched' && pb.event === 'punched') {
            const [da, db] = await Promise.all([waitLine(a, ['done'], 20_000), waitLine(b, ['done'], 20_000)]);
            const ok = da.ok === true && db.ok === true;
            cell[`${na}|${nb}`] = `${ok ? 'ok' : 'DATA?'} ${Math.max(Number(pa.sinceStart), Number(pb.sinceStart))} ms`;
          } else cell[`${na}|${nb}`] = 'FAIL';
          console.error(`${na} × ${nb}: ${cell[`${na}|${nb}`]}`);
          await Promise.all([a.stop(), b.stop()]);
        } finally {
          await l.down();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n# NAT lab: punch (time after the agreed start) + 256 KiB each way over a reliable stream\n`);
  console.log(`| rtrA \\ rtrB | ${kinds.join(' | ')} |`);
  console.log(`|---|${kinds.map(() => '---').join('|')}|`);
  for (const na of kinds) console.log(`| **${na}** | ${kinds.map((nb) => cell[`${na}|${nb}`] ?? '—').join(' | ')} |`);
}

await loopback();
if (process.argv.includes('lab')) await lab();
