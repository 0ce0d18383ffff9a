/**
 * Parent/child plumbing for the benchmarks: the orchestrator (bench/run.ts) spawns each role
 * as its own `node --import tsx` process and drives it with request/response messages over
 * the IPC channel, so client and server never share an event loop.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A request handler in a child; its return value is sent back to the orchestrator. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handler = (args: any) => unknown;

interface Request {
  id: number;
  op: string;
  args?: unknown;
}
interface Reply {
  id: number;
  result?: unknown;
  error?: string;
}

/** Child side: answers the orchestrator's requests with `handlers`; exits when it disconnects. */
export function serve(handlers: Record<string, Handler>): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('this script is a benchmark role: run it through `npm run bench`');
  const all: Record<string, Handler> = {
    ...handlers,
    exit: () => {
      setImmediate(() => process.exit(0));
      return true;
    },
  };
  process.on('message', (msg: Request) => {
    void (async () => {
      let reply: Reply;
      try {
        const h = all[msg.op];
        if (!h) throw new Error(`unknown op ${msg.op}`);
        reply = { id: msg.id, result: await h(msg.args) };
      } catch (e) {
        reply = { id: msg.id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      }
      send(reply);
    })();
  });
  process.on('disconnect', () => process.exit(0));
}

/** `key=value` arguments of a role script. */
export function args(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of process.argv.slice(2)) {
    const i = a.indexOf('=');
    if (i > 0) out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

/** How to start a child. */
export interface ChildOptions {
  /** Pass `--expose-gc`. */
  gc?: boolean;
  /** Raise `ulimit -n` to this before starting node (spawns through bash). */
  ulimit?: number;
  /** Write V8 CPU profiles into `<profDir>/<name>/` (`--cpu-prof`). */
  profDir?: string;
  /** Pin to these CPUs with taskset (e.g. `'0'`). */
  cpus?: string;
  /** The script is TypeScript: run it with `--import tsx`. */
  tsx?: boolean;
  /** Extra environment. */
  env?: NodeJS.ProcessEnv;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Orchestrator side: one role process. */
export class Child {
  readonly proc: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly exited: Promise<number | null>;

  /** `script` is a path to the role script (compiled JS, or TS with `opts.tsx`). */
  constructor(readonly name: string, script: string, argv: string[], opts: ChildOptions = {}) {
    const nodeArgs = opts.tsx ? ['--import', 'tsx'] : [];
    if (opts.gc) nodeArgs.push('--expose-gc');
    if (opts.profDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.profDir}/${name}`);
    const cmd = [process.execPath, ...nodeArgs, script, ...argv];
    let file = cmd[0] as string;
    let list = cmd.slice(1);
    if (opts.cpus) {
      file = 'taskset';
      list = ['-c', opts.cpus, ...cmd];
    }
    if (opts.ulimit) {
      const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
      list = ['-c', `ulimit -n ${opts.ulimit} && exec ${[file, ...list].map(q).join(' ')}`];
      file = 'bash';
    }
    this.proc = spawn(file, list, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...opts.env } });
    this.proc.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(`${this.name}: ${m.error}`));
      else p.resolve(m.result);
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited (${code ?? signal})`));
        this.pending.clear();
        resolve(code);
      });
    });
  }

  /** Sends a request and resolves with the child's answer. */
  call<T>(op: string, a?: unknown, timeoutMs = 120_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${op} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.proc.send({ id, op, args: a } satisfies Request);
    });
  }

  /** Asks the child to exit (so a CPU profile gets written) and waits; kills it after 10 s. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    try {
      await this.call('exit', undefined, 5_000);
    } catch {
      /* already gone */
    }
    await this.exited;
    clearTimeout(t);
  }
}
