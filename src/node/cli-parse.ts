/**
 * The command line of the node commands of the CLI (`src/node/cli.ts`): parsing, and checking
 * what can be checked before anything starts (IP options, `--broker` URLs, the peer's address),
 * so that a bad value is bad usage (exit 2), not a failure.
 * @module
 */
import { isIP } from 'node:net';
import { choiceArg, intArg, scanArgs, UsageError } from '../util/cli-args.js';
import { checkBrokerUrl, parseAddress, type AddrEndpointKind, type PeerAddress } from './address.js';
import { AddressError } from './errors.js';
import { STRATEGIES, type Strategy, type TurnServerConfig } from './types.js';

/** The parsed command line of a node command. */
export interface NodeArgs {
  command: string;
  /** `ADDR` as given (`connect`, `ping`). */
  addr: string | undefined;
  /** `ADDR`, parsed and verified (`connect`, `ping`; not with `--help`). */
  peer: PeerAddress | undefined;
  brokers: string[];
  stun: string[];
  turn: TurnServerConfig[];
  port: number | undefined;
  loopback: boolean;
  portmap: boolean;
  tcpPunch: boolean;
  strategies: Strategy[];
  via: AddrEndpointKind[];
  count: number;
  interval: number;
  chat: boolean;
  timeout: number;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  help: boolean;
  host: string;
  mqttPort: number;
  stunPort: number;
  stunAlt: string | undefined;
  identity: string | undefined;
  keepAlive: number | undefined;
}

const VIA: readonly AddrEndpointKind[] = ['loopback', 'lan', 'link-local', 'global', 'mapped', 'external'];

/** The options of the node commands. */
export const NODE_ARG_SPEC = {
  flags: ['--loopback', '--no-portmap', '--no-tcp-punch', '--chat', '--json', '-q', '--quiet', '-v', '--verbose', '-h', '--help'],
  options: [
    '--broker', '--stun', '--turn', '--port', '--strategy', '--via', '--count', '--interval', '--timeout', '--host',
    '--mqtt-port', '--stun-port', '--stun-alt', '--identity', '--keepalive',
  ],
} as const;

/** What an {@link AddressError} says, without its "invalid peer address (field): " lead. */
function addressDetail(e: AddressError): string {
  const lead = `invalid peer address (${e.field}): `;
  return e.message.startsWith(lead) ? e.message.slice(lead.length) : e.message;
}

function ipArg(v: string, name: string): string {
  if (!isIP(v)) throw new UsageError(`${name} must be an IP address, not ${JSON.stringify(v.slice(0, 40))}`);
  return v;
}

function parseTurn(v: string): TurnServerConfig {
  const m = /^([^:@]+):([^@]+)@(.+)$/.exec(v);
  if (!m) throw new UsageError('--turn must be USER:PASS@HOST[:PORT]');
  return { username: m[1] as string, password: m[2] as string, server: m[3] as string };
}

/** A `--broker` value, checked as the node checks it; a bad one is named as the option's. */
export function brokerArg(v: string): string {
  try {
    return checkBrokerUrl(v);
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
    const why = addressDetail(e).replace(/^not a URL: .*$/s, 'not a URL');
    throw new UsageError(`bad --broker ${JSON.stringify(v.slice(0, 80))}: ${why}; expected a URL like mqtt://HOST:PORT (mqtt, mqtts, ws or wss)`, { cause: e });
  }
}

/** The peer's address (`connect ADDR`, `ping ADDR`), parsed and verified; a malformed one is bad usage. */
export function addrArg(v: string): PeerAddress {
  try {
    return parseAddress(v);
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
    throw new UsageError(`${e.message} (give the whole address \`p2pd node\` printed, on one line)`, { cause: e });
  }
}

/**
 * Parses a node command's line (`argv[0]` is the command).
 * @throws UsageError on bad usage, a bad option value or a malformed `ADDR`.
 */
export function parseNodeArgs(argv: readonly string[]): NodeArgs {
  const a: NodeArgs = {
    command: argv[0] as string, addr: undefined, peer: undefined, brokers: [], stun: [], turn: [], port: undefined, loopback: false, portmap: true,
    tcpPunch: true, strategies: [], via: [], count: 4, interval: 200, chat: false, timeout: 15_000, json: false, quiet: false, verbose: false,
    help: false, host: '0.0.0.0', mqttPort: 1883, stunPort: 3478, stunAlt: undefined, identity: undefined, keepAlive: undefined,
  };
  const takesAddr = a.command === 'connect' || a.command === 'ping';
  for (const t of scanArgs(argv.slice(1), NODE_ARG_SPEC)) {
    if (t.kind === 'positional') {
      if (!takesAddr || a.addr !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(t.value.slice(0, 40))}`);
      a.addr = t.value;
      continue;
    }
    switch (t.name) {
      case '--broker': a.brokers.push(brokerArg(t.value)); break;
      case '--stun': a.stun.push(t.value); break;
      case '--turn': a.turn.push(parseTurn(t.value)); break;
      case '--port': a.port = intArg(t.value, t.name, 0, 65535); break;
      case '--loopback': a.loopback = true; break;
      case '--no-portmap': a.portmap = false; break;
      case '--no-tcp-punch': a.tcpPunch = false; break;
      case '--strategy': a.strategies.push(choiceArg(t.value, STRATEGIES, 'strategy')); break;
      case '--via': a.via.push(choiceArg(t.value, VIA, 'endpoint kind')); break;
      case '--count': a.count = intArg(t.value, t.name, 1, 1_000_000); break;
      case '--interval': a.interval = intArg(t.value, t.name, 0, 86_400_000); break;
      case '--chat': a.chat = true; break;
      case '--timeout': a.timeout = intArg(t.value, t.name, 1, 3_600_000); break;
      case '--json': a.json = true; break;
      case '-q': case '--quiet': a.quiet = true; break;
      case '-v': case '--verbose': a.verbose = true; break;
      case '-h': case '--help': a.help = true; break;
      case '--host': a.host = ipArg(t.value, t.name); break;
      case '--mqtt-port': a.mqttPort = intArg(t.value, t.name, 0, 65535); break;
      case '--stun-port': a.stunPort = intArg(t.value, t.name, 0, 65535); break;
      case '--stun-alt': a.stunAlt = ipArg(t.value, t.name); break;
      case '--identity': a.identity = t.value; break;
      case '--keepalive': a.keepAlive = intArg(t.value, t.name, 100, 3_600_000); break;
    }
  }
  if (takesAddr && !a.help) {
    if (a.addr === undefined) throw new UsageError(`${a.command} needs the peer's address`);
    a.peer = addrArg(a.addr);
  }
  return a;
}
