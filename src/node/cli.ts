/**
 * The node commands of the `p2pd` CLI:
 *
 * ```
 * p2pd node    [node options] [--chat]          start a node, print its address, echo (or chat with) peers
 * p2pd connect ADDR [node options] [--strategy S]…  connect, show the path and time, then chat (stdin ↔ peer)
 * p2pd ping    ADDR [node options] [--count N] [--interval MS]   round trips to a `p2pd node`
 * p2pd serve   [--host IP] [--mqtt-port N] [--mqtt-max-per-host N] [--stun-port N] [--stun-alt IP] [-v]   MQTT broker + STUN server
 *
 * node options: --broker URL (repeatable; default: an embedded broker) --stun HOST[:PORT] (repeatable)
 *   --turn USER:PASS@HOST[:PORT] (repeatable) --port N --identity FILE --loopback --no-portmap --no-tcp-punch --timeout MS --json -q -v
 * ```
 * With `--json` every output line is one JSON object (`{"event":"address",…}`, `{"event":"connected",…}`,
 * `{"event":"message",…}`, `{"event":"peer",…}`, `{"event":"peer-closed",…}`, `{"event":"ping",…}`,
 * `{"event":"summary",…}`, `{"event":"warning",…}`, `{"event":"error",…}`), for scripts and tests;
 * the `error` line (`error`, `name`, `code`, `exit`) is also written for bad usage.
 * Exit codes: 0 done (Ctrl-C ends `node`, `serve` and a chat normally), 1 failed (also: interrupted
 * before the connection was made, a `--stun` / `--turn` host name that does not resolve), 2 bad
 * usage (also: a bad `--broker` URL, a malformed `--stun` / `--turn` server or `ADDR`; all
 * checked before anything starts). Host names given to `--stun` / `--turn` are resolved here,
 * explicitly, before the node starts (the library itself never resolves names).
 * @module
 */
import { createInterface } from 'node:readline';
import { Identity } from '../crypto/identity.js';
import { P2pdError } from '../errors.js';
import { UsageError } from '../util/cli-args.js';
import { DEFAULT_BROKER_MAX_CONNECTIONS, MAX_BROKER_CONNECTIONS_PER_HOST } from './broker.js';
import { describeAddress, type PeerAddress } from './address.js';
import { inputEnded, Out, pathJson, pathText, printable, printError, sendLine, untilAborted, wantsJson } from './cli-out.js';
import { NODE_ARG_SPEC, parseNodeArgs, type NodeArgs as Args } from './cli-parse.js';
import { cmdServe } from './cli-serve.js';
import { resolveSpec } from './cli-servers.js';
import { startP2pNode, type P2pNode } from './node.js';
import type { NodePipe, P2pNodeOptions, TurnServerConfig } from './types.js';

/** Where the node commands read and write. */
export interface NodeCliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Ends a long-running command (Ctrl-C). */
  signal?: AbortSignal;
  /** Lines to send (`connect`, `node --chat`). @default process.stdin */
  stdin?: NodeJS.ReadableStream;
}

/** The commands this module runs. */
export const NODE_COMMANDS = ['node', 'connect', 'ping', 'serve'] as const;

