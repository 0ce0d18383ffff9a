/**
 * `npx tsx bench/secure.ts`: benchmarks of the secure pipe (Noise XX + ChaCha20-Poly1305 over
 * TCP) on loopback, against raw `node:net` measured in the same run.
 *
 * 1. **Bulk throughput**, 64 KiB messages: `raw` (a `socket.write` loop honouring `'drain'`,
 *    the server counts bytes in `'data'`), `p2pd` (plain `TcpPipe`, `await send()` each, for
 *    context), `secure` (`SecurePipe`, `await send()` each) and `secure-win8` (8 un-awaited
 *    sends in flight). The receiver counts plaintext bytes in `onMessage` and acks the end.
 *    Target (issue): secure / raw ≥ 0.5× (js-libp2p: 0.16–0.21×).
 *
 *    **Ceiling** (row `secure.bulk.ceiling`): the best secure / raw ratio physically possible on
 *    this machine, from figures measured in the same run. Each process measures, on its own
 *    core, bare `node:crypto` ChaCha20-Poly1305 over the frames a 64 KiB message becomes
 *    (one cipher object per frame, the 4-byte header as associated data: the least work the
 *    protocol allows), as CPU ms per GB: `E` (encrypt, in the client) and `D` (decrypt, in
 *    the server); the raw rounds give the TCP cost per GB of each side, `Cs` (client) and
 *    `Cr` (server), and raw's wall time per GB, `Traw`. A secure sender must do at least
 *    `Cs + E` per GB on its one thread, the receiver `Cr + D`, and both together cannot use
 *    more than the machine's `ncpu` cores, so the fastest possible secure transfer takes
 *    `Tmin = max(Cs + E, Cr + D, (Cs + E + Cr + D) / ncpu)` per GB and the ceiling ratio is
 *    `Traw / Tmin` (capped at 1). The row shows the ceiling throughput and ratio; its note
 *    says how much of the ceiling the measured `secure` mode reaches, and also gives the ratio
 *    with raw at its own CPU bound, `max(Cs, Cr, (Cs + Cr) / ncpu) / Tmin` (on a loaded
 *    machine raw's wall time exceeds that bound and inflates `Traw / Tmin`). Not in the ceiling: what
 *    `node:crypto` imposes beyond the bare cipher (every `update()` returns a new buffer, so a
 *    message of several frames costs one reassembly copy; garbage collection of those
 *    buffers) and framing, dispatch and promise overheads of a `Pipe`.
 * 2. **Handshake + close rate**, sequential: `raw` (`net.connect` → `end()` → `'close'`),
 *    `p2pd` (`pipeOpen` + `close()`), `secure` (`connectSecure` + `close()`: TCP connect, XX
 *    handshake with identity proofs, secure close, TCP close) with the same client identity
 *    each time (the server's signature-verification cache is warm, as for a reconnecting
 *    peer), and `secure-cold` (both ends forget verified signatures before every connection:
 *    two Ed25519 verifications each time). Target: ≥ 790 handshakes/s (10× js-libp2p's ≈ 79/s
 *    measured the same way). Also `libp2p`: js-libp2p 3.x (TCP + Noise XX + Yamux) in the same
 *    two processes, sequential `dial()` + `close()` (bench/lib/libp2p-peer.ts; fewer
 *    connections per round, it is slow), and the row `secure.handshake.vs-libp2p` = secure /
 *    libp2p rate in the same rounds (target ≥ 10×). `BENCH_LIBP2P=0` leaves it out.
 *
 * The client and the server are separate processes (bench/lib/ipc.ts) running tsc-compiled
 * JavaScript (`BENCH_TSX=1`: the TypeScript through tsx). Each measurement runs every mode once
 * as a warm-up (the handshake modes three times: JIT), then `BENCH_RUNS` rounds (default 5, quick 3) with the modes' order rotating;
 * the table shows medians and the median of the per-round ratios. CPU per operation is
 * `process.cpuUsage()` of both processes. Results go to bench/results/secure.json (`rows` in
 * the format of bench/run.ts).
 *
 * Environment: `BENCH_QUICK=1` (smaller workloads), `BENCH_RUNS=n`, `BENCH_TSX=1`,
 * `BENCH_PROF=dir` (`--cpu-prof` into `dir/<role>/`), `BENCH_SECURE_ONLY=bulk,handshake` and
 * `BENCH_SECURE_MODES=raw,secure,…` (diagnostics; names of their own, so that `npm run bench`'s
 * `BENCH_ONLY`/`BENCH_MODES` do not leak in when run.ts starts this script),
 * `BENCH_SECURE_ALT=/path/to/other/checkout/src/crypto/index.ts` (A/B diagnostics: adds the mode
 * `secure@alt`, the same workload through that copy of the crypto layer, interleaved round by
 * round with `secure`, and rows `secure.*.vs-alt` = this tree / the copy; use with
 * `BENCH_TSX=1` so that both run the same way).
 * @module
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startLibp2p, type BenchLibp2p } from './lib/libp2p-peer.js';
import { Child, args, serve } from './lib/ipc.js';
import { closeRaw, connectRaw, cpuNow, cpuSince, HOST, listenRaw, now, sleep, type Cpu } from './lib/util.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHUNK = 64 * 1024;
const role = args()['role'];

// =============================================================================== roles ==

/**
 * Bare ChaCha20-Poly1305 cost on this core, CPU ms per GB of plaintext, for messages cut into
 * frames of `sizes` bytes (one cipher object per frame, a 4-byte associated header): the best
 * of several short windows, CPU time (so other processes on the machine count less).
 */
