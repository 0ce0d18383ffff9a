/**
 * Helpers for the pipe-layer suites (test/pipes-*.test.ts): cleanup lists, an
 * unhandled-rejection guard, plain node:net/dgram peers, a TCP listener that never
 * accepts (for deterministic connect timeouts on loopback) and small waiting utilities.
 * @module
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { MessageHub } from '../../src/pipes/hub.js';

/** The loopback address families the suites run over. */
export const LOOPBACKS = [
  { name: 'IPv4', host: '127.0.0.1', family: 4 as const, wildcard: '0.0.0.0' },
  { name: 'IPv6', host: '::1', family: 6 as const, wildcard: '::' },
];
/** One of {@link LOOPBACKS}. */
export type Loopback = (typeof LOOPBACKS)[number];

/** Name of the loopback interface (`lo` on Linux). */
export const LO_IFACE: string = Object.keys(networkInterfaces()).find((n) => n === 'lo' || n.startsWith('lo')) ?? 'lo';

/** `[host]:port` / `host:port` for a loopback address. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// ------------------------------------------------------------------ cleanup --

/** Things to close after each test, closed in reverse order of registration. */
export class Cleanup {
  private fns: (() => unknown)[] = [];

  /** Registers a cleanup function. */
  add(fn: () => unknown): void {
    this.fns.push(fn);
  }

  /** Registers anything with `close()` (pipes, servers) and returns it. */
  track<T extends { close(): unknown }>(x: T): T {
    this.fns.push(() => x.close());
    return x;
  }

  /** Registers a node:net socket (destroyed on cleanup) or a dgram socket (closed) and returns it. */
  socket<T extends Socket | UdpSocket>(s: T): T {
    this.fns.push(() => {
      if ('destroy' in s) s.destroy();
      else {
        try {
          s.close();
        } catch {
          /* already closed */
        }
      }
    });
    return s;
  }

  /** Runs every cleanup (errors are collected and rethrown after all ran). */
  async run(): Promise<void> {
    const fns = this.fns.reverse();
    this.fns = [];
    const errors: unknown[] = [];
    for (const fn of fns) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

/** A cleanup list run by `afterEach`. */
export function useCleanup(): Cleanup {
  const c = new Cleanup();
  afterEach(() => c.run());
  return c;
}

/**
 * Installs `unhandledRejection` / `uncaughtException` listeners for the file; each test
 * fails in `afterEach` if any fired while it ran. Call at the top level of a test file.
 */
export function guardUnhandled(): void {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    seen.push(reason);
  };
  const onException = (err: unknown): void => {
    seen.push(err);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
  });
  afterAll(() => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  });
  afterEach(async () => {
    // Let pending rejections surface before checking.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const got = seen.splice(0);
    expect(got, 'unhandled rejections / uncaught exceptions during the test').toEqual([]);
  });
}

// ------------------------------------------------------------------ waiting --

/** Resolves with the close error (or `undefined`) once `hub` closes. */
export function closedWith(hub: MessageHub): Promise<Error | undefined> {
  return new Promise((resolve) => {
    hub.onClose((err) => resolve(err));
  });
}

/** Resolves with the next process warning carrying `code` (others are ignored). */
export function nextWarning(code: string, ms = 5_000): Promise<Error & { code?: string }> {
  let onWarning: ((w: Error & { code?: string }) => void) | undefined;
  const p = new Promise<Error & { code?: string }>((resolve) => {
    onWarning = (w) => {
      if (w.code === code) resolve(w);
    };
    process.on('warning', onWarning);
  });
  return within(p, ms, `warning ${code}`).finally(() => {
    if (onWarning) process.off('warning', onWarning);
  });
}

/** Rejects after `ms` with a descriptive error, or resolves with `p`'s result first. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** Polls `cond` until it holds (for states that have no event to await). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000, intervalMs = 5): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Settles `p` into `{ ok, value | error }` so an expected rejection is never unhandled. */
export async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Returns what `p` rejected with; fails if it resolved. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  const r = await settle(p);
  if (r.ok) throw new Error('expected a rejection, the promise resolved');
  expect(r.error).toBeInstanceOf(Error);
  return r.error as Error;
}

