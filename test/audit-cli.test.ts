/**
 * A new user's first contact, audited: the node commands of the CLI (`p2pd node | connect |
 * ping | serve`, src/node/cli.ts) and the examples, with good and bad input, Ctrl-C and end of
 * input. Loopback only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../src/cli/main.js';
import { runNodeCommand } from '../src/node/cli.js';
import { startP2pNode } from '../src/node/node.js';
import { capture, jsonLines, startCliNode, waitFor as waitForDefault } from './helpers/cli.js';

/** {@link waitForDefault} with this file's longer default (processes start here). */
const waitFor = (f: () => boolean, ms = 10_000): Promise<void> => waitForDefault(f, ms);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

/** Resolves with the result of `p`, or rejects after `ms` (a hang). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

const children: ChildProcess[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const ch of children.splice(0)) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  for (const f of cleanups.splice(0).reverse()) await f();
});

function spawnNode(args: string[], opts: { cwd?: string; stdin?: 'ignore' | 'pipe' } = {}): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  children.push(child);
  let o = '';
  let e = '';
  child.stdout?.on('data', (d: Buffer) => (o += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (e += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, out: () => o, err: () => e, exit };
}

describe('p2pd node commands: usage', () => {
  it('a usage error is one line and a pointer to --help, not the whole usage text, exit 2', async () => {
    for (const argv of [['node', '--bogus'], ['ping'], ['node', '--port', '99999'], ['connect', 'a', 'b']]) {
      const c = capture();
      expect(await run(argv, c.io)).toBe(2);
      const lines = c.err().trim().split('\n');
      expect(lines, c.err()).toHaveLength(2);
      expect(lines[0]).toMatch(/^p2pd: /);
      expect(lines[1]).toMatch(/--help/);
    }
  });

  it('--help / -h after a node command prints the node usage (exit 0), even with an address given (through the main entry)', async () => {
    for (const argv of [['connect', 'p2pdXYZ', '--loopback', '--help'], ['ping', '-h'], ['serve', '--help']]) {
      const c = capture();
      expect(await run(argv, c.io)).toBe(0);
      expect(c.out()).toMatch(/node commands:[\s\S]*--verbose[\s\S]*exit codes/);
      expect(c.err()).toBe('');
    }
  });

  it('serve --host / --stun-alt that are not IP addresses are usage errors (exit 2), before anything starts', async () => {
    const c = capture();
    expect(await run(['serve', '--host', 'localhost', '--mqtt-port', '0'], c.io)).toBe(2);
    expect(c.err()).toMatch(/^p2pd: --host must be an IP address, not "localhost"\n/);
    const d = capture();
    expect(await run(['serve', '--host', '127.0.0.1', '--stun-alt', 'nope'], d.io)).toBe(2);
    expect(d.err()).toMatch(/--stun-alt must be an IP address/);
  });

  it('a truncated address is bad usage: it names the field, says to copy the whole address (exit 2, one line + pointer)', async () => {
    const n = await startCliNode();
    for (const cmd of ['ping', 'connect']) {
      const c = capture();
      expect(await run([cmd, n.addr.slice(0, 60), '--loopback'], c.io)).toBe(2);
      expect(c.err()).toMatch(/^p2pd: invalid peer address \(length\): .*whole address.*\n\(p2pd --help for usage\)\n$/);
      expect(c.out()).toBe('');
    }
    expect(jsonLines(n.c.out()).filter((x) => x.event === 'peer')).toEqual([]);
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('a well-formed address nobody answers at is a failure, not bad usage (exit 1)', async () => {
    const n = await startCliNode();
    n.c.stop();
    expect(await n.running).toBe(0);
    const c = capture();
    expect(await run(['ping', n.addr, '--loopback', '--strategy', 'direct', '--timeout', '3000', '--count', '1'], c.io)).toBe(1);
    expect(c.err()).toMatch(/^p2pd: .*\[ERR_[A-Z_]+\]$/m);
    expect(c.err()).not.toMatch(/--help/);
  });
});

describe('p2pd node commands: ends and failures the user sees', () => {
  it('Ctrl-C while connecting: exit 1 and "interrupted", not a silent 0', async () => {
    // A peer whose TCP port accepts and then says nothing (a hung node): the connect waits.
    const gone = await startP2pNode({ listen: 'loopback', portMapping: false });
    const addr = gone.addr;
    const port = gone.listenPort;
    await gone.close();
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => sockets.add(s.on('error', () => undefined)));
    await new Promise<void>((resolve, reject) => silent.once('error', reject).listen(port, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => silent.close(() => r()));
    });

    const c = capture();
    const conn = runNodeCommand(['connect', addr, '--loopback', '--timeout', '60000'], { ...c.io, stdin: new PassThrough() });
    await waitFor(() => c.err().includes('connecting to') && sockets.size > 0);
    c.stop();
    expect(await within(conn, 15_000, 'connect after Ctrl-C')).toBe(1);
    expect(c.err()).toMatch(/^p2pd: interrupted \(not connected\)$/m);
    expect(c.out()).not.toMatch(/connected via/);
  });

  it('node --chat: end of input ends it (exit 0); a line with no peer connected is reported', async () => {
    const c = capture();
    const stdin = new PassThrough();
    const running = runNodeCommand(['node', '--loopback', '--chat'], { ...c.io, stdin });
    await waitFor(() => c.out().startsWith('p2pd'));
    stdin.write('anyone?\n');
    await waitFor(() => c.err().includes('no peer connected'));
    stdin.end();
    expect(await within(running, 15_000, 'node --chat after EOF')).toBe(0);
    expect(c.err()).toMatch(/end of input/);
  });

  it('node --chat as a program: stdin at EOF (</dev/null) ends it by itself, exit 0', async () => {
    const p = spawnNode([path.join(ROOT, 'bin', 'p2pd.mjs'), 'node', '--loopback', '--chat']);
    const r = await within(p.exit, 30_000, 'p2pd node --chat </dev/null');
    expect(r, p.err()).toEqual({ code: 0, signal: null });
    expect(p.out()).toMatch(/^p2pd\w+\n/);
  }, 40_000);

  it('node: a peer that leaves is reported (peer-closed), not only one that arrives', async () => {
    const n = await startCliNode();
    const c = capture();
    const stdin = new PassThrough();
    const conn = runNodeCommand(['connect', n.addr, '--loopback', '--json'], { ...c.io, stdin });
    await waitFor(() => c.out().includes('"connected"'));
    await waitFor(() => n.c.out().includes('"event":"peer"'));
    const id = (jsonLines(n.c.out()).find((x) => x.event === 'peer') as { id: string }).id;
    stdin.end();
    expect(await within(conn, 15_000, 'connect after EOF')).toBe(0);
    await waitFor(() => n.c.out().includes('"peer-closed"'));
    expect(jsonLines(n.c.out())).toContainEqual(expect.objectContaining({ event: 'peer-closed', id }));
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('connect: a line that cannot be sent (over 16 MiB) is reported, and the chat goes on', async () => {
    const n = await startCliNode();
    const c = capture();
    const stdin = new PassThrough();
    const conn = runNodeCommand(['connect', n.addr, '--loopback'], { ...c.io, stdin });
    await waitFor(() => c.out().includes('connected via'));
    stdin.write('x'.repeat(17 * 1024 * 1024) + '\n');
    stdin.write('small\n');
    await waitFor(() => c.out().includes('< small'));
    expect(c.err()).toMatch(/^p2pd: not sent to [0-9a-f]{12}…: .*too large/m);
    stdin.end();
    expect(await within(conn, 15_000, 'connect after EOF')).toBe(0);
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('-v shows the strategy race (which started, which won, when)', async () => {
    const n = await startCliNode();
    const c = capture();
    expect(await run(['ping', n.addr, '--loopback', '--count', '1', '-v'], c.io)).toBe(0);
    expect(c.err()).toMatch(/^ {2}direct started at \d+ ms$/m);
    expect(c.err()).toMatch(/^ {2}direct won at \d+ ms: /m);
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('serve on a port already taken says which server could not start (exit 1)', async () => {
    const a = capture();
    const first = run(['serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--stun-port', '0', '--json'], a.io);
    await waitFor(() => a.out().includes('"serving"'));
    const ev = jsonLines(a.out())[0] as { mqtt: string; stun: string };
    const mqttPort = new URL(ev.mqtt).port;
    const stunPort = /udp 127\.0\.0\.1:(\d+)/.exec(ev.stun)?.[1] as string;
    const b = capture();
    expect(await run(['serve', '--host', '127.0.0.1', '--mqtt-port', mqttPort, '--stun-port', '0'], b.io)).toBe(1);
    expect(b.err()).toBe(`p2pd: MQTT broker (--mqtt-port): address 127.0.0.1:${mqttPort} is already in use [ERR_ADDRESS_IN_USE]\n`);
    const d = capture();
    expect(await run(['serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--stun-port', stunPort], d.io)).toBe(1);
    expect(d.err()).toMatch(/^p2pd: STUN server \(--stun-port\): address 127\.0\.0\.1:\d+ is already in use/);
    a.stop();
    expect(await first).toBe(0);
  });
});

describe('examples as programs', () => {
  it('run from a directory whose path has a space (they used to do nothing and exit 0)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'p2pd audit '));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(path.join(ROOT, 'src'), path.join(dir, 'src'), { recursive: true });
    cpSync(path.join(ROOT, 'examples'), path.join(dir, 'examples'), { recursive: true });
    cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const p = spawnNode([TSX, 'examples/udp-filters.ts'], { cwd: dir });
    const r = await within(p.exit, 40_000, 'examples/udp-filters.ts');
    expect(r.code, p.err()).toBe(0);
    expect(p.out()).toMatch(/unmatched messages dropped: 1/);
  }, 50_000);

  it('a user error (turn.ts without a TURN server) is one line, no stack trace, exit 1', async () => {
    const env = { ...process.env };
    delete env.TURN_SERVER;
    const child = spawn(process.execPath, [TSX, 'examples/turn.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await within(new Promise<number | null>((r) => child.on('close', (c) => r(c))), 40_000, 'examples/turn.ts');
    expect(code).toBe(1);
    expect(err.trim().split('\n'), err).toHaveLength(1);
    expect(err).toMatch(/^InvalidArgumentError: set TURN_SERVER .*\[ERR_INVALID_ARG\]/);
  }, 50_000);
});
