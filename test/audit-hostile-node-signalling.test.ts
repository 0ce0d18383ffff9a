/**
 * Signalling under hostile or heavy use (src/node/signalling*.ts, envelope.ts): the broker
 * connections opened on demand for peers must not run out for good; a huge message published
 * on our inbox through a permissive broker (mosquitto takes up to 256 MiB) must not be
 * buffered; a replay cache full of live ids must refuse newcomers cheaply.
 */
import { connect } from 'node:net';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { encodeAddress, parseAddress, type PeerAddress } from '../src/node/address.js';
import { startBroker, type Broker } from '../src/node/broker.js';
import { deriveSignalKey, ReplayCache } from '../src/node/envelope.js';
import { inboxTopic } from '../src/node/broker.js';
import { MAX_PEER_BROKERS, Signalling } from '../src/node/signalling.js';
import { freePort, onPath, startMosquitto } from './node-helpers.js';
import { mqttConnect, mqttVarint } from './helpers/mqtt.js';

const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

function party(brokers: string[]): { id: Identity; addr: PeerAddress; sig: Signalling } {
  const id = Identity.generate();
  const sk = deriveSignalKey(id);
  const addr = parseAddress(encodeAddress(id, { signalKey: sk.publicKey, interfaces: [], signal: brokers.map((url) => ({ type: 'mqtt' as const, url })) }));
  const sig = new Signalling({ identity: id, signalKey: sk, brokers, connectTimeout: 1500 });
  closers.push(() => sig.close());
  return { id, addr, sig };
}

describe('broker connections opened on demand for peers', () => {
  it(`talking to more than MAX_PEER_BROKERS peers, one after the other, each on its own broker, keeps working`, async () => {
    const A = party([]);
    await A.sig.start();
    const peers: ReturnType<typeof party>[] = [];
    for (let i = 0; i < MAX_PEER_BROKERS + 2; i++) {
      const b: Broker = await startBroker({ host: '127.0.0.1' });
      closers.push(() => b.close());
      const B = party([b.url]);
      await B.sig.start();
      B.sig.onMessage((m) => void B.sig.reply(m, A.addr, 'pong', {}).catch(() => undefined));
      peers.push(B);
    }
    for (const [i, B] of peers.entries()) {
      const r = await A.sig.request(B.addr, 'ping', {}, { timeout: 3000 }).catch((e: unknown) => e as Error);
      expect((r as { type?: string }).type, `peer ${i}: ${(r as Error).message}`).toBe('pong');
    }
    // Still bounded.
    expect(A.sig.connected.length).toBeLessThanOrEqual(MAX_PEER_BROKERS);
  });
});

/** A raw MQTT client that publishes `size` bytes on `topic` (QoS 0), streamed 1 MiB at a time. */
async function publishHuge(port: number, topic: string, size: number): Promise<void> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  closers.push(async () => void s.destroy());
  await new Promise<void>((r) => s.once('connect', r));
  s.write(mqttConnect('evil'));
  await new Promise<void>((r) => s.once('data', () => r())); // CONNACK
  const t = Buffer.from(topic);
  s.write(Buffer.concat([Buffer.from([0x30]), mqttVarint(2 + t.length + size), Buffer.from([0, t.length]), t]));
  const chunk = Buffer.alloc(1 << 20);
  for (let sent = 0; sent < size && !s.destroyed; sent += chunk.length) {
    if (!s.write(chunk)) await new Promise<void>((r) => (s.once('drain', r), s.once('close', r)));
  }
}

// In CI a missing mosquitto is a failure (startMosquitto throws), never a skip.
describe.runIf(onPath('mosquitto') || Boolean(process.env['CI']))('a huge message on our inbox (mosquitto)', () => {
  it('is not buffered: the connection drops at its header and comes back; signalling still works', async () => {
    const port = await freePort();
    const m = await startMosquitto(port);
    closers.push(() => m.stop());
    const A = party([m.url]);
    const B = party([m.url]);
    await Promise.all([A.sig.start(), B.sig.start()]);
    B.sig.onMessage((msg) => void B.sig.reply(msg, A.addr, 'pong', {}).catch(() => undefined));
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const probe = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - before)), 5);
    try {
      await publishHuge(port, inboxTopic(B.id.idHex), 48 << 20);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      clearInterval(probe);
    }
    expect(peak).toBeLessThan(16 << 20);
    const r = await A.sig.request(B.addr, 'ping', {}, { timeout: 5000 });
    expect(r.type).toBe('pong');
  });
});

describe('replay cache full of live ids', () => {
  it('refuses each further id without scanning the whole cache again', () => {
    const c = new ReplayCache(65_536);
    const now = Date.now();
    // 64 throw-away identities fill the general budget (1024 ids each, their whole share).
    for (let s = 0; s < 64; s++) for (let i = 0; i < 1024; i++) c.add(`${s}-${i}`, now + 120_000, now, `sender${s}`);
    const prune = vi.spyOn(c, 'prune');
    let admitted = 0;
    // Each of these passed the signature check; a refusal should cost little more than that.
    for (let i = 0; i < 2000; i++) if (c.add(`new-${i}`, now + 120_000, now, i % 2 ? `newcomer${i}` : 'sender0')) admitted++;
    expect(admitted).toBe(0);
    expect(prune).not.toHaveBeenCalled(); // nothing can have expired yet: no scan of the 65 536 ids
    prune.mockRestore();
    // Once ids expire, room is made again.
    expect(c.add('later', now + 300_000, now + 130_000, 'newcomer')).toBe(true);
  });
});
