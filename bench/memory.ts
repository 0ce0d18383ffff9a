/**
 * JS heap per idle open TCP connection, both ends in one process (run with --expose-gc).
 * Role `role=mem mode=raw|p2pd`, op `run { n }`: opens `n` connections to a local server,
 * leaves them idle, and reports the heapUsed growth after full GCs.
 *
 * - `raw`: net.Server whose sockets get a 'data' echo and an 'error' listener and are kept in a
 *   Set; client sockets with 'data' and 'error' listeners kept in an array.
 * - `p2pd`: a p2pd server with an `onMessage` echo callback; clients from `pipeOpen('tcp', …)`
 *   (default SUB_ALL subscription) kept in an array.
 * @module
 */
import net from 'node:net';
import { args, serve } from './lib/ipc.js';
import { base, libFor } from './lib/p2pd.js';
import { closeRaw, connectRaw, fullGc, HOST, listenRaw, mapLimit, sleep } from './lib/util.js';
import type { TcpPipe } from '../src/pipes/index.js';

const a = args();
const mode = a['mode'] ?? 'raw';

interface Harness {
  open(): Promise<void>;
  serverCount(): number;
  closeAll(): Promise<void>;
}

async function rawHarness(): Promise<Harness> {
  const srvSockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    srvSockets.add(s);
    s.on('data', (d: Buffer) => s.write(d));
    s.on('error', () => undefined);
    s.on('close', () => srvSockets.delete(s));
  });
  const port = await listenRaw(server, 4096);
  const clients: net.Socket[] = [];
  return {
    open: async () => {
      const s = await connectRaw(port);
      s.on('data', () => undefined);
      s.on('error', () => undefined);
      clients.push(s);
    },
    serverCount: () => srvSockets.size,
    closeAll: async () => {
      await Promise.all(clients.splice(0).map(closeRaw));
    },
  };
}

async function p2pdHarness(): Promise<Harness> {
  const lib = libFor(mode);
  const server = await lib.pipeOpen('tcp', undefined, { bind: `${HOST}:0`, backlog: 4096, onMessage: (m) => void m.pipe.send(m.data) });
  const clients: TcpPipe[] = [];
  return {
    open: async () => {
      clients.push(await lib.pipeOpen('tcp', server.local));
    },
    serverCount: () => server.connections.size,
    closeAll: async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
    },
  };
}

async function settle(h: Harness, want: number): Promise<void> {
  for (let i = 0; i < 500 && h.serverCount() !== want; i++) await sleep(10);
  if (h.serverCount() !== want) throw new Error(`server has ${h.serverCount()} connections, expected ${want}`);
}

serve({
  run: async (r: { n: number }) => {
    const h = base(mode) === 'p2pd' ? await p2pdHarness() : await rawHarness();
    // Warm-up: the same code paths once, so compiled code and hidden classes exist before measuring.
    await mapLimit(200, 50, () => h.open());
    await settle(h, 200);
    await h.closeAll();
    await settle(h, 0);
    await fullGc();
    const m0 = process.memoryUsage();
    await mapLimit(r.n, 100, () => h.open());
    await settle(h, r.n);
    await sleep(50);
    await fullGc();
    const m1 = process.memoryUsage();
    await h.closeAll();
    await settle(h, 0);
    return {
      heapPerConn: (m1.heapUsed - m0.heapUsed) / r.n,
      externalPerConn: (m1.external - m0.external) / r.n,
      rssPerConn: (m1.rss - m0.rss) / r.n,
    };
  },
});
