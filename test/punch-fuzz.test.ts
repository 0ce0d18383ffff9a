/**
 * Property tests and fuzzing of the punch and reliable-stream packet decoders (≥ 10 000 runs
 * each; FUZZ_RUNS overrides), an in-memory model check of the ARQ (sender + receiver through
 * a lossy, duplicating, reordering channel, no timers), and random packets thrown at a live
 * stream's conversation.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DecodeError, P2pdError } from '../src/errors.js';
import {
  decodePunch, decodeReliable, encodePunch, encodeReliable, FLAG_ACK, FLAG_FIN, FLAG_PING, FLAG_RST, FLAG_SYN, MAX_SACK_BLOCKS, openReliable,
  PUNCH_ACK, PUNCH_PROBE, PunchKey, Receiver, ReliableMux, seqAdd, seqDiff, Sender, type ReliablePacket,
} from '../src/node/punch/index.js';
import { pipeOpen, SUB_ALL, type UdpPipe } from '../src/pipes/index.js';
import { prng } from './punch-relay.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

/** Runs `f`; any exception must be a DecodeError. */
function onlyDecodeError(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof DecodeError)) throw new Error(`unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    return undefined;
  }
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** Valid packets (as the encoder is meant to be used). */
const validPacket: fc.Arbitrary<ReliablePacket> = fc
  .record({
    kind: fc.constantFrom('syn', 'synack', 'data', 'ack', 'fin', 'rst', 'ping'),
    conv: fc.integer({ min: 1, max: 0xffffffff }),
    seq: u32,
    ack: u32,
    wnd: fc.integer({ min: 0, max: 0xffff }),
    ts: u32,
    tsEcho: u32,
    sacks: fc.array(fc.record({ off: fc.integer({ min: 1, max: 100_000 }), len: fc.integer({ min: 1, max: 0xffff }) }), { maxLength: MAX_SACK_BLOCKS }),
    payload: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    mss: fc.integer({ min: 64, max: 0xffff }),
  })
  .map((r) => {
    const mss = Buffer.alloc(2);
    mss.writeUInt16BE(r.mss, 0);
    const sacks = r.sacks.map((s) => ({ start: seqAdd(r.ack, s.off), end: seqAdd(r.ack, s.off + s.len) }));
    const empty = Buffer.alloc(0);
    const base = { conv: r.conv, seq: r.seq, ack: r.ack, wnd: r.wnd, ts: r.ts, tsEcho: r.tsEcho };
    switch (r.kind) {
      case 'syn':
        return { ...base, flags: FLAG_SYN, ack: 0, sacks: [], payload: mss };
      case 'synack':
        return { ...base, flags: FLAG_SYN | FLAG_ACK, sacks: [], payload: mss };
      case 'data':
        return { ...base, flags: FLAG_ACK, sacks, payload: Buffer.from(r.payload) };
      case 'fin':
        return { ...base, flags: FLAG_ACK | FLAG_FIN, sacks, payload: empty };
      case 'rst':
        return { ...base, flags: FLAG_RST | FLAG_ACK, sacks: [], payload: empty };
      case 'ping':
        return { ...base, flags: FLAG_ACK | FLAG_PING, sacks, payload: empty };
      default:
        return { ...base, flags: FLAG_ACK, sacks, payload: empty };
    }
  });

describe('reliable-stream packet decoder', () => {
  it(`never throws anything but DecodeError on random bytes (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, magic) => {
        const b = Buffer.from(bytes);
        if (magic && b.length > 0) b[0] = 0xd2;
        const p = onlyDecodeError(() => decodeReliable(b)) as ReliablePacket | undefined;
        if (p) expect(encodeReliable(p).equals(b)).toBe(true); // decoding is lossless
      }),
      { numRuns: RUNS },
    );
  });

  it(`round-trips valid packets (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(validPacket, (p) => {
        const wire = encodeReliable(p);
        const q = decodeReliable(wire);
        expect(q.flags).toBe(p.flags);
        expect([q.conv, q.seq, q.ack, q.wnd, q.ts, q.tsEcho]).toEqual([p.conv, p.seq, p.ack, p.wnd, p.ts, p.tsEcho]);
        expect(q.sacks).toEqual(p.sacks);
        expect(q.payload.equals(p.payload)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it(`survives mutations of valid packets: DecodeError or a lossless decode (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(validPacket, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (p, edits, cut) => {
        const wire = Buffer.from(encodeReliable(p));
        for (const [pos, val] of edits) wire[pos % wire.length] = val;
        const b = cut % 3 === 0 ? wire.subarray(0, cut % (wire.length + 1)) : wire;
        const q = onlyDecodeError(() => decodeReliable(b)) as ReliablePacket | undefined;
        if (q) expect(encodeReliable(q).equals(b)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('punch packet decoder', () => {
  const key = new PunchKey(randomBytes(32));
  const packet = fc.record({
    type: fc.constantFrom(PUNCH_PROBE, PUNCH_ACK),
    nominate: fc.boolean(),
    txid: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((u) => Buffer.from(u)),
    tiebreaker: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((u) => Buffer.from(u)),
    rttUs: fc.integer({ min: 0, max: 0xffffffff }),
  });

  it(`classifies random bytes without throwing (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const b = Buffer.from(bytes);
        if (b.length > 0) b[0] = 0xd1;
        const r = decodePunch(key, b);
        expect(['malformed', 'unauthenticated', 'keepalive']).toContain(r.kind);
      }),
      { numRuns: RUNS },
    );
  });

  it(`authenticates exactly the untouched packets (${RUNS} runs)`, () => {
    fc.assert(
      fc.property(packet, fc.nat({ max: 39 }), fc.integer({ min: 1, max: 255 }), (p, pos, x) => {
        const wire = encodePunch(key, p);
        const ok = decodePunch(key, wire);
        expect(ok.kind).toBe('packet');
        if (ok.kind === 'packet') {
          expect(ok.packet.txid.equals(p.txid)).toBe(true);
          expect(ok.packet.nominate).toBe(p.type === PUNCH_PROBE && p.nominate);
        }
        const bad = Buffer.from(wire);
        bad[pos] = (bad[pos] as number) ^ x;
        expect(decodePunch(key, bad).kind).not.toBe('packet');
      }),
      { numRuns: RUNS },
    );
  });

  it('rejects packets made with another nonce', () => {
    const other = new PunchKey(randomBytes(16));
    const wire = encodePunch(other, { type: PUNCH_PROBE, nominate: false, txid: randomBytes(8), tiebreaker: randomBytes(8), rttUs: 0 });
    expect(decodePunch(key, wire).kind).toBe('unauthenticated');
  });
});

describe('ARQ model check (in memory, no timers)', () => {
  /** Runs sender → lossy channel → receiver → lossy channel → sender until all data is in. */
  function simulate(seed: number, loss: number, dup: number, reorder: number, total: number): { ok: boolean; steps: number } {
    const rnd = prng(seed);
    const isn = (rnd() * 2 ** 32) >>> 0; // exercises sequence wrap-around too
    const mss = 100;
    const cap = 32;
    const snd = new Sender({ isn, minCwnd: 2, initialCwnd: 4, maxCwnd: 64 });
    const rcv = new Receiver(isn, cap);
    const data = Buffer.alloc(total);
    for (let i = 0; i < total; i++) data[i] = (rnd() * 256) | 0;
    for (let off = 0; off < total; ) {
      const n = 1 + ((rnd() * 700) | 0);
      snd.enqueue(data.subarray(off, off + n), mss);
      off += n;
    }
    snd.enqueueFin();
    const out: Buffer[] = [];
    type Seg = { at: number; seq: number; data: Buffer; fin: boolean };
    type Ack = { at: number; ack: number; wnd: number; sacks: ReturnType<Receiver['sacks']> };
    let toR: Seg[] = [];
    let toS: Ack[] = [];
    let edge = seqAdd(isn, cap);
    const channel = <T extends { at: number }>(q: T[], x: Omit<T, 'at'>, now: number): void => {
      if (rnd() < loss) return;
      const copies = rnd() < dup ? 2 : 1;
      for (let i = 0; i < copies; i++) q.push({ ...x, at: now + 1 + (rnd() < reorder ? (rnd() * 8) | 0 : 0) } as T);
    };
    for (let now = 1; now < 200_000; now++) {
      for (let s = snd.next(now, edge); s; s = snd.next(now, edge)) channel(toR, { seq: s.seq, data: s.data, fin: s.fin }, now);
      const arrivingR = toR.filter((x) => x.at <= now);
      toR = toR.filter((x) => x.at > now);
      for (const x of arrivingR) {
        rcv.accept(x.seq, x.data, x.fin, (d) => out.push(d));
        channel(toS, { ack: rcv.rcvNxt, wnd: cap - rcv.held, sacks: rcv.sacks() }, now);
      }
      const arrivingS = toS.filter((x) => x.at <= now);
      toS = toS.filter((x) => x.at > now);
      for (const a of arrivingS) {
        if (seqDiff(a.ack, snd.max) > 0) throw new Error('receiver acknowledged unsent data');
        if (seqDiff(a.ack, snd.una) < 0) continue;
        snd.onAck(a.ack, a.sacks);
        edge = seqAdd(a.ack, a.wnd);
        if (snd.inflight > 0) snd.detectLoss(now, 3);
      }
      const oldest = snd.oldestInflight();
      if (oldest > 0 && now - oldest >= 30) snd.onTimeout();
      if (rcv.finReceived && snd.finAcked) {
        return { ok: Buffer.concat(out).equals(data), steps: now };
      }
    }
    return { ok: false, steps: -1 };
  }

  it('delivers every byte once, in order, whatever the channel does (300 channels)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.double({ min: 0, max: 0.35, noNaN: true }),
        fc.double({ min: 0, max: 0.2, noNaN: true }),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        fc.integer({ min: 0, max: 20_000 }),
        (seed, loss, dup, reorder, total) => {
          const r = simulate(seed, loss, dup, reorder, total);
          expect(r.steps).toBeGreaterThan(0);
          expect(r.ok).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('random packets against a live conversation', () => {
  it('never crash the stream; it either keeps working or closes with a typed error', async () => {
    const open = async (): Promise<UdpPipe> => {
      const p = (await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' })) as UdpPipe;
      p.unsubscribe(SUB_ALL);
      cleanup.push(() => p.close());
      return p;
    };
    const [a, b] = [await open(), await open()];
    const [sa, sb] = await Promise.all([openReliable(a, b.local, { initiator: true }), openReliable(b, a.local, { initiator: false })]);
    cleanup.push(() => sa.close(), () => sb.close());
    // b's socket sends garbage into a's conversation (right source, right conv): no RST, so only
    // protocol-level nonsense — bogus acks, SACKs, windows, payloads out of window, SYNs.
    const rnd = prng(77);
    const pick = [FLAG_ACK, FLAG_ACK | FLAG_PING, FLAG_ACK | FLAG_FIN, FLAG_SYN, FLAG_SYN | FLAG_ACK];
    for (let i = 0; i < 3000; i++) {
      const p: ReliablePacket = {
        flags: pick[(rnd() * pick.length) | 0] as number,
        conv: sa.conversationId,
        seq: (rnd() * 2 ** 32) >>> 0,
        ack: (rnd() * 2 ** 32) >>> 0,
        wnd: (rnd() * 65536) | 0,
        ts: (rnd() * 2 ** 32) >>> 0,
        tsEcho: (rnd() * 2 ** 32) >>> 0,
        sacks: [],
        payload: Buffer.alloc((rnd() * 50) | 0, 7),
      };
      if (p.flags & FLAG_SYN) {
        p.payload = Buffer.from([0x04, 0xb0]);
        if (!(p.flags & FLAG_ACK)) p.ack = 0;
      }
      if (p.flags & FLAG_FIN) p.payload = Buffer.alloc(0);
      await b.send(encodeReliable(p), a.local);
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 5)); // stay within the socket buffer
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(sa.arq.invalid + sa.arq.outOfWindow + sa.arq.duplicates).toBeGreaterThan(1000);
    if (sa.closed) expect(sa.closeError).toBeInstanceOf(P2pdError);
    else {
      const got = sb.recv({ timeout: 2000 });
      await sa.send('alive');
      expect((await got).data.toString()).toBe('alive');
    }
    expect(ReliableMux.peek(a)?.stats.malformed).toBe(0);
  });
});
