/**
 * One peer of the TCP hole-punching lab suite (test/punch-tcp-lab.test.ts), run inside a lab
 * namespace with `node --import tsx test/punch-tcp-lab-peer.ts key=value...`:
 *
 *   role=a|b dir=DIR stun=HOST:PORT [timeout=MS] [bytes=N] [keep=0|1]
 *
 * 1. Learns the external TCP mapping of a fresh local port from the STUN server over TCP
 *    (`tcpMapping`; `keep=1`, the default, keeps that connection open while punching);
 *    prints `{"event":"mapped","mapped":…,"local":…}`.
 * 2. Waits for `DIR/<role>.in.json` = `{ remotes, nonce (hex), startAt }` written by the test
 *    (the signalling stand-in), then punches from the same port; prints `punched` (remote,
 *    via, controlling, elapsed, time since `startAt`, counters) or `punch-failed` (error
 *    name/code, elapsed, open handles afterwards) and exits 3.
 * 3. Sends `bytes` of a pattern over the punched connection and receives the other side's;
 *    prints `done` with `ok` and exits 0.
 */
import { formatEndpoint } from '../src/interfaces/endpoint.js';
import { tcpMapping } from '../src/node/punch/tcp-mapping.js';
import { tcpPunch } from '../src/node/punch/tcp-punch.js';
import { args, out, pattern, sha, waitFile } from './helpers/lab-peer.js';

const role = args.role === 'b' ? 'b' : 'a';
const timeout = Number(args.timeout ?? 6000);
const bytes = Number(args.bytes ?? 1 << 16);


/** TCP sockets and servers still open (stdio excluded): the punch must leave none behind. */
function openSockets(): number {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return handles.filter((h) => ['Socket', 'Server'].includes(h.constructor.name) && !(h as { _isStdio?: boolean })._isStdio).length;
}

async function main(): Promise<void> {
  const m = await tcpMapping({ server: args.stun as string, keep: args.keep !== '0', timeout: 5000 });
  out({ event: 'mapped', mapped: formatEndpoint(m.mapped), local: formatEndpoint(m.local) });
  const inp = JSON.parse(await waitFile(`${args.dir}/${role}.in.json`, 20_000)) as { remotes: string[]; nonce: string; startAt: number };
  const t0 = Date.now();
  let r;
  try {
    r = await tcpPunch({ localPort: m.local.port, remotes: inp.remotes, nonce: Buffer.from(inp.nonce, 'hex'), startAt: inp.startAt, timeout });
  } catch (e) {
    const err = e as Error & { code?: string };
    const elapsed = Date.now() - t0;
    await m.close();
    await new Promise((res) => setTimeout(res, 50));
    out({ event: 'punch-failed', name: err.name, code: err.code, message: err.message, elapsed, openSockets: openSockets() });
    process.exit(3);
  }
  const { pipe } = r;
  out({
    event: 'punched', remote: formatEndpoint(r.remote), local: formatEndpoint(r.local), via: r.via, controlling: r.controlling,
    elapsed: Date.now() - t0, sinceStart: Date.now() - inp.startAt, stats: r.stats,
  });
  await m.close();

  const mine = pattern(bytes, role === 'a' ? 1 : 2);
  const theirs = sha(pattern(bytes, role === 'a' ? 2 : 1));
  const parts: Buffer[] = [];
  let n = 0;
  let gotAll!: () => void;
  const all = new Promise<void>((res) => (gotAll = res));
  pipe.onMessage((msg) => {
    parts.push(msg.data);
    n += msg.data.length;
    if (n >= bytes) gotAll();
  });
  const t1 = Date.now();
  await pipe.send(mine);
  await all;
  const ok = sha(Buffer.concat(parts)) === theirs;
  out({ event: 'done', ok, ms: Date.now() - t1, received: n });
  await new Promise((res) => setTimeout(res, 200));
  await pipe.close();
  process.exit(ok ? 0 : 4);
}

process.on('SIGTERM', () => process.exit(0));
main().catch((e: unknown) => {
  const err = e as Error & { code?: string };
  out({ event: 'error', name: err.name, code: err.code, message: err.message });
  process.exit(2);
});
