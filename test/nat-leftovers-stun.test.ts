/**
 * `stunGetMapping` honours one overall deadline: opening the socket / connection and the
 * Binding transaction share `timeout` (each used to get the whole of it, so a slow open
 * followed by a silent server took up to twice `timeout`). Loopback only.
 *
 * `pipeOpen` is wrapped (vi.mock) so that a test can make the open slow, as a TCP connect to
 * a far or congested server is; the socket opened is the real one.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Socket as TcpSocket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError, InvalidArgumentError, TimeoutError } from '../src/errors.js';
import { stunGetMapping } from '../src/nat/stun/index.js';

const slowOpen = vi.hoisted(() => ({ ms: 0, opened: 0 }));
vi.mock('../src/pipes/open.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/pipes/open.js')>();
  const pipeOpen = (async (...args: Parameters<typeof real.pipeOpen>) => {
    slowOpen.opened++;
    if (slowOpen.ms > 0) await new Promise((r) => setTimeout(r, slowOpen.ms));
    return real.pipeOpen(...args);
  }) as typeof real.pipeOpen;
  return { ...real, pipeOpen };
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  slowOpen.ms = 0;
  slowOpen.opened = 0;
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A UDP socket on 127.0.0.1 that never answers and counts what it receives. */
async function silentUdp(): Promise<{ sock: Socket; port: number; received: () => number }> {
  const sock = createSocket('udp4');
  let n = 0;
  sock.on('error', () => undefined);
  sock.on('message', () => n++);
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, port: sock.address().port, received: () => n };
}

/** Runs `p`, returns what it rejected with and how long that took (ms). */
async function failure(p: Promise<unknown>): Promise<{ e: unknown; ms: number }> {
  const t0 = performance.now();
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  return { e, ms: performance.now() - t0 };
}

const TIMEOUT = 1_000;
/** Scheduling slack allowed past the deadline (the old behaviour overshot by most of TIMEOUT). */
const MARGIN = 450;

describe('stunGetMapping: one overall deadline', () => {
  it('a silent UDP server: TimeoutError at about `timeout`', async () => {
    const s = await silentUdp();
    const { e, ms } = await failure(stunGetMapping({ server: `127.0.0.1:${s.port}`, timeout: TIMEOUT }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect((e as Error).message).toMatch(/1000 ms/);
    expect(ms).toBeLessThan(TIMEOUT + MARGIN);
    expect(s.received()).toBeGreaterThan(0);
  });

  it('a slow open then a silent UDP server: the open counts against `timeout` (it used to take open + timeout)', async () => {
    const s = await silentUdp();
    slowOpen.ms = 800;
    const { e, ms } = await failure(stunGetMapping({ server: `127.0.0.1:${s.port}`, timeout: TIMEOUT }));
    expect(slowOpen.opened).toBe(1);
    expect(e).toBeInstanceOf(TimeoutError);
    expect(ms).toBeLessThan(TIMEOUT + MARGIN); // was ~1800 ms
  });

  it('an open slower than the whole timeout: TimeoutError, nothing sent', async () => {
    const s = await silentUdp();
    slowOpen.ms = TIMEOUT + 300;
    const { e } = await failure(stunGetMapping({ server: `127.0.0.1:${s.port}`, timeout: TIMEOUT }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect(s.received()).toBe(0);
  });

  it('a TCP server that accepts and never answers: TimeoutError at about `timeout`, the connection closed', async () => {
    const conns: TcpSocket[] = [];
    let closed = 0;
    const srv = createServer((c) => {
      conns.push(c);
      c.on('error', () => undefined);
      c.on('close', () => closed++);
    });
    srv.on('error', () => undefined);
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    cleanups.push(() => conns.forEach((c) => c.destroy()));
    const port = (srv.address() as { port: number }).port;
    slowOpen.ms = 600;
    const { e, ms } = await failure(stunGetMapping({ server: `127.0.0.1:${port}`, proto: 'tcp', timeout: TIMEOUT }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect(ms).toBeLessThan(TIMEOUT + MARGIN); // was ~1600 ms + the close grace
    for (let i = 0; i < 50 && closed < conns.length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(conns).toHaveLength(1);
    expect(closed).toBe(1);
  });

  it('checks its options before opening anything; the caller\'s signal still cancels', async () => {
    const s = await silentUdp();
    await expect(stunGetMapping(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: `127.0.0.1:${s.port}`, timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: `127.0.0.1:${s.port}`, signal: {} as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(slowOpen.opened).toBe(0);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const { e, ms } = await failure(stunGetMapping({ server: `127.0.0.1:${s.port}`, timeout: 5_000, signal: ac.signal }));
    expect(e).toBeInstanceOf(AbortError);
    expect(ms).toBeLessThan(3_000);
  });
});