function aeadMsPerGB(sizes: number[], dir: 'encrypt' | 'decrypt', windowMs = 60, windows = 5): number {
  const key = randomBytes(32);
  const iv = Buffer.alloc(12);
  const ad = Buffer.alloc(4);
  const opts = { authTagLength: 16 } as const;
  const frames = sizes.map((n) => {
    const pt = Buffer.alloc(n, 0x61);
    const c = createCipheriv('chacha20-poly1305', key, iv, opts);
    c.setAAD(ad, { plaintextLength: n });
    const ct = c.update(pt);
    c.final();
    return { pt, ct, tag: c.getAuthTag() };
  });
  const bytes = sizes.reduce((a, b) => a + b, 0);
  const one = (): void => {
    for (const f of frames) {
      if (dir === 'encrypt') {
        const c = createCipheriv('chacha20-poly1305', key, iv, opts);
        c.setAAD(ad, { plaintextLength: f.pt.length });
        c.update(f.pt);
        c.final();
        c.getAuthTag();
      } else {
        const d = createDecipheriv('chacha20-poly1305', key, iv, opts);
        d.setAAD(ad, { plaintextLength: f.ct.length });
        d.setAuthTag(f.tag);
        d.update(f.ct);
        d.final();
      }
    }
  };
  for (let i = 0; i < 20; i++) one(); // warm-up
  let best = Infinity;
  for (let w = 0; w < windows; w++) {
    const c0 = process.cpuUsage();
    let n = 0;
    let us = 0;
    while (us < windowMs * 1000) {
      for (let i = 0; i < 8; i++) one();
      n += 8;
      const c = process.cpuUsage(c0);
      us = c.user + c.system;
    }
    best = Math.min(best, us / 1000 / ((n * bytes) / 1e9));
  }
  return best;
}

/** The `aead` request of both roles: encrypt and decrypt cost of 64 KiB messages as the protocol frames them. */
function aeadHandler(sizes: number[]): { encMsPerGB: number; decMsPerGB: number } {
  return { encMsPerGB: aeadMsPerGB(sizes, 'encrypt'), decMsPerGB: aeadMsPerGB(sizes, 'decrypt') };
}

type CryptoLib = typeof import('../src/crypto/index.js');
const ALT = process.env['BENCH_SECURE_ALT'];

async function lib(): Promise<{ crypto: CryptoLib; pipes: typeof import('../src/pipes/index.js'); alt: CryptoLib | undefined }> {
  return {
    crypto: await import('../src/crypto/index.js'),
    pipes: await import('../src/pipes/index.js'),
    alt: ALT ? ((await import(pathToFileURL(ALT).href)) as CryptoLib) : undefined,
  };
}

