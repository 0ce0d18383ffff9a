/**
 * `p2pd serve --mqtt-max-per-host N` (src/node/cli-serve.ts): the cap reaches the embedded
 * broker, its refusals are shown (with -v as they happen, and in the summary when serve stops),
 * and a bad N is bad usage. Loopback only.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { run } from '../src/cli/main.js';
import { MAX_BROKER_CONNECTIONS_PER_HOST } from '../src/node/broker.js';
import { capture, errorLine, jsonLines, waitFor } from './helpers/cli.js';

const SERVE = ['serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--stun-port', '0'];

/** A TCP connection to `port` on 127.0.0.1, once connected (the broker may close it at once). */
async function tcpTo(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  return s;
}

describe('p2pd serve --mqtt-max-per-host', () => {
  it('N=1: a second connection from 127.0.0.1 is refused; -v says so; the summary counts it', async () => {
    const c = capture();
    const running = run([...SERVE, '--mqtt-max-per-host', '1', '--json', '-v'], c.io);
    await waitFor(() => c.out().includes('"serving"'));
    const serving = jsonLines(c.out())[0] as { mqtt: string; mqttMaxPerHost: number };
    expect(serving.mqttMaxPerHost).toBe(1);
    const client = await mqtt.connectAsync(serving.mqtt, { protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const second = await tcpTo(Number(new URL(serving.mqtt).port));
      await once(second, 'close'); // closed on arrival
      await waitFor(() => c.out().includes('"mqtt-refused"'));
      expect(jsonLines(c.out()).find((x) => x.event === 'mqtt-refused')).toMatchObject({ perHost: 1, full: 0, maxPerHost: 1, clients: 1 });
      expect(client.connected).toBe(true);
    } finally {
      await client.endAsync(true);
    }
    c.stop();
    expect(await running).toBe(0);
    expect(jsonLines(c.out()).at(-1)).toEqual({ event: 'summary', mqtt: { accepted: 1, refusedPerHost: 1, refusedFull: 0, maxPerHost: 1 } });
  });

  it('N=2 admits two; the text output names the cap and the summary', async () => {
    const c = capture();
    const running = run([...SERVE, '--mqtt-max-per-host', '2'], c.io);
    await waitFor(() => c.out().includes('STUN server:'));
    const m = /^MQTT broker: (mqtt:\/\/\S+) \(at most 2 connections per source host\)$/m.exec(c.out());
    expect(m, c.out()).not.toBeNull();
    const port = Number(new URL(m?.[1] as string).port);
    const a = await tcpTo(port);
    const b = await tcpTo(port);
    const third = await tcpTo(port);
    await once(third, 'close');
    c.stop();
    expect(await running).toBe(0);
    a.destroy();
    b.destroy();
    expect(c.out()).toMatch(/^MQTT broker: 2 connections accepted, 1 refused over the per-host cap \(2\), 0 refused \(broker full\)$/m);
    expect(c.err()).toBe(''); // no -v: the refusals are not reported as they happen
  });

  it(`the default is MAX_BROKER_CONNECTIONS_PER_HOST (${MAX_BROKER_CONNECTIONS_PER_HOST})`, async () => {
    const c = capture();
    const running = run([...SERVE, '--json'], c.io);
    await waitFor(() => c.out().includes('"serving"'));
    expect(jsonLines(c.out())[0]).toMatchObject({ event: 'serving', mqttMaxPerHost: MAX_BROKER_CONNECTIONS_PER_HOST });
    c.stop();
    expect(await running).toBe(0);
  });

  it.each(['0', '-1', '1025', '1.5', 'many'])('--mqtt-max-per-host %s is bad usage (exit 2), nothing starts', async (v) => {
    const c = capture();
    expect(await run([...SERVE, '--mqtt-max-per-host', v, '--json'], c.io)).toBe(2);
    expect(errorLine(c)).toMatchObject({ error: '--mqtt-max-per-host must be an integer 1-1024', name: 'UsageError', exit: 2 });
  });

  it('is documented in --help', async () => {
    const c = capture();
    expect(await run(['serve', '--help'], c.io)).toBe(0);
    expect(c.out()).toMatch(/--mqtt-max-per-host N +MQTT connections one source address may hold/);
  });
});