/** Usage text of the node commands (appended to the CLI's). */
export const NODE_USAGE = `node commands:
  node                     start a P2P node, print its address, echo what peers send (--chat: talk)
  connect ADDR             connect to a node: show the path that won and the time, then chat
  ping ADDR                round trips to a node started with \`p2pd node\`
  serve                    run an MQTT broker and a STUN server for your own infrastructure

node options:
  --broker URL             MQTT broker (repeatable); default: a broker embedded in the node
  --stun HOST[:PORT]       STUN server (repeatable): external address and NAT type;
                           HOST is an IP address or a name, resolved at start (default port 3478)
  --turn USER:PASS@HOST[:PORT]
                           TURN server for the relay strategy (repeatable; HOST as for --stun)
  --port N                 listen port (default: any)
  --identity FILE          load the node's key from FILE (created, mode 0600, if missing)
  --loopback               listen on loopback only
  --no-portmap             do not ask the gateway for a port mapping
  --no-tcp-punch           punch UDP only (no TCP simultaneous open)
  --keepalive MS           keep-alive interval of idle connections (default 15000)
  --strategy S             (connect, ping) direct, reverse, punch or relay (repeatable, in order)
  --via KIND               (connect, ping) direct only to these endpoints: loopback, lan,
                           link-local, global, mapped, external (repeatable)
  --count N                (ping) round trips (default 4)
  --interval MS            (ping) pause between round trips (default 200)
  --chat                   (node) send stdin lines to every connected peer instead of echoing;
                           end of input (Ctrl-D) stops, as it ends \`connect\`
  --timeout MS             connect time limit (default 15000)
  --json                   one JSON object per output line
  -q, --quiet              no progress on stderr
  -v, --verbose            show the connection race: each strategy's start, failure or win
                           (serve: the connections the MQTT broker refuses, as they happen)
  -h, --help               this text

serve options:
  --host IP                address to listen on (default 0.0.0.0)
  --mqtt-port N            MQTT port (default 1883)
  --mqtt-max-per-host N    MQTT connections one source address may hold, loopback included
                           (default ${MAX_BROKER_CONNECTIONS_PER_HOST}, at most ${DEFAULT_BROKER_MAX_CONNECTIONS}); more are refused on arrival.
                           The summary serve prints when it stops counts them (-v: as they come)
  --stun-port N            STUN port (default 3478; the alternate is N+1 with --stun-alt)
  --stun-alt IP            second address: an RFC 5780 STUN server (NAT type detection)

exit codes: 0 done (Ctrl-C ends node, serve and a chat normally), 1 failed or interrupted
before connecting, 2 bad usage
`;

/** The `--stun` and `--turn` servers, host names resolved. @throws HostNotFoundError */
async function servers(a: Args): Promise<Pick<P2pNodeOptions, 'stun' | 'turn'>> {
  const stun: NonNullable<P2pNodeOptions['stun']> = [];
  for (const s of a.stun) stun.push(await resolveSpec(s, '--stun'));
  const turn: TurnServerConfig[] = [];
  for (const t of a.turn) turn.push({ username: t.username, password: t.password, server: await resolveSpec(t.server, '--turn') });
  return { ...(stun.length ? { stun } : {}), ...(turn.length ? { turn } : {}) };
}

async function nodeOptions(a: Args, out: Out): Promise<P2pNodeOptions> {
  // Names first: a server that cannot be found fails the command before anything is made.
  const o: P2pNodeOptions = { ...(await servers(a)), portMapping: a.portmap && !a.loopback, ...(a.tcpPunch ? {} : { tcpPunch: false }), onEvent: (e) => out.event(e) };
  if (a.identity !== undefined) o.identity = await Identity.loadOrGenerate(a.identity);
  if (a.keepAlive !== undefined) o.keepAlive = a.keepAlive;
  if (a.port !== undefined) o.port = a.port;
  if (a.loopback) o.listen = 'loopback';
  if (a.brokers.length) o.signalling = { brokers: a.brokers };
  if (a.strategies.length) o.strategies = a.strategies;
  return o;
}

