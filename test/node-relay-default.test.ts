/**
 * The relay strategy is on by default once a TURN server is configured: with the default
 * strategies, a connection that only a relay can make succeeds through TURN; with strategies
 * that leave relay out (per node or per call) it is never tried. Local coturn and broker on
 * loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  P2pConnectError, encodeAddress, startBroker, startP2pNode, type Broker, type NodeEvent, type NodePipe, type P2pNode, type P2pNodeOptions,
} from '../src/node/index.js';
import { guardUnhandled } from './helpers/pipes.js';
import { CI, onPath, startCoturn, type Coturn } from './node-helpers.js';

guardUnhandled();

const HAVE_TURN = onPath('turnserver');

describe.runIf(HAVE_TURN || CI)('relay is a default strategy when a TURN server is configured', () => {
  let coturn: Coturn;
  let broker: Broker;
  const nodes: P2pNode[] = [];
  beforeAll(async () => {
    if (!HAVE_TURN) throw new Error('turnserver (coturn) is not installed; run test/lab/install-deps.sh');
    coturn = await startCoturn();
    broker = await startBroker({ host: '127.0.0.1' });
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await broker?.close();
    await coturn?.stop();
  });

  /** A node with TURN and the shared broker, no STUN (so no hole punching), events recorded. */
  async function node(opts: P2pNodeOptions = {}): Promise<{ n: P2pNode; events: NodeEvent[] }> {
    const events: NodeEvent[] = [];
    const n = await startP2pNode({
      listen: 'loopback',
      portMapping: false,
      signalling: { brokers: [broker.url] },
      turn: [{ server: coturn.server, username: coturn.username, password: coturn.password }],
      onEvent: (e) => events.push(e),
      ...opts,
    });
    nodes.push(n);
    return { n, events };
  }

  /**
   * The peer b, and its address without endpoints (direct has nothing to try). The connecting
   * sides close their TCP listeners, so b cannot dial them back either (reverse fails): only a
   * relay can connect them.
   */
  async function setup(opts: P2pNodeOptions = {}) {
    const b = await node();
    b.n.addMsgCb(async (msg, pipe) => {
      if (msg.toString() === 'PING') await pipe.send('PONG');
    });
    const noDirect = encodeAddress(b.n.identity, { signalKey: b.n.address.signalKey, interfaces: [], signal: [...b.n.address.signal] });
    const a = await node({ timeouts: { reverse: 800 }, ...opts });
    for (const s of (a.n as unknown as { tcpServers: { close(): Promise<void> }[] }).tcpServers) await s.close();
    return { a, b, noDirect };
  }

  const relayRequests = (events: NodeEvent[]): number => events.filter((e) => e.type === 'signal' && e.detail === 'relay').length;
  const started = (events: NodeEvent[]): string[] => events.filter((e) => e.type === 'strategy-start').map((e) => e.strategy ?? '');

  it('default strategies: reverse fails, relay connects (path.strategy relay over TURN)', async () => {
    const { a, b, noDirect } = await setup();
    const p: NodePipe = await a.n.connect(noDirect, { timeout: 12_000 });
    expect(p.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(p.path.server).toBeDefined();
    expect(p.remoteIdHex).toBe(b.n.idHex);
    await p.send('PING');
    expect((await p.recv({ timeout: 5000 })).data.toString()).toBe('PONG');
    expect(started(a.events)).toEqual(['reverse', 'relay']);
    expect(a.events.some((e) => e.type === 'strategy-fail' && e.strategy === 'reverse')).toBe(true);
    expect(relayRequests(b.events)).toBe(1);
    // Reverse failed because b could not dial a back.
    expect(b.events.some((e) => e.type === 'warning' && /^reverse for peer failed/.test(e.detail ?? ''))).toBe(true);
    await p.close();
  });

  it('strategies without relay (node option): relay is never tried, a typed error instead', async () => {
    const { a, b, noDirect } = await setup({ strategies: ['direct', 'reverse', 'punch'] });
    const before = relayRequests(b.events);
    const err = await a.n.connect(noDirect, { timeout: 8000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect((err as P2pConnectError).attempts.map((x) => x.strategy)).not.toContain('relay');
    // Past the time relay would have started on its own (1.5 s), still nothing.
    await new Promise((r) => setTimeout(r, 1000));
    expect(started(a.events)).not.toContain('relay');
    expect(relayRequests(b.events)).toBe(before);
    expect(a.n.pipes.size).toBe(0);
    // The call's own strategies override the node's: relay asked for explicitly works.
    const p = await a.n.connect(noDirect, { strategies: ['relay'], timeout: 12_000 });
    expect(p.path.strategy).toBe('relay');
    await p.close();
  });

  it('strategies without relay (per call) on a node with the defaults: relay is never tried', async () => {
    const { a, b, noDirect } = await setup();
    const before = relayRequests(b.events);
    const err = await a.n.connect(noDirect, { strategies: ['direct', 'reverse', 'punch'], timeout: 8000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect((err as P2pConnectError).attempts.map((x) => x.strategy)).toEqual(expect.arrayContaining(['reverse']));
    expect((err as P2pConnectError).attempts.map((x) => x.strategy)).not.toContain('relay');
    await new Promise((r) => setTimeout(r, 1000));
    expect(started(a.events)).not.toContain('relay');
    expect(relayRequests(b.events)).toBe(before);
  });
});

describe.runIf(HAVE_TURN || CI)('node.close() deletes its TURN allocations on the server (coturn)', () => {
  it('every allocation coturn opened for the two nodes is refreshed to lifetime 0 when they close', async () => {
    if (!HAVE_TURN) throw new Error('turnserver (coturn) is not installed; run test/lab/install-deps.sh');
    const coturn = await startCoturn({ verbose: true });
    const broker = await startBroker({ host: '127.0.0.1' });
    try {
      const opts: P2pNodeOptions = {
        listen: 'loopback',
        portMapping: false,
        signalling: { brokers: [broker.url] },
        turn: [{ server: coturn.server, username: coturn.username, password: coturn.password }],
      };
      const b = await startP2pNode(opts);
      b.addMsgCb(async (msg, pipe) => {
        if (msg.toString() === 'PING') await pipe.send('PONG');
      });
      const a = await startP2pNode(opts);
      const noDirect = encodeAddress(b.identity, { signalKey: b.address.signalKey, interfaces: [], signal: [...b.address.signal] });
      const p = await a.connect(noDirect, { strategies: ['relay'], timeout: 12_000 });
      expect(p.path.strategy).toBe('relay');
      await p.send('PING');
      expect((await p.recv({ timeout: 5000 })).data.toString()).toBe('PONG');
      const sessions = (): number => (coturn.log().match(/session \d+: new, realm=/g) ?? []).length;
      const deleted = (): number => (coturn.log().match(/session \d+: refreshed, realm=<[^>]*>, username=<[^>]*>, lifetime=0\b/g) ?? []).length;
      expect(sessions()).toBeGreaterThanOrEqual(1);
      expect(deleted()).toBe(0);
      await Promise.all([a.close(), b.close()]);
      const end = Date.now() + 5000;
      while (deleted() < sessions() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(deleted()).toBe(sessions());
    } finally {
      await broker.close();
      await coturn.stop();
    }
  });
});
