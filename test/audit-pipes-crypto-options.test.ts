/**
 * Audit of the pipe layer's and the crypto layer's argument and `{ signal, timeout }` handling,
 * on loopback only: bad options are typed errors before any socket is opened (never an uncaught
 * exception from a socket callback, never a connection or a bound port first); an aborted
 * signal or a bad option rejects even when a message or a connection is already queued;
 * `Daemon.listenAll`-style calls honour `timeout` for the whole call; `secure()` leaves a pipe
 * it refuses untouched; a `SecureServer` refuses options that would fail every handshake;
 * `copyPayloads` reaches secure pipes; `Identity.save/load` refuse non-boolean flags and do not
 * block on a FIFO.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectSecure, Identity, IdentityFileError, listenSecure, secure, secureServer, type SecurePipe } from '../src/crypto/index.js';
import { AbortError, EndpointError, InvalidArgumentError, StateError, TimeoutError } from '../src/errors.js';
import { Daemon, pipeOpen, SUB_ALL, type ListenSpec, type Pipe, type TcpServer } from '../src/pipes/index.js';
import type { AbortOptions } from '../src/util/abort.js';
import { guardUnhandled, rejection, useCleanup, waitFor, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();
const HOST = '127.0.0.1';
const A = Identity.generate();
const B = Identity.generate();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A TCP server on loopback counting the connections it accepts. */
async function countingServer(): Promise<{ srv: TcpServer; accepted: () => number }> {
  const srv = cleanup.track(await pipeOpen('tcp', undefined, { bind: `${HOST}:0` }));
  let n = 0;
  srv.onConnection(() => n++);
  return { srv, accepted: () => n };
}

