/**
 * One protocol, many transports: a tiny line protocol (`TIME`, `ECHO text`, `UPPER text`)
 * served by one handler over TCP and UDP, IPv4 and IPv6 (a `Daemon`), and over encrypted,
 * authenticated P2P pipes (a node's `addMsgCb`). Clients of each kind ask the same questions.
 *
 * Run: npx tsx examples/multi-protocol-server.ts
 */
import { Daemon, formatEndpoint, pipeOpen, startP2pNode } from '../src/index.js';
import { runMain } from './run-main.js';

/** The protocol: request text in, answer text out. */
export function answer(request: string): string {
  const [cmd = '', ...rest] = request.trim().split(' ');
  const arg = rest.join(' ');
  switch (cmd.toUpperCase()) {
    case 'TIME':
      return `TIME ${new Date().toISOString()}`;
    case 'ECHO':
      return arg;
    case 'UPPER':
      return arg.toUpperCase();
    default:
      return `ERROR unknown command ${JSON.stringify(cmd)}`;
  }
}

/** What the example did, for the test that runs it. */
export interface MultiProtocolResult {
  answers: { via: string; request: string; reply: string }[];
}

export async function main(log: (line: string) => void = console.log): Promise<MultiProtocolResult> {
  const result: MultiProtocolResult = { answers: [] };

  // 1. Plain sockets: one handler for every listening pipe; reply to msg.from works for TCP and UDP.
  await using daemon = new Daemon(async (msg) => {
    await msg.pipe.send(answer(msg.data.toString()), msg.from);
  }, { framing: 'length' });
  const servers = await daemon.listenLoopback(['tcp', 'udp'], 0);
  for (const s of servers) log(`daemon: ${s.proto} ${formatEndpoint(s.local)}`);

  // 2. P2P: the same handler on a node; peers reach it by address, encrypted and authenticated.
  await using server = await startP2pNode({ listen: 'loopback', portMapping: false });
  server.addMsgCb(async (msg, pipe) => {
    await pipe.send(answer(msg.toString()));
  });
  log(`node: ${server.addr.slice(0, 32)}…`);

  const requests = ['UPPER multi protocol', 'ECHO hello', 'TIME', 'FLY'];
  for (const s of servers) {
    await using c = await pipeOpen(s.proto, s.local, { framing: 'length', timeout: 2000 });
    for (const request of requests) {
      await c.send(request);
      const reply = (await c.recv({ timeout: 2000 })).data.toString();
      result.answers.push({ via: `${s.proto}/IPv${s.local.family}`, request, reply });
    }
  }
  await using client = await startP2pNode({ listen: 'loopback', portMapping: false, signalling: false });
  const p = await client.connect(server.addr);
  for (const request of requests) {
    await p.send(request);
    const reply = (await p.recv({ timeout: 2000 })).data.toString();
    result.answers.push({ via: `p2p/${p.path.strategy}`, request, reply });
  }
  await p.close();
  for (const a of result.answers) log(`${a.via.padEnd(12)} ${a.request.padEnd(22)} -> ${a.reply}`);
  return result;
}

runMain(import.meta.url, () => main());
