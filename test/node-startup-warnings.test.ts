/**
 * A node whose configured servers cannot be reached at start still starts (offline start
 * works), and says so: one `warning` event per signalling broker that did not connect
 * (refused, timed out) and per STUN server that never answered, naming the server and what
 * failed. Connections that need neither still work.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initP2pd, type Interface } from '../src/interfaces/interfaces.js';
import { startStunServer } from '../src/nat/stun/server.js';
import { startBroker, type NodeEvent, type P2pNodeOptions } from '../src/node/index.js';
import { describeFailure } from '../src/node/start-warnings.js';
import { stunServers } from '../src/node/external.js';
import { formatEndpoint } from '../src/interfaces/endpoint.js';
import { P2pConnectError } from '../src/node/index.js';
import { TimeoutError } from '../src/errors.js';
import { silentTcpServer, useLoopbackNodes } from './helpers/nodes.js';
import { freePort } from './node-helpers.js';

const node = useLoopbackNodes();

/** A UDP socket on 127.0.0.1 that receives and never answers: a STUN server that is not there. */
async function silentUdp(): Promise<{ port: number; sock: UdpSocket }> {
  const sock = createSocket('udp4');
  sock.on('error', () => undefined);
  sock.on('message', () => undefined);
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, sock };
}

let lo: Interface[] = [];
let stun: { port: number; sock: UdpSocket };
let silentBroker: { port: number; close(): void };
beforeAll(async () => {
  // Only the loopback interface: the node listens everywhere (STUN is used then) but its
  // address, and so every connection in these tests, stays on loopback.
  lo = (await initP2pd()).list.filter((i) => i.loopback);
  stun = await silentUdp();
  silentBroker = await silentTcpServer();
});
afterAll(() => {
  stun?.sock.close();
  silentBroker?.close();
});

