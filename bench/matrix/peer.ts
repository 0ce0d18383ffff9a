/**
 * One side of a `bench/matrix.ts` measurement, run inside a lab namespace with
 * `node --import tsx bench/matrix/peer.ts ROLE …`. Every output line is one JSON object.
 *
 * Roles:
 * - `serve [node opts] [--raw-port N]`: a P2P node that answers the protocol below; with
 *   `--raw-port` also a raw TCP server (same workload, for the raw-vs-pipe comparison).
 * - `client ADDR [node opts] [--via K] [--bytes N] [--idle MS]`: connect, 1 MiB each way,
 *   RTTs, idle, then a ping each way.
 * - `bulk ADDR --raw HOST:PORT [--bytes N] [--rounds R]`: throughput and RTT, node pipe vs raw TCP.
 * - `many ADDR --count K`: K more nodes connect to ADDR; the server reports its memory.
 *
 * Node options: --broker URL --stun HOST --turn USER:PASS@HOST:PORT --keepalive MS --port N.
 *
 * Messages (first byte = tag): U upload chunk, E end of upload (server answers A + download
 * D… + F), P ping (answer Q, echo), I idle MS (server sends S after MS; client answers T),
 * M memory request (answer m + JSON after GC).
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createConnection, createServer, type Socket } from 'node:net';
import { startP2pNode, type P2pNode } from '../../src/node/node.js';
import type { NodeEvent, NodePipe, P2pNodeOptions, TurnServerConfig } from '../../src/node/types.js';
import type { AddrEndpointKind } from '../../src/node/address.js';
import { formatEndpoint } from '../../src/interfaces/endpoint.js';

const out = (o: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CHUNK = 64 * 1024;

interface Args {
  role: string;
  addr?: string;
  brokers: string[];
  stun: string[];
  turn: TurnServerConfig[];
  keepAlive?: number;
  port?: number;
  via: AddrEndpointKind[];
  bytes: number;
  idle: number;
  rawPort?: number;
  raw?: string;
  rounds: number;
  count: number;
}

function parse(argv: string[]): Args {
  const a: Args = { role: argv[0] ?? '', brokers: [], stun: [], turn: [], via: [], bytes: 1 << 20, idle: 0, rounds: 3, count: 10 };
  const rest = argv.slice(1);
  while (rest.length) {
    const f = rest.shift() as string;
    const v = (): string => rest.shift() as string;
    switch (f) {
      case '--broker': a.brokers.push(v()); break;
      case '--stun': a.stun.push(v()); break;
      case '--turn': {
        const m = /^([^:@]+):([^@]+)@(.+)$/.exec(v());
        if (!m) throw new Error('bad --turn');
        a.turn.push({ username: m[1] as string, password: m[2] as string, server: m[3] as string });
        break;
      }
      case '--keepalive': a.keepAlive = Number(v()); break;
      case '--port': a.port = Number(v()); break;
      case '--via': a.via.push(v() as AddrEndpointKind); break;
      case '--bytes': a.bytes = Number(v()); break;
      case '--idle': a.idle = Number(v()); break;
      case '--raw-port': a.rawPort = Number(v()); break;
      case '--raw': a.raw = v(); break;
      case '--rounds': a.rounds = Number(v()); break;
      case '--count': a.count = Number(v()); break;
      default:
        if (f.startsWith('-')) throw new Error(`unknown option ${f}`);
        a.addr = f;
    }
  }
  return a;
}

function nodeOpts(a: Args, events?: NodeEvent[]): P2pNodeOptions {
  const o: P2pNodeOptions = { portMapping: false };
  if (a.brokers.length) o.signalling = { brokers: a.brokers };
  if (a.stun.length) o.stun = a.stun;
  if (a.turn.length) o.turn = a.turn;
  if (a.keepAlive !== undefined) o.keepAlive = a.keepAlive;
  if (a.port !== undefined) o.port = a.port;
  if (events) o.onEvent = (e) => void events.push(e);
  return o;
}

function pathJson(p: NodePipe): Record<string, unknown> {
  const x = p.path;
  return { strategy: x.strategy, transport: x.transport, local: formatEndpoint(x.local), remote: formatEndpoint(x.remote), ms: x.ms };
}

const tag = (t: string, body: Buffer | string = ''): Buffer => Buffer.concat([Buffer.from(t), Buffer.isBuffer(body) ? body : Buffer.from(body)]);

/** Sends `n` bytes as tag-`t` chunks, up to 8 sends in flight. */
async function sendBulk(p: NodePipe, t: string, n: number): Promise<void> {
  const chunk = tag(t, Buffer.alloc(CHUNK, 0x61));
  const inflight: Promise<void>[] = [];
  for (let sent = 0; sent < n; ) {
    const len = Math.min(CHUNK, n - sent);
    inflight.push(p.send(len === CHUNK ? chunk : chunk.subarray(0, len + 1)));
    sent += len;
    if (inflight.length >= 8) await inflight.shift();
  }
  await Promise.all(inflight);
}

