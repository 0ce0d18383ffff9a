/**
 * TCP bulk throughput with 64 KiB writes. Roles: `role=server` (counts bytes, acks the end)
 * and `role=client` (writes `total` bytes, waits for the ack).
 *
 * Modes: `raw` (socket.write loop honouring 'drain'), `p2pd-await` (`await pipe.send()` each
 * chunk), `p2pd-win8` (up to 8 un-awaited sends in flight). The p2pd server counts bytes in an
 * `onMessage` callback (raw framing).
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import { args, serve } from './lib/ipc.js';
import { base, libFor, libs } from './lib/p2pd.js';
import { closeRaw, connectRaw, cpuNow, cpuSince, HOST, listenRaw, now, type Cpu } from './lib/util.js';

/** Write size. */
export const CHUNK = 64 * 1024;

const role = args()['role'];

if (role === 'server') {
  let expected = Infinity;
  let count = 0;
  let acked = false;
  let cpu0: Cpu = cpuNow();
  const onBytes = (n: number, ack: () => void): void => {
    count += n;
    if (!acked && count >= expected) {
      acked = true;
      ack();
    }
  };
  const raw = net.createServer((s) => {
    s.on('data', (d: Buffer) => onBytes(d.length, () => s.write('k')));
    s.on('error', () => undefined);
  });
  const ports: Record<string, number> = { raw: await listenRaw(raw) };
  for (const [suffix, lib] of libs()) {
    const ps = await lib.pipeOpen('tcp', undefined, {
      bind: `${HOST}:0`,
      onMessage: (m) => onBytes(m.data.length, () => void m.pipe.send('k')),
    });
    ports[`p2pd${suffix}`] = ps.local.port;
  }
  serve({
    ports: () => ports,
    begin: (a: { expected: number }) => {
      expected = a.expected;
      count = 0;
      acked = false;
      cpu0 = cpuNow();
      return true;
    },
    end: () => ({ cpuUs: cpuSince(cpu0), bytes: count }),
  });
} else if (role === 'client') {
  const buf = Buffer.alloc(CHUNK, 0x61);
  serve({
    run: async (a: { mode: string; port: number; total: number }) => {
      const chunks = Math.ceil(a.total / CHUNK);
      if (a.mode === 'raw') {
        const s = await connectRaw(a.port);
        const ack = once(s, 'data');
        const cpu0 = cpuNow();
        const t0 = now();
        for (let i = 0; i < chunks; i++) {
          if (!s.write(buf)) await once(s, 'drain');
        }
        await ack;
        const ms = now() - t0;
        const cpuUs = cpuSince(cpu0);
        await closeRaw(s);
        return { ms, cpuUs, bytes: chunks * CHUNK };
      }
      const c = await libFor(a.mode).pipeOpen('tcp', { host: HOST, port: a.port });
      const mode = base(a.mode);
      const cpu0 = cpuNow();
      const t0 = now();
      if (mode === 'p2pd-await') {
        for (let i = 0; i < chunks; i++) await c.send(buf);
      } else if (mode === 'p2pd-win8') {
        const inflight: Promise<void>[] = [];
        for (let i = 0; i < chunks; i++) {
          inflight.push(c.send(buf));
          if (inflight.length >= 8) await inflight.shift();
        }
        await Promise.all(inflight);
      } else throw new Error(`unknown mode ${a.mode}`);
      await c.recv();
      const ms = now() - t0;
      const cpuUs = cpuSince(cpu0);
      await c.close();
      return { ms, cpuUs, bytes: chunks * CHUNK };
    },
  });
}
