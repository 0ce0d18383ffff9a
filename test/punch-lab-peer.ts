/**
 * One peer of the hole-punching lab suite (test/punch-lab.test.ts), run inside a lab
 * namespace with `node --import tsx test/punch-lab-peer.ts key=value...`:
 *
 *   role=a|b dir=DIR stun=HOST:PORT [timeout=MS] [bytes=N] [secure=1]
 *
 * 1. Opens a UDP pipe and learns its mapped address from the STUN server over that same
 *    pipe; prints `{"event":"mapped","mapped":…,"local":…}`.
 * 2. Waits for `DIR/<role>.in.json` = `{ candidates, nonce (hex), startAt }` written by the
 *    test (the signalling stand-in), then punches; prints `punched` (remote, rtt, who
 *    controlled, elapsed, counters) or `punch-failed` (error name/code, elapsed) and exits 3.
 * 3. Opens a reliable stream on the punched path (the controlling side initiates), optionally
 *    runs Noise over it, sends `bytes` of a pattern and receives the other side's; prints
 *    `done` with `ok` (the received bytes hash as expected) and exits 0.
 */
import { Identity, secure } from '../src/crypto/index.js';
import { formatEndpoint, type Endpoint } from '../src/interfaces/endpoint.js';
import { stunGetMapping } from '../src/nat/stun/index.js';
import { openReliable, punch, PunchTimeoutError } from '../src/node/punch/index.js';
import { pipeOpen, SUB_ALL, type Pipe, type UdpPipe } from '../src/pipes/index.js';
import { args, out, pattern, sha, waitFile } from './helpers/lab-peer.js';

const role = args.role === 'b' ? 'b' : 'a';
const timeout = Number(args.timeout ?? 10_000);
const bytes = Number(args.bytes ?? 1 << 20);


async function main(): Promise<void> {
  const pipe = (await pipeOpen('udp', undefined, { bind: '0.0.0.0:0' })) as UdpPipe;
  pipe.unsubscribe(SUB_ALL);
  const m = await stunGetMapping({ server: args.stun as string, pipe, timeout: 5000 });
  out({ event: 'mapped', mapped: formatEndpoint(m.mapped), local: formatEndpoint(m.local) });
  const inp = JSON.parse(await waitFile(`${args.dir}/${role}.in.json`, 20_000)) as { candidates: string[]; nonce: string; startAt: number };
  const t0 = Date.now();
  let r;
  try {
    r = await punch({ pipe, peerCandidates: inp.candidates, nonce: Buffer.from(inp.nonce, 'hex'), startAt: inp.startAt, timeout });
  } catch (e) {
    const err = e as Error & { code?: string };
    out({ event: 'punch-failed', name: err.name, code: err.code, message: err.message, elapsed: Date.now() - t0, stats: e instanceof PunchTimeoutError ? e.stats : undefined });
    await pipe.close();
    process.exit(3);
  }
  const remote: Endpoint = r.remote;
  out({ event: 'punched', remote: formatEndpoint(remote), rtt: r.rtt, controlling: r.controlling, elapsed: Date.now() - t0, sinceStart: Date.now() - inp.startAt, stats: r.stats });

  const mine = pattern(bytes, role === 'a' ? 1 : 2);
  const theirs = sha(pattern(bytes, role === 'a' ? 2 : 1));
  const parts: Buffer[] = [];
  let n = 0;
  let gotAll!: () => void;
  const all = new Promise<void>((res) => (gotAll = res));
  const onData = (d: Buffer): void => {
    parts.push(d);
    n += d.length;
    if (n >= bytes) gotAll();
  };
  const t1 = Date.now();
  const stream = await openReliable(pipe, remote, { initiator: r.controlling, rtt: r.rtt, timeout: 10_000, ...(args.secure === '1' ? {} : { onMessage: (msg) => onData(msg.data) }) });
  let p: Pipe = stream;
  if (args.secure === '1') {
    const sp = await secure(stream, { identity: Identity.generate(), initiator: r.controlling, onMessage: (msg) => onData(msg.data) });
    p = sp;
    out({ event: 'secured', remoteId: sp.remoteIdHex });
  }
  for (let off = 0; off < bytes; off += 16 * 1024) await p.send(mine.subarray(off, off + 16 * 1024));
  await all;
  const ms = Date.now() - t1;
  const ok = sha(Buffer.concat(parts)) === theirs;
  out({ event: 'done', ok, ms, received: n, arq: stream.arq });
  // Give the peer time to finish receiving (our acks) before closing.
  await new Promise((res) => setTimeout(res, 500));
  await p.close();
  await pipe.close();
  process.exit(ok ? 0 : 4);
}

process.on('SIGTERM', () => process.exit(0));
main().catch((e: unknown) => {
  const err = e as Error & { code?: string };
  out({ event: 'error', name: err.name, code: err.code, message: err.message });
  process.exit(2);
});