function memory(): Record<string, number> {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) for (let i = 0; i < 3; i++) g();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

// ------------------------------------------------------------------ serve --

async function serve(a: Args): Promise<void> {
  const t0 = performance.now();
  const node = await startP2pNode(nodeOpts(a));
  const startMs = performance.now() - t0;
  out({ event: 'address', addr: node.addr, startMs, nat: node.nat?.type ?? null });
  node.onPipe((p) => out({ event: 'peer', path: pathJson(p) }));
  const up = new Map<NodePipe, number>();
  node.addMsgCb(async (msg, pipe) => {
    const t = String.fromCharCode(msg[0] ?? 0);
    switch (t) {
      case 'U':
        up.set(pipe, (up.get(pipe) ?? 0) + msg.length - 1);
        break;
      case 'E': {
        const n = up.get(pipe) ?? 0;
        up.set(pipe, 0);
        out({ event: 'upload', bytes: n });
        await pipe.send(tag('A', String(n)));
        const want = Number(msg.subarray(1).toString());
        await sendBulk(pipe, 'D', want);
        await pipe.send(tag('F', String(want)));
        break;
      }
      case 'P':
        await pipe.send(tag('Q', msg.subarray(1)));
        break;
      case 'I': {
        const ms = Number(msg.subarray(1).toString());
        setTimeout(() => {
          const t1 = performance.now();
          const timer = setTimeout(() => out({ event: 'server-ping', peer: pipe.remoteIdHex, ok: false, error: 'timeout' }), 10_000);
          pending.set(pipe, () => (clearTimeout(timer), out({ event: 'server-ping', peer: pipe.remoteIdHex, ok: true, ms: performance.now() - t1 })));
          pipe.send(tag('S')).catch((e: unknown) => (clearTimeout(timer), out({ event: 'server-ping', peer: pipe.remoteIdHex, ok: false, error: String(e) })));
        }, ms);
        break;
      }
      case 'T':
        pending.get(pipe)?.();
        pending.delete(pipe);
        break;
      case 'M':
        await pipe.send(tag('m', JSON.stringify({ ...memory(), pipes: node.pipes.size })));
        break;
    }
  });
  const pending = new Map<NodePipe, () => void>();
  if (a.rawPort !== undefined) rawServer(a.rawPort);
  await new Promise<void>((r) => process.once('SIGTERM', () => r()));
  await node.close();
  process.exit(0);
}

/** Raw TCP: 8-byte length N, then N bytes; answers 1 byte, then N bytes. After that, an echo. */
function rawServer(port: number): void {
  const srv = createServer((s) => {
    s.setNoDelay(true);
    let hdr = Buffer.alloc(0);
    let want = -1;
    let got = 0;
    let echo = false;
    s.on('data', (d: Buffer) => {
      if (echo) return void s.write(d);
      if (want < 0) {
        hdr = Buffer.concat([hdr, d]);
        if (hdr.length < 8) return;
        want = Number(hdr.readBigUInt64BE(0));
        d = hdr.subarray(8);
      }
      got += d.length;
      if (got >= want) {
        s.write(Buffer.from('A'));
        const chunk = Buffer.alloc(CHUNK, 0x62);
        let left = want;
        const pump = (): void => {
          while (left > 0) {
            const len = Math.min(CHUNK, left);
            left -= len;
            if (!s.write(len === CHUNK ? chunk : chunk.subarray(0, len))) return void s.once('drain', pump);
          }
        };
        pump();
        echo = true;
      }
    });
    s.on('error', () => undefined);
  });
  srv.listen(port, () => out({ event: 'raw-listening', port }));
}

