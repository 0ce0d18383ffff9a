/**
 * Hostile peers on a reliable stream (src/node/punch/reliable-*.ts): a peer that ignores the
 * receive window we advertise must not make us buffer more than that window.
 */
import { describe, expect, it } from 'vitest';
import { decodeReliable, encodeReliable, FLAG_ACK, FLAG_SYN, openReliable, type ReliablePacket } from '../src/node/punch/index.js';
import type { Message, UdpPipe } from '../src/pipes/index.js';
import { useStreamSockets } from './punch-relay.js';

const { cleanup, udp } = useStreamSockets();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A hostile initiator on `evil`: hand-made handshake with `victim`; returns the responder's pipe and a sender of raw segments. */
async function hostile(victim: UdpPipe, evil: UdpPipe, o: { window: number; mtu: number }) {
  const opened = openReliable(victim, evil.local, { initiator: false, receiveBuffer: o.window, mtu: o.mtu, maxQueue: 1 });
  const conv = 0x1234;
  const isn = 1000;
  const inbox: ReliablePacket[] = [];
  evil.onMessage((m: Message) => void inbox.push(decodeReliable(m.data)));
  const mss = Buffer.alloc(2);
  mss.writeUInt16BE(o.mtu);
  const base = { conv, wnd: 256, ts: 1, tsEcho: 0, sacks: [] };
  await evil.send(encodeReliable({ ...base, flags: FLAG_SYN, seq: isn, ack: 0, payload: mss }), victim.local);
  while (!inbox.some((p) => p.flags === (FLAG_SYN | FLAG_ACK))) await sleep(5);
  const synAck = inbox.find((p) => p.flags === (FLAG_SYN | FLAG_ACK)) as ReliablePacket;
  const ack = (synAck.seq + 1) >>> 0;
  await evil.send(encodeReliable({ ...base, flags: FLAG_ACK, seq: isn + 1, ack, payload: Buffer.alloc(0) }), victim.local);
  const rp = await opened;
  cleanup.push(() => rp.reset());
  /** Sends data segments 0..n-1 in order, whatever window we advertise. */
  const flood = async (n: number, payload: Buffer): Promise<void> => {
    for (let i = 0; i < n; i++) {
      await evil.send(encodeReliable({ ...base, flags: FLAG_ACK, seq: (isn + 1 + i) >>> 0, ack, payload }), victim.local);
      if (i % 50 === 49) await sleep(2);
    }
    await sleep(200);
  };
  return { rp, flood };
}

describe('a peer that ignores our receive window', () => {
  it('cannot make us buffer more than the window while the application does not read', async () => {
    const [victim, evil] = [await udp(), await udp()];
    const MTU = 1200;
    const WINDOW = 16;
    const { rp, flood } = await hostile(victim, evil, { window: WINDOW, mtu: MTU });
    // The application never reads (queue of 1): the pipe pauses its stream.
    await flood(2000, Buffer.alloc(MTU, 0x61));
    // At most what we advertised: WINDOW segments of MTU bytes (and one in the pipe's queue).
    expect(rp.arq.bytesIn).toBeLessThanOrEqual((WINDOW + 2) * MTU);
    expect(rp.arq.outOfWindow).toBeGreaterThan(1000);
    expect(rp.closed).toBe(false);
  });

  it('counts the window in segments: a flood of 1-byte segments is held to WINDOW segments too', async () => {
    const [victim, evil] = [await udp(), await udp()];
    const WINDOW = 16;
    const { rp, flood } = await hostile(victim, evil, { window: WINDOW, mtu: 1200 });
    // Each segment costs a Buffer and its datagram: tiny ones must not multiply the memory held.
    await flood(2000, Buffer.from('x'));
    expect(rp.arq.bytesIn).toBeLessThanOrEqual(WINDOW + 2);
    expect(rp.closed).toBe(false);
  });
});