async function serverRole(): Promise<void> {
  const { crypto, pipes, alt } = await lib();
  const identity = crypto.Identity.generate();
  let expected = Infinity;
  let count = 0;
  let acked = false;
  let accepted = 0;
  let cold = false;
  let cpu0: Cpu = cpuNow();
  const onBytes = (n: number, ack: () => void): void => {
    count += n;
    if (!acked && count >= expected) {
      acked = true;
      ack();
    }
  };
  // Bulk: raw, plain p2pd, secure.
  const raw = net.createServer((s) => {
    accepted++;
    s.on('data', (d: Buffer) => onBytes(d.length, () => s.write('k')));
    s.on('error', () => undefined);
  });
  const plain = await pipes.pipeOpen('tcp', undefined, { bind: `${HOST}:0`, onMessage: (m) => onBytes(m.data.length, () => void m.pipe.send('k')) });
  plain.onConnection(() => accepted++);
  const sec = await crypto.listenSecure(`${HOST}:0`, {
    identity,
    onMessage: (m) => onBytes(m.data.length, () => void m.pipe.send('k')),
    onPipe: () => {
      accepted++;
      if (cold) crypto.clearVerifiedPayloadCache();
    },
  });
  const altIdentity = alt?.Identity.generate();
  const altSec =
    alt && altIdentity
      ? await alt.listenSecure(`${HOST}:0`, { identity: altIdentity, onMessage: (m) => onBytes(m.data.length, () => void m.pipe.send('k')), onPipe: () => void accepted++ })
      : undefined;
  const ports = { raw: await listenRaw(raw), p2pd: plain.local.port, secure: sec.local.port, secureAlt: altSec?.local.port ?? 0 };
  const lp = LIBP2P ? await startLibp2p(true) : undefined;
  let lpBase = 0;
  serve({
    info: () => ({ ports, id: identity.idHex, altId: altIdentity?.idHex ?? '', libp2p: lp?.addr ?? '' }),
    aead: () => aeadHandler(crypto.messageChunkSizes(CHUNK)),
    begin: (a: { expected?: number; cold?: boolean }) => {
      expected = a.expected ?? Infinity;
      cold = a.cold ?? false;
      if (cold) crypto.clearVerifiedPayloadCache();
      count = 0;
      acked = false;
      accepted = 0;
      lpBase = lp?.inbound() ?? 0;
      cpu0 = cpuNow();
      return true;
    },
    end: () => ({ cpuUs: cpuSince(cpu0), bytes: count, accepted: accepted + (lp ? lp.inbound() - lpBase : 0), failures: sec.stats.failures }),
  });
}

async function clientRole(): Promise<void> {
  const { crypto, pipes, alt } = await lib();
  const identity = crypto.Identity.generate();
  const altIdentity = alt?.Identity.generate();
  /** `connectSecure` of this tree, or of the `BENCH_SECURE_ALT` copy for `secure@alt`. */
  const connect = (mode: string, port: number, remoteId: string): ReturnType<CryptoLib['connectSecure']> =>
    mode === 'secure@alt' && alt && altIdentity ? alt.connectSecure(ep(port), { identity: altIdentity, remoteId }) : crypto.connectSecure(ep(port), { identity, remoteId });
  const buf = Buffer.alloc(CHUNK, 0x61);
  const ep = (port: number): { host: string; port: number } => ({ host: HOST, port });
  let lp: BenchLibp2p | undefined;
  serve({
    aead: () => aeadHandler(crypto.messageChunkSizes(CHUNK)),
    bulk: async (a: { mode: string; port: number; total: number; serverId: string }) => {
      const chunks = Math.ceil(a.total / CHUNK);
      if (a.mode === 'raw') {
        const s = await connectRaw(a.port);
        const ack = once(s, 'data');
        const cpu0 = cpuNow();
        const t0 = now();
        for (let i = 0; i < chunks; i++) if (!s.write(buf)) await once(s, 'drain');
        await ack;
        const ms = now() - t0;
        const cpuUs = cpuSince(cpu0);
        await closeRaw(s);
        return { ms, cpuUs, bytes: chunks * CHUNK };
      }
      const p =
        a.mode === 'p2pd'
          ? await pipes.pipeOpen('tcp', ep(a.port))
          : await connect(a.mode, a.port, a.serverId);
      const cpu0 = cpuNow();
      const t0 = now();
      if (a.mode === 'secure-win8') {
        const inflight: Promise<void>[] = [];
        for (let i = 0; i < chunks; i++) {
          inflight.push(p.send(buf));
          if (inflight.length >= 8) await inflight.shift();
        }
        await Promise.all(inflight);
      } else {
        for (let i = 0; i < chunks; i++) await p.send(buf);
      }
      await p.recv();
      const ms = now() - t0;
      const cpuUs = cpuSince(cpu0);
      await p.close();
      return { ms, cpuUs, bytes: chunks * CHUNK };
    },
    connect: async (a: { mode: string; port: number; n: number; serverId: string; libp2p?: string }) => {
      if (a.mode === 'libp2p') lp ??= await startLibp2p(false);
      const cpu0 = cpuNow();
      const t0 = now();
      if (a.mode === 'libp2p') {
        for (let i = 0; i < a.n; i++) await lp?.dialAndClose(a.libp2p as string);
      } else if (a.mode === 'raw') {
        for (let i = 0; i < a.n; i++) {
          await new Promise<void>((resolve, reject) => {
            const s = net.connect({ host: HOST, port: a.port });
            s.once('error', reject);
            s.once('connect', () => s.end());
            s.once('close', () => resolve());
          });
        }
      } else if (a.mode === 'p2pd') {
        for (let i = 0; i < a.n; i++) {
          const p = await pipes.pipeOpen('tcp', ep(a.port));
          await p.close();
        }
      } else {
        const cold = a.mode === 'secure-cold';
        for (let i = 0; i < a.n; i++) {
          if (cold) crypto.clearVerifiedPayloadCache();
          const p = await connect(a.mode, a.port, a.serverId);
          await p.close();
        }
      }
      return { ms: now() - t0, cpuUs: cpuSince(cpu0), n: a.n };
    },
  });
}

