/**
 * Many concurrent TCP connections, both ends in one process: open `n` connections (at most
 * `limit` connects in flight), exchange one 100-byte message on each (client sends, server
 * echoes, client waits for the reply), then close them all gracefully.
 * Role `role=scale mode=raw|p2pd`, op `run { n, limit }`. Needs `ulimit -n` ≥ 2n + slack.
 * @module
 */
import net from 'node:net';
import { once } from 'node:events';
import { args, serve } from './lib/ipc.js';
import { base, libFor } from './lib/p2pd.js';
import { closeRaw, connectRaw, HOST, listenRaw, mapLimit, now, sleep } from './lib/util.js';

const mode = args()['mode'] ?? 'raw';
const msg = Buffer.alloc(100, 0x64);

interface Result {
  openMs: number;
  exchangeMs: number;
  closeMs: number;
  totalMs: number;
  ok: number;
  errors: number;
  firstError?: string;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = now() + ms;
  while (!cond()) {
    if (now() > end) return false;
    await sleep(5);
  }
  return true;
}

async function runRaw(n: number, limit: number): Promise<Result> {
  const srv = new Set<net.Socket>();
  const server = net.createServer((s) => {
    srv.add(s);
    s.on('data', (d: Buffer) => s.write(d));
    s.on('error', () => undefined);
    s.on('close', () => srv.delete(s));
  });
  const port = await listenRaw(server, 4096);
  let errors = 0;
  let firstError: string | undefined;
  const fail = (e: unknown): undefined => {
    errors++;
    firstError ??= String(e);
    return undefined;
  };
  const t0 = now();
  const socks = await mapLimit(n, limit, () => connectRaw(port).catch(fail));
  await waitFor(() => srv.size >= socks.filter(Boolean).length, 10_000);
  const t1 = now();
  const exchanged = await Promise.all(
    socks.map(async (s) => {
      if (!s) return false;
      try {
        const got = once(s, 'data');
        s.write(msg);
        const [d] = (await got) as [Buffer];
        return d.length === msg.length;
      } catch (e) {
        fail(e);
        return false;
      }
    }),
  );
  const t2 = now();
  await Promise.all(socks.map((s) => (s ? closeRaw(s) : undefined)));
  await waitFor(() => srv.size === 0, 10_000);
  const t3 = now();
  await new Promise<void>((r) => server.close(() => r()));
  return { openMs: t1 - t0, exchangeMs: t2 - t1, closeMs: t3 - t2, totalMs: t3 - t0, ok: exchanged.filter(Boolean).length - srv.size, errors, ...(firstError ? { firstError } : {}) };
}

async function runP2pd(n: number, limit: number): Promise<Result> {
  const lib = libFor(mode);
  const server = await lib.pipeOpen('tcp', undefined, { bind: `${HOST}:0`, backlog: 4096, onMessage: (m) => void m.pipe.send(m.data) });
  let errors = 0;
  let firstError: string | undefined;
  const fail = (e: unknown): undefined => {
    errors++;
    firstError ??= String(e);
    return undefined;
  };
  const t0 = now();
  const pipes = await mapLimit(n, limit, () => lib.pipeOpen('tcp', server.local).catch(fail));
  await waitFor(() => server.connections.size >= pipes.filter(Boolean).length, 10_000);
  const t1 = now();
  const exchanged = await Promise.all(
    pipes.map(async (p) => {
      if (!p) return false;
      try {
        await p.send(msg);
        const m = await p.recv({ timeout: 10_000 });
        return m.data.length === msg.length;
      } catch (e) {
        fail(e);
        return false;
      }
    }),
  );
  const t2 = now();
  await Promise.all(pipes.map((p) => p?.close()));
  await waitFor(() => server.connections.size === 0, 10_000);
  const t3 = now();
  const left = server.connections.size;
  await server.close();
  return { openMs: t1 - t0, exchangeMs: t2 - t1, closeMs: t3 - t2, totalMs: t3 - t0, ok: exchanged.filter(Boolean).length - left, errors, ...(firstError ? { firstError } : {}) };
}

serve({
  run: (r: { n: number; limit: number }) => (base(mode) === 'p2pd' ? runP2pd(r.n, r.limit) : runRaw(r.n, r.limit)),
});
