/**
 * The P2PD quickstart, in TypeScript: two nodes; node B runs a protocol (PING → PONG); node
 * A connects to B's address and gets an encrypted pipe authenticated to B's key, whichever
 * strategy wins. Everything runs on this machine: B hosts the signalling broker itself
 * (an embedded MQTT broker), so no outside server is needed.
 *
 * Run: npm run demo   (or: npx tsx examples/quickstart.ts)
 */
import { initP2pd, formatEndpoint, startP2pNode, type PipePath } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the demo did, for the test that runs it. */
export interface QuickstartResult {
  reply: string;
  path: PipePath;
  /** Milliseconds to start both nodes. */
  startMs: number;
  /** The self-connect check. */
  selfReply: string;
}

export async function main(log: (line: string) => void = console.log): Promise<QuickstartResult> {
  const t0 = performance.now();
  const nics = await initP2pd();
  // listen: 'loopback' keeps the demo on this machine; drop it to listen on every interface.
  await using nodeB = await startP2pNode({ nics, listen: 'loopback', portMapping: false });
  await using nodeA = await startP2pNode({ nics, listen: 'loopback', portMapping: false });
  const startMs = performance.now() - t0;
  log(`started two nodes in ${startMs.toFixed(0)} ms`);

  // Node B's protocol: answer PING with PONG. Called for every message from every peer.
  nodeB.addMsgCb(async (msg, pipe) => {
    log(`B <- ${pipe.remoteIdHex.slice(0, 12)}…: ${msg.toString()}`);
    if (msg.toString() === 'PING') await pipe.send('PONG');
  });

  log(`B's address (give it to peers): ${nodeB.addr}`);

  // Node A connects to B's address: encrypted, authenticated to B's key, reliable, ordered.
  const pipe = await nodeA.connect(nodeB.addr);
  const p = pipe.path;
  log(`A connected via ${p.strategy} over ${p.transport}: ${formatEndpoint(p.local)} -> ${formatEndpoint(p.remote)} in ${(p.ms ?? 0).toFixed(1)} ms`);

  await pipe.send('PING');
  const reply = (await pipe.recv({ timeout: 5000 })).data.toString();
  log(`A <- B: ${reply}`);
  await pipe.close();

  // P2PD's own quickstart connects a node to itself: that works too.
  nodeB.addMsgCb(async (msg, pipe2) => {
    if (msg.toString().startsWith('ECHO ')) await pipe2.send(msg.subarray(5));
  });
  const self = await nodeB.connect(nodeB.addr);
  await self.send('ECHO test send');
  const selfReply = (await self.recv({ timeout: 5000 })).data.toString();
  log(`B -> B (self-connect via ${self.path.strategy}): ${selfReply}`);
  await self.close();
  log('done: both nodes closed');
  return { reply, path: p, startMs, selfReply };
}

runMain(import.meta.url, () => main());