// ======================================================================== orchestrator ==

const QUICK = process.env['BENCH_QUICK'] === '1';
const RUNS = Number(process.env['BENCH_RUNS'] ?? (QUICK ? 3 : 5));
const TSX = process.env['BENCH_TSX'] === '1';
const ONLY = process.env['BENCH_SECURE_ONLY']?.split(',').filter(Boolean);
const MODES = process.env['BENCH_SECURE_MODES']?.split(',').filter(Boolean);
const PROF = process.env['BENCH_PROF'];
const W = { bulkBytes: (QUICK ? 256 : 1024) * 2 ** 20, connN: QUICK ? 300 : 1000, libp2pN: QUICK ? 100 : 300 };
/**
 * Warm-up rounds of every handshake mode. V8 needs about 2000 handshakes to optimise the
 * handshake path: a fresh client measured 420 → 620 → 840/s over its first three rounds of
 * 1000, then stayed there; js-libp2p ramps up the same way (63 → 85 → 110/s over rounds of 200).
 */
const HANDSHAKE_WARMUPS = QUICK ? 1 : 3;
/** Measure js-libp2p in the same run (`BENCH_LIBP2P=0` to leave it out). */
const LIBP2P = process.env['BENCH_LIBP2P'] !== '0';

interface Target {
  op: '>=' | '<=';
  value: number;
  on?: 'ratio' | 'abs';
}
/** A result row, in the format of bench/run.ts. */
interface Row {
  id: string;
  what: string;
  unit: string;
  raw: number | undefined;
  p2pd: number | undefined;
  ratio: number | undefined;
  ratioMin?: number | undefined;
  ratioMax?: number | undefined;
  target?: Target | undefined;
  pass?: boolean | undefined;
  note?: string | undefined;
}

const rows: Row[] = [];
const data: Record<string, unknown> = {};

