/**
 * TURN client against a real coturn started on loopback (127.0.0.1 and ::1) by this suite,
 * with short lifetimes (`--max-allocate-lifetime=4`) and a short nonce lifetime
 * (`--stale-nonce=2`) so that refreshes and 438 Stale Nonce happen within seconds.
 * Needs only the `turnserver` binary (Debian package coturn, installed by
 * test/lab/install-deps.sh), not root. Skipped when it is missing, except in CI (`CI` set)
 * where the suite fails instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { accessSync, constants as fsc, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { TurnAuthError, turnAllocate, type TurnAllocateOptions, type TurnPipe } from '../src/nat/turn/index.js';
import { isCI } from './helpers/lab.js';
import { main as turnExample } from '../examples/turn.js';

const SUITE = 'TURN client against coturn on loopback';

function onPath(bin: string): boolean {
  for (const d of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin']) {
    try {
      if (d) {
        accessSync(path.join(d, bin), fsc.X_OK);
        return true;
      }
    } catch {
      /* next */
    }
  }
  return false;
}

const HAVE = onPath('turnserver');
if (!HAVE && !isCI()) console.warn(`[p2pd] NOT RUN: "${SUITE}" needs the turnserver binary (sudo bash test/lab/install-deps.sh).`);

const USER = 'alice';
const PASS = 'coturn-secret';
const REALM = 'loopback.test';
const LIFETIME = 4;