async function cmdNode(a: Args, io: NodeCliIo, out: Out): Promise<number> {
  const t0 = performance.now();
  const node = await startP2pNode(await nodeOptions(a, out), { ...(io.signal ? { signal: io.signal } : {}) });
  let stopping = false;
  try {
    const startMs = performance.now() - t0;
    out.line({ event: 'address', addr: node.addr, id: node.idHex, port: node.listenPort, nat: node.nat?.type ?? null, startMs }, node.addr);
    out.info(`started in ${startMs.toFixed(0)} ms`);
    out.info(describeAddress(node.address));
    node.onAddrChange((addr) => out.line({ event: 'address', addr, id: node.idHex }, addr));
    node.onPipe((p) => {
      out.line({ event: 'peer', id: p.remoteIdHex, path: pathJson(p) }, `+ peer ${p.remoteIdHex.slice(0, 16)}… via ${pathText(p)}`);
      p.onClose((err) => {
        if (stopping) return;
        const why = err ? `: ${err.message}` : '';
        out.line({ event: 'peer-closed', id: p.remoteIdHex, ...(err ? { error: err.message } : {}) }, `- peer ${p.remoteIdHex.slice(0, 16)}… left${why}`);
      });
    });
    node.addMsgCb(async (msg, pipe) => {
      if (!a.chat) {
        await pipe.send(msg);
        if (!a.json && !a.quiet) io.stderr.write(`< ${pipe.remoteIdHex.slice(0, 12)}… ${printable(msg)} (echoed)\n`);
        return;
      }
      out.line({ event: 'message', from: pipe.remoteIdHex, text: msg.toString('utf8') }, `< ${pipe.remoteIdHex.slice(0, 12)}… ${printable(msg)}`);
    });
    if (!a.chat) {
      await untilAborted(io.signal);
      return 0;
    }
    out.info('type lines to send them to every connected peer; Ctrl-D or Ctrl-C to stop');
    const rl = createInterface({ input: io.stdin ?? process.stdin, terminal: false });
    rl.on('line', (line) => {
      const peers = [...node.pipes];
      if (peers.length === 0) out.warn({ detail: 'no peer connected: line not sent' }, 'no peer connected: line not sent');
      for (const p of peers) sendLine(out, p, line);
    });
    const { byEof } = await inputEnded(rl, io.signal);
    rl.close();
    if (byEof) out.info('end of input: stopping');
    return 0;
  } finally {
    stopping = true;
    await node.close();
  }
}

