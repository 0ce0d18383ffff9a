/**
 * The command line of the `p2pd` command's own commands (see `main.ts`): parsing, and turning
 * `--stun`, `--iface` / `--bind` and `--timeout` into what the library takes.
 * @module
 */
import type { Endpoint, Family } from '../interfaces/endpoint.js';
import { parseStunServer, STUN_PORT } from '../nat/stun/client.js';
import type { BindOptions } from '../pipes/types.js';
import { resolveSpec, serverSpec } from '../node/cli-servers.js';
import { scanArgs, UsageError } from '../util/cli-args.js';

/** The parsed command line. */
export interface Args {
  /** The command (first positional argument). */
  command: string | undefined;
  /** `--stun` servers, as given. */
  stun: string[];
  /** `-4` / `-6` / `--family`. */
  family: Family | undefined;
  /** `--iface`. */
  iface: string | undefined;
  /** `--bind`. */
  bind: string | undefined;
  /** `--tcp`. */
  tcp: boolean;
  /** `--classic`. */
  classic: boolean;
  /** `--timeout`, ms. */
  timeout: number;
  /** False with `--no-delta`. */
  delta: boolean;
  /** False with `--no-hairpin`. */
  hairpin: boolean;
  /** False with `--no-portmap`. */
  portmap: boolean;
  /** `--json`. */
  json: boolean;
  /** `-q`, `--quiet`. */
  quiet: boolean;
  /** `-h`, `--help`. */
  help: boolean;
  /** `-V`, `--version`. */
  version: boolean;
}

/** The options of the CLI's own commands. */
export const ARG_SPEC = {
  flags: [
    '-4', '-6', '--tcp', '--udp', '--classic', '--no-delta', '--no-hairpin', '--no-portmap', '--json',
    '-q', '--quiet', '-h', '--help', '-V', '--version', '-v', '--verbose',
  ],
  options: ['--stun', '--family', '--iface', '--bind', '--timeout'],
} as const;

/** Parses the command line (without `node` and the script). Throws {@link UsageError} on bad usage. */
export function parseArgs(argv: readonly string[]): Args {
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
      case '-v': case '--verbose': throw new UsageError(`${t.name} is an option of the node commands (node, connect, ping, serve); nat and stun show their progress unless -q`);
    }
  }
  return a;
}

/**
 * Resolves a `--stun` value `HOST[:PORT]` (IP literal or name) to an endpoint of `family` (if given).
 * @throws UsageError `bad --stun "VALUE": expected HOST[:PORT]` for a malformed value.
 * @throws HostNotFoundError when the name does not resolve.
 */
export async function resolveServer(spec: string, family: Family | undefined): Promise<Endpoint> {
  const s = serverSpec(spec, (x) => parseStunServer(x), STUN_PORT);
  if (!s) throw new UsageError(`bad --stun ${JSON.stringify(spec.slice(0, 80))}: expected HOST[:PORT] (an IP address or a host name)`);
  const server = await resolveSpec(s, '--stun', family);
  return typeof server === 'string' ? parseStunServer(server) : server;
}

/** The local binding `--iface` / `--bind` ask for, if any. */
export function bindOf(a: Args): BindOptions | undefined {
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

/** The command's signal: aborts after `--timeout`, or when `signal` (Ctrl-C) does. */
export function signalOf(a: Args, signal: AbortSignal | undefined): AbortSignal {
  const t = AbortSignal.timeout(a.timeout);
  return signal ? AbortSignal.any([signal, t]) : t;
}
