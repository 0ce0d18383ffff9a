/**
 * UDP one-way receive rate of 1 KiB datagrams. Roles: `role=recv` (a fresh receiving socket per
 * run, 4 MiB SO_RCVBUF) and `role=send` (a raw node:dgram sender blasting `n` datagrams).
 *
 * Receiver modes:
 * - `raw`: node:dgram 'message' listener counting.
 * - `p2pd-3sub`: a p2pd UDP pipe with three subscriptions (a bytes-prefix pattern, a source
 *   filter, and SUB_ALL), each consumed by its own `for (;;) await pipe.recv({ sub })` loop.
 *   Every datagram matches all three. The rate counts SUB_ALL.
 * - `p2pd-1sub`: a p2pd UDP pipe with SUB_ALL only, consumed by one `await pipe.recv()` loop
 *   (diagnostic: the cost of one pull-mode subscription).
 * - `p2pd-cb`: a p2pd UDP pipe with one `onMessage` callback (diagnostic).
 * @module
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { args, serve } from './lib/ipc.js';
import { base, libFor } from './lib/p2pd.js';
import { cpuNow, cpuSince, HOST, now, type Cpu } from './lib/util.js';
import type { Sub, UdpPipe } from '../src/pipes/index.js';

/** Datagram size. */
export const SIZE = 1024;
/** SO_RCVBUF of every receiver. */
export const RCVBUF = 4 * 1024 * 1024;
/** Payload prefix the pattern subscription matches. */
const PREFIX = 'BENCH';
/** Datagrams per send burst (the last one carries a callback before the next burst). */
const BURST = 32;

const role = args()['role'];

if (role === 'recv') {
  let count = 0;
  let first = 0;
  let last = 0;
  let cpu0: Cpu = cpuNow();
  let stop: () => Promise<unknown> = async () => undefined;
  let extra: () => Record<string, number> = () => ({});
  const stamp = (): void => {
    if (count++ === 0) first = now();
    last = now();
  };
  serve({
    begin: async (a: { mode: string }) => {
      count = 0;
      first = last = 0;
      if (a.mode === 'raw') {
        const s = dgram.createSocket({ type: 'udp4', recvBufferSize: RCVBUF });
        s.on('message', stamp);
        s.bind(0, HOST);
        await once(s, 'listening');
        const rcvbuf = s.getRecvBufferSize();
        stop = () => new Promise<void>((r) => s.close(() => r()));
        extra = () => ({ rcvbuf });
        cpu0 = cpuNow();
        return { port: s.address().port };
      }
      let p: UdpPipe;
      const lib = libFor(a.mode);
      const mode = base(a.mode);
      if (mode === 'p2pd-cb') {
        p = await lib.pipeOpen('udp', undefined, { bind: `${HOST}:0`, recvBufferSize: RCVBUF, onMessage: stamp });
        extra = () => ({ rcvbuf: p.socket.getRecvBufferSize(), dropped: p.stats.dropped });
      } else if (mode === 'p2pd-3sub' || mode === 'p2pd-1sub') {
        p = await lib.pipeOpen('udp', undefined, { bind: `${HOST}:0`, recvBufferSize: RCVBUF });
        const pipe = p;
        const subs: Sub[] = mode === 'p2pd-1sub' ? [lib.SUB_ALL] : [lib.SUB_ALL, pipe.subscribe({ pattern: Buffer.from(PREFIX) }), pipe.subscribe({ source: { host: HOST } })];
        const got = [0, 0, 0];
        subs.forEach((sub, i) => {
          void (async () => {
            for (;;) {
              try {
                await pipe.recv({ sub });
              } catch {
                return;
              }
              if (i === 0) stamp();
              else got[i]++;
            }
          })();
        });
        extra = () => ({ rcvbuf: pipe.socket.getRecvBufferSize(), dropped: pipe.stats.dropped, prefixSub: got[1] as number, sourceSub: got[2] as number });
      } else throw new Error(`unknown mode ${a.mode}`);
      const pipe = p;
      stop = () => pipe.close();
      cpu0 = cpuNow();
      return { port: pipe.local.port };
    },
    poll: () => count,
    end: async () => {
      const cpuUs = cpuSince(cpu0);
      const r = { count, spanMs: last - first, cpuUs, ...extra() };
      await stop();
      return r;
    },
  });
} else if (role === 'send') {
  const buf = Buffer.alloc(SIZE, 0x63);
  buf.write(PREFIX, 0, 'latin1');
  serve({
    run: async (a: { port: number; n: number }) => {
      const s = dgram.createSocket('udp4');
      s.connect(a.port, HOST);
      await once(s, 'connect');
      const cpu0 = cpuNow();
      const t0 = now();
      let i = 0;
      await new Promise<void>((resolve, reject) => {
        const burst = (err?: Error | null): void => {
          if (err) return reject(err);
          const end = Math.min(a.n, i + BURST);
          for (; i < end - 1; i++) s.send(buf);
          if (i < a.n) {
            i++;
            s.send(buf, burst);
          } else resolve();
        };
        burst();
      });
      const ms = now() - t0;
      const cpuUs = cpuSince(cpu0);
      await new Promise<void>((r) => s.close(() => r()));
      return { ms, cpuUs, sent: a.n };
    },
  });
}
