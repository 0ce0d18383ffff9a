/**
 * The embedded broker (src/node/broker.ts) against unauthenticated MQTT clients: a packet
 * that announces more than any p2pd message needs must not be buffered; one client cannot
 * hold any number of subscriptions, nor make the broker store messages for it while offline.
 */
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_BROKER_SUBSCRIPTIONS, startBroker, type Broker } from '../src/node/broker.js';
import { MAX_MQTT_PACKET, PacketSizeGuard } from '../src/node/mqtt-guard.js';
import { mqttConnect, mqttVarint } from './helpers/mqtt.js';

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function rawClient(b: Broker): Promise<Socket> {
  const s = connect(b.port, '127.0.0.1');
  s.on('error', () => undefined);
  cleanup.push(() => s.destroy());
  await once(s, 'connect');
  return s;
}

/** Streams `total` bytes (1 MiB at a time, waiting for drain); stops early when the socket closes. */
async function stream(s: Socket, total: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20);
  let sent = 0;
  while (sent < total && !s.destroyed) {
    const ok = s.write(chunk);
    sent += chunk.length;
    if (!ok) await new Promise<void>((r) => (s.once('drain', r), s.once('close', r)));
  }
  return sent;
}

describe('embedded broker: oversized packets', () => {
  it('a connected client announcing a 64 MiB PUBLISH is dropped, not buffered', async () => {
    const b = await startBroker({ host: '127.0.0.1' });
    cleanup.push(() => b.close());
    const s = await rawClient(b);
    s.write(mqttConnect('x'));
    const [connack] = (await once(s, 'data')) as [Buffer];
    expect(connack[0]).toBe(0x20);
    const closed = new Promise<void>((r) => s.once('close', r));
    const before = process.memoryUsage().arrayBuffers;
    s.write(Buffer.concat([Buffer.from([0x30]), mqttVarint(64 << 20)]));
    await stream(s, 64 << 20);
    await sleep(200);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(16 << 20);
    expect(s.destroyed || (await Promise.race([closed.then(() => true), sleep(1000).then(() => false)]))).toBe(true);
  });
});

describe('PacketSizeGuard', () => {
  const packet = (len: number): Buffer => Buffer.concat([Buffer.from([0x30]), mqttVarint(len), Buffer.alloc(len, 0x80)]);
  it('follows any chunking of packets within the limit, and stops at the first one beyond it', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 20 }), fc.integer({ min: 0, max: 20 }), fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1 }), (lens, badAt, cuts) => {
        const bad = Math.min(badAt, lens.length);
        const withBad = [...lens.slice(0, bad), 301, ...lens.slice(bad)];
        for (const [ls, ok] of [[lens, true], [withBad, false]] as const) {
          const bytes = Buffer.concat(ls.map(packet));
          const g = new PacketSizeGuard(300);
          let res = true;
          for (let off = 0, k = 0; off < bytes.length && res; k++) {
            const n = cuts[k % cuts.length] as number;
            res = g.feed(bytes.subarray(off, off + n));
            off += n;
          }
          expect(res).toBe(ok);
        }
      }),
    );
  });

  it('refuses a length of more than 4 bytes; the limit fits the largest envelope', () => {
    expect(new PacketSizeGuard(1 << 30).feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]))).toBe(false);
    expect(new PacketSizeGuard(MAX_MQTT_PACKET).feed(packet(16 * 1024 + 100))).toBe(true);
  });
});

describe('embedded broker: state kept for one client', () => {
  const topic = (): string => `p2pd/1/${randomBytes(32).toString('hex')}`;

  it('subscriptions per connection are bounded (each costs broker memory; a p2pd client needs one)', async () => {
    const b = await startBroker({ host: '127.0.0.1' });
    cleanup.push(() => b.close());
    const c = await mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0 });
    cleanup.push(() => c.endAsync(true));
    // Granted subscriptions, one topic per SUBSCRIBE (mqtt.js rejects a SUBACK that refuses any).
    const ok = async (ts: string[], cl = c): Promise<number> => {
      let n = 0;
      for (const t of ts) n += await cl.subscribeAsync(t, { qos: 1 }).then(() => 1, () => 0);
      return n;
    };
    const granted = await ok(Array.from({ length: 40 }, topic));
    expect(granted).toBe(MAX_BROKER_SUBSCRIPTIONS);
    // An unsubscription makes room again; subscribing twice to one topic costs nothing more.
    expect(await ok([topic()])).toBe(0);
    const c2 = await mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0 });
    cleanup.push(() => c2.endAsync(true));
    const first = Array.from({ length: MAX_BROKER_SUBSCRIPTIONS }, topic);
    expect(await ok(first, c2)).toBe(MAX_BROKER_SUBSCRIPTIONS);
    expect(await ok([first[0] as string], c2)).toBe(1);
    await c2.unsubscribeAsync(first[0] as string);
    expect(await ok([topic()], c2)).toBe(1);
    expect(await ok([topic()], c2)).toBe(0);
  });

  it('no persistent sessions: nothing is stored for a client while it is away', async () => {
    const b = await startBroker({ host: '127.0.0.1' });
    cleanup.push(() => b.close());
    const t = topic();
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: 'hoarder' };
    const away = await mqtt.connectAsync(b.url, opts).catch(() => undefined);
    if (away) {
      await away.subscribeAsync(t, { qos: 1 }).catch(() => undefined);
      await away.endAsync();
    }
    const pub = await mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0 });
    cleanup.push(() => pub.endAsync(true));
    const body = Buffer.alloc(16 * 1024, 1);
    for (let i = 0; i < 200; i++) await pub.publishAsync(t, body, { qos: 1 });
    let stored = 0;
    const back = await mqtt.connectAsync(b.url, opts).catch(() => undefined);
    if (back) {
      back.on('message', () => stored++);
      cleanup.push(() => back.endAsync(true));
      await sleep(500);
    }
    expect(stored).toBe(0);
  });
});
