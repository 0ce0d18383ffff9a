/**
 * TCP echo of 100-byte messages with 16 in flight. Roles: `role=server` (one listener per mode)
 * and `role=client` (sends `n` messages keeping 16 in flight, counts replies).
 *
 * Modes (client and server of the same kind):
 * - `raw`: node:net, no framing; messages = bytes / 100. Node's default: Nagle on.
 * - `raw-nodelay`: as `raw` with `setNoDelay(true)` on both ends (p2pd's default).
 * - `p2pd`: p2pd raw framing, `onMessage` callbacks, `void pipe.send()`; messages = bytes / 100.
 * - `p2pd-nagle`: as `p2pd` with `noDelay: false` on both ends (node:net's default).
 * - `raw-len`: node:net with a hand-written u32 length-prefix parser/encoder, TCP_NODELAY on
 *   both ends (as p2pd's default) so that it compares with `p2pd-len`.
 * - `p2pd-len`: p2pd `'length'` framing, callbacks.
 * - `p2pd-pull`: p2pd raw framing, both ends `for (;;) { const m = await pipe.recv(); … }`.
 * - `p2pd-len-pull`: p2pd `'length'` framing, both ends pull, `void pipe.send()`.
 * - `p2pd-len-pull-await`: as above but `await pipe.send()` after each message.
 * @module
 */
import net from 'node:net';
import { args, serve } from './lib/ipc.js';
import { base, libFor, libs } from './lib/p2pd.js';
import { closeRaw, connectRaw, cpuNow, cpuSince, HOST, LenParser, lenFrame, listenRaw, now, type Cpu } from './lib/util.js';
import type { Framing, Message, TcpPipe } from '../src/pipes/index.js';
import type { Lib } from './lib/p2pd.js';

/** Message size. */
export const SIZE = 100;
/** Messages in flight. */
export const INFLIGHT = 16;
/** All modes, raw references first. */
export const MODES = ['raw', 'raw-nodelay', 'p2pd', 'p2pd-nagle', 'raw-len', 'p2pd-len', 'p2pd-pull', 'p2pd-len-pull', 'p2pd-len-pull-await'] as const;

const role = args()['role'];

function framingOf(mode: string): Framing {
  return mode.includes('len') ? 'length' : 'raw';
}

/** Serves one accepted p2pd pipe in pull mode. */
async function pullLoop(p: TcpPipe, awaitSend: boolean): Promise<void> {
  for (;;) {
    let m: Message;
    try {
      m = await p.recv();
    } catch {
      return;
    }
    if (awaitSend) {
      try {
        await p.send(m.data);
      } catch {
        return;
      }
    } else void p.send(m.data);
  }
}

