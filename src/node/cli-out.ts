/**
 * Input and output helpers of the node commands of the CLI (`src/node/cli.ts`): result lines
 * (text or `--json`), progress and warnings, paths, the node's diagnostic events, and the ends
 * of a command (Ctrl-C, end of input).
 * @module
 */
import type { Interface } from 'node:readline';
import { formatEndpoint } from '../interfaces/endpoint.js';
import type { NodeEvent, NodePipe } from './types.js';

/** Where the node commands write. */
export interface CliWriters {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/** How the user asked for output. */
export interface OutMode {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
}

/** Where a command's lines go. */
export class Out {
  constructor(private readonly io: CliWriters, private readonly m: OutMode) {}
  /** A result line: JSON with --json, else `text`. */
  line(obj: Record<string, unknown>, text: string): void {
    this.io.stdout.write(this.m.json ? JSON.stringify(obj) + '\n' : text + '\n');
  }
  /** Progress on stderr (not with --json or -q). */
  info(text: string): void {
    if (!this.m.quiet && !this.m.json) this.io.stderr.write(text + '\n');
  }
  /** Something that went wrong without ending the command: a `warning` event line with --json, else stderr. */
  warn(obj: Record<string, unknown>, text: string): void {
    if (this.m.json) this.io.stdout.write(JSON.stringify({ event: 'warning', ...obj }) + '\n');
    else this.io.stderr.write(`p2pd: ${text}\n`);
  }
  /**
   * The node's diagnostic events: its warnings (not with -q); with -v the strategy race too
   * (which strategy started, failed or won, and when).
   */
  event(e: NodeEvent): void {
    const peer = e.peer ? ` (peer ${e.peer.slice(0, 12)}…)` : '';
    if (e.type === 'warning') {
      if (!this.m.quiet) this.warn({ detail: e.detail ?? '', ...(e.peer ? { peer: e.peer } : {}) }, `warning: ${e.detail ?? ''}${peer}`);
    } else if (e.type.startsWith('strategy-')) {
      const what = e.type.slice('strategy-'.length);
      const at = e.ms !== undefined ? ` at ${e.ms.toFixed(0)} ms` : '';
      this.verbose({ event: e.type, strategy: e.strategy, ms: e.ms, detail: e.detail },
        `  ${e.strategy ?? '?'} ${what === 'start' ? 'started' : what === 'fail' ? 'failed' : 'won'}${at}${e.detail && what !== 'start' ? `: ${e.detail}` : ''}`);
    }
  }
  /** A detail shown with -v only: a JSON line on stdout with --json, else on stderr (not with -q). */
  verbose(obj: Record<string, unknown>, text: string): void {
    if (!this.m.verbose) return;
    if (this.m.json) this.io.stdout.write(JSON.stringify(obj) + '\n');
    else if (!this.m.quiet) this.io.stderr.write(text + '\n');
  }
}

/**
 * Whether `argv` asks for `--json`, read without parsing it (for an error met while parsing):
 * the value of an option (one of `options`, written `--name value`) is skipped.
 */
export function wantsJson(argv: readonly string[], options: readonly string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') return true;
    if (options.includes(argv[i] as string)) i++;
  }
  return false;
}

/** An error that ends a command, as {@link printError} reports it. */
export interface CliError {
  /** The one-line message. */
  message: string;
  /** The error's class (`UsageError`, `TimeoutError`, …). */
  name: string | undefined;
  /** Its p2pd error code, if it has one. */
  code: string | undefined;
  /** The exit code it ends the command with (1 failed, 2 bad usage). */
  exit: number;
}

/**
 * Reports the error that ends a command: `p2pd: MESSAGE` on stderr (then `tail`, e.g. a
 * pointer to --help), and with --json first an `error` event line on stdout, where the
 * command's other JSON lines go: `{"event":"error","error":MESSAGE,"name":…,"code":…,"exit":…}`.
 */
export function printError(io: CliWriters, json: boolean, e: CliError, tail = ''): void {
  if (json) io.stdout.write(JSON.stringify({ event: 'error', error: e.message, name: e.name, ...(e.code ? { code: e.code } : {}), exit: e.exit }) + '\n');
  io.stderr.write(`p2pd: ${e.message}\n${tail}`);
}

/** `b` as text when it is printable, else a short hex dump. */
export function printable(b: Buffer): string {
  const s = b.toString('utf8');
  return /^[\x20-\x7e\t\u00a0-\uffff]*$/.test(s) ? s : `<${b.length} bytes: ${b.subarray(0, 32).toString('hex')}${b.length > 32 ? '…' : ''}>`;
}

/** `strategy over transport: local -> remote`. */
export function pathText(p: NodePipe): string {
  const x = p.path;
  return `${x.strategy} over ${x.transport}: ${formatEndpoint(x.local)} -> ${formatEndpoint(x.remote)}${x.server ? ` (TURN ${formatEndpoint(x.server)})` : ''}`;
}

/** The path of `p` for --json. */
export function pathJson(p: NodePipe): Record<string, unknown> {
  const x = p.path;
  return { strategy: x.strategy, transport: x.transport, local: formatEndpoint(x.local), remote: formatEndpoint(x.remote), ...(x.server ? { server: formatEndpoint(x.server) } : {}), ms: x.ms };
}

/** Sends a chat line to `pipe`; a failure (message too big, pipe gone) is told, not swallowed. */
export function sendLine(out: Out, pipe: NodePipe, line: string): void {
  pipe.send(line).catch((e: unknown) => {
    const why = (e as Error)?.message ?? String(e);
    out.warn({ detail: `not sent: ${why}`, peer: pipe.remoteIdHex }, `not sent to ${pipe.remoteIdHex.slice(0, 12)}…: ${why}`);
  });
}

/** Resolves when `signal` aborts. */
export function untilAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!signal) return; // runs until the process ends
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Resolves when `rl`'s input ends (EOF, Ctrl-D) or `signal` aborts; `byEof` says which. */
export function inputEnded(rl: Interface, signal: AbortSignal | undefined): Promise<{ byEof: boolean }> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ byEof: false });
    rl.once('close', () => resolve({ byEof: !signal?.aborted }));
    signal?.addEventListener('abort', () => resolve({ byEof: false }), { once: true });
  });
}
