/**
 * The embedded broker's per-source connection cap (src/node/broker.ts): one host cannot take
 * every connection slot. Connections from 127.0.0.2 beyond the cap are closed on arrival,
 * before any MQTT is read, while a client from 127.0.0.3 still connects and works. Loopback is
 * not exempt by default.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { MAX_BROKER_CONNECTIONS_PER_HOST, P2pNode, startBroker, startP2pNode, type Broker } from '../src/index.js';
import { mqttConnect } from './helpers/mqtt.js';

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function started(opts: Parameters<typeof startBroker>[0]): Promise<Broker> {
  const b = await startBroker({ host: '127.0.0.1', ...opts });
  cleanup.push(() => b.close());
  return b;
}

/**
 * A raw TCP connection to `b` from `localAddress` that sends an MQTT CONNECT: resolves `true`
 * when a CONNACK comes back, `false` when the broker closes it without one.
 */
async function mqttFrom(b: Broker, localAddress: string): Promise<{ ok: boolean; sock: Socket }> {
  const sock = connect({ port: b.port, host: '127.0.0.1', localAddress });
  sock.on('error', () => undefined);
  cleanup.push(() => sock.destroy());
  await once(sock, 'connect');
  sock.write(mqttConnect(`c-${randomBytes(4).toString('hex')}`));
  const ok = await new Promise<boolean>((resolve) => {
    sock.once('data', (d: Buffer) => resolve(d[0] === 0x20));
    sock.once('close', () => resolve(false));
  });
  return { ok, sock };
}

/** An mqtt.js client connected to `b` from `localAddress` (mqtt.js has no option for it: its own stream). */
async function clientFrom(b: Broker, localAddress: string): Promise<MqttClient> {
  const c = new MqttClient(() => connect({ port: b.port, host: '127.0.0.1', localAddress }), { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId: `c-${randomBytes(4).toString('hex')}` });
  c.on('error', () => undefined);
  cleanup.push(() => c.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
  return c;
}

describe('embedded broker: connections per source address', () => {
  it('refuses connections from one host beyond the cap at accept time; another host still connects and works', async () => {
    const b = await started({ maxConnectionsPerHost: 3 });
    for (let i = 0; i < 3; i++) expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(true);
    expect(b.clients).toBe(3);
    // The 4th (and 5th) from the same host: closed without a CONNACK, counted.
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(false);
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(false);
    expect(b.stats.refusedPerHost).toBe(2);
    expect(b.stats.refusedFull).toBe(0);
    expect(b.clients).toBe(3);

    // Another host is not affected: it connects, subscribes and gets what is published.
    const sub = await clientFrom(b, '127.0.0.3');
    const pub = await clientFrom(b, '127.0.0.3');
    const topic = `p2pd/1/${randomBytes(32).toString('hex')}`;
    await sub.subscribeAsync(topic, { qos: 1 });
    const got = new Promise<Buffer>((r) => sub.once('message', (_t, p) => r(p)));
    await pub.publishAsync(topic, Buffer.from('hello'), { qos: 1 });
    expect((await got).toString()).toBe('hello');
    expect(b.stats.refusedPerHost).toBe(2);
  });

  it('a slot freed by a closed connection is the host\'s again', async () => {
    const b = await started({ maxConnectionsPerHost: 1 });
    const first = await mqttFrom(b, '127.0.0.2');
    expect(first.ok).toBe(true);
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(false);
    const gone = once(first.sock, 'close');
    first.sock.destroy();
    await gone;
    // The broker sees the close asynchronously: wait until it has let the slot go.
    while (b.clients > 0) await new Promise((r) => setTimeout(r, 10));
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(true);
  });

  it('by default caps each host, loopback included, at MAX_BROKER_CONNECTIONS_PER_HOST', async () => {
    expect(MAX_BROKER_CONNECTIONS_PER_HOST).toBe(64);
    const b = await started({});
    const socks: Socket[] = [];
    for (let i = 0; i < MAX_BROKER_CONNECTIONS_PER_HOST; i++) {
      const s = connect({ port: b.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
      s.on('error', () => undefined);
      cleanup.push(() => s.destroy());
      socks.push(s);
    }
    await Promise.all(socks.map((s) => once(s, 'connect')));
    while (b.stats.accepted < MAX_BROKER_CONNECTIONS_PER_HOST) await new Promise((r) => setTimeout(r, 10));
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(false);
    expect(b.stats.refusedPerHost).toBe(1);
    expect((await mqttFrom(b, '127.0.0.3')).ok).toBe(true);
  });

  it('the whole-broker cap is counted apart from the per-host one', async () => {
    const b = await started({ maxConnections: 2, maxConnectionsPerHost: 2 });
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(true);
    expect((await mqttFrom(b, '127.0.0.3')).ok).toBe(true);
    expect((await mqttFrom(b, '127.0.0.4')).ok).toBe(false);
    expect(b.stats).toEqual({ accepted: 2, refusedFull: 1, refusedPerHost: 0 });
  });

  it('rejects a bad maxConnectionsPerHost', async () => {
    for (const v of [0, -1, 1.5, Number.NaN]) await expect(startBroker({ host: '127.0.0.1', maxConnectionsPerHost: v })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => new P2pNode({ signalling: { embedded: { maxConnectionsPerHost: 0 } } })).toThrow(InvalidArgumentError);
  });
});

describe("a node's embedded broker: signalling.embedded.maxConnectionsPerHost", () => {
  it('is passed on: the node\'s own client holds the one loopback slot, the next local client is refused', async () => {
    const n = await startP2pNode({ listen: 'loopback', portMapping: false, signalling: { embedded: { maxConnectionsPerHost: 1 } } });
    cleanup.push(() => n.close());
    const b = n.broker as Broker;
    expect(n.signalling?.connected).toEqual([b.url]);
    expect((await mqttFrom(b, '127.0.0.1')).ok).toBe(false);
    expect(b.stats.refusedPerHost).toBe(1);
    expect((await mqttFrom(b, '127.0.0.2')).ok).toBe(true);
  });
});
