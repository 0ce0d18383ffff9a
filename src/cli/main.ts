/**
 * The `p2pd` command:
 *
 * ```
 * p2pd interfaces [--json]
 * p2pd nat  --stun HOST[:PORT] [--stun …] [-4|-6] [--iface NAME|--bind IP] [--timeout MS]
 *           [--no-delta] [--no-hairpin] [--no-portmap] [--classic] [--json] [--quiet]
 * p2pd stun --stun HOST[:PORT] [--tcp] [-4|-6] [--iface NAME|--bind IP[:PORT]] [--classic] [--timeout MS] [--json]
 * p2pd node | connect ADDR | ping ADDR | serve   (P2P node commands: src/node/cli.ts)
 * ```
 *
 * Exit codes: 0 done (a `BLOCKED` NAT is a result, not a failure), 1 the operation failed
 * (no answer, network error), 2 bad usage. Progress goes to stderr (a spinner on a terminal,
 * one line per step otherwise); results to stdout, as text or with `--json` as one JSON
 * document. Errors go to stderr as one line; with `--json` (bad usage too) an
 * `{"event":"error","error":…,"name":…,"code":…,"exit":…}` line goes to stdout first, as for
 * the node commands. Host names given to `--stun` are resolved here, explicitly (the library
 * itself never resolves names); one that does not resolve is a failure (exit 1). Options may
 * come before the command as well as after it (`p2pd --json connect ADDR`).
 * @module
 */
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { P2pdError } from '../errors.js';
import { formatEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import { initP2pd } from '../interfaces/interfaces.js';
import { detectNat } from '../nat/detect/nat-type.js';
import { stunGetMapping, STUN_PORT } from '../nat/stun/client.js';
import type { Proto } from '../pipes/types.js';
import { UsageError } from '../util/cli-args.js';
import { getPortMappingProbe, type PortMappingProbeResult } from './portmap-probe.js';
import { NODE_COMMANDS, NODE_USAGE, runNodeCommand } from '../node/cli.js';
import { NODE_ARG_SPEC } from '../node/cli-parse.js';
import { printError, wantsJson } from '../node/cli-out.js';
import { ARG_SPEC, bindOf, parseArgs, resolveServer, signalOf, type Args } from './args.js';
import { EXIT, Progress, type CliIo } from './io.js';
import { interfacesText, printMapping, printNat } from './report.js';

export { EXIT, type CliIo } from './io.js';

const VERSION = '0.1.0';

const USAGE = `usage: p2pd <command> [options]   (options may also come before the command)

commands:
  interfaces               list the network interfaces (addresses, scopes, default routes)
  nat                      detect the NAT: external address, type, mapping/filtering,
                           port allocation delta, hairpin, port-mapping methods
  stun                     one STUN Binding: local and mapped (external) address
  node, connect ADDR, ping ADDR, serve
                           P2P node commands (see below)
  help                     this text

options:
  --stun HOST[:PORT]       STUN server (nat, stun; repeatable; default port ${STUN_PORT}); HOST is an
                           IP address or a name (resolved first; not found: exit 1)
  -4, -6                   address family (default: the server's)
  --iface NAME             bind to this interface
  --bind IP[:PORT]         bind to this local address
  --tcp                    (stun) use TCP instead of UDP
  --classic                send RFC 3489 classic requests
  --timeout MS             overall time limit (default 10000)
  --no-delta               (nat) skip the port allocation test
  --no-hairpin             (nat) skip the hairpin test
  --no-portmap             (nat) skip the UPnP / NAT-PMP / PCP probe
  --json                   print one JSON document
  -q, --quiet              no progress output
  -V, --version            print the version

exit codes: 0 done, 1 failed, 2 bad usage

${NODE_USAGE}`;

async function cmdInterfaces(a: Args, io: CliIo): Promise<number> {
  const nics = await initP2pd({ signal: io.signal });
  if (a.json) io.stdout.write(JSON.stringify({ routesAvailable: nics.routesAvailable, interfaces: nics.list.map((i) => i.toJSON()) }, null, 2) + '\n');
  else io.stdout.write(interfacesText(nics.list));
  return EXIT.OK;
}

async function cmdStun(a: Args, io: CliIo): Promise<number> {
  if (a.stun.length === 0) throw new UsageError('stun needs --stun HOST[:PORT]');
  const bind = bindOf(a);
  const progress = new Progress(io.stderr, !a.quiet);
  const signal = signalOf(a, io.signal);
  const proto: Proto = a.tcp ? 'tcp' : 'udp';
  try {
    let lastErr: unknown;
    for (const spec of a.stun) {
      const server = await resolveServer(spec, a.family);
      if (a.family && server.family !== a.family) continue;
      progress.update(`STUN Binding to ${formatEndpoint(server)} over ${proto}`);
      try {
        const m = await stunGetMapping({ server, proto, bind, classic: a.classic, signal, rto: 250 });
        progress.stop();
        printMapping(m, a, io);
        return EXIT.OK;
      } catch (e) {
        if (io.signal?.aborted) throw e;
        lastErr = e;
      }
    }
    throw lastErr ?? new UsageError(`no IPv${a.family} server among --stun`);
  } finally {
    progress.stop();
  }
}


async function cmdNat(a: Args, io: CliIo): Promise<number> {
  if (a.stun.length === 0) throw new UsageError('nat needs --stun HOST[:PORT] (a server with two addresses gives the full answer)');
  if (a.tcp) throw new UsageError('nat runs over UDP; --tcp is for the stun command');
  const bind = bindOf(a);
  const signal = signalOf(a, io.signal);
  const servers: Endpoint[] = [];
  for (const s of a.stun) servers.push(await resolveServer(s, a.family));
  const progress = new Progress(io.stderr, !a.quiet);
  const t0 = performance.now();
  try {
    const family = a.family ?? (servers[0] as Endpoint).family;
    const portmapP = a.portmap
      ? getPortMappingProbe()({ signal, timeout: Math.min(2000, a.timeout), family, ...(a.iface ? { iface: a.iface } : {}) }).catch(
        (e: unknown): PortMappingProbeResult[] => [{ method: 'upnp', available: false, detail: `probe failed: ${(e as Error).message}` }],
      )
      : undefined;
    const r = await detectNat({
      servers, family, bind, signal, classic: a.classic, delta: a.delta, hairpin: a.hairpin,
      onProgress: (p) => progress.update(p.message),
    });
    if (portmapP) progress.update('port mapping probe (UPnP, NAT-PMP, PCP)');
    const portMapping = portmapP ? await portmapP : undefined;
    progress.stop();
    printNat(r, portMapping, performance.now() - t0, a, io);
    return EXIT.OK;
  } finally {
    progress.stop();
  }
}

/**
 * Runs the CLI with `argv` (without `node` and the script name); resolves with the exit code.
 * Never throws: errors are printed to `io.stderr`.
 */
export async function run(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const at = commandIndex(argv);
  if ((NODE_COMMANDS as readonly string[]).includes(argv[at] ?? '')) {
    // Options may come before the command (`p2pd --json connect ADDR`): moved after it.
    const before = argv.slice(0, at);
    if (before.some((x) => x === '-V' || x === '--version')) {
      io.stdout.write(`p2pd ${VERSION}\n`);
      return EXIT.OK;
    }
    return runNodeCommand([argv[at] as string, ...before, ...argv.slice(at + 1)], io); // their own --help too
  }
  let a: Args;
  try {
    a = parseArgs(argv);
  } catch (e) {
    if (!wantsJson(argv, ARG_SPEC.options)) {
      io.stderr.write(`p2pd: ${(e as Error).message}\n\n${USAGE}`);
      return EXIT.USAGE;
    }
    return report(io, true, e, EXIT.USAGE, HELP_POINTER);
  }
  if (a.version) {
    io.stdout.write(`p2pd ${VERSION}\n`);
    return EXIT.OK;
  }
  if (a.help || a.command === 'help') {
    io.stdout.write(USAGE);
    return EXIT.OK;
  }
  try {
    switch (a.command) {
      case 'interfaces':
      case 'ifaces':
        return await cmdInterfaces(a, io);
      case 'nat':
        return await cmdNat(a, io);
      case 'stun':
        return await cmdStun(a, io);
      case undefined:
        if (a.json) return report(io, true, new UsageError('no command given'), EXIT.USAGE, HELP_POINTER);
        io.stderr.write(USAGE);
        return EXIT.USAGE;
      default:
        if (a.json) return report(io, true, new UsageError(`unknown command ${JSON.stringify(a.command)}`), EXIT.USAGE, HELP_POINTER);
        io.stderr.write(`p2pd: unknown command ${JSON.stringify(a.command)}\n\n${USAGE}`);
        return EXIT.USAGE;
    }
  } catch (e) {
    return report(io, a.json, e, e instanceof UsageError ? EXIT.USAGE : EXIT.FAILED);
  }
}

const HELP_POINTER = '(p2pd --help for usage)\n';

/** Options that take a value, of any command: their value is never the command. */
const VALUE_OPTIONS: readonly string[] = [...ARG_SPEC.options, ...NODE_ARG_SPEC.options];

/**
 * Where the command is in `argv`: its first positional, skipping the values of the options
 * before it (`p2pd --json connect ADDR`, `p2pd --stun HOST nat`); `argv.length` if none.
 * No option is a flag of one command and takes a value in another, so this is the same for all.
 */
export function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i] as string;
    if (!x.startsWith('-')) return i;
    if (VALUE_OPTIONS.includes(x)) i++;
  }
  return argv.length;
}

/**
 * Reports the error `e` that ends a command with exit code `exit`: one line on stderr (a
 * failure's ends with its error code), and with --json an `error` event line on stdout, as the
 * node commands do. Returns `exit`.
 */
function report(io: CliIo, json: boolean, e: unknown, exit: number, tail = ''): number {
  const code = e instanceof P2pdError ? e.code : undefined;
  const message = `${(e as Error)?.message ?? String(e)}${code && exit !== EXIT.USAGE ? ` [${code}]` : ''}`;
  printError(io, json, { message, name: (e as Error)?.name, code, exit }, tail);
  return exit;
}

/** Entry point when started as a program (`bin/p2pd.mjs`, or `tsx src/cli/main.ts`). */
export async function main(): Promise<void> {
  const ac = new AbortController();
  const onSig = (): void => ac.abort();
  // Ctrl-C and a service manager's stop both end the command gracefully (a node releases its
  // port mappings, relay allocations and broker connections).
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: ac.signal });
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}

function isEntry(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(arg)).href;
  } catch {
    return false;
  }
}

if (isEntry()) void main();
