/**
 * A TURN relay as a pipe: allocate a relayed address on a TURN server, let a "peer" (here a
 * second UDP pipe on this machine) send to it, and answer through the relay — the reply
 * reaches the peer from the relayed address. Works with any reachable TURN server (both
 * sockets talk only to the server, so no NAT gets in the way).
 *
 * Run: TURN_SERVER=203.0.113.10:3478 TURN_USER=natlab TURN_PASS=natlab-pass npx tsx examples/turn.ts
 *      (add TURN_PROTO=tcp for TURN over TCP to the server)
 */
import { formatEndpoint, InvalidArgumentError, pipeOpen, turnAllocate } from '../src/index.js';
import { runMain } from './run-main.js';

/** Options of {@link main}; each defaults to an environment variable. */
export interface TurnExampleOptions {
  /** TURN server `host:port`. @default process.env.TURN_SERVER */
  server?: string;
  /** @default process.env.TURN_USER */
  username?: string;
  /** @default process.env.TURN_PASS */
  password?: string;
  /** Transport to the server. @default process.env.TURN_PROTO or 'udp' */
  proto?: 'udp' | 'tcp';
  /** Where progress lines go. @default console.log */
  log?: (line: string) => void;
}

/** What the example did, for the tests that run it. */
export interface TurnExampleResult {
  relayed: string;
  mapped: string | undefined;
  /** Source of the peer's message as the relay reported it. */
  peerSeenAs: string;
  sent: string;
  got: string;
  /** Round trip peer -> relay -> peer, ms. */
  ms: number;
}

export async function main(opts: TurnExampleOptions = {}): Promise<TurnExampleResult> {
  const log = opts.log ?? console.log;
  const server = opts.server ?? process.env.TURN_SERVER;
  const username = opts.username ?? process.env.TURN_USER;
  const password = opts.password ?? process.env.TURN_PASS;
  const proto = opts.proto ?? ((process.env.TURN_PROTO as 'udp' | 'tcp' | undefined) ?? 'udp');
  if (!server || !username || password === undefined) {
    throw new InvalidArgumentError('set TURN_SERVER (host:port), TURN_USER and TURN_PASS, or pass { server, username, password }');
  }

  // 1. The relay: a Pipe whose messages come from peers, and whose send(data, peer) relays.
  await using relay = await turnAllocate({ server, username, password, proto, timeout: 5000 });
  log(`allocated ${formatEndpoint(relay.relayed)} on ${formatEndpoint(relay.server)} over ${relay.serverProto}; ` +
    `we appear as ${relay.mapped ? formatEndpoint(relay.mapped) : '?'}; lifetime ${relay.lifetime} s (refreshed automatically)`);
  relay.onMessage(async (m) => {
    log(`relay <- ${formatEndpoint(m.from)}: ${JSON.stringify(m.data.toString())}`);
    await relay.send([...m.data.toString()].reverse().join(''), m.from); // answer through the relay
  });

  // 2. A peer: here a UDP pipe on this machine, talking to the relayed address. The server
  //    sees it with the same public IP as our relay client, so that IP is what we permit.
  await using peer = await pipeOpen('udp', relay.relayed, { family: relay.relayed.family });
  if (relay.mapped) await relay.permit(relay.mapped.host);
  const sent = 'hello through TURN';
  const t0 = performance.now();
  await peer.send(sent);
  const reply = await peer.recv({ timeout: 3000 });
  const ms = performance.now() - t0;
  const got = reply.data.toString();
  log(`peer <- ${formatEndpoint(reply.from)}: ${JSON.stringify(got)} (${ms.toFixed(2)} ms round trip through the relay)`);

  const result: TurnExampleResult = {
    relayed: formatEndpoint(relay.relayed),
    mapped: relay.mapped ? formatEndpoint(relay.mapped) : undefined,
    peerSeenAs: '',
    sent,
    got,
    ms,
  };
  const seen = relay.subscribe({ pattern: 'who am I?' });
  await peer.send('who am I?');
  result.peerSeenAs = formatEndpoint((await relay.recv({ sub: seen, timeout: 3000 })).from);
  log(`the relay saw the peer as ${result.peerSeenAs}; closing (the allocation is deleted)`);
  return result;
}

runMain(import.meta.url, () => main());
