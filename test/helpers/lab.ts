/**
 * Test helpers for suites that need root: the NAT lab (test/lab/nat-lab) and
 * processes inside network namespaces.
 *
 * Typical suite:
 *
 * ```ts
 * import { describe, beforeAll, afterAll, it, expect } from 'vitest';
 * import { labAvailable, requireRoot, labUp, labDown, labExec, spawnNodeInNs } from './helpers/lab.js';
 *
 * describe.runIf(labAvailable('NAT lab: reachability'))('NAT lab: reachability', () => {
 *   let lab: Lab;
 *   beforeAll(async () => { requireRoot(); lab = await labUp({ natA: 'full-cone' }); });
 *   afterAll(() => labDown());
 *   it('...', async () => { const r = await labExec('a1', 'ping', ['-c1', lab.env.NATLAB_PUB1_IP4]); ... });
 * });
 * ```
 *
 * Prerequisite policy: in CI (`CI` set to anything but `""`, `0` or `false`) or
 * with `P2PD_REQUIRE_LAB=1`, missing root or binaries make the suite FAIL:
 * {@link labAvailable} returns true and {@link requireRoot} throws. Elsewhere
 * {@link labAvailable} returns false and prints once which suite was not run
 * and how to run it, so the suite is skipped.
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, accessSync, readFileSync, constants as fsc } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (test/helpers/../..). */
export const REPO_ROOT: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The lab script. */
export const NAT_LAB: string = path.join(REPO_ROOT, 'test', 'lab', 'nat-lab');

// ------------------------------------------------------------ prerequisites --

/** What a suite needs from the machine. */
export interface LabNeeds {
  /** Needs the lab daemons (coturn, stund, mosquitto, miniupnpd). Default true. */
  services?: boolean;
  /** Binaries that must be on PATH; replaces the default list when given. */
  binaries?: string[];
}

/** Binaries `nat-lab up --no-services` uses. */
export const LAB_NETWORK_BINARIES: readonly string[] = ['bash', 'ip', 'nft', 'ss', 'sysctl', 'setsid'];
/** Binaries of the lab daemons. */
export const LAB_SERVICE_BINARIES: readonly string[] = ['turnserver', 'stund', 'mosquitto', 'miniupnpd'];

/** True when running in CI: prerequisites are then mandatory. */
export function isCI(): boolean {
  const v = (process.env.CI ?? '').trim().toLowerCase();
  const force = (process.env.P2PD_REQUIRE_LAB ?? '').trim();
  return (v !== '' && v !== '0' && v !== 'false') || (force !== '' && force !== '0');
}

function onPath(bin: string): boolean {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/sbin', '/sbin']);
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(path.join(d, bin), fsc.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** Lists what is missing for `needs` (empty = all there). */
export function labProblems(needs: LabNeeds = {}): string[] {
  const problems: string[] = [];
  if (process.platform !== 'linux') problems.push(`Linux (this is ${process.platform})`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid !== 0) problems.push(`root (running as uid ${uid})`);
  const bins =
    needs.binaries ?? [...LAB_NETWORK_BINARIES, ...(needs.services === false ? [] : LAB_SERVICE_BINARIES)];
  const missing = bins.filter((b) => !onPath(b));
  if (missing.length) problems.push(`binaries: ${missing.join(', ')} (sudo bash test/lab/install-deps.sh)`);
  if (!existsSync(path.join(REPO_ROOT, 'node_modules', 'tsx'))) problems.push('node_modules/tsx (npm ci)');
  return problems;
}

const warned = new Set<string>();

/**
 * Whether a root-only suite should run. Outside CI, when something is missing,
 * prints once which suite is not run and how to run it, and returns false.
 * In CI it always returns true, so that {@link requireRoot} fails the suite.
 */
export function labAvailable(suite: string, needs: LabNeeds = {}): boolean {
  const problems = labProblems(needs);
  if (problems.length === 0 || isCI()) return true;
  if (!warned.has(suite)) {
    warned.add(suite);
    console.warn(
      `[p2pd] NOT RUN: "${suite}" needs ${problems.join('; ')}.\n` +
        `[p2pd]   to run it: sudo bash test/lab/install-deps.sh && sudo npx vitest run ` +
        `(or sudo npm test). In CI (CI=true) these suites fail instead of being skipped.`,
    );
  }
  return false;
}

/** Throws a clear error when root or a needed binary is missing. Call in `beforeAll`. */
export function requireRoot(needs: LabNeeds = {}): void {
  const problems = labProblems(needs);
  if (problems.length === 0) return;
  throw new Error(
    `root-only test prerequisites missing: ${problems.join('; ')}. ` +
      `Run as root after "sudo bash test/lab/install-deps.sh" (CI=${process.env.CI ?? ''}: not skipped).`,
  );
}

// ---------------------------------------------------------- running things --

/** Result of a finished command. `code` is null when it died by a signal. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the command was killed because it ran out of time. */
  timedOut: boolean;
}

export interface ExecOptions {
  /** Milliseconds before the command (its whole process group) is killed. Default 10 000. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
  /** Extra environment (merged over process.env and, for lab hosts, the lab's NATLAB_* variables). */
  env?: Record<string, string>;
  /** Working directory. Default: the repository root. */
  cwd?: string;
}

const children = new Set<ChildProcess>();

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      /* gone */
    }
  }
}

