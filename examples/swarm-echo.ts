/**
 * The Cicada-style swarm echo, on loopback: peer A binds and is the first member; B and C
 * join through A; C sends "ECHO ME" to B's address, B echoes it reversed to whoever sent it
 * (`src`), and A broadcasts a greeting every member receives once. A synced dict replicates a
 * key set before anybody joined.
 *
 * Run: npx tsx examples/swarm-echo.ts
 */
import { SwarmPeer, SyncDict, formatEndpoint } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the demo did, for a test that runs it. */
export interface SwarmEchoResult {
  echoed: string;
  echoFrom: string;
  broadcastReceivedBy: number;
  synced: string | undefined;
}

export async function main(log: (line: string) => void = console.log): Promise<SwarmEchoResult> {
  // bind() comes first; no connect() = first member of a new swarm.
  await using a = new SwarmPeer();
  await a.bind('127.0.0.1', 0);
  const dictA = new SyncDict(a);
  await dictA.set('motd', 'hello from the first member');
  log(`A ${a.idHex.slice(0, 8)} listening on ${formatEndpoint(a.endpoint)}`);

  await using b = new SwarmPeer();
  await b.bind('127.0.0.1', 0);
  await b.connect('127.0.0.1', a.endpoint.port, { timeout: 5000 });
  await using c = new SwarmPeer();
  await c.bind('127.0.0.1', 0);
  await c.connect(a.endpoint, undefined, { timeout: 5000 });
  const dictC = new SyncDict(c);
  log(`B ${b.idHex.slice(0, 8)} and C ${c.idHex.slice(0, 8)} joined through A`);

  // B echoes every directed message back to its origin with a handler (not queued for recv()).
  b.registerHandler((msg, _conn) => {
    if (msg.broadcast) return false;
    // Fire and forget, but say what a failure means: the sender may have left (RoutingError:
    // no longer a known member) or the swarm may be closing; an echo that cannot go is dropped.
    b.send(msg.src, Buffer.from(msg.data).reverse()).catch(() => undefined);
    return true;
  });

  await c.send(b.endpoint, 'ECHO ME');
  const reply = await c.recv({ timeout: 5000 });
  log(`C <- ${formatEndpoint(reply.src.endpoint!)}: ${JSON.stringify(reply.data.toString())} (more queued: ${reply.more})`);

  await a.broadcast('greetings, swarm');
  const got = await Promise.all([b, c].map((p) => p.recv({ timeout: 5000 })));
  log(`broadcast received by ${got.length} members: ${got.map((m) => m.data.toString()).join(' / ')}`);

  // The key set before C joined arrives by state transfer (digest, then records).
  for (let i = 0; i < 200 && !dictC.has('motd'); i++) await new Promise((r) => setTimeout(r, 10));
  const synced = dictC.get('motd')?.toString();
  log(`C sees motd = ${JSON.stringify(synced)} (owner ${dictC.meta('motd')?.owner.slice(0, 8)})`);
  return { echoed: reply.data.toString(), echoFrom: reply.src.idHex, broadcastReceivedBy: got.length, synced };
}

runMain(import.meta.url, () => main());
