/**
 * TURN relay vs direct UDP in the NAT lab, between the same two hosts: a1 (behind rtrA, a
 * port-restricted NAT) and pub1 (public). Run as root from the repository root:
 *
 *   node --import tsx bench/turn.ts            # or: npx tsx bench/turn.ts
 *
 * Env: `TURN_BENCH_N` datagrams per throughput run (default 40 000), `TURN_BENCH_SIZE` bytes
 * per datagram (default 1200), `TURN_BENCH_RTT` round trips per RTT run (default 2000),
 * `TURN_BENCH_ROUNDS` (default 3), `TURN_BENCH_PROTO` control connection udp|tcp (default udp),
 * `TURN_BENCH_BURST` datagrams handed to the kernel per awaited send (default 16).
 *
 * For each mode — `direct` (a p2pd UdpPipe a1 → pub1) and `relay` (a TurnPipe on the lab's
 * coturn, a1 → relayed address → pub1) — the a1 role measures:
 * - throughput: `n` datagrams sent back to back (bursts of `BURST` sends, the last awaited), goodput measured by the
 *   receiver on pub1 from its first to its last datagram, plus the delivered fraction;
 * - round trip: `rtt` sequential ping-pongs of 64 bytes (pub1 echoes), median and p99.
 * Modes alternate for `rounds` rounds; the table shows medians and the relay/direct ratio
 * (target: relay throughput ≥ 0.5 × direct).
 *
 * Roles (run in the namespaces by the orchestrator): `role=sink` on pub1, `role=client` on a1.
 * @module
 */
import { createSocket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { parseEndpoint } from '../src/interfaces/endpoint.js';
import { turnAllocate } from '../src/nat/turn/index.js';
import { pipeOpen } from '../src/pipes/index.js';
import type { Pipe } from '../src/pipes/pipe.js';

const arg = Object.fromEntries(process.argv.slice(2).filter((a) => a.includes('=')).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
const N = Number(process.env.TURN_BENCH_N ?? 40_000);
const SIZE = Number(process.env.TURN_BENCH_SIZE ?? 1200);
const RTT_N = Number(process.env.TURN_BENCH_RTT ?? 2000);
const ROUNDS = Number(process.env.TURN_BENCH_ROUNDS ?? 3);
const PROTO = (process.env.TURN_BENCH_PROTO ?? 'udp') as 'udp' | 'tcp';
const BURST = Math.max(1, Number(process.env.TURN_BENCH_BURST ?? 16));
const SINK_PORT = 40200;

/** Result of one client run. */
interface RunResult {
  mode: string;
  sent: number;
  received: number;
  /** Receiver goodput, bytes/s. */
  goodput: number;
  /** Sender rate, bytes/s. */
  sendRate: number;
  rttMedianUs: number;
  rttP99Us: number;
}

// ------------------------------------------------------------------------------ sink (pub1) --

/**
 * pub1: datagrams starting with `P` are echoed (RTT), `S` asks for the counters of the data
 * received since the last `S` (answered as JSON), anything else is counted.
 */
function sink(): void {
  const sock = createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });
  let count = 0;
  let bytes = 0;
  let first = 0;
  let last = 0;
  sock.on('message', (d, r) => {
    const c = d[0];
    if (c === 0x50) sock.send(d, r.port, r.address); // 'P'
    else if (c === 0x53) {
      // 'S'
      sock.send(JSON.stringify({ count, bytes, ms: last - first }), r.port, r.address);
      count = bytes = first = last = 0;
    } else {
      const t = performance.now();
      if (count++ === 0) first = t;
      last = t;
      bytes += d.length;
    }
  });
  sock.bind(SINK_PORT, '0.0.0.0', () => console.log(JSON.stringify({ event: 'listening', port: SINK_PORT })));
  process.on('SIGTERM', () => sock.close(() => process.exit(0)));
}

// ----------------------------------------------------------------------------- client (a1) --

async function client(): Promise<void> {
  const mode = arg.mode as 'direct' | 'relay';
  const target = parseEndpoint(arg.target as string);
  let pipe: Pipe;
  if (mode === 'relay') {
    pipe = await turnAllocate({ server: arg.server as string, username: arg.user as string, password: arg.pass as string, proto: PROTO });
  } else {
    pipe = await pipeOpen('udp', target, { recvBufferSize: 8 * 1024 * 1024 });
  }
  pipe.subscribe();
  const ask = async (data: Buffer, match: (b: Buffer) => boolean, timeout = 1000): Promise<Buffer> => {
    for (let i = 0; i < 10; i++) {
      await pipe.send(data, target);
      const end = performance.now() + timeout;
      while (performance.now() < end) {
        const m = await pipe.recv({ timeout: Math.max(1, end - performance.now()) }).catch(() => undefined);
        if (m && match(m.data)) return m.data;
      }
    }
    throw new Error('no answer from the sink');
  };
  // warm-up: permission + channel, NAT binding
  for (let i = 0; i < 20; i++) await ask(Buffer.from(`Pwarm${i}`), (b) => b.toString() === `Pwarm${i}`);
  await ask(Buffer.from('S'), (b) => b[0] === 0x7b);
  // round trips
  const rtts: number[] = [];
  const ping = Buffer.alloc(64, 0x50);
  for (let i = 0; i < RTT_N; i++) {
    ping.writeUInt32BE(i, 4);
    const t0 = performance.now();
    await pipe.send(ping, target);
    for (;;) {
      const m = await pipe.recv({ timeout: 1000 }).catch(() => undefined);
      if (!m) break; // lost: not counted
      if (m.data.length === 64 && m.data.readUInt32BE(4) === i) {
        rtts.push((performance.now() - t0) * 1000);
        break;
      }
    }
  }
  rtts.sort((a, b) => a - b);
  // throughput
  const data = Buffer.alloc(SIZE, 0x44);
  const t0 = performance.now();
  for (let i = 0; i < N; i += BURST) {
    const k = Math.min(BURST, N - i);
    for (let j = 1; j < k; j++) void pipe.send(data, target);
    await pipe.send(data, target);
  }
  const sendMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  const st = JSON.parse((await ask(Buffer.from('S'), (b) => b[0] === 0x7b)).toString()) as { count: number; bytes: number; ms: number };
  const out: RunResult = {
    mode,
    sent: N,
    received: st.count,
    goodput: st.ms > 0 ? (st.bytes / st.ms) * 1000 : 0,
    sendRate: ((N * SIZE) / sendMs) * 1000,
    rttMedianUs: rtts[Math.floor(rtts.length / 2)] ?? NaN,
    rttP99Us: rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * 0.99))] ?? NaN,
  };
  console.log(JSON.stringify({ event: 'result', ...out }));
  await pipe.close();
  process.exit(0);
}