/**
 * Runs `cmd args` inside network namespace `ns` (a lab host such as `'a1'`,
 * `'pub1'`, `'rtrA'`, `'srv'` of the most recent {@link labUp}, or any netns
 * name) and resolves with its output when it ends. Never rejects for a
 * non-zero exit: check `code`.
 */
export function labExec(ns: string, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const { nsName, env } = resolveNs(ns); // throws -> rejects
    const child = spawn('ip', ['netns', 'exec', nsName, cmd, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, ...env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // own process group: the timeout kills grandchildren too
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ stdout, stderr, code, signal, timedOut });
    });
  });
}

/** A long-running process inside a namespace. */
export interface NsProcess {
  readonly ns: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /**
   * Resolves with the first match of `pattern` in the output (stdout by default),
   * searching what was already printed too. Rejects on timeout (default 10 s) or
   * when the process exits first; the message carries its output.
   */
  waitFor(pattern: RegExp | string, opts?: { timeoutMs?: number; stream?: 'stdout' | 'stderr' | 'both' }): Promise<string>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExecResult>;
  /** SIGTERM to its process group, SIGKILL after `graceMs` (default 2000); resolves when it is gone. */
  stop(graceMs?: number): Promise<ExecResult>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Kill it (SIGKILL) after this many ms. Default: never. */
  timeoutMs?: number;
}