if (role === 'server') {
  let cpu0: Cpu = cpuNow();
  let reads = 0; // 'data' chunks (raw modes) or raw-framing messages (p2pd): reads per message is a diagnostic
  const ports: Record<string, number> = {};
  const raw = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      reads++;
      s.write(d);
    });
    s.on('error', () => undefined);
  });
  ports['raw'] = await listenRaw(raw);
  const rawNd = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d: Buffer) => {
      reads++;
      s.write(d);
    });
    s.on('error', () => undefined);
  });
  ports['raw-nodelay'] = await listenRaw(rawNd);
  const rawLen = net.createServer({ noDelay: true }, (s) => {
    const parser = new LenParser();
    const emit = (f: Buffer): void => void s.write(lenFrame(f));
    s.on('data', (d: Buffer) => {
      reads++;
      parser.push(d, emit);
    });
    s.on('error', () => undefined);
  });
  ports['raw-len'] = await listenRaw(rawLen);
  for (const [suffix, lib] of libs()) {
    for (const mode of ['p2pd', 'p2pd-nagle', 'p2pd-len']) {
      const srv = await lib.pipeOpen('tcp', undefined, {
        bind: `${HOST}:0`,
        framing: framingOf(mode),
        noDelay: mode !== 'p2pd-nagle',
        onMessage: (m) => {
          reads++;
          void m.pipe.send(m.data);
        },
      });
      ports[mode + suffix] = srv.local.port;
    }
    for (const mode of ['p2pd-pull', 'p2pd-len-pull', 'p2pd-len-pull-await']) {
      const srv = await lib.pipeOpen('tcp', undefined, { bind: `${HOST}:0`, framing: framingOf(mode) });
      void (async () => {
        for await (const p of srv.clients()) void pullLoop(p, mode.endsWith('await'));
      })();
      ports[mode + suffix] = srv.local.port;
    }
  }
  serve({
    ports: () => ports,
    begin: () => {
      reads = 0;
      cpu0 = cpuNow();
      return true;
    },
    end: () => ({ cpuUs: cpuSince(cpu0), reads }),
  });
} else if (role === 'client') {
  const msg = Buffer.alloc(SIZE, 0x62);

  /** Raw node:net client, optionally with the hand-written length framing. */
  async function rawClient(port: number, n: number, len: boolean, noDelay = false): Promise<number> {
    const s = await connectRaw(port);
    if (noDelay) s.setNoDelay(true);
    let sent = 0;
    let done = 0;
    let bytes = 0;
    let t0 = 0;
    const elapsed = await new Promise<number>((resolve) => {
      const more = (k: number): void => {
        for (; k > 0 && sent < n; k--, sent++) s.write(len ? lenFrame(msg) : msg);
        if (done >= n) resolve(now() - t0);
      };
      if (len) {
        const parser = new LenParser();
        const emit = (): void => {
          done++;
          more(1);
        };
        s.on('data', (d: Buffer) => parser.push(d, emit));
      } else {
        s.on('data', (d: Buffer) => {
          bytes += d.length;
          const c = Math.floor(bytes / SIZE);
          const k = c - done;
          done = c;
          more(k);
        });
      }
      t0 = now();
      more(INFLIGHT);
    });
    await closeRaw(s);
    return elapsed;
  }

  /** p2pd client with callbacks. */
  async function p2pdCbClient(lib: Lib, port: number, n: number, framing: Framing, noDelay = true): Promise<number> {
    let sent = 0;
    let done = 0;
    let bytes = 0;
    let t0 = 0;
    let finish: (ms: number) => void = () => undefined;
    const finished = new Promise<number>((r) => (finish = r));
    const more = (p: { send(d: Buffer): Promise<void> }, k: number): void => {
      for (; k > 0 && sent < n; k--, sent++) void p.send(msg);
      if (done >= n) finish(now() - t0);
    };
    const onMessage =
      framing === 'raw'
        ? (m: Message): void => {
            bytes += m.data.length;
            const c = Math.floor(bytes / SIZE);
            const k = c - done;
            done = c;
            more(m.pipe, k);
          }
        : (m: Message): void => {
            done++;
            more(m.pipe, 1);
          };
    const c = await lib.pipeOpen('tcp', { host: HOST, port }, { framing, onMessage, noDelay });
    t0 = now();
    more(c, INFLIGHT);
    const ms = await finished;
    await c.close();
    return ms;
  }

  /** p2pd client in pull mode. */
  async function p2pdPullClient(lib: Lib, port: number, n: number, framing: Framing, awaitSend: boolean): Promise<number> {
    const c = await lib.pipeOpen('tcp', { host: HOST, port }, { framing });
    let sent = 0;
    let done = 0;
    let bytes = 0;
    const t0 = now();
    for (; sent < INFLIGHT; sent++) void c.send(msg);
    while (done < n) {
      const m = await c.recv();
      let k = 1;
      if (framing === 'raw') {
        bytes += m.data.length;
        const cc = Math.floor(bytes / SIZE);
        k = cc - done;
        done = cc;
      } else done++;
      for (; k > 0 && sent < n; k--, sent++) {
        if (awaitSend) await c.send(msg);
        else void c.send(msg);
      }
    }
    const ms = now() - t0;
    await c.close();
    return ms;
  }

  /** Round trips one at a time (1 in flight); returns each RTT in µs. */
  async function pingPong(mode: string, port: number, n: number): Promise<number[]> {
    const rtts: number[] = [];
    let t = 0;
    let got = 0;
    let done: () => void = () => undefined;
    const finished = new Promise<void>((r) => (done = r));
    let send: () => void;
    const onBytes = (len: number): void => {
      got += len;
      if (got < SIZE) return;
      got -= SIZE;
      rtts.push((now() - t) * 1000);
      if (rtts.length >= n) return done();
      t = now();
      send();
    };
    let close: () => Promise<void>;
    if (base(mode).startsWith('raw')) {
      const s = await connectRaw(port);
      if (mode === 'raw-nodelay') s.setNoDelay(true);
      s.on('data', (d: Buffer) => onBytes(d.length));
      send = () => void s.write(msg);
      close = () => closeRaw(s);
    } else {
      const c = await libFor(mode).pipeOpen('tcp', { host: HOST, port }, { onMessage: (m) => onBytes(m.data.length) });
      send = () => void c.send(msg);
      close = () => c.close();
    }
    t = now();
    send();
    await finished;
    await close();
    return rtts;
  }

  serve({
    rtt: async (a: { mode: string; port: number; n: number }) => {
      const rtts = await pingPong(a.mode, a.port, a.n);
      rtts.sort((x, y) => x - y);
      const q = (f: number): number => rtts[Math.min(rtts.length - 1, Math.floor(f * rtts.length))] as number;
      return { p50: q(0.5), p90: q(0.9), p99: q(0.99) };
    },
    run: async (a: { mode: string; port: number; n: number }) => {
      const cpu0 = cpuNow();
      let ms: number;
      const lib = libFor(a.mode);
      const mode = base(a.mode);
      switch (mode) {
        case 'raw':
          ms = await rawClient(a.port, a.n, false);
          break;
        case 'raw-nodelay':
          ms = await rawClient(a.port, a.n, false, true);
          break;
        case 'raw-len':
          ms = await rawClient(a.port, a.n, true, true);
          break;
        case 'p2pd-nagle':
          ms = await p2pdCbClient(lib, a.port, a.n, 'raw', false);
          break;
        case 'p2pd':
        case 'p2pd-len':
          ms = await p2pdCbClient(lib, a.port, a.n, framingOf(mode));
          break;
        case 'p2pd-pull':
        case 'p2pd-len-pull':
        case 'p2pd-len-pull-await':
          ms = await p2pdPullClient(lib, a.port, a.n, framingOf(mode), mode.endsWith('await'));
          break;
        default:
          throw new Error(`unknown mode ${a.mode}`);
      }
      return { ms, cpuUs: cpuSince(cpu0), n: a.n };
    },
  });
}
