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
 * document. Host names given to `--stun` are resolved here, explicitly (the library itself
 * never resolves names).
 * @module
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { P2pdError } from '../errors.js';
import { formatEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';
import { initP2pd, type Interface } from '../interfaces/interfaces.js';
import { detectNat, type NatDetection } from '../nat/detect/nat-type.js';
import { parseStunServer, stunGetMapping, STUN_PORT, type StunMapping } from '../nat/stun/client.js';
import type { BindOptions, Proto } from '../pipes/types.js';
import { scanArgs, UsageError } from '../util/cli-args.js';
import { getPortMappingProbe, type PortMappingProbeResult } from './portmap-probe.js';
import { NODE_COMMANDS, NODE_USAGE, runNodeCommand } from '../node/cli.js';

/** Where the CLI writes. */
export interface CliIo {
  /** Results. */
  stdout: { write(s: string): unknown; isTTY?: boolean };
  /** Progress, warnings and errors. */
  stderr: { write(s: string): unknown; isTTY?: boolean };
  /** Aborts a running command (Ctrl-C). */
  signal?: AbortSignal;
}

/** Exit codes. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

const VERSION = '0.1.0';

const USAGE = `usage: p2pd <command> [options]

commands:
  interfaces               list the network interfaces (addresses, scopes, default routes)
  nat                      detect the NAT: external address, type, mapping/filtering,
                           port allocation delta, hairpin, port-mapping methods
  stun                     one STUN Binding: local and mapped (external) address
  node, connect ADDR, ping ADDR, serve
                           P2P node commands (see below)
  help                     this text

options:
  --stun HOST[:PORT]       STUN server (nat, stun; repeatable; default port ${STUN_PORT})
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

interface Args {
  command: string | undefined;
  stun: string[];
  family: Family | undefined;
  iface: string | undefined;
  bind: string | undefined;
  tcp: boolean;
  classic: boolean;
  timeout: number;
  delta: boolean;
  hairpin: boolean;
  portmap: boolean;
  json: boolean;
  quiet: boolean;
  help: boolean;
  version: boolean;
}

const ARG_SPEC = {
  flags: [
    '-4', '-6', '--tcp', '--udp', '--classic', '--no-delta', '--no-hairpin', '--no-portmap', '--json',
    '-q', '--quiet', '-h', '--help', '-V', '--version',
  ],
  options: ['--stun', '--family', '--iface', '--bind', '--timeout'],
} as const;

/** Parses the command line (without `node` and the script). Throws {@link UsageError} on bad usage. */
function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    command: undefined, stun: [], family: undefined, iface: undefined, bind: undefined, tcp: false, classic: false,
    timeout: 10_000, delta: true, hairpin: true, portmap: true, json: false, quiet: false, help: false, version: false,
  };
  for (const t of scanArgs(argv, ARG_SPEC)) {
    if (t.kind === 'positional') {
      if (a.command !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(t.value)}`);
      a.command = t.value;
      continue;
    }
    switch (t.name) {
      case '--stun': a.stun.push(t.value); break;
      case '-4': a.family = 4; break;
      case '-6': a.family = 6; break;
      case '--family':
        if (t.value !== '4' && t.value !== '6') throw new UsageError('--family must be 4 or 6');
        a.family = Number(t.value) as Family;
        break;
      case '--iface': a.iface = t.value; break;
      case '--bind': a.bind = t.value; break;
      case '--tcp': a.tcp = true; break;
      case '--udp': a.tcp = false; break;
      case '--classic': a.classic = true; break;
      case '--timeout': {
        const ms = Number(t.value);
        if (!Number.isFinite(ms) || ms <= 0) throw new UsageError('--timeout must be a positive number of milliseconds');
        a.timeout = ms;
        break;
      }
      case '--no-delta': a.delta = false; break;
      case '--no-hairpin': a.hairpin = false; break;
      case '--no-portmap': a.portmap = false; break;
      case '--json': a.json = true; break;
      case '-q': case '--quiet': a.quiet = true; break;
      case '-h': case '--help': a.help = true; break;
      case '-V': case '--version': a.version = true; break;
    }
  }
  return a;
}

/** A spinner (terminal) or one line per step (anything else) on stderr. */
class Progress {
  private timer: NodeJS.Timeout | undefined;
  private text = '';
  private frame = 0;
  private last = '';
  constructor(private readonly out: CliIo['stderr'], private readonly enabled: boolean) {}

  update(text: string): void {
    if (!this.enabled) return;
    this.text = text;
    if (!this.out.isTTY) {
      if (text !== this.last) this.out.write(`… ${text}\n`);
      this.last = text;
      return;
    }
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), 80);
      this.timer.unref();
    }
    this.draw();
  }

  private draw(): void {
    const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
    this.out.write(`\r\x1b[2K${frames[this.frame++ % frames.length]} ${this.text}`);
  }

  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.out.write('\r\x1b[2K');
    }
  }
}

/** Resolves `HOST[:PORT]` (IP literal or name) to an endpoint of `family` (if given). */
async function resolveServer(spec: string, family: Family | undefined): Promise<Endpoint> {
  try {
    return parseStunServer(spec);
  } catch {
    /* not an IP literal: a name */
  }
  let host = spec;
  let port = STUN_PORT;
  const m = /^(.*):([0-9]{1,5})$/.exec(spec);
  if (m && !(m[1] as string).includes(':')) {
    host = m[1] as string;
    port = Number(m[2]);
  }
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(host) || port < 1 || port > 65535) throw new UsageError(`bad STUN server ${JSON.stringify(spec)}: expected HOST[:PORT]`);
  const r = await lookup(host, family ? { family } : {});
  if (isIP(r.address) === 0) throw new UsageError(`could not resolve ${host}`);
  return parseStunServer({ host: r.address, port });
}

function bindOf(a: Args): BindOptions | undefined {
  if (a.iface !== undefined && a.bind !== undefined) throw new UsageError('give --iface or --bind, not both');
  if (a.iface !== undefined) return { iface: a.iface };
  if (a.bind === undefined) return undefined;
  try {
    const e = parseStunServer(a.bind, 0);
    return { host: e.host, port: e.port };
  } catch {
    throw new UsageError(`bad --bind ${JSON.stringify(a.bind)}: expected IP or IP:PORT`);
  }
}

const ep = (e: Endpoint | undefined): string => (e ? formatEndpoint(e) : '-');
const row = (k: string, v: string): string => `${k.padEnd(14)} ${v}\n`;

function interfacesText(list: readonly Interface[]): string {
  const head = ['NAME', 'INDEX', 'STATE', 'DEFAULT', 'MAC'];
  const rows = list.map((i) => [
    i.name,
    String(i.index),
    i.up ? 'up' : 'down',
    [i.isDefault[4] ? 'v4' : '', i.isDefault[6] ? 'v6' : ''].filter(Boolean).join(',') || '-',
    i.mac,
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)));
  const line = (cells: string[]): string => cells.map((x, c) => x.padEnd(widths[c] as number)).join('  ').trimEnd() + '\n';
  let out = line(head);
  list.forEach((i, n) => {
    out += line(rows[n] as string[]);
    for (const a of i.addresses) {
      const zone = a.scopeId !== undefined ? `%${a.scopeId}` : '';
      out += `    ${`${a.address}${zone}/${a.prefixLength}`.padEnd(44)} ${a.scope}\n`;
    }
    for (const f of [4, 6] as const) {
      const g = i.gateways[f];
      if (g) out += `    gateway v${f} ${g}\n`;
    }
  });
  return out;
}

async function cmdInterfaces(a: Args, io: CliIo): Promise<number> {
  const nics = await initP2pd({ signal: io.signal });
  if (a.json) io.stdout.write(JSON.stringify({ routesAvailable: nics.routesAvailable, interfaces: nics.list.map((i) => i.toJSON()) }, null, 2) + '\n');
  else io.stdout.write(interfacesText(nics.list));
  return EXIT.OK;
}

function signalOf(a: Args, io: CliIo): AbortSignal {
  const t = AbortSignal.timeout(a.timeout);
  return io.signal ? AbortSignal.any([io.signal, t]) : t;
}

async function cmdStun(a: Args, io: CliIo): Promise<number> {
  if (a.stun.length === 0) throw new UsageError('stun needs --stun HOST[:PORT]');
  const bind = bindOf(a);
  const progress = new Progress(io.stderr, !a.quiet);
  const signal = signalOf(a, io);
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

function printMapping(m: StunMapping, a: Args, io: CliIo): void {
  if (a.json) {
    io.stdout.write(JSON.stringify(m, null, 2) + '\n');
    return;
  }
  io.stdout.write(
    row('Local', ep(m.local)) + row('Mapped', ep(m.mapped)) + row('Server', `${ep(m.server)} (${m.proto}${m.classic ? ', RFC 3489' : ''})`) +
      (m.otherAddress ? row('Other address', `${ep(m.otherAddress)} (${m.otherKind === 'rfc5780' ? 'RFC 5780' : 'RFC 3489'})`) : '') +
      (m.software ? row('Software', m.software) : '') + row('RTT', `${m.rtt.toFixed(2)} ms`),
  );
}

async function cmdNat(a: Args, io: CliIo): Promise<number> {
  if (a.stun.length === 0) throw new UsageError('nat needs --stun HOST[:PORT] (a server with two addresses gives the full answer)');
  if (a.tcp) throw new UsageError('nat runs over UDP; --tcp is for the stun command');
  const bind = bindOf(a);
  const signal = signalOf(a, io);
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

function printNat(r: NatDetection, pm: PortMappingProbeResult[] | undefined, ms: number, a: Args, io: CliIo): void {
  if (a.json) {
    io.stdout.write(JSON.stringify({ ...r, portMapping: pm, totalMs: ms }, null, 2) + '\n');
    return;
  }
  const method = r.method === 'rfc5780' ? 'RFC 5780' : r.method === 'rfc3489' ? 'RFC 3489' : r.method === 'basic' ? 'no CHANGE-REQUEST support' : 'no answer';
  let out = row('NAT type', r.type);
  out += row('Mapping', r.mapping) + row('Filtering', r.filtering);
  out += row('External', ep(r.external)) + row('Local', ep(r.local));
  out += row('Port delta', r.delta ? `${r.delta.type}${r.delta.type === 'INDEPENDENT' || r.delta.type === 'DEPENDENT' ? ` (${r.delta.value >= 0 ? '+' : ''}${r.delta.value})` : ''}` : r.deltaError ? `unknown (${r.deltaError})` : 'not tested');
  if (r.hairpin !== undefined) out += row('Hairpin', r.hairpin ? 'yes' : 'no');
  out += row('STUN server', `${ep(r.server)} (${method}${r.otherAddress ? `, other ${ep(r.otherAddress)}` : ''})`);
  if (pm) {
    const text = pm.length === 0 ? 'not available' : pm.map((p) => `${p.method}: ${p.available ? `yes${p.externalAddress ? ` (${p.externalAddress})` : ''}` : `no${p.detail ? ` (${p.detail})` : ''}`}`).join(', ');
    out += row('Port mapping', text);
  }
  out += row('Time', `${ms.toFixed(0)} ms (NAT tests ${r.ms.toFixed(0)} ms)`);
  io.stdout.write(out);
}

/**
 * Runs the CLI with `argv` (without `node` and the script name); resolves with the exit code.
 * Never throws: errors are printed to `io.stderr`.
 */
export async function run(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  if ((NODE_COMMANDS as readonly string[]).includes(argv[0] ?? '') && !argv.includes('--help') && !argv.includes('-h')) return runNodeCommand(argv, io);
  let a: Args;
  try {
    a = parseArgs(argv);
  } catch (e) {
    io.stderr.write(`p2pd: ${(e as Error).message}\n\n${USAGE}`);
    return EXIT.USAGE;
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
        io.stderr.write(USAGE);
        return EXIT.USAGE;
      default:
        io.stderr.write(`p2pd: unknown command ${JSON.stringify(a.command)}\n\n${USAGE}`);
        return EXIT.USAGE;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`p2pd: ${e.message}\n`);
      return EXIT.USAGE;
    }
    const code = e instanceof P2pdError ? ` [${e.code}]` : '';
    io.stderr.write(`p2pd: ${(e as Error)?.message ?? String(e)}${code}\n`);
    return EXIT.FAILED;
  }
}

/** Entry point when started as a program (`bin/p2pd.mjs`, or `tsx src/cli/main.ts`). */
export async function main(): Promise<void> {
  const ac = new AbortController();
  const onSig = (): void => ac.abort();
  process.once('SIGINT', onSig);
  try {
    process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: ac.signal });
  } finally {
    process.off('SIGINT', onSig);
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