async function connectTo(a: Args, io: NodeCliIo, out: Out, queue: boolean): Promise<{ node: P2pNode; pipe: NodePipe }> {
  const peer = a.peer as PeerAddress; // parsed with the command line (a malformed one is bad usage)
  const node = await startP2pNode(await nodeOptions(a, out), { ...(io.signal ? { signal: io.signal } : {}) });
  try {
    out.info(`connecting to ${peer.idHex.slice(0, 16)}…`);
    const pipe = await node.connect(peer, {
      timeout: a.timeout,
      queue,
      ...(a.via.length ? { via: a.via } : {}),
      ...(a.strategies.length ? { strategies: a.strategies } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
    });
    out.line({ event: 'connected', id: pipe.remoteIdHex, path: pathJson(pipe) }, `connected via ${pathText(pipe)} in ${(pipe.path.ms ?? 0).toFixed(1)} ms`);
    return { node, pipe };
  } catch (e) {
    await node.close();
    throw e;
  }
}

async function cmdConnect(a: Args, io: NodeCliIo, out: Out): Promise<number> {
  const { node, pipe } = await connectTo(a, io, out, false);
  try {
    pipe.onMessage((m) => out.line({ event: 'message', text: m.data.toString('utf8') }, `< ${printable(m.data)}`));
    out.info('type lines to send them; Ctrl-D or Ctrl-C to stop');
    const rl = createInterface({ input: io.stdin ?? process.stdin, terminal: false });
    const peerGone = new Promise<'peer'>((resolve) => pipe.onClose(() => resolve('peer')));
    rl.on('line', (line) => sendLine(out, pipe, line));
    const how = await Promise.race([inputEnded(rl, io.signal), peerGone]);
    rl.close();
    if (how === 'peer') out.info('peer closed the connection');
    return 0;
  } finally {
    await node.close();
  }
}

async function cmdPing(a: Args, io: NodeCliIo, out: Out): Promise<number> {
  const { node, pipe } = await connectTo(a, io, out, true);
  const rtts: number[] = [];
  let lost = 0;
  try {
    for (let i = 1; i <= a.count; i++) {
      if (io.signal?.aborted) break;
      const text = `PING ${i} ${Date.now()}`;
      const t0 = performance.now();
      try {
        await pipe.send(text);
        for (;;) {
          const r = await pipe.recv({ timeout: Math.max(2000, Math.min(a.timeout, 10_000)), ...(io.signal ? { signal: io.signal } : {}) });
          if (r.data.toString() === text) break;
        }
        const ms = performance.now() - t0;
        rtts.push(ms);
        out.line({ event: 'ping', seq: i, ms }, `reply ${i}: ${ms.toFixed(2)} ms`);
      } catch (e) {
        if (io.signal?.aborted) break;
        lost++;
        out.line({ event: 'ping', seq: i, error: (e as Error).message }, `no reply ${i}: ${(e as Error).message}`);
        if (pipe.closed) break;
      }
      if (i < a.count && a.interval > 0) await new Promise<void>((r) => {
        const t = setTimeout(r, a.interval);
        io.signal?.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
      });
    }
    const sorted = [...rtts].sort((x, y) => x - y);
    const avg = rtts.length ? rtts.reduce((s, x) => s + x, 0) / rtts.length : 0;
    out.line(
      { event: 'summary', sent: rtts.length + lost, received: rtts.length, lost, min: sorted[0] ?? null, avg: rtts.length ? avg : null, max: sorted.at(-1) ?? null, path: pathJson(pipe) },
      `${rtts.length}/${rtts.length + lost} replies via ${pipe.path.strategy}/${pipe.path.transport}` +
        (rtts.length ? `, rtt min/avg/max ${(sorted[0] as number).toFixed(2)}/${avg.toFixed(2)}/${(sorted.at(-1) as number).toFixed(2)} ms` : ''),
    );
    return rtts.length > 0 && lost === 0 ? 0 : 1;
  } finally {
    await pipe.close();
    await node.close();
  }
}

/**
 * Runs a node command (`argv[0]` is one of {@link NODE_COMMANDS}); resolves with the exit
 * code (0 ok, 1 failed, 2 bad usage). Never throws.
 */
export async function runNodeCommand(argv: readonly string[], io: NodeCliIo): Promise<number> {
  let a: Args;
  try {
    a = parseNodeArgs(argv);
  } catch (e) {
    return usageError(io, wantsJson(argv.slice(1), NODE_ARG_SPEC.options), e);
  }
  if (a.help) {
    io.stdout.write(NODE_USAGE);
    return 0;
  }
  const out = new Out(io, a);
  try {
    switch (a.command) {
      case 'node':
        return await cmdNode(a, io, out);
      case 'connect':
        return await cmdConnect(a, io, out);
      case 'ping':
        return await cmdPing(a, io, out);
      case 'serve':
        return await cmdServe(a, io.signal, out);
      default:
        return usageError(io, a.json, new UsageError(`unknown command ${JSON.stringify(a.command)}`));
    }
  } catch (e) {
    // Ctrl-C ends `node`, `serve` and a chat normally (they return); here it stopped the
    // command before it got going (a node starting, a connect in progress): that is a failure.
    const code = e instanceof P2pdError && !io.signal?.aborted ? e.code : undefined;
    const msg = io.signal?.aborted ? `interrupted (${a.command === 'connect' || a.command === 'ping' ? 'not connected' : 'while starting'})` : `${(e as Error)?.message ?? String(e)}${code ? ` [${code}]` : ''}`;
    printError(io, a.json, { message: msg, name: (e as Error)?.name, code, exit: 1 });
    return 1;
  }
}

/** Reports bad usage (`e`, a {@link UsageError}): one line and a pointer to --help; exit code 2. */
function usageError(io: NodeCliIo, json: boolean, e: unknown): number {
  const err = e as Error;
  printError(io, json, { message: err?.message ?? String(e), name: err?.name, code: e instanceof P2pdError ? e.code : undefined, exit: 2 }, '(p2pd --help for usage)\n');
  return 2;
}