// ----------------------------------------------------------------- client --

/** A message reader over a node pipe: waits for the next message with tag `t`. */
function reader(p: NodePipe): { next(t: string, timeoutMs?: number): Promise<Buffer>; onTag(t: string, cb: (m: Buffer) => void): void } {
  const waiters: { t: string; res: (b: Buffer) => void }[] = [];
  const cbs = new Map<string, (m: Buffer) => void>();
  const counts = new Map<string, number>();
  p.onMessage((m) => {
    const t = String.fromCharCode(m.data[0] ?? 0);
    const cb = cbs.get(t);
    if (cb) return cb(m.data);
    const i = waiters.findIndex((w) => w.t === t);
    if (i >= 0) waiters.splice(i, 1)[0]?.res(m.data);
    else counts.set(t, (counts.get(t) ?? 0) + 1);
  });
  return {
    next: (t, timeoutMs = 30_000) =>
      new Promise<Buffer>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`timeout waiting for ${t}`)), timeoutMs);
        waiters.push({ t, res: (b) => (clearTimeout(timer), res(b)) });
      }),
    onTag: (t, cb) => void cbs.set(t, cb),
  };
}

async function pingOnce(p: NodePipe, r: ReturnType<typeof reader>, timeoutMs = 10_000): Promise<number> {
  const t0 = performance.now();
  await p.send(tag('P', String(t0)));
  await r.next('Q', timeoutMs);
  return performance.now() - t0;
}

