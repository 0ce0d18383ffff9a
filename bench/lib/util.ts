/**
 * Small helpers shared by the benchmark roles.
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/** Loopback address used by every benchmark. */
export const HOST = '127.0.0.1';

/** A CPU-time snapshot. */
export type Cpu = NodeJS.CpuUsage;

/** Current process CPU usage. */
export function cpuNow(): Cpu {
  return process.cpuUsage();
}

/** User+system CPU microseconds since `start`. */
export function cpuSince(start: Cpu): number {
  const d = process.cpuUsage(start);
  return d.user + d.system;
}

/** Milliseconds, high resolution. */
export function now(): number {
  return performance.now();
}

/** Listens a raw `net.Server` on 127.0.0.1:0 and returns its port. */
export async function listenRaw(server: net.Server, backlog = 511): Promise<number> {
  server.listen({ host: HOST, port: 0, backlog });
  await once(server, 'listening');
  const a = server.address();
  if (!a || typeof a !== 'object') throw new Error('no address');
  return a.port;
}

/** Connects a raw socket to 127.0.0.1:port. */
export function connectRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/** Ends a raw socket gracefully and waits for it to close. */
export function closeRaw(s: net.Socket): Promise<void> {
  if (s.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('close', () => resolve());
    s.end();
  });
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `fn(i)` for i in [0, n) with at most `limit` in flight; resolves with results in order. */
export async function mapLimit<T>(n: number, limit: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return out;
}

/** Runs the garbage collector (needs `--expose-gc`) until the heap settles. */
export async function fullGc(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(20);
  }
}

/** Hand-written length-prefix (u32 BE) parser, as a user of raw node:net would write it. */
export class LenParser {
  private buf: Buffer | undefined;
  push(chunk: Buffer, emit: (frame: Buffer) => void): void {
    const data = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = undefined;
    let off = 0;
    while (data.length - off >= 4) {
      const len = data.readUInt32BE(off);
      if (data.length - off - 4 < len) break;
      emit(data.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    if (off < data.length) this.buf = data.subarray(off);
  }
}

/** Hand-written length-prefix encoder (header and payload in one buffer). */
export function lenFrame(payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(4 + payload.length);
  b.writeUInt32BE(payload.length, 0);
  payload.copy(b, 4);
  return b;
}
