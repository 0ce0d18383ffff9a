/** Local infrastructure for the node tests: coturn and mosquitto on loopback, handle counts. */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsc, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';

/** Whether `bin` is on the PATH (or in /usr/sbin, /sbin). */
export function onPath(bin: string): boolean {
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

/** A free TCP port on 127.0.0.1 (race-prone by nature; fine for tests). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function waitTcp(port: number, proc: ChildProcess, what: string, log: () => string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), res(true)));
      c.on('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`${what} did not start on port ${port}:\n${log().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

/** A coturn on 127.0.0.1 that allows loopback peers. */
export interface Coturn {
  server: string;
  username: string;
  password: string;
  /** What coturn printed so far (with `verbose`: one line per session event). */
  log(): string;
  stop(): Promise<void>;
}

export async function startCoturn(opts: { verbose?: boolean } = {}): Promise<Coturn> {
  const dir = mkdtempSync(path.join(tmpdir(), 'p2pd-node-coturn-'));
  const port = await freePort();
  const relayBase = 40000 + Math.floor(Math.random() * 200) * 100;
  let log = '';
  const p = spawn('turnserver', [
    ...(opts.verbose ? ['-v'] : []),
    '-n', '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1', `--min-port=${relayBase}`, `--max-port=${relayBase + 99}`,
    '--lt-cred-mech', '--realm=node.test', '--user=p2pd:node-secret', `--userdb=${dir}/turndb`,
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', `--pidfile=${dir}/turnserver.pid`, '--log-file=stdout', '--simple-log',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
  p.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
  try {
    await waitTcp(port, p, 'coturn', () => log);
  } catch (e) {
    await stop(p);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  await new Promise((r) => setTimeout(r, 200));
  return {
    server: `127.0.0.1:${port}`,
    username: 'p2pd',
    password: 'node-secret',
    log: () => log,
    async stop() {
      await stop(p);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A mosquitto on 127.0.0.1:`port`. */
export async function startMosquitto(port: number): Promise<{ url: string; stop(): Promise<void> }> {
  let log = '';
  const p = spawn('mosquitto', ['-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
  p.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
  const end = Date.now() + 5000;
  for (;;) {
    const ok = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 500 }).then(
      async (c) => (await c.endAsync(true), true),
      () => false,
    );
    if (ok) break;
    if (p.exitCode !== null || Date.now() > end) {
      await stop(p);
      throw new Error(`mosquitto did not start on port ${port}: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `mqtt://127.0.0.1:${port}`, stop: () => stop(p) };
}

/** Counts of handles that keep a process alive (sockets, servers, timers). */
export function liveHandles(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'TCPSocketWrap' || r === 'TCPServerWrap' || r === 'UDPWrap' || r === 'Timeout') out[r] = (out[r] ?? 0) + 1;
  }
  return out;
}

/** Whether CI is set (then missing tools fail instead of skipping). */
export const CI = !!process.env.CI && process.env.CI !== '0' && process.env.CI !== 'false';
