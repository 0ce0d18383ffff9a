/**
 * Plain UDP peer for the TURN lab suite (test/turn-lab.test.ts), run inside a namespace with
 * `node --import tsx test/turn-lab-peer.ts key=value...`:
 *
 *   [bind=ADDR:PORT] [target=HOST:PORT count=N timeout=MS] [stay=1]
 *
 * Echoes every datagram not starting with `echo:` back to its sender (prefixed `echo:`) and
 * prints `{"event":"recv",...}` for each. With `target` it sends `ping-<i>` every 100 ms until
 * each has come back as `echo:ping-<i>` (or `timeout`), prints `{"event":"done",...}` and
 * exits unless `stay=1`. Prints `{"event":"listening",...}` once bound.
 */
import { createSocket } from 'node:dgram';
import { parseEndpoint } from '../src/interfaces/endpoint.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
const out = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));
const bind = parseEndpoint(args.bind ?? '0.0.0.0:0');
const sock = createSocket(bind.family === 6 ? 'udp6' : 'udp4');
const echoed = new Set<string>();
const froms = new Set<string>();

sock.on('message', (d, r) => {
  const data = d.toString();
  const from = `${r.address}:${r.port}`;
  out({ event: 'recv', from, data });
  if (data.startsWith('echo:')) {
    echoed.add(data.slice(5));
    froms.add(from);
  } else sock.send(`echo:${data}`, r.port, r.address);
});
sock.bind(bind.port, bind.host, async () => {
  out({ event: 'listening', port: sock.address().port });
  if (!args.target) return;
  const t = parseEndpoint(args.target);
  const count = Number(args.count ?? 3);
  const end = Date.now() + Number(args.timeout ?? 8000);
  const want = Array.from({ length: count }, (_, i) => `ping-${i}`);
  while (Date.now() < end && want.some((w) => !echoed.has(w))) {
    for (const w of want) if (!echoed.has(w)) sock.send(w, t.port, t.host);
    await new Promise((r) => setTimeout(r, 100));
  }
  out({ event: 'done', ok: want.every((w) => echoed.has(w)), echoed: [...echoed].sort(), from: [...froms] });
  if (args.stay !== '1') sock.close(() => process.exit(0));
});
process.on('SIGTERM', () => sock.close(() => process.exit(0)));