describe('pipeOpen: options checked before any socket', () => {
  it('a non-function onMessage is an InvalidArgumentError, not an uncaught throw from the connect callback', async () => {
    const { srv, accepted } = await countingServer();
    const bad = { onMessage: 'not a function' as never };
    // TCP client: it used to connect, throw inside 'connect' (uncaught) and hang until the connect timeout.
    expect(await within(rejection(pipeOpen('tcp', srv.local, bad)), 2_000, 'tcp client')).toBeInstanceOf(InvalidArgumentError);
    // UDP and TCP server: the throw came from the bind/listen callback, and the call never settled.
    expect(await within(rejection(pipeOpen('udp', undefined, { ...bad, bind: `${HOST}:0` })), 2_000, 'udp')).toBeInstanceOf(InvalidArgumentError);
    expect(await within(rejection(pipeOpen('tcp', undefined, { ...bad, bind: `${HOST}:0` })), 2_000, 'tcp server')).toBeInstanceOf(InvalidArgumentError);
    await sleep(50);
    expect(accepted()).toBe(0);
  });

  it('family, boolean options and the options object itself are checked', async () => {
    for (const opts of [{ family: 5 }, { family: '6' }, { noDelay: 'no' }, { reuseAddr: 1 }, { ipv6Only: 'yes' }, { copyPayloads: 'false' }]) {
      expect(await rejection(pipeOpen('udp', undefined, opts as never)), JSON.stringify(opts)).toBeInstanceOf(InvalidArgumentError);
    }
    expect(await rejection(pipeOpen('udp', undefined, null as never))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('already-queued items do not bypass the options', () => {
  it('recv(): an aborted signal, a bad signal or a bad timeout rejects although a message is queued, which stays queued', async () => {
    const a = cleanup.track(await pipeOpen('udp', undefined, { bind: `${HOST}:0` }));
    const b = cleanup.track(await pipeOpen('udp', a.local, { bind: `${HOST}:0` }));
    await b.send('hello');
    await waitFor(() => a.queued() === 1, 'datagram queued');
    expect(await rejection(a.recv({ timeout: -1 }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(a.recv({ timeout: Number.NaN }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(a.recv({ signal: {} as AbortSignal }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(a.recv({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(a.queued()).toBe(1);
    // 0 and Infinity mean "no timeout" and take the queued message.
    expect((await a.recv({ timeout: Infinity })).data.toString()).toBe('hello');
    await b.send('again');
    expect((await a.recv({ timeout: 0 })).data.toString()).toBe('again');
  });

  it('messages() / duplex(): a bad option fails the iteration before it yields queued messages', async () => {
    const a = cleanup.track(await pipeOpen('udp', undefined, { bind: `${HOST}:0` }));
    const b = cleanup.track(await pipeOpen('udp', a.local, { bind: `${HOST}:0` }));
    await b.send('x');
    await waitFor(() => a.queued() === 1, 'datagram queued');
    expect(await rejection(a.messages({ timeout: -5 }).next())).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(a.duplex({ signal: AbortSignal.abort() }).source.next())).toBeInstanceOf(AbortError);
    expect(a.queued()).toBe(1);
  });

  it('accept(): an aborted signal or a bad option rejects although a connection is queued, which stays queued', async () => {
    const { srv } = await countingServer();
    cleanup.track(await pipeOpen('tcp', srv.local));
    await sleep(50); // the connection reaches the accept queue
    expect(await rejection(srv.accept({ signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(await rejection(srv.accept({ timeout: -1 }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(srv.accept({ signal: 'x' as never }))).toBeInstanceOf(InvalidArgumentError);
    const c = cleanup.track(await srv.accept({ timeout: 1_000 }));
    expect(c.remote).toBeDefined();
  });
});

describe('Daemon', () => {
  /** A daemon whose every socket takes `ms` to open. */
  class SlowDaemon extends Daemon {
    constructor(private readonly ms: number) {
      super(() => undefined);
    }
    override async listen(spec: ListenSpec, opts?: AbortOptions): Promise<Pipe> {
      await sleep(this.ms);
      return super.listen(spec, opts);
    }
  }

  it('listenLoopback/listenAll honour `timeout` for the whole call, not per socket, and close what they opened', async () => {
    const d = cleanup.track(new SlowDaemon(120));
    // At least two sockets (127.0.0.1 TCP and UDP) of 120 ms each: past a 180 ms budget.
    const e = await rejection(d.listenLoopback(['tcp', 'udp'], 0, { timeout: 180 }));
    expect(e).toBeInstanceOf(TimeoutError);
    expect(d.pipes).toEqual([]);
  });

  it('bad arguments are typed errors before any socket; a closed daemon is a StateError', async () => {
    const d = new Daemon(() => undefined);
    expect(await rejection(d.listen(null as never))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(d.listen({ proto: 'udp' }, null as never))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(d.listenLoopback(['udp', 'sctp' as never]))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(d.listenLoopback('udp', 70_000))).toBeInstanceOf(EndpointError);
    expect(await rejection(d.listenLoopback('udp', 0, { timeout: -1 }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(d.listenLoopback('udp', 0, { signal: AbortSignal.abort() }))).toBeInstanceOf(AbortError);
    expect(d.pipes).toEqual([]);
    await d.close();
    expect(await rejection(d.listenLoopback('udp'))).toBeInstanceOf(StateError);
  });
});

describe('secure(), connectSecure(), listenSecure(), SecureServer', () => {
  it('secure() refuses a bad signal without taking the pipe over', async () => {
    const { srv } = await countingServer();
    const c = cleanup.track(await pipeOpen('tcp', srv.local));
    const s = cleanup.track(await srv.accept({ timeout: 2_000 }));
    expect(await rejection(secure(c, { identity: A, signal: {} as AbortSignal }))).toBeInstanceOf(InvalidArgumentError);
    // Untouched: still subscribed to SUB_ALL, still delivering plaintext.
    expect(c.isSubscribed(SUB_ALL)).toBe(true);
    await s.send('plain');
    expect((await c.recv({ timeout: 2_000 })).data.toString()).toBe('plain');
  });

  it('connectSecure() checks the secure options before it connects', async () => {
    const { srv, accepted } = await countingServer();
    for (const bad of [{ onMessage: 1 }, { maxQueue: 0 }, { prologue: 'p2pd' }, { extensions: 'x' }, { copyPayloads: 'no' }, { signal: {} }]) {
      const e = await rejection(connectSecure(srv.local, { identity: B, initiator: false, ...(bad as object) }));
      expect(e, JSON.stringify(bad)).toBeInstanceOf(InvalidArgumentError);
    }
    await sleep(50);
    expect(accepted()).toBe(0);
  });

  it('listenSecure() and secureServer() refuse options that would fail every handshake', async () => {
    for (const bad of [{ onMessage: 'x' }, { maxQueueBytes: -1 }, { prologue: [1, 2] }, { onPipe: 'x' }]) {
      expect(await rejection(listenSecure(`${HOST}:0`, { identity: A, ...(bad as object) })), JSON.stringify(bad)).toBeInstanceOf(InvalidArgumentError);
    }
    const tcp = cleanup.track(await pipeOpen('tcp', undefined, { bind: `${HOST}:0` }));
    expect(() => secureServer(tcp, { identity: A, onMessage: 'x' as never })).toThrow(InvalidArgumentError);
  });

  it('copyPayloads: false reaches the secure pipe (subscriptions share one payload)', async () => {
    const srv = cleanup.track(await listenSecure(`${HOST}:0`, { identity: A, copyPayloads: false }));
    const [client, peer] = await Promise.all([connectSecure(srv.local, { identity: B, copyPayloads: false }), srv.accept({ timeout: 5_000 })]);
    cleanup.track(client);
    cleanup.track(peer);
    const check = async (from: SecurePipe, to: SecurePipe): Promise<void> => {
      const other = to.subscribe({ pattern: 'm' });
      await from.send('msg');
      const [x, y] = await Promise.all([to.recv({ timeout: 2_000 }), to.recv({ sub: other, timeout: 2_000 })]);
      expect(x.data).toBe(y.data); // shared, not copied
    };
    await check(peer, client);
    await check(client, peer);
  });
});

describe('Identity files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'p2pd-audit-id-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('save/load refuse non-boolean flags and non-AbortSignal signals (a string "false" must not skip the permission check)', async () => {
    const path = join(dir, 'node.key');
    await A.save(path);
    execFileSync('chmod', ['644', path]);
    expect(await rejection(Identity.load(path, { allowInsecurePermissions: 'false' as never }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(Identity.load(path, { allowInsecurePermissions: true, signal: {} as AbortSignal }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(Identity.load(path, null as never))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(A.save(path, { overwrite: 'yes' as never }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(A.save(join(dir, 'other.key'), { signal: {} as AbortSignal }))).toBeInstanceOf(InvalidArgumentError);
    expect((await Identity.load(path, { allowInsecurePermissions: true })).equals(A)).toBe(true);
  });

  it.skipIf(process.platform === 'win32')('load() of a FIFO fails at once instead of waiting for a writer', async () => {
    const fifo = join(dir, 'fifo.key');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const e = await within(rejection(Identity.load(fifo)), 2_000, 'load of a FIFO');
    expect(e).toBeInstanceOf(IdentityFileError);
  });
});