/** Starts `cmd args` inside namespace `ns` (lab host name or netns name) and returns at once. */
export function spawnInNs(ns: string, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): NsProcess {
  const { nsName, env } = resolveNs(ns);
  const child = spawn('ip', ['netns', 'exec', nsName, cmd, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${cmd} in ${nsName}`);
  children.add(child);
  let out = '';
  let err = '';
  let timedOut = false;
  const listeners = new Set<() => void>();
  const poke = (): void => listeners.forEach((l) => l());
  child.stdout?.setEncoding('utf8').on('data', (d: string) => ((out += d), poke()));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => ((err += d), poke()));
  const timer = opts.timeoutMs ? setTimeout(() => ((timedOut = true), killGroup(child, 'SIGKILL')), opts.timeoutMs) : undefined;
  let done = false;
  const exited = new Promise<ExecResult>((resolve) => {
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      children.delete(child);
      done = true;
      poke();
      resolve({ stdout: out, stderr: err, code, signal, timedOut });
    });
    child.on('error', (e) => {
      err += `\n[spawn error] ${e.message}`;
    });
  });
  const pid = child.pid;
  const handle: NsProcess = {
    ns: nsName,
    pid,
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, o = {}) {
      const stream = o.stream ?? 'stdout';
      const timeoutMs = o.timeoutMs ?? 10_000;
      const text = (): string => (stream === 'stdout' ? out : stream === 'stderr' ? err : out + err);
      const find = (): string | undefined => {
        const t = text();
        if (typeof pattern === 'string') return t.includes(pattern) ? pattern : undefined;
        return t.match(pattern)?.[0];
      };
      return new Promise<string>((resolve, reject) => {
        const finish = (): void => {
          listeners.delete(check);
          clearTimeout(t);
        };
        const check = (): void => {
          const m = find();
          if (m !== undefined) {
            finish();
            resolve(m);
          } else if (done) {
            finish();
            reject(new Error(`${cmd} in ${nsName} exited before printing ${String(pattern)}\nstdout: ${out}\nstderr: ${err}`));
          }
        };
        const t = setTimeout(() => {
          finish();
          reject(new Error(`timeout (${timeoutMs} ms) waiting for ${String(pattern)} from ${cmd} in ${nsName}\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async stop(graceMs = 2000) {
      if (!done) {
        killGroup(child, 'SIGTERM');
        const k = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
        try {
          await exited;
        } finally {
          clearTimeout(k);
        }
      }
      return exited;
    },
  };
  return handle;
}

/**
 * The command line that runs a TypeScript (or JS) file with Node and tsx:
 * `node --import tsx FILE ARGS...` (Node >= 20.6). `file` is relative to the
 * repository root (the working directory used by {@link labExec}/{@link spawnInNs},
 * from which `tsx` resolves) or absolute.
 */
export function nodeCommand(file: string, args: readonly string[] = []): { cmd: string; args: string[] } {
  return { cmd: process.execPath, args: ['--import', 'tsx', path.resolve(REPO_ROOT, file), ...args] };
}

/** {@link spawnInNs} for `node --import tsx FILE ARGS...`. */
export function spawnNodeInNs(ns: string, file: string, args: readonly string[] = [], opts: SpawnOptions = {}): NsProcess {
  const c = nodeCommand(file, args);
  return spawnInNs(ns, c.cmd, c.args, opts);
}

/** {@link labExec} for `node --import tsx FILE ARGS...` (default timeout 20 s: tsx start-up takes ~0.5 s). */
export function execNodeInNs(ns: string, file: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
  const c = nodeCommand(file, args);
  return labExec(ns, c.cmd, c.args, { timeoutMs: 20_000, ...opts });
}

// -------------------------------------------------------------------- lab --

/** NAT behaviour of a lab router. */
export type NatKind = 'full-cone' | 'restricted-cone' | 'port-restricted' | 'symmetric' | 'firewall' | 'none';
/** Hosts of the lab (`srv` is the STUN/TURN/MQTT server; `stun1` is an alias). */
export type LabHost = 'inet' | 'srv' | 'pub1' | 'rtrA' | 'rtrB' | 'a1' | 'a2' | 'b1';
export const LAB_HOSTS: readonly LabHost[] = ['inet', 'srv', 'pub1', 'rtrA', 'rtrB', 'a1', 'a2', 'b1'];

export interface LabOptions {
  /** NAT of rtrA (a1, a2). Default 'port-restricted'. */
  natA?: NatKind;
  /** NAT of rtrB (b1). Default 'port-restricted'. */
  natB?: NatKind;
  /** Stateful IPv6 firewall on both routers. Default true. */
  v6Firewall?: boolean;
  /** miniupnpd (UPnP/NAT-PMP/PCP) on rtrA. Default true (false when services is false). */
  upnpA?: boolean;
  /** miniupnpd on rtrB. Default false. */
  upnpB?: boolean;
  /** Lifetime of cone-NAT map entries, seconds. Default 120. */
  mapTimeout?: number;
  /** Conntrack UDP timeouts on the routers, seconds. Default: kernel's. */
  ctUdpTimeout?: number;
  /** NAT loopback on full-cone routers. Default false. */
  hairpin?: boolean;
  /** Start coturn, stund, mosquitto, miniupnpd. Default true. */
  services?: boolean;
  /** Milliseconds allowed for `up`. Default 60 000. */
  timeoutMs?: number;
}

/** A running lab. */
export interface Lab {
  /** Namespace prefix, unique per process and lab (e.g. `p2pd1234n0-`). */
  readonly prefix: string;
  /** Everything `nat-lab env` prints: NATLAB_STUN_HOST, NATLAB_A1_IP4, NATLAB_RTRA_WAN4, ... */
  readonly env: Readonly<Record<string, string>>;
  readonly options: Readonly<LabOptions>;
  /** Seconds `nat-lab up` took. */
  readonly upSeconds: number;
  /** The netns name of a lab host (aliases: stun1/stun/turn/mqtt = srv, rtra/rtrb). */
  ns(host: string): string;
  exec(host: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  spawn(host: string, cmd: string, args?: readonly string[], opts?: SpawnOptions): NsProcess;
  spawnNode(host: string, file: string, args?: readonly string[], opts?: SpawnOptions): NsProcess;
  /** Tears this lab down (idempotent). */
  down(): Promise<void>;
}

const labs: Lab[] = [];
let labCounter = 0;
const PREFIX_RE = /^p2pd(\d+)n(\d+)-/;

function canonHost(h: string): LabHost | undefined {
  switch (h) {
    case 'stun1':
    case 'stun':
    case 'turn':
    case 'mqtt':
    case 'srv':
      return 'srv';
    case 'rtra':
      return 'rtrA';
    case 'rtrb':
      return 'rtrB';
    default:
      return (LAB_HOSTS as readonly string[]).includes(h) ? (h as LabHost) : undefined;
  }
}

function resolveNs(ns: string): { nsName: string; env: Record<string, string> } {
  const host = canonHost(ns);
  const lab = labs[labs.length - 1];
  if (host && lab) return { nsName: lab.prefix + host, env: { ...lab.env, NATLAB_HOST: host } };
  if (host && !lab) throw new Error(`labExec/spawnInNs: "${ns}" is a lab host but no lab is up (call labUp first)`);
  return { nsName: ns, env: {} };
}

function runLabScript(args: string[], env: Record<string, string>, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [NAT_LAB, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('close', (code, signal) => (clearTimeout(timer), resolve({ stdout, stderr, code, signal, timedOut })));
  });
}

/** Whether `pid` runs (a zombie waiting for a lazy PID 1 to reap it counts as gone). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true; // no procfs: trust kill(0)
  }
}

/** Tears down labs left behind by test processes that died (prefix p2pd<pid>n<k>-, pid gone). */
export function sweepStaleLabs(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const prefixes = new Set<string>();
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = PREFIX_RE.exec(line.trim());
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) prefixes.add(m[0]);
  }
  for (const p of prefixes) {
    spawnSync('bash', [NAT_LAB, 'down'], { env: { ...process.env, NATLAB_PREFIX: p, NATLAB_QUIET: '1' }, stdio: 'ignore', timeout: 30_000 });
  }
  return [...prefixes];
}