const median = (xs: number[]): number | null => {
  if (!xs.length) return null;
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function client(a: Args): Promise<void> {
  const events: NodeEvent[] = [];
  const t0 = performance.now();
  const node = await startP2pNode(nodeOpts(a, events));
  out({ event: 'started', id: node.idHex, startMs: performance.now() - t0, nat: node.nat?.type ?? null });
  let pipe: NodePipe;
  try {
    pipe = await node.connect(a.addr as string, { timeout: 20_000, queue: false, ...(a.via.length ? { via: a.via } : {}) });
  } catch (e) {
    out({ event: 'error', phase: 'connect', error: (e as Error).message, events });
    await node.close();
    process.exit(1);
  }
  out({ event: 'connected', path: pathJson(pipe), events });
  const r = reader(pipe);
  let downBytes = 0;
  r.onTag('D', (m) => void (downBytes += m.length - 1));
  const result: Record<string, unknown> = { event: 'result' };
  try {
    // data both ways
    const tu = performance.now();
    await sendBulk(pipe, 'U', a.bytes);
    await pipe.send(tag('E', String(a.bytes)));
    const ack = await r.next('A', 60_000);
    const upMs = performance.now() - tu;
    const td = performance.now();
    await r.next('F', 60_000);
    const downMs = performance.now() - td;
    Object.assign(result, { upBytes: Number(ack.subarray(1).toString()), upMs, downBytes, downMs });
    const rtts: number[] = [];
    for (let i = 0; i < 10; i++) rtts.push(await pingOnce(pipe, r));
    result.rttMs = median(rtts);
  } catch (e) {
    result.dataError = (e as Error).message;
  }
  out({ ...result, event: 'data' });
  if (a.idle > 0) {
    // the server pings us after the idle time too
    let serverPing = false;
    r.onTag('S', () => {
      serverPing = true;
      void pipe.send(tag('T')).catch(() => undefined);
    });
    await pipe.send(tag('I', String(a.idle)));
    out({ event: 'idle-start', ms: a.idle });
    await sleep(a.idle + 200);
    let afterIdle: Record<string, unknown>;
    try {
      afterIdle = { ok: true, ms: await pingOnce(pipe, r, 15_000) };
    } catch (e) {
      afterIdle = { ok: false, error: (e as Error).message, pipeClosed: pipe.closed };
    }
    for (let i = 0; i < 100 && !serverPing; i++) await sleep(100);
    out({ event: 'idle-done', clientPing: afterIdle, serverPingReceived: serverPing, samePipe: !pipe.closed, pipes: node.pipes.size });
  }
  await pipe.close().catch(() => undefined);
  await node.close();
  process.exit(0);
}

// ------------------------------------------------------------------- bulk --

async function rawRun(hostPort: string, n: number): Promise<{ upMs: number; downMs: number; upCpu: number; downCpu: number; rtt: number }> {
  const i = hostPort.lastIndexOf(':');
  const s: Socket = createConnection({ host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)), noDelay: true });
  await new Promise<void>((res, rej) => (s.once('connect', res), s.once('error', rej)));
  let got = -1;
  let onData: (() => void) | undefined;
  let lastEcho = 0;
  s.on('data', (d: Buffer) => {
    if (got < 0) {
      got = d.length - 1;
    } else got += d.length;
    lastEcho = d.length;
    onData?.();
  });
  const wait = (cond: () => boolean): Promise<void> =>
    new Promise((res) => {
      if (cond()) return res();
      onData = () => {
        if (cond()) ((onData = undefined), res());
      };
    });
  const tu = performance.now();
  const cu = process.cpuUsage();
  const hdr = Buffer.alloc(8);
  hdr.writeBigUInt64BE(BigInt(n));
  s.write(hdr);
  const chunk = Buffer.alloc(CHUNK, 0x61);
  for (let sent = 0; sent < n; ) {
    const len = Math.min(CHUNK, n - sent);
    sent += len;
    if (!s.write(len === CHUNK ? chunk : chunk.subarray(0, len))) await new Promise((r) => s.once('drain', r));
  }
  await wait(() => got >= 0);
  const upMs = performance.now() - tu;
  const upCpu = cpuMs(cu);
  const td = performance.now();
  const cd = process.cpuUsage();
  await wait(() => got >= n);
  const downMs = performance.now() - td;
  const downCpu = cpuMs(cd);
  const rtts: number[] = [];
  const msg = Buffer.alloc(64, 0x70);
  for (let k = 0; k < 50; k++) {
    const t = performance.now();
    const base = got;
    s.write(msg);
    await wait(() => got >= base + 64);
    rtts.push(performance.now() - t);
  }
  void lastEcho;
  s.destroy();
  return { upMs, downMs, upCpu, downCpu, rtt: median(rtts) as number };
}

/** This process's CPU (user + system) in ms since `from`. */
function cpuMs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

/**
 * Bare `node:crypto` ChaCha20-Poly1305 in this process, ms of CPU per MB: one cipher object per
 * 64 KiB frame (the least work the protocol allows), as a floor for the secure pipe's crypto.
 */
function bareAead(): { encMsPerMB: number; decMsPerMB: number } {
  // Each figure is the best of three 100 ms runs.
  const key = randomBytes(32);
  const iv = Buffer.alloc(12);
  const frame = Buffer.alloc(CHUNK - 17, 0x61);
  const opts = { authTagLength: 16 } as const;
  const enc = (): { ct: Buffer; tag: Buffer } => {
    const c = createCipheriv('chacha20-poly1305', key, iv, opts);
    const ct = c.update(frame);
    c.final();
    return { ct, tag: c.getAuthTag() };
  };
  const { ct, tag: authTag } = enc();
  const dec = (): void => {
    const d = createDecipheriv('chacha20-poly1305', key, iv, opts);
    d.setAuthTag(authTag);
    d.update(ct);
    d.final();
  };
  const rate = (fn: () => void): number => {
    for (let i = 0; i < 200; i++) fn(); // warm-up
    let best = Infinity;
    for (let run = 0; run < 3; run++) {
      const c0 = process.cpuUsage();
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < 100) for (let i = 0; i < 20; i++, n++) fn();
      best = Math.min(best, cpuMs(c0) / ((n * frame.length) / 1e6));
    }
    return best;
  };
  return { encMsPerMB: rate(enc), decMsPerMB: rate(dec) };
}

