/**
 * The command line of the node commands of the CLI (`src/node/cli.ts`): parsing, and checking
 * what can be checked before anything starts (IP options, `--broker` URLs, `--stun` and `--turn`
 * servers, the peer's address), so that a bad value is bad usage (exit 2), not a failure. Host
 * names given to `--stun` / `--turn` are resolved later, when the command starts (`cli-servers.ts`).
 * @module
 */
import { isIP } from 'node:net';
import { choiceArg, intArg, scanArgs, UsageError } from '../util/cli-args.js';
import { STUN_PORT } from '../nat/stun/client.js';
import { TURN_DEFAULT_PORT } from '../nat/turn/constants.js';
import { DEFAULT_BROKER_MAX_CONNECTIONS } from './broker.js';
import { checkBrokerUrl, parseAddress, type AddrEndpointKind, type PeerAddress } from './address.js';
import { serverSpec, type ServerSpec } from './cli-servers.js';
import { AddressError } from './errors.js';
import { validateNodeOptions } from './options.js';
import { STRATEGIES, type Strategy } from './types.js';

/** A `--turn USER:PASS@HOST[:PORT]` value, its server not resolved yet. */
export interface TurnArg {
  username: string;
  password: string;
  server: ServerSpec;
}

/** The parsed command line of a node command. */
export interface NodeArgs {
  command: string;
  /** `ADDR` as given (`connect`, `ping`). */
  addr: string | undefined;
  /** `ADDR`, parsed and verified (`connect`, `ping`; not with `--help`). */
  peer: PeerAddress | undefined;
  brokers: string[];
  /** `--stun` servers, checked; names not resolved yet. */
  stun: ServerSpec[];
  /** `--turn` servers, checked; names not resolved yet. */
  turn: TurnArg[];
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
  /** `--mqtt-max-per-host` (serve). */
  mqttMaxPerHost: number | undefined;
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
    '--mqtt-port', '--mqtt-max-per-host', '--stun-port', '--stun-alt', '--identity', '--keepalive',
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

/**
 * A `--stun` value: what the node takes (an IP literal, with or without a port), or a host name
 * to resolve; anything else is bad usage naming the option, the value and the expected form.
 */
export function stunArg(v: string): ServerSpec {
  const s = serverSpec(v, (x) => validateNodeOptions({ stun: [x] }), STUN_PORT);
  if (!s) throw new UsageError(`bad --stun ${JSON.stringify(v.slice(0, 80))}: expected HOST[:PORT] (an IP address or a host name)`);
  return s;
}

/**
 * A `--turn USER:PASS@HOST[:PORT]` value (the password may hold `@` and `:`; the user may not
 * hold `:`). Its server is checked as {@link stunArg} checks a STUN server, with the node's own
 * TURN check. The credentials never appear in an error.
 */
export function turnArg(v: string): TurnArg {
  const at = v.lastIndexOf('@');
  const colon = v.indexOf(':');
  if (at < 0 || colon <= 0 || colon > at - 2 || at === v.length - 1) throw new UsageError('bad --turn: expected USER:PASS@HOST[:PORT]');
  const username = v.slice(0, colon);
  const password = v.slice(colon + 1, at);
  const server = v.slice(at + 1);
  const s = serverSpec(server, (x) => validateNodeOptions({ turn: [{ server: x, username, password }] }), TURN_DEFAULT_PORT);
  if (!s) throw new UsageError(`bad --turn server ${JSON.stringify(server.slice(0, 80))}: expected USER:PASS@HOST[:PORT] (an IP address or a host name)`);
  return { username, password, server: s };
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
    help: false, host: '0.0.0.0', mqttPort: 1883, mqttMaxPerHost: undefined, stunPort: 3478, stunAlt: undefined, identity: undefined, keepAlive: undefined,
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
      case '--stun': a.stun.push(stunArg(t.value)); break;
      case '--turn': a.turn.push(turnArg(t.value)); break;
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
      case '--mqtt-max-per-host': a.mqttMaxPerHost = intArg(t.value, t.name, 1, DEFAULT_BROKER_MAX_CONNECTIONS); break;
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