/**
 * Brings a lab up (`nat-lab up`) under a namespace prefix unique to this
 * process, and returns it. Several labs may run side by side (their
 * namespaces are disjoint). Rejects with nat-lab's output if `up` fails.
 */
export async function labUp(options: LabOptions = {}): Promise<Lab> {
  requireRoot({ services: options.services !== false });
  sweepStaleLabs();
  const prefix = `p2pd${process.pid}n${labCounter++}-`;
  const services = options.services !== false;
  const onoff = (b: boolean): string => (b ? 'on' : 'off');
  const args = ['up', '--nat-a', options.natA ?? 'port-restricted', '--nat-b', options.natB ?? 'port-restricted'];
  args.push('--v6-firewall', onoff(options.v6Firewall ?? true));
  args.push('--upnp-a', onoff(options.upnpA ?? services), '--upnp-b', onoff(options.upnpB ?? false));
  if (options.mapTimeout !== undefined) args.push('--map-timeout', String(options.mapTimeout));
  if (options.ctUdpTimeout !== undefined) args.push('--ct-udp-timeout', String(options.ctUdpTimeout));
  args.push('--hairpin', onoff(options.hairpin ?? false));
  if (!services) args.push('--no-services');
  const labEnv = { NATLAB_PREFIX: prefix };
  const t0 = performance.now();
  const up = await runLabScript(args, labEnv, options.timeoutMs ?? 60_000);
  const upSeconds = (performance.now() - t0) / 1000;
  if (up.code !== 0) {
    await runLabScript(['down'], labEnv, 30_000).catch(() => undefined);
    throw new Error(
      `nat-lab ${args.join(' ')} failed (code ${up.code}${up.timedOut ? ', timed out' : ''}):\n${up.stderr}${up.stdout}`,
    );
  }
  const e = await runLabScript(['env'], labEnv, 10_000);
  const env: Record<string, string> = {};
  for (const line of e.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  let isDown = false;
  const lab: Lab = {
    prefix,
    env,
    options: { ...options },
    upSeconds,
    ns(host: string) {
      const h = canonHost(host);
      if (!h) throw new Error(`unknown lab host "${host}" (hosts: ${LAB_HOSTS.join(' ')})`);
      return prefix + h;
    },
    exec: (host, cmd, a = [], o = {}) => labExec(lab.ns(host), cmd, a, { ...o, env: { ...env, NATLAB_HOST: host, ...o.env } }),
    spawn: (host, cmd, a = [], o = {}) => spawnInNs(lab.ns(host), cmd, a, { ...o, env: { ...env, NATLAB_HOST: host, ...o.env } }),
    spawnNode: (host, file, a = [], o = {}) => {
      const c = nodeCommand(file, a);
      return lab.spawn(host, c.cmd, c.args, o);
    },
    async down() {
      if (isDown) return;
      isDown = true;
      const i = labs.indexOf(lab);
      if (i >= 0) labs.splice(i, 1);
      const d = await runLabScript(['down'], labEnv, 30_000);
      if (d.code !== 0) throw new Error(`nat-lab down (prefix ${prefix}) failed:\n${d.stderr}${d.stdout}`);
    },
  };
  labs.push(lab);
  return lab;
}

/** Tears down `lab`, or every lab this process brought up. Idempotent. */
export async function labDown(lab?: Lab): Promise<void> {
  const targets = lab ? [lab] : [...labs];
  const errors: unknown[] = [];
  for (const l of targets.reverse()) await l.down().catch((e: unknown) => errors.push(e));
  if (errors.length) throw errors[0];
}

/** The most recent lab that is up, if any. */
export function currentLab(): Lab | undefined {
  return labs[labs.length - 1];
}

/** Whether namespace `name` exists. */
export function netnsExists(name: string): boolean {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').some((l) => l.split(' ')[0] === name);
}

// Last resort when a worker exits without its afterAll: kill our children and
// tear our labs down synchronously.
process.once('exit', () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const l of labs) {
    spawnSync('bash', [NAT_LAB, 'down'], { env: { ...process.env, NATLAB_PREFIX: l.prefix, NATLAB_QUIET: '1' }, stdio: 'ignore', timeout: 30_000 });
  }
});
