/**
 * Sequential TCP connect + graceful close. Roles: `role=server` (a raw node:net server and a
 * p2pd echo server) and `role=client` (`n` connections one after another).
 *
 * - `raw`: `net.connect()`, on 'connect' `end()`, wait for 'close' (the server's socket ends
 *   itself when it sees the FIN: allowHalfOpen is false).
 * - `p2pd`: `const p = await pipeOpen('tcp', server.local); await p.close();` against a p2pd
 *   server opened with an `onMessage` echo callback.
 * @module
 */
import net from 'node:net';
import { args, serve } from './lib/ipc.js';
import { base, libFor, libs } from './lib/p2pd.js';
import { cpuNow, cpuSince, HOST, listenRaw, now, type Cpu } from './lib/util.js';

const role = args()['role'];

if (role === 'server') {
  let cpu0: Cpu = cpuNow();
  let accepted = 0;
  const raw = net.createServer((s) => {
    accepted++;
    s.on('data', (d: Buffer) => s.write(d));
    s.on('error', () => undefined);
  });
  const ports: Record<string, number> = { raw: await listenRaw(raw) };
  for (const [suffix, lib] of libs()) {
    const ps = await lib.pipeOpen('tcp', undefined, { bind: `${HOST}:0`, onMessage: (m) => void m.pipe.send(m.data) });
    ps.onConnection(() => accepted++);
    ports[`p2pd${suffix}`] = ps.local.port;
  }
  serve({
    ports: () => ports,
    begin: () => {
      accepted = 0;
      cpu0 = cpuNow();
      return true;
    },
    end: () => ({ cpuUs: cpuSince(cpu0), accepted }),
  });
} else if (role === 'client') {
  const rawOnce = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: HOST, port });
      s.once('error', reject);
      s.once('connect', () => s.end());
      s.once('close', () => resolve());
    });
  serve({
    run: async (a: { mode: string; port: number; n: number }) => {
      const cpu0 = cpuNow();
      const t0 = now();
      if (a.mode === 'raw') {
        for (let i = 0; i < a.n; i++) await rawOnce(a.port);
      } else if (base(a.mode) === 'p2pd') {
        const lib = libFor(a.mode);
        const ep = { host: HOST, port: a.port };
        for (let i = 0; i < a.n; i++) {
          const p = await lib.pipeOpen('tcp', ep);
          await p.close();
        }
      } else throw new Error(`unknown mode ${a.mode}`);
      return { ms: now() - t0, cpuUs: cpuSince(cpu0), n: a.n };
    },
  });
}