// ------------------------------------------------------------------------------ orchestrator --

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
};

async function orchestrate(): Promise<void> {
  const { labUp, labDown, execNodeInNs, spawnNodeInNs } = await import('../test/helpers/lab.js');
  const lab = await labUp({ natA: 'port-restricted', natB: 'symmetric', upnpA: false });
  const env = lab.env;
  const self = 'bench/turn.ts';
  const sinkProc = spawnNodeInNs('pub1', self, ['role=sink']);
  try {
    await sinkProc.waitFor('"listening"', { timeoutMs: 15_000 });
    const target = `${env.NATLAB_PUB1_IP4}:${SINK_PORT}`;
    const results: Record<string, RunResult[]> = { direct: [], relay: [] };
    const runEnv = { TURN_BENCH_N: String(N), TURN_BENCH_SIZE: String(SIZE), TURN_BENCH_RTT: String(RTT_N), TURN_BENCH_PROTO: PROTO, TURN_BENCH_BURST: String(BURST) };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? ['direct', 'relay'] : ['relay', 'direct'];
      for (const mode of order) {
        const r = await execNodeInNs('a1', self, [
          'role=client', `mode=${mode}`, `target=${target}`,
          `server=${env.NATLAB_TURN_HOST}:${env.NATLAB_TURN_PORT}`, `user=${env.NATLAB_TURN_USER}`, `pass=${env.NATLAB_TURN_PASS}`,
        ], { timeoutMs: 180_000, env: runEnv });
        const line = r.stdout.split('\n').find((l) => l.includes('"result"'));
        if (!line) throw new Error(`client ${mode} failed (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
        const res = JSON.parse(line) as RunResult;
        results[mode]?.push(res);
        console.error(`round ${round + 1} ${mode}: ${(res.goodput / 1e6).toFixed(1)} MB/s goodput, ${res.received}/${res.sent} delivered, RTT ${res.rttMedianUs.toFixed(0)} µs`);
      }
    }
    const m = (mode: string, f: (r: RunResult) => number): number => median((results[mode] ?? []).map(f));
    const rows: [string, (r: RunResult) => number, (x: number) => string, 'higher' | 'lower'][] = [
      ['goodput (MB/s)', (r) => r.goodput / 1e6, (x) => x.toFixed(1), 'higher'],
      ['packets/s (k)', (r) => r.goodput / SIZE / 1000, (x) => x.toFixed(1), 'higher'],
      ['delivered (%)', (r) => (100 * r.received) / r.sent, (x) => x.toFixed(1), 'higher'],
      ['sender rate (MB/s)', (r) => r.sendRate / 1e6, (x) => x.toFixed(1), 'higher'],
      ['RTT median (µs)', (r) => r.rttMedianUs, (x) => x.toFixed(0), 'lower'],
      ['RTT p99 (µs)', (r) => r.rttP99Us, (x) => x.toFixed(0), 'lower'],
    ];
    const lines = [
      `TURN relay (coturn, control over ${PROTO}) vs direct UDP, a1 (behind NAT) -> pub1, ${SIZE}-byte datagrams, ${N} per run in bursts of ${BURST}, ${RTT_N} round trips, median of ${ROUNDS} rounds`,
      '',
      '| metric | direct | relay | relay/direct |',
      '|---|---:|---:|---:|',
      ...rows.map(([name, f, fmt]) => {
        const d = m('direct', f);
        const r = m('relay', f);
        return `| ${name} | ${fmt(d)} | ${fmt(r)} | ${(r / d).toFixed(2)} |`;
      }),
    ];
    const ratio = m('relay', (r) => r.goodput) / m('direct', (r) => r.goodput);
    lines.push('', `throughput ratio relay/direct = ${ratio.toFixed(2)} (target >= 0.5: ${ratio >= 0.5 ? 'met' : 'NOT met'})`);
    console.log(lines.join('\n'));
    console.log(JSON.stringify({ event: 'summary', size: SIZE, n: N, rtt: RTT_N, rounds: ROUNDS, proto: PROTO, ratio, results }));
  } finally {
    await sinkProc.stop();
    await labDown(lab);
  }
}

const role = arg.role;
if (role === 'sink') sink();
else if (role === 'client') await client();
else await orchestrate();
