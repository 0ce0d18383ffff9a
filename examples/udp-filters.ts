/**
 * Awaiting UDP messages with filters (P2PD's subscriptions): one UDP socket receives from
 * several senders; subscriptions pick out messages by content (a RegExp, a prefix, a
 * predicate) and by source (host, port, or any port of a host), and `await pipe.recv({ sub })`
 * waits for the next match. Messages matching no subscription are dropped (counted in
 * `stats.unmatched`); each matching subscription gets its own copy.
 *
 * Run: npx tsx examples/udp-filters.ts
 */
import { pipeOpen, formatEndpoint, SUB_ALL, type Sub } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the example did, for the test that runs it. */
export interface UdpFiltersResult {
  pongs: string[];
  fromB: string[];
  anyPortOfLoopback: number;
  timedOut: boolean;
  unmatched: number;
}

export async function main(log: (line: string) => void = console.log): Promise<UdpFiltersResult> {
  // The receiver: subscriptions instead of the default "everything" queue.
  await using rx = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
  rx.unsubscribe(SUB_ALL);
  await using a = await pipeOpen('udp', rx.local);
  await using b = await pipeOpen('udp', rx.local);
  log(`receiver on ${formatEndpoint(rx.local)}; senders A ${formatEndpoint(a.local)}, B ${formatEndpoint(b.local)}`);

  const pongs: Sub = rx.subscribe({ pattern: /^PONG \d+$/ }); // content: a regular expression
  const fromB: Sub = rx.subscribe({ source: { host: '127.0.0.1', port: b.local.port } }); // one sender
  const loopback: Sub = rx.subscribe({ source: { host: '127.0.0.1' } }); // any port of a host
  const big: Sub = rx.subscribe({ pattern: (data) => data.length > 100 }); // a predicate

  await a.send('PONG 1');
  await a.send('hello from A');
  await b.send('PONG 2');
  await b.send('hello from B');

  const got: string[] = [];
  for (let i = 0; i < 2; i++) got.push((await rx.recv({ sub: pongs, timeout: 1000 })).data.toString());
  log(`PONG filter: ${got.join(', ')}`);
  const bMsgs: string[] = [];
  for (let i = 0; i < 2; i++) bMsgs.push((await rx.recv({ sub: fromB, timeout: 1000 })).data.toString());
  log(`from B only: ${bMsgs.join(', ')}`);
  let n = 0;
  while (rx.tryRecv(loopback)) n++;
  log(`from any port of 127.0.0.1: ${n} messages (every match gets its own copy)`);

  // Nothing matches the predicate: recv rejects with a TimeoutError after 100 ms (it never hangs).
  let timedOut = false;
  try {
    await rx.recv({ sub: big, timeout: 100 });
  } catch (e) {
    timedOut = (e as Error).name === 'TimeoutError';
    log(`big-message filter: ${(e as Error).message}`);
  }

  // A message no subscription wants is dropped and counted.
  rx.unsubscribe(loopback);
  await a.send('nobody wants this');
  await new Promise((r) => setTimeout(r, 50));
  log(`unmatched messages dropped: ${rx.stats.unmatched}`);
  return { pongs: got, fromB: bMsgs, anyPortOfLoopback: n, timedOut, unmatched: rx.stats.unmatched };
}

runMain(import.meta.url, () => main());