async function nodeRun(pipe: NodePipe, r: ReturnType<typeof reader>, n: number, down: { bytes: number }): Promise<{ upMs: number; downMs: number; upCpu: number; downCpu: number; rtt: number }> {
  down.bytes = 0;
  const tu = performance.now();
  const cu = process.cpuUsage();
  await sendBulk(pipe, 'U', n);
  await pipe.send(tag('E', String(n)));
  await r.next('A', 120_000);
  const upMs = performance.now() - tu;
  const upCpu = cpuMs(cu);
  const td = performance.now();
  const cd = process.cpuUsage();
  await r.next('F', 120_000);
  const downMs = performance.now() - td;
  const downCpu = cpuMs(cd);
  const rtts: number[] = [];
  for (let k = 0; k < 50; k++) rtts.push(await pingOnce(pipe, r));
  return { upMs, downMs, upCpu, downCpu, rtt: median(rtts) as number };
}

async function bulk(a: Args): Promise<void> {
  const node = await startP2pNode({ portMapping: false, signalling: false, strategies: ['direct'] });
  const pipe = await node.connect(a.addr as string, { timeout: 10_000, queue: false });
  out({ event: 'connected', path: pathJson(pipe) });
  const r = reader(pipe);
  const down = { bytes: 0 };
  r.onTag('D', (m) => void (down.bytes += m.length - 1));
  // The least of a measurement before and one after the transfers (other labs' work may overlap either).
  const before = bareAead();
  // warm-up
  await nodeRun(pipe, r, Math.min(a.bytes, 64 << 20), down);
  await rawRun(a.raw as string, Math.min(a.bytes, 64 << 20));
  for (let i = 0; i < a.rounds; i++) {
    const order = i % 2 ? ['node', 'raw'] : ['raw', 'node'];
    for (const m of order) {
      const x = m === 'raw' ? await rawRun(a.raw as string, a.bytes) : await nodeRun(pipe, r, a.bytes, down);
      const mb = a.bytes / 1e6;
      out({ event: 'bulk', mode: m, round: i, bytes: a.bytes, upMBps: mb / (x.upMs / 1000), downMBps: mb / (x.downMs / 1000), rttMs: x.rtt, upCpuMsPerMB: x.upCpu / mb, downCpuMsPerMB: x.downCpu / mb });
    }
  }
  const after = bareAead();
  out({ event: 'aead', encMsPerMB: Math.min(before.encMsPerMB, after.encMsPerMB), decMsPerMB: Math.min(before.decMsPerMB, after.decMsPerMB) });
  await pipe.close();
  await node.close();
  process.exit(0);
}

// ------------------------------------------------------------------- many --

async function many(a: Args): Promise<void> {
  const nodes: P2pNode[] = [];
  const pipes: NodePipe[] = [];
  const mk = async (): Promise<NodePipe> => {
    const n = await startP2pNode({ portMapping: false, signalling: false, strategies: ['direct'] });
    nodes.push(n);
    const p = await n.connect(a.addr as string, { timeout: 10_000, queue: false });
    pipes.push(p);
    return p;
  };
  const first = await mk();
  const r = reader(first);
  const mem = async (): Promise<Record<string, number>> => {
    await sleep(500);
    await first.send(tag('M'));
    return JSON.parse((await r.next('m', 10_000)).subarray(1).toString()) as Record<string, number>;
  };
  const before = await mem();
  for (let i = 0; i < a.count; i++) await mk();
  const after = await mem();
  out({ event: 'memory', peers: a.count, before, after, heapPerPeer: (after.heapUsed! - before.heapUsed!) / a.count, rssPerPeer: (after.rss! - before.rss!) / a.count, externalPerPeer: (after.external! - before.external!) / a.count });
  await Promise.all(nodes.map((n) => n.close()));
  process.exit(0);
}

const a = parse(process.argv.slice(2));
const run = { serve, client, bulk, many }[a.role as 'serve'];
if (!run) {
  console.error('usage: peer.ts serve|client|bulk|many …');
  process.exit(2);
}
run(a).catch((e: unknown) => {
  out({ event: 'error', error: (e as Error)?.stack ?? String(e) });
  process.exit(1);
});