/** Starts a node that records its warnings. */
async function watched(opts: P2pNodeOptions): Promise<{ warnings: string[]; n: Awaited<ReturnType<typeof node>> }> {
  const warnings: string[] = [];
  const n = await node({ ...opts, onEvent: (e: NodeEvent) => void (e.type === 'warning' && e.detail !== undefined && warnings.push(e.detail)) });
  return { warnings, n };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('node start: unreachable configured servers', () => {
  it('starts, warns once per broker and STUN server naming it and what failed; direct connections still work', async () => {
    expect(lo.length).toBeGreaterThan(0);
    const closed = await freePort(); // nothing listens there: connections are refused
    const refusedUrl = `mqtt://127.0.0.1:${closed}`;
    const silentUrl = `mqtt://127.0.0.1:${silentBroker.port}`;
    const { warnings, n: a } = await watched({
      listen: 'all',
      nics: lo,
      stun: [`127.0.0.1:${stun.port}`],
      // The same broker twice is one server: one warning.
      signalling: { brokers: [refusedUrl, refusedUrl, silentUrl], connectTimeout: 300 },
    });
    expect(a.signalling?.connected).toEqual([]);

    const about = (s: string): string[] => warnings.filter((w) => w.includes(s));
    expect(about(`127.0.0.1:${closed}`)).toHaveLength(1);
    expect(about(`127.0.0.1:${closed}`)[0]).toMatch(/^signalling broker mqtt:\/\/127\.0\.0\.1:\d+ not connected at start: refused/);
    expect(about(`127.0.0.1:${silentBroker.port}`)).toHaveLength(1);
    expect(about(`127.0.0.1:${silentBroker.port}`)[0]).toMatch(/timed out/);
    expect(about(`STUN server 127.0.0.1:${stun.port}`)).toHaveLength(1);
    expect(about(`STUN server 127.0.0.1:${stun.port}`)[0]).toMatch(/did not answer at start: timed out/);

    // The brokers keep being retried in the background (every second): no more warnings.
    await sleep(1500);
    expect(about(`127.0.0.1:${closed}`)).toHaveLength(1);
    expect(about(`127.0.0.1:${silentBroker.port}`)).toHaveLength(1);

    // Direct connections need neither signalling nor STUN: both ways work on loopback.
    const b = await node();
    b.addMsgCb(async (m, p) => void (await p.send(m)));
    a.addMsgCb(async (m, p) => void (await p.send(m)));
    const ab = await a.connect(b.addr, { strategies: ['direct'] });
    await ab.send('a→b');
    expect((await ab.recv({ timeout: 3000 })).data.toString()).toBe('a→b');
    const ba = await b.connect(a.addr);
    expect(ba.path.strategy).toBe('direct');
    await ba.send('b→a');
    expect((await ba.recv({ timeout: 3000 })).data.toString()).toBe('b→a');
  });

  it('without NAT detection, the listen socket\'s STUN request names a silent server too', async () => {
    const { warnings } = await watched({ listen: 'all', nics: lo, stun: [`127.0.0.1:${stun.port}`], natDetection: false, signalling: false });
    expect(warnings.filter((w) => w.includes(`STUN server 127.0.0.1:${stun.port}`))).toEqual([
      expect.stringMatching(/did not answer at start: timed out/),
    ]);
  });

  it('servers that answer give no warning', async () => {
    const server = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    const broker = await startBroker({ host: '127.0.0.1' });
    try {
      const { warnings, n } = await watched({ listen: 'all', nics: lo, stun: [`127.0.0.1:${server.endpoints[0]?.local.port}`], signalling: { brokers: [broker.url] } });
      expect(n.signalling?.connected).toEqual([broker.url]);
      expect(n.nat?.external).toBeDefined();
      expect(warnings.filter((w) => /STUN|broker/.test(w))).toEqual([]);
    } finally {
      await broker.close();
      await server.close();
    }
  });
});

describe('node start: IPv6 STUN servers', () => {
  it('names a configured IPv6 STUN server as unused and uses the IPv4 one listed after it', async () => {
    const server = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    const v4 = `127.0.0.1:${server.endpoints[0]?.local.port}`;
    try {
      expect(stunServers(['[::1]:3478', v4, '::1', { host: '127.0.0.2', port: 9 }], 4).map(formatEndpoint)).toEqual([v4, '127.0.0.2:9']);
      expect(stunServers(['[::1]:3478', v4], 6).map(formatEndpoint)).toEqual(['[::1]:3478']);
      const { warnings, n } = await watched({ listen: 'all', nics: lo, stun: ['[::1]:3478', v4], signalling: false });
      expect(n.nat?.external).toBeDefined();
      expect(warnings.filter((w) => w.includes('STUN'))).toEqual([expect.stringMatching(/^STUN server \[::1\]:3478 is not used: the node asks STUN over IPv4 only/)]);
    } finally {
      await server.close();
    }
  });

  it('with only an IPv6 STUN server, hole punching is skipped as having no IPv4 STUN server', async () => {
    const a = await node({ stun: ['[::1]:3478'] });
    const b = await node({});
    const err = await a.connect(b.addr, { strategies: ['punch'], timeout: 5_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    const attempt = (err as P2pConnectError).attempts[0];
    expect(attempt?.strategy).toBe('punch');
    expect(String((attempt as { error?: Error }).error?.message)).toMatch(/no IPv4 STUN server configured/);
  });
});

describe('start warning wording', () => {
  it('says refused / timed out / the error', () => {
    expect(describeFailure(new Error('x', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) }))).toBe('refused (ECONNREFUSED)');
    expect(describeFailure(new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe('refused (ECONNREFUSED)');
    expect(describeFailure(new Error('x', { cause: new TimeoutError('slow') }))).toBe('timed out');
    expect(describeFailure(new Error('connack timeout'))).toBe('timed out (no CONNACK)');
    expect(describeFailure(new Error('something else'))).toBe('something else');
  });
});
