/**
 * The classic two-peer echo, on loopback: peer A runs a daemon (TCP + UDP, IPv4 + IPv6,
 * one handler); peer B opens a pipe to it, sends "ECHO ME" and receives it reversed.
 *
 * Run: npm run demo:echo
 */
import { Daemon, initP2pd, pipeOpen, formatEndpoint, type Proto } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the demo did, for the tests that run it. */
export interface EchoResult {
  replies: { proto: Proto; to: string; sent: string; got: string; ms: number }[];
}

export async function main(log: (line: string) => void = console.log): Promise<EchoResult> {
  const t0 = performance.now();
  const nics = await initP2pd();
  log(`interfaces: ${nics.names().join(', ')} (enumerated offline in ${(performance.now() - t0).toFixed(1)} ms)`);

  // Peer A: one handler for every protocol and address; replies go back to msg.from.
  await using daemon = new Daemon(async (msg) => {
    const text = msg.data.toString();
    log(`A <- ${formatEndpoint(msg.from)} over ${msg.pipe.proto}: ${JSON.stringify(text)}`);
    await msg.pipe.send([...text].reverse().join(''), msg.from);
  }, { framing: 'length' });
  const listening = await daemon.listenLoopback(['tcp', 'udp'], 0);
  for (const p of listening) log(`A listening on ${p.proto} ${formatEndpoint(p.local)}`);

  // Peer B: a client pipe per protocol and address.
  const result: EchoResult = { replies: [] };
  for (const server of listening) {
    await using pipe = await pipeOpen(server.proto, server.local, { framing: 'length', timeout: 2000 });
    const start = performance.now();
    await pipe.send('ECHO ME');
    const reply = await pipe.recv({ timeout: 2000 });
    const ms = performance.now() - start;
    const got = reply.data.toString();
    log(`B <- ${formatEndpoint(reply.from)} over ${pipe.proto}: ${JSON.stringify(got)} (${ms.toFixed(2)} ms)`);
    result.replies.push({ proto: pipe.proto, to: formatEndpoint(server.local), sent: 'ECHO ME', got, ms });
  }
  log(`done: ${result.replies.length} round trips, all closed`);
  return result;
}

runMain(import.meta.url, () => main());
