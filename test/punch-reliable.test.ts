/**
 * Reliable streams over datagram pipes (src/node/punch/reliable*.ts) on loopback: bulk
 * transfers both ways through a lossy relay (drop, duplicate, reorder) intact and in order,
 * several streams on one socket, Noise (`secure()`) over a stream, graceful close, reset,
 * backpressure, handshake timeout/abort, idle timeout, datagram pipe closing, stray and
 * malformed packets, and a stream over a TURN relay pipe.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Identity, secure } from '../src/crypto/index.js';
import { AbortError, ConnectionResetError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { encodeReliable, FLAG_ACK, openReliable, ReliableMux, ReliablePipe, type OpenReliableOptions } from '../src/node/punch/index.js';
import { turnAllocate } from '../src/nat/turn/index.js';
import { SUB_ALL, TcpPipe, type Message, type UdpPipe } from '../src/pipes/index.js';
import { LossyRelay, prng, useStreamSockets } from './punch-relay.js';
import { FakeTurnServer } from './turn-fake-server.js';

const { cleanup, udp } = useStreamSockets();

/** Opens both ends of a stream (a initiates), registering them for cleanup. */
async function pair(a: UdpPipe, b: UdpPipe, ra: Endpoint = b.local, rb: Endpoint = a.local, oa: Partial<OpenReliableOptions> = {}, ob: Partial<OpenReliableOptions> = {}): Promise<[ReliablePipe, ReliablePipe]> {
  const r = await Promise.all([openReliable(a, ra, { initiator: true, ...oa }), openReliable(b, rb, { initiator: false, ...ob })]);
  for (const p of r) cleanup.push(() => p.close());
  return r;
}

function pattern(n: number, k: number): Buffer {
  const d = Buffer.allocUnsafe(n);
  const rnd = prng(k);
  for (let i = 0; i < n; i++) d[i] = (rnd() * 256) | 0;
  return d;
}

/** Collects `want` bytes from a pipe's messages. */
function collect(p: ReliablePipe, want: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  return new Promise((resolve, reject) => {
    p.onMessage((m) => {
      parts.push(m.data);
      n += m.data.length;
      if (n >= want) resolve(Buffer.concat(parts));
    });
    p.onClose((e) => reject(e ?? new Error('closed early')));
  });
}