/** Returns what `fn` threw synchronously; fails if it returned. */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error('expected an exception');
}

// --------------------------------------------------------------- raw peers --

/** A plain node:net server, recording accepted sockets. */
export interface RawServer {
  server: Server;
  port: number;
  sockets: Socket[];
  /** Resolves with the next accepted socket (already accepted ones first). */
  nextSocket(): Promise<Socket>;
  close(): Promise<void>;
}

/** Starts a plain node:net server on `host`, port 0. */
export async function rawServer(host: string): Promise<RawServer> {
  const sockets: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  let taken = 0;
  const server = createServer((s) => {
    s.on('error', () => undefined);
    sockets.push(s);
    const w = waiting.shift();
    if (w) {
      taken++;
      w(s);
    }
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    sockets,
    nextSocket() {
      if (taken < sockets.length) return Promise.resolve(sockets[taken++] as Socket);
      return new Promise((resolve) => waiting.push(resolve));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Connects a plain node:net socket (errors are swallowed: tests look at events). */
export async function rawConnect(host: string, port: number): Promise<Socket> {
  const s = netConnect({ host, port });
  s.on('error', () => undefined);
  await once(s, 'connect');
  return s;
}

/** Reads exactly `n` bytes from a raw socket (or fewer if it ends first). */
export function readBytes(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) done();
    };
    const done = (): void => {
      s.off('data', onData);
      s.off('end', done);
      s.off('close', done);
      resolve(Buffer.concat(chunks));
    };
    s.on('data', onData);
    s.on('end', done);
    s.on('close', done);
  });
}

/** A plain dgram socket bound on `host`, port 0. */
export async function rawUdp(host: string): Promise<UdpSocket> {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('error', () => undefined);
  s.bind(0, host);
  await once(s, 'listening');
  return s;
}

/** Finds a currently free port on `host` (bind port 0, read it, close). */
export async function freeTcpPort(host: string): Promise<number> {
  const s = createServer();
  s.listen(0, host);
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Length-prefixes `data` (u32 big-endian), as the `'length'` framing does. */
export function lengthFrame(data: Buffer | string): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length, 0);
  return Buffer.concat([h, b]);
}

// ---------------------------------------------------------- stalled listener --

/**
 * A TCP listener (backlog 1) in a worker thread whose event loop is blocked, so it never
 * accepts; {@link StalledListener.fill} fills its accept queue until the kernel drops
 * further SYNs. A connect to it then hangs deterministically (loopback, no timing games).
 */
export interface StalledListener {
  port: number;
  /** Opens connections until one does not complete; returns how many completed. */
  fill(): Promise<number>;
  close(): Promise<void>;
}

const STALLED_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const s = net.createServer();
s.listen({ host: workerData.host, port: 0, backlog: 1 }, () => {
  parentPort.postMessage(s.address().port);
  const flag = new Int32Array(workerData.sab);
  Atomics.wait(flag, 0, 0); // blocks the event loop: nothing is ever accepted
  s.close();
});
`;

/** Starts a {@link StalledListener} on `host`. */
export async function stalledListener(host: string): Promise<StalledListener> {
  const sab = new SharedArrayBuffer(4);
  const worker = new Worker(STALLED_WORKER, { eval: true, workerData: { host, sab } });
  const [port] = (await once(worker, 'message')) as [number];
  const fillers: Socket[] = [];
  return {
    port,
    async fill() {
      let completed = 0;
      for (let i = 0; i < 32; i++) {
        const s = netConnect({ host, port });
        s.on('error', () => undefined);
        fillers.push(s);
        const ok = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 300);
          s.once('connect', () => {
            clearTimeout(t);
            resolve(true);
          });
        });
        if (!ok) return completed;
        completed++;
      }
      throw new Error('stalled listener: accept queue never filled');
    },
    async close() {
      for (const s of fillers) s.destroy();
      const flag = new Int32Array(sab);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      await worker.terminate();
    },
  };
}