function log(s: string): void {
  process.stdout.write(`${s}\n`);
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function fmtNum(v: number | undefined, unit = ''): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  const s = a >= 100_000 ? `${(v / 1000).toFixed(0)}k` : a >= 10_000 ? `${(v / 1000).toFixed(1)}k` : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${s} ${unit}` : s;
}

function fmtRatio(r: Row): string {
  if (r.ratio === undefined) return '—';
  const spread = r.ratioMin !== undefined && r.ratioMax !== undefined && r.ratioMin !== r.ratioMax ? ` (${r.ratioMin.toFixed(2)}–${r.ratioMax.toFixed(2)})` : '';
  return `${r.ratio.toFixed(2)}×${spread}`;
}

function fmtTarget(r: Row): string {
  if (!r.target) return '';
  return r.target.on === 'abs' ? `${r.target.op} ${fmtNum(r.target.value, r.unit)}` : `${r.target.op} ${r.target.value.toFixed(2)}×`;
}

function judge(t: Target | undefined, ratio: number | undefined, abs: number | undefined): boolean | undefined {
  if (!t) return undefined;
  const v = t.on === 'abs' ? abs : ratio;
  if (v === undefined || !Number.isFinite(v)) return undefined;
  return t.op === '>=' ? v >= t.value : v <= t.value;
}

/** Adds a row comparing `mode` with `base` on `metric`, ratios paired by round. */
function addRow<T>(res: Map<string, T[]>, base: string, mode: string, metric: (r: T) => number, spec: Omit<Row, 'raw' | 'p2pd' | 'ratio' | 'ratioMin' | 'ratioMax' | 'pass'>): void {
  const m = res.get(mode);
  if (!m) return;
  const b = res.get(base);
  const mv = m.map(metric);
  const bv = b?.map(metric);
  const ratios = bv ? mv.map((v, i) => v / (bv[i] as number)).filter((x) => Number.isFinite(x)) : [];
  const row: Row = {
    ...spec,
    raw: bv ? median(bv) : undefined,
    p2pd: median(mv),
    ratio: ratios.length ? median(ratios) : undefined,
    ratioMin: ratios.length ? Math.min(...ratios) : undefined,
    ratioMax: ratios.length ? Math.max(...ratios) : undefined,
  };
  row.pass = judge(row.target, row.ratio, row.p2pd);
  rows.push(row);
  log(`  ${row.what}: raw ${fmtNum(row.raw, row.unit)} | p2pd ${fmtNum(row.p2pd, row.unit)} | ${fmtRatio(row)} ${fmtTarget(row)} ${row.pass === undefined ? '' : row.pass ? 'ok' : 'MISS'}`);
}

async function rounds<T>(all: string[], one: (mode: string) => Promise<T>, warmups = 1): Promise<Map<string, T[]>> {
  const modes = MODES ? all.filter((m) => MODES.includes(m)) : all;
  for (let w = 0; w < warmups; w++) for (const m of modes) await one(m); // warm-up
  const out = new Map<string, T[]>(modes.map((m) => [m, []]));
  for (let r = 0; r < RUNS; r++) {
    for (let k = 0; k < modes.length; k++) {
      const m = modes[(k + r) % modes.length] as string;
      (out.get(m) as T[]).push(await one(m));
    }
  }
  return out;
}

/**
 * Compiles this script (and, through its imports, src/) with tsc into a temp dir inside
 * node_modules/.cache, so that the compiled code resolves packages (js-libp2p).
 */
function compile(): { script: string; remove(): void } {
  const self = join(ROOT, 'bench/secure.ts');
  if (TSX) return { script: self, remove: () => undefined };
  const cache = join(ROOT, 'node_modules/.cache');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(join(cache, 'p2pd-bench-secure-'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  const cfg = join(dir, 'tsconfig.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: { noEmit: false, declaration: false, sourceMap: false, skipLibCheck: true, rootDir: ROOT, outDir: join(dir, 'out'), typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'] },
      files: [self],
      include: [],
    }),
  );
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', cfg], { encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(`tsc reported problems (code still emitted):\n${(r.stdout + r.stderr).slice(0, 800)}\n`);
  const script = join(dir, 'out/bench/secure.js');
  if (!existsSync(script)) throw new Error('tsc produced no bench/secure.js');
  return { script, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

interface Info {
  ports: { raw: number; p2pd: number; secure: number; secureAlt: number };
  id: string;
  altId: string;
  /** The server's js-libp2p multiaddr ('' without the comparison). */
  libp2p: string;
}

/** The server port and expected id of a mode. */
function target(info: Info, mode: string): { port: number; serverId: string; libp2p?: string } {
  if (mode === 'secure@alt') return { port: info.ports.secureAlt, serverId: info.altId };
  if (mode === 'libp2p') return { port: 0, serverId: '', libp2p: info.libp2p };
  return { port: mode.startsWith('secure') ? info.ports.secure : mode === 'p2pd' ? info.ports.p2pd : info.ports.raw, serverId: info.id };
}

/** The modes of a measurement, plus `secure@alt` when `BENCH_SECURE_ALT` is set. */
function withAlt(modes: string[]): string[] {
  return ALT ? [...modes, 'secure@alt'] : modes;
}

async function benchBulk(server: Child, client: Child, info: Info): Promise<void> {
  log(`Bulk, 64 KiB messages, ${W.bulkBytes / 2 ** 20} MiB per run`);
  type R = { mbps: number; cpuMsPerGB: number; clientMsPerGB: number; serverMsPerGB: number };
  type Aead = { encMsPerGB: number; decMsPerGB: number };
  const aead: { client: Aead[]; server: Aead[] } = { client: [], server: [] };
  const measureAead = async (): Promise<void> => {
    aead.client.push(await client.call<Aead>('aead'));
    aead.server.push(await server.call<Aead>('aead'));
  };
  await measureAead();
  const res = await rounds(withAlt(['raw', 'p2pd', 'secure', 'secure-win8']), async (mode): Promise<R> => {
    await server.call('begin', { expected: W.bulkBytes });
    const c = await client.call<{ ms: number; cpuUs: number; bytes: number }>('bulk', { mode, total: W.bulkBytes, ...target(info, mode) });
    const s = await server.call<{ cpuUs: number }>('end');
    const gb = c.bytes / 1e9;
    return { mbps: c.bytes / 1e6 / (c.ms / 1000), cpuMsPerGB: (c.cpuUs + s.cpuUs) / 1000 / gb, clientMsPerGB: c.cpuUs / 1000 / gb, serverMsPerGB: s.cpuUs / 1000 / gb };
  });
  await measureAead();
  data['bulk'] = Object.fromEntries(res);
  data['aead'] = aead;
  const split = (m: string): string => {
    const r = res.get(m) ?? [];
    return r.length ? `${m}: client ${median(r.map((x) => x.clientMsPerGB)).toFixed(0)} + server ${median(r.map((x) => x.serverMsPerGB)).toFixed(0)} ms/GB` : '';
  };
  addRow(res, 'raw', 'secure', (r) => r.mbps, { id: 'secure.bulk', what: 'Secure pipe bulk 64 KiB, `await send()` each, vs raw node:net (js-libp2p: 0.16–0.21×)', unit: 'MB/s', target: { op: '>=', value: 0.5 } });
  addRow(res, 'raw', 'secure-win8', (r) => r.mbps, { id: 'secure.bulk.win8', what: 'Secure pipe bulk 64 KiB, 8 un-awaited sends in flight', unit: 'MB/s' });
  addRow(res, 'raw', 'p2pd', (r) => r.mbps, { id: 'secure.bulk.plain', what: 'Plain TcpPipe bulk 64 KiB (same run, for reference)', unit: 'MB/s' });
  ceilingRow(res, aead);
  if (ALT) addRow(res, 'secure@alt', 'secure', (r) => r.mbps, { id: 'secure.bulk.vs-alt', what: 'Secure bulk, this tree / the BENCH_SECURE_ALT copy', unit: 'MB/s' });
  if (ALT) addRow(res, 'secure@alt', 'secure', (r) => r.cpuMsPerGB, { id: 'secure.bulk.cpu.vs-alt', what: 'Secure bulk CPU both ends, this tree / the BENCH_SECURE_ALT copy', unit: 'ms/GB', note: split('secure@alt') });
  addRow(res, 'raw', 'secure', (r) => r.cpuMsPerGB, { id: 'secure.bulk.cpu', what: 'Secure bulk CPU, both ends', unit: 'ms/GB', note: [split('raw'), split('secure'), split('secure-win8')].filter(Boolean).join('; ') });
}

/** The `secure.bulk.ceiling` row: see the module doc for the formula. */
function ceilingRow(res: Map<string, { mbps: number; clientMsPerGB: number; serverMsPerGB: number }[]>, aead: { client: { encMsPerGB: number }[]; server: { decMsPerGB: number }[] }): void {
  const raw = res.get('raw');
  const sec = res.get('secure');
  if (!raw || raw.length === 0) return;
  const E = Math.min(...aead.client.map((a) => a.encMsPerGB));
  const D = Math.min(...aead.server.map((a) => a.decMsPerGB));
  const Cs = median(raw.map((r) => r.clientMsPerGB));
  const Cr = median(raw.map((r) => r.serverMsPerGB));
  const rawMbps = median(raw.map((r) => r.mbps));
  const Traw = 1e6 / rawMbps; // ms per GB
  const ncpu = os.availableParallelism();
  const Tmin = Math.max(Cs + E, Cr + D, (Cs + E + Cr + D) / ncpu);
  const ceilMbps = Math.min(rawMbps, 1e6 / Tmin);
  const ratio = Math.min(1, Traw / Tmin);
  const secMbps = sec && sec.length ? median(sec.map((r) => r.mbps)) : undefined;
  const secRatio = rows.find((r) => r.id === 'secure.bulk')?.ratio;
  const reach = secMbps !== undefined ? `; measured secure ${fmtNum(secMbps, 'MB/s')}${secRatio !== undefined ? ` = ${secRatio.toFixed(2)}× raw` : ''} = ${((secMbps / ceilMbps) * 100).toFixed(0)} % of the ceiling` : '';
  // Raw at its own CPU bound instead of its measured speed: the same model on both sides, less
  // sensitive to a loaded machine (where raw's wall time exceeds its CPU bound).
  const cpuRatio = Math.min(1, Math.max(Cs, Cr, (Cs + Cr) / ncpu) / Tmin);
  const note = `Tmin = max(Cs+E, Cr+D, (Cs+E+Cr+D)/${ncpu}) with Cs ${Cs.toFixed(0)}, Cr ${Cr.toFixed(0)} (raw TCP CPU), E ${E.toFixed(0)}, D ${D.toFixed(0)} (bare ChaCha20-Poly1305) ms/GB = ${Tmin.toFixed(0)} ms/GB vs raw ${Traw.toFixed(0)} ms/GB (raw at its CPU bound max(Cs, Cr, (Cs+Cr)/${ncpu}) instead: ${cpuRatio.toFixed(2)}×)${reach}`;
  const row: Row = { id: 'secure.bulk.ceiling', what: 'Ceiling: best secure / raw ratio physically possible here (raw TCP CPU + bare AEAD, same run)', unit: 'MB/s', raw: rawMbps, p2pd: ceilMbps, ratio, note };
  rows.push(row);
  log(`  ${row.what}: raw ${fmtNum(row.raw, row.unit)} | ceiling ${fmtNum(row.p2pd, row.unit)} | ${ratio.toFixed(2)}× — ${note}`);
}

async function benchHandshake(server: Child, client: Child, info: Info): Promise<void> {
  log(`Connect + handshake + close, sequential, ${W.connN} per run${info.libp2p ? ` (js-libp2p: ${W.libp2pN})` : ''}`);
  type R = { rate: number; cpuUs: number; clientUs: number; serverUs: number };
  const modes = withAlt(['raw', 'p2pd', 'secure', 'secure-cold', ...(info.libp2p ? ['libp2p'] : [])]);
  const res = await rounds(modes, async (mode): Promise<R> => {
    await server.call('begin', { cold: mode === 'secure-cold' });
    const c = await client.call<{ ms: number; cpuUs: number; n: number }>('connect', { mode, n: mode === 'libp2p' ? W.libp2pN : W.connN, ...target(info, mode) });
    await sleep(50);
    const s = await server.call<{ cpuUs: number; accepted: number; failures: number }>('end');
    if (s.accepted !== c.n) log(`  warning: ${mode}: the server accepted ${s.accepted} of ${c.n}`);
    return { rate: c.n / (c.ms / 1000), cpuUs: (c.cpuUs + s.cpuUs) / c.n, clientUs: c.cpuUs / c.n, serverUs: s.cpuUs / c.n };
  }, HANDSHAKE_WARMUPS);
  data['handshake'] = Object.fromEntries(res);
  const split = (m: string): string => {
    const r = res.get(m) ?? [];
    return r.length ? `${m}: client ${median(r.map((x) => x.clientUs)).toFixed(0)} + server ${median(r.map((x) => x.serverUs)).toFixed(0)} µs` : '';
  };
  const abs: Target = { op: '>=', value: 790, on: 'abs' };
  addRow(res, 'raw', 'secure', (r) => r.rate, { id: 'secure.handshake', what: 'Secure connect + handshake + close, sequential, reconnecting peer (target ≥ 10× js-libp2p ≈ 79/s)', unit: 'conn/s', target: abs });
  addRow(res, 'raw', 'secure-cold', (r) => r.rate, { id: 'secure.handshake.cold', what: 'Same, signature caches cleared before each connection (2 Ed25519 verifications)', unit: 'conn/s', target: abs });
  if (info.libp2p) {
    addRow(res, 'libp2p', 'secure', (r) => r.rate, {
      id: 'secure.handshake.vs-libp2p',
      what: 'Secure handshake rate vs js-libp2p (TCP + Noise XX + Yamux, dial + close) in the same run; the raw column is js-libp2p (target ≥ 10×)',
      unit: 'conn/s',
      target: { op: '>=', value: 10, on: 'ratio' },
    });
    addRow(res, 'libp2p', 'secure', (r) => r.cpuUs, { id: 'secure.handshake.cpu.vs-libp2p', what: 'Connect + handshake + close CPU both ends vs js-libp2p, same run; the raw column is js-libp2p', unit: 'µs', note: split('libp2p') });
  }
  if (ALT) addRow(res, 'secure@alt', 'secure', (r) => r.rate, { id: 'secure.handshake.vs-alt', what: 'Secure handshake rate, this tree / the BENCH_SECURE_ALT copy', unit: 'conn/s' });
  if (ALT) addRow(res, 'secure@alt', 'secure', (r) => r.cpuUs, { id: 'secure.handshake.cpu.vs-alt', what: 'Secure handshake CPU both ends, this tree / the BENCH_SECURE_ALT copy', unit: 'µs', note: split('secure@alt') });
  addRow(res, 'raw', 'p2pd', (r) => r.rate, { id: 'secure.connect.plain', what: 'Plain TcpPipe connect + close (same run, for reference)', unit: 'conn/s' });
  addRow(res, 'raw', 'secure', (r) => r.cpuUs, { id: 'secure.handshake.cpu', what: 'Secure connect + handshake + close CPU per connection, both ends', unit: 'µs', note: [split('raw'), split('secure'), split('secure-cold')].filter(Boolean).join('; ') });
}

function table(): string {
  const out = ['| measurement | raw node:net | p2pd | p2pd / raw (median, min–max of paired runs) | target | |', '|---|---:|---:|---:|---:|---|'];
  for (const r of rows) {
    const what = r.note ? `${r.what} <br><sub>${r.note}</sub>` : r.what;
    out.push(`| ${what} | ${fmtNum(r.raw, r.unit)} | ${fmtNum(r.p2pd, r.unit)} | ${fmtRatio(r)} | ${fmtTarget(r)} | ${r.pass === undefined ? '' : r.pass ? 'ok' : '**MISS**'} |`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const build = compile();
  const load0 = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  log(`secure pipe bench${QUICK ? ' (quick)' : ''}: ${RUNS} rounds after 1 warm-up; ${os.availableParallelism()} CPUs, node ${process.version}, load ${load0}${TSX ? '; through tsx' : ''}`);
  if (ALT && !TSX) log('warning: BENCH_SECURE_ALT without BENCH_TSX=1: this tree runs compiled, the copy through tsx');
  const opts = { tsx: TSX || ALT !== undefined, ...(PROF ? { profDir: PROF } : {}) };
  const server = new Child('secure-server', build.script, ['role=server'], opts);
  const client = new Child('secure-client', build.script, ['role=client'], opts);
  try {
    const info = await server.call<Info>('info');
    if (!ONLY || ONLY.includes('bulk')) await benchBulk(server, client, info);
    if (!ONLY || ONLY.includes('handshake')) await benchHandshake(server, client, info);
  } finally {
    await Promise.all([server.stop(), client.stop()]);
    build.remove();
  }
  const tbl = table();
  log(`\n${tbl}\n`);
  const misses = rows.filter((r) => r.pass === false).map((r) => r.id);
  log(misses.length ? `Targets missed: ${misses.join(', ')}` : 'All targets met.');
  const secs = (Date.now() - t0) / 1000;
  const out = {
    date: new Date().toISOString(),
    quick: QUICK,
    runs: RUNS,
    warmup: { bulk: 1, handshake: HANDSHAKE_WARMUPS },
    workloads: W,
    seconds: secs,
    runner: TSX ? 'node --import tsx (TypeScript sources)' : 'node (tsc-compiled JavaScript)',
    machine: { nproc: os.availableParallelism(), cpu: cpuModel(), node: process.version, loadavg: load0, loadavgEnd: os.loadavg().map((x) => x.toFixed(2)).join(' ') },
    rows,
    misses,
    data,
  };
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'secure.json'), `${JSON.stringify(out, null, 2)}\n`);
  log(`Wrote bench/results/secure.json (${secs.toFixed(0)} s)`);
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) return m[1];
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

if (role === 'server') await serverRole();
else if (role === 'client') await clientRole();
else await main();