describe.runIf(HAVE || isCI())(SUITE, () => {
  let coturn: ChildProcess | undefined;
  let dir = '';
  let port = 0;
  let log = '';
  const v4 = (): string => `127.0.0.1:${port}`;
  let cleanup: (() => unknown)[] = [];

  beforeAll(async () => {
    if (!HAVE) throw new Error(`${SUITE}: turnserver not found (CI=${process.env.CI ?? ''}: not skipped). Run test/lab/install-deps.sh.`);
    dir = mkdtempSync(path.join(tmpdir(), 'p2pd-coturn-'));
    port = 20000 + Math.floor(Math.random() * 10000);
    const relayBase = 50000 + Math.floor(Math.random() * 150) * 100;
    coturn = spawn('turnserver', [
      '-n', '--listening-ip=127.0.0.1', '--listening-ip=::1', `--listening-port=${port}`,
      '--relay-ip=127.0.0.1', '--relay-ip=::1', `--min-port=${relayBase}`, `--max-port=${relayBase + 99}`,
      '--lt-cred-mech', `--realm=${REALM}`, `--user=${USER}:${PASS}`, `--userdb=${dir}/turndb`,
      '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--fingerprint',
      `--max-allocate-lifetime=${LIFETIME}`, '--stale-nonce=2', `--pidfile=${dir}/turnserver.pid`,
      '--log-file=stdout', '--simple-log',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    coturn.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
    coturn.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
    // ready when its TCP listener accepts
    const end = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((res) => {
        const c = connect(port, '127.0.0.1', () => (c.destroy(), res(true)));
        c.on('error', () => res(false));
      });
      if (ok) break;
      if (Date.now() > end || coturn.exitCode !== null) throw new Error(`coturn did not start on ${v4()}:\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 200)); // UDP listeners come up with the TCP one; give the threads a moment
  });

  afterAll(async () => {
    if (coturn && coturn.exitCode === null) {
      coturn.kill('SIGTERM');
      await Promise.race([once(coturn, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
      if (coturn.exitCode === null) coturn.kill('SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const f of cleanup.reverse()) await f();
    cleanup = [];
  });

  async function alloc(extra: Partial<TurnAllocateOptions> = {}): Promise<TurnPipe> {
    const p = await turnAllocate({ server: v4(), username: USER, password: PASS, ...extra });
    cleanup.push(() => p.close());
    return p;
  }

  async function peer(host = '127.0.0.1'): Promise<{ sock: UdpSocket; ep: Endpoint; got: string[] }> {
    const fam = host.includes(':') ? 6 : 4;
    const sock = createSocket(fam === 6 ? 'udp6' : 'udp4');
    const got: string[] = [];
    sock.on('message', (d, r) => {
      got.push(d.toString());
      if (!d.toString().startsWith('echo:')) sock.send(Buffer.concat([Buffer.from('echo:'), d]), r.port, r.address);
    });
    sock.bind(0, host);
    await once(sock, 'listening');
    cleanup.push(() => new Promise<void>((r) => sock.close(() => r())));
    return { sock, ep: { host, port: sock.address().port, family: fam }, got };
  }

  for (const proto of ['udp', 'tcp'] as const) {
    it(`allocates over ${proto} and relays both ways (channels after the first message)`, async () => {
      const relay = await alloc({ proto });
      expect(relay.relayed.host).toBe('127.0.0.1');
      expect(relay.mapped).toEqual({ host: '127.0.0.1', port: relay.underlying.local.port, family: 4 });
      expect(relay.lifetime).toBeLessThanOrEqual(LIFETIME);
      const p = await peer();
      // client first
      for (let i = 0; i < 10; i++) {
        await relay.send(`c${i}`, p.ep);
        const m = await relay.recv({ timeout: 3000 });
        expect(m.data.toString()).toBe(`echo:c${i}`);
        expect(m.from).toEqual(p.ep);
      }
      expect(relay.channels).toBe(1);
      expect(relay.turnStats.channelDataOut).toBeGreaterThanOrEqual(9);
      expect(relay.turnStats.channelDataIn).toBeGreaterThanOrEqual(9);
      // peer first (a new port of a permitted IP): arrives, and our reply gets back
      const q = await peer();
      q.sock.send('from-peer', relay.relayed.port, relay.relayed.host);
      const m = await relay.recv({ timeout: 3000 });
      expect(m.data.toString()).toBe('from-peer');
      expect(m.from).toEqual(q.ep);
      await relay.send('reply', m.from);
      await expect.poll(() => q.got, { timeout: 3000 }).toContain('reply');
    });
  }

  it('relays to many peers at once, each on its own channel', async () => {
    const relay = await alloc();
    const peers = await Promise.all(Array.from({ length: 16 }, () => peer()));
    await Promise.all(peers.map((p, i) => relay.send(`p${i}`, p.ep)));
    const got = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const m = await relay.recv({ timeout: 3000 });
      got.add(`${m.from.port}=${m.data.toString()}`);
    }
    expect(got).toEqual(new Set(peers.map((p, i) => `${p.ep.port}=echo:p${i}`)));
    await expect.poll(() => relay.channels, { timeout: 3000 }).toBe(16);
  });

  it('allocates an IPv6 relay over [::1]', async () => {
    const relay = await alloc({ server: `[::1]:${port}`, family: 6 });
    expect(relay.relayed.family).toBe(6);
    const p = await peer('::1');
    await relay.send('six', p.ep);
    expect((await relay.recv({ timeout: 3000 })).data.toString()).toBe('echo:six');
  });

  it('a wrong password or unknown user is a TurnAuthError', async () => {
    for (const proto of ['udp', 'tcp'] as const) {
      for (const [username, password] of [[USER, 'wrong'], ['mallory', PASS]] as const) {
        const e = await turnAllocate({ server: v4(), username, password, proto }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(TurnAuthError);
        expect((e as TurnAuthError).errorCode).toBe(401);
      }
    }
  });

  it(`outlives its ${LIFETIME} s lifetime through refreshes, surviving 438 Stale Nonce`, async () => {
    const relay = await alloc({ lifetime: LIFETIME });
    const firstExpiry = relay.expiresAt;
    const p = await peer();
    await relay.send('before', p.ep);
    expect((await relay.recv({ timeout: 3000 })).data.toString()).toBe('echo:before');
    await new Promise((r) => setTimeout(r, (LIFETIME + 3) * 1000));
    expect(relay.closed).toBe(false);
    expect(relay.turnStats.refreshes).toBeGreaterThanOrEqual(1);
    expect(relay.expiresAt).toBeGreaterThan(firstExpiry);
    // nonces live 2 s here: a refresh now meets 438 Stale Nonce and retries with the new one
    const before = relay.session.auth.staleNonces;
    expect(await relay.refresh()).toBeGreaterThan(0);
    expect(relay.session.auth.staleNonces).toBe(before + 1);
    await relay.send('after', p.ep);
    expect((await relay.recv({ timeout: 3000 })).data.toString()).toBe('echo:after');
  }, 20_000);

  it('close() deletes the allocation: its relayed port stops existing', async () => {
    const relay = await turnAllocate({ server: v4(), username: USER, password: PASS });
    const p = await peer();
    await relay.send('hi', p.ep);
    await relay.recv({ timeout: 3000 });
    const c = createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => c.close(() => r())));
    c.connect(relay.relayed.port, relay.relayed.host);
    await once(c, 'connect');
    const refused = new Promise<string | undefined>((res) => c.on('error', (e: NodeJS.ErrnoException) => res(e.code)));
    await relay.close();
    expect(relay.session.transport.pipe.closed).toBe(true);
    // coturn closes the relay socket of a deleted allocation within about a second
    let code: string | undefined;
    void refused.then((c2) => (code = c2));
    for (let i = 0; i < 40 && code === undefined; i++) {
      c.send('anyone?');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(code).toBe('ECONNREFUSED');
  });

  for (const proto of ['udp', 'tcp'] as const) {
    it(`examples/turn.ts runs against it over ${proto}`, async () => {
      const logs: string[] = [];
      const r = await turnExample({ server: v4(), username: USER, password: PASS, proto, log: (l) => logs.push(l) });
      expect(r.got).toBe([...r.sent].reverse().join(''));
      expect(r.peerSeenAs.startsWith('127.0.0.1:')).toBe(true);
      expect(r.relayed.startsWith('127.0.0.1:')).toBe(true);
      expect(logs.length).toBeGreaterThanOrEqual(3);
    });
  }
});