async function sendAll(p: ReliablePipe, d: Buffer, chunk = 16 * 1024): Promise<void> {
  for (let off = 0; off < d.length; off += chunk) await p.send(d.subarray(off, off + chunk));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('reliable stream over UDP', () => {
  it('is a TcpPipe with TCP semantics over the datagram pipe', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b);
    expect(sa).toBeInstanceOf(TcpPipe);
    expect(sa.proto).toBe('tcp');
    expect(sa.framing).toBe('raw');
    expect(sa.local).toEqual(a.local);
    expect(sa.remote).toEqual(b.local);
    expect(sa.datagram).toBe(a);
    expect(sa.conversationId).toBe(sb.conversationId);
    expect(sa.conversationId).toBeGreaterThan(0);
    const got = sb.recv({ timeout: 2000 });
    await sa.send('hello');
    expect((await got).data.toString()).toBe('hello');
    const back = sa.recv({ timeout: 2000 });
    await sb.send('world');
    expect((await back).data.toString()).toBe('world');
  });

  for (const loss of [0.1, 0.2]) {
    it(`transfers 2 MiB each way intact and in order through ${loss * 100} % loss, duplication and reordering`, async () => {
      const [a, b] = [await udp(), await udp()];
      const relay = await LossyRelay.start(a.local, b.local, { loss, duplicate: 0.05, reorder: 0.1, maxDelayMs: 5, seed: 1000 * loss });
      cleanup.push(() => relay.close());
      const [sa, sb] = await pair(a, b, relay.forA, relay.forB, { onMessage: () => undefined }, { onMessage: () => undefined });
      const N = 2 << 20;
      const da = pattern(N, 1);
      const db = pattern(N, 2);
      const t0 = performance.now();
      const [atB, atA] = await Promise.all([collect(sb, N), collect(sa, N), sendAll(sa, da), sendAll(sb, db)]);
      const ms = performance.now() - t0;
      expect(atB.length).toBe(N);
      expect(sha(atB)).toBe(sha(da));
      expect(sha(atA)).toBe(sha(db));
      expect(relay.stats.dropped).toBeGreaterThan(100);
      expect(relay.stats.duplicated).toBeGreaterThan(10);
      expect(sa.arq.retransmits).toBeGreaterThan(0);
      expect(sb.arq.duplicates).toBeGreaterThan(0);
      expect(ms).toBeLessThan(20_000);
      console.log(`[punch] 2 MiB each way at ${loss * 100} % loss: ${ms.toFixed(0)} ms, relay ${JSON.stringify(relay.stats)}, a: retransmits ${sa.arq.retransmits}, timeouts ${sa.arq.timeouts}`);
      // a clean close through the same lossy path
      const closedB = new Promise<Error | undefined>((r) => sb.onClose(r));
      await sa.close();
      expect(await closedB).toBeUndefined();
      expect(sa.closeError).toBeUndefined();
    }, 60_000);
  }

  it('carries several streams on one socket, each to its own responder', async () => {
    const [a, b] = [await udp(), await udp()];
    const K = 4;
    const responders = Array.from({ length: K }, () => openReliable(b, a.local, { initiator: false }));
    const initiators = Array.from({ length: K }, () => openReliable(a, b.local, { initiator: true }));
    const rs = await Promise.all(responders);
    const is = await Promise.all(initiators);
    for (const p of [...rs, ...is]) cleanup.push(() => p.close());
    expect(new Set(is.map((p) => p.conversationId)).size).toBe(K);
    expect(ReliableMux.peek(a)?.size).toBe(K);
    for (const r of rs) r.onMessage((m) => void r.send(Buffer.concat([Buffer.from(`${r.conversationId}:`), m.data])));
    const echoes = await Promise.all(
      is.map(async (p, i) => {
        const got = p.recv({ timeout: 3000 });
        await p.send(`stream-${i}`);
        return (await got).data.toString();
      }),
    );
    echoes.forEach((e, i) => expect(e).toBe(`${is[i]?.conversationId}:stream-${i}`));
  });

  it('pairs by explicit conversation id', async () => {
    const [a, b] = [await udp(), await udp()];
    const r7 = openReliable(b, a.local, { initiator: false, conversationId: 7 });
    const r9 = openReliable(b, a.local, { initiator: false, conversationId: 9 });
    const [i9, i7] = await Promise.all([openReliable(a, b.local, { initiator: true, conversationId: 9 }), openReliable(a, b.local, { initiator: true, conversationId: 7 })]);
    const [s7, s9] = await Promise.all([r7, r9]);
    for (const p of [i9, i7, s7, s9]) cleanup.push(() => p.close());
    expect([s7.conversationId, s9.conversationId, i7.conversationId, i9.conversationId]).toEqual([7, 9, 7, 9]);
    const got = s9.recv({ timeout: 2000 });
    await i9.send('nine');
    expect((await got).data.toString()).toBe('nine');
    await expect(openReliable(a, b.local, { initiator: true, conversationId: 9 })).rejects.toBeInstanceOf(PipeClosedError);
  });

  it('runs a Noise handshake and an encrypted echo over the stream (through loss)', async () => {
    const [a, b] = [await udp(), await udp()];
    const relay = await LossyRelay.start(a.local, b.local, { loss: 0.1, duplicate: 0.05, reorder: 0.1, seed: 3 });
    cleanup.push(() => relay.close());
    const [sa, sb] = await pair(a, b, relay.forA, relay.forB);
    const ida = Identity.generate();
    const idb = Identity.generate();
    const [ea, eb] = await Promise.all([secure(sa, { identity: ida, remoteId: idb.id, initiator: true }), secure(sb, { identity: idb, initiator: false })]);
    cleanup.push(() => ea.close(), () => eb.close());
    expect(ea.remoteIdHex).toBe(idb.id.toString('hex'));
    expect(eb.remoteIdHex).toBe(ida.id.toString('hex'));
    eb.onMessage((m: Message) => void eb.send(Buffer.concat([Buffer.from('echo:'), m.data])));
    const big = pattern(300_000, 9);
    const got = ea.recv({ timeout: 10_000 });
    await ea.send(big);
    const m = await got;
    expect(m.data.subarray(0, 5).toString()).toBe('echo:');
    expect(sha(m.data.subarray(5))).toBe(sha(big));
    const closed = new Promise<Error | undefined>((r) => eb.onClose(r));
    await ea.close();
    expect(await closed).toBeUndefined();
  }, 30_000);

  it('keeps a SYN that arrives just before the responder listens (after a punch, the mux watches)', async () => {
    const [a, b] = [await udp(), await udp()];
    ReliableMux.of(b).watch(1000);
    const t0 = performance.now();
    const ini = openReliable(a, b.local, { initiator: true }); // first retransmission only after 500 ms
    await new Promise((r) => setTimeout(r, 100));
    const res = await openReliable(b, a.local, { initiator: false });
    const sa = await ini;
    cleanup.push(() => sa.close(), () => res.close());
    expect(performance.now() - t0).toBeLessThan(450);
    expect(res.conversationId).toBe(sa.conversationId);
  });

  it('delivers everything sent before close, then closes the peer cleanly', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b, undefined, undefined, {}, { onMessage: () => undefined });
    const d = pattern(500_000, 4);
    const got = collect(sb, d.length);
    const closed = new Promise<Error | undefined>((r) => sb.onClose(r));
    void sa.send(d);
    await sa.close();
    expect(sha(await got)).toBe(sha(d));
    expect(await closed).toBeUndefined();
    await expect(sa.send('late')).rejects.toBeInstanceOf(PipeClosedError);
  });

  it('reset: the peer closes with ConnectionResetError', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b);
    const closed = new Promise<Error | undefined>((r) => sb.onClose(r));
    sa.reset();
    expect(await closed).toBeInstanceOf(ConnectionResetError);
  });

  it('applies backpressure: send() waits while the peer does not read, resumes when it does', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b, undefined, undefined, { sendBuffer: 16 }, { receiveBuffer: 16, maxQueue: 8 });
    const chunk = Buffer.alloc(1200, 1);
    let sent = 0;
    const writer = (async () => {
      for (let i = 0; i < 400; i++) {
        await sa.send(chunk);
        sent++;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    // Bounded: the peer's queue (8) + its window (16) + our send buffer (16) + the pipe's write buffer.
    expect(sent).toBeLessThan(100);
    const stalled = sent;
    let n = 0;
    for await (const m of sb) {
      n += m.data.length;
      if (n >= 400 * 1200) break;
    }
    await writer;
    expect(sent).toBe(400);
    expect(stalled).toBeGreaterThan(0);
  });

  it('handshake: TimeoutError without a responder, AbortError when aborted, errors for bad options', async () => {
    const [a, b] = [await udp(), await udp()];
    const t0 = performance.now();
    await expect(openReliable(a, b.local, { initiator: true, timeout: 300 })).rejects.toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(2000);
    const ac = new AbortController();
    const p = openReliable(a, b.local, { initiator: false, signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(AbortError);
    await expect(openReliable(a, b.local, { initiator: 'yes' as unknown as boolean })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(openReliable(a, b.local, { initiator: true, mtu: 10 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(openReliable(a, b.local, { initiator: true, conversationId: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    // nothing left registered on the pipe
    expect(ReliableMux.peek(a)?.size ?? 0).toBe(0);
  });

  it('closes with TimeoutError when the peer goes silent, PipeClosedError when its datagram pipe closes', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b, undefined, undefined, { keepAlive: 50, idleTimeout: 400 }, {});
    const closedB = new Promise<Error | undefined>((r) => sb.onClose(r));
    const closedA = new Promise<Error | undefined>((r) => sa.onClose(r));
    await b.close(); // b vanishes without a word
    expect(await closedB).toBeInstanceOf(PipeClosedError);
    const t0 = performance.now();
    expect(await closedA).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('keeps an idle stream alive with keep-alives', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b, undefined, undefined, { keepAlive: 40, idleTimeout: 300 }, { keepAlive: 40, idleTimeout: 300 });
    await new Promise((r) => setTimeout(r, 800));
    expect(sa.closed || sb.closed).toBe(false);
    expect(sa.arq.pingsSent + sb.arq.pingsSent).toBeGreaterThan(5);
    const got = sb.recv({ timeout: 1000 });
    await sa.send('still here');
    expect((await got).data.toString()).toBe('still here');
  });

  it('ignores malformed and stray packets, resets unknown conversations (rate-limited)', async () => {
    const [a, b] = [await udp(), await udp()];
    const c = await udp();
    const [sa, sb] = await pair(a, b);
    const rnd = prng(5);
    const resets: Buffer[] = [];
    c.onMessage((m) => void resets.push(m.data));
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.alloc(1 + ((rnd() * 80) | 0));
      for (let j = 0; j < junk.length; j++) junk[j] = (rnd() * 256) | 0;
      junk[0] = 0xd2;
      await c.send(junk, a.local);
    }
    // a well-formed packet from a stranger, and one for a conversation nobody has
    const stray = encodeReliable({ flags: FLAG_ACK, conv: sa.conversationId, seq: 1, ack: 1, wnd: 10, ts: 1, tsEcho: 0, sacks: [], payload: Buffer.from('x') });
    for (let i = 0; i < 50; i++) await c.send(stray, a.local);
    await new Promise((r) => setTimeout(r, 100));
    const st = ReliableMux.peek(a)?.stats;
    expect(st?.malformed).toBeGreaterThan(150);
    expect(st?.unknown).toBeGreaterThanOrEqual(50);
    expect(resets.length).toBeGreaterThan(0);
    expect(resets.length).toBeLessThanOrEqual(15);
    const got = sb.recv({ timeout: 1000 });
    await sa.send('unharmed');
    expect((await got).data.toString()).toBe('unharmed');
  });

  it('supports length framing on top of the stream', async () => {
    const [a, b] = [await udp(), await udp()];
    const [sa, sb] = await pair(a, b, undefined, undefined, { framing: 'length' }, { framing: 'length' });
    const big = pattern(50_000, 8);
    const got = [sb.recv({ timeout: 2000 }), sb.recv({ timeout: 2000 })];
    await sa.send('small');
    await sa.send(big);
    expect((await got[0]).data.toString()).toBe('small');
    expect(sha((await got[1]).data)).toBe(sha(big));
  });
});

describe('reliable stream over a TURN relay pipe', () => {
  for (const proto of ['udp', 'tcp'] as const) {
    it(`relays a stream between a TurnPipe (control over ${proto}) and a UDP peer`, async () => {
      const server = await FakeTurnServer.start({ proto });
      cleanup.push(() => server.close());
      const relay = await turnAllocate({ server: server.address, username: 'alice', password: 'secret', proto });
      cleanup.push(() => relay.close());
      relay.unsubscribe(SUB_ALL);
      const peer = await udp();
      const [sr, sp] = await Promise.all([
        openReliable(relay, peer.local, { initiator: true }),
        openReliable(peer, relay.relayed, { initiator: false, onMessage: () => undefined }),
      ]);
      cleanup.push(() => sr.close(), () => sp.close());
      const d = pattern(200_000, 11);
      const got = collect(sp, d.length);
      await sendAll(sr, d);
      expect(sha(await got)).toBe(sha(d));
      expect(relay.turnStats.channelDataOut + relay.turnStats.indicationsOut).toBeGreaterThan(100);
    });
  }
});
