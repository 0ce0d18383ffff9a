/**
 * `node.connect()` when things go away or never answer, on loopback: the caller's AbortSignal
 * (during a reverse connect that would wait for a peer that is gone, and already aborted; the
 * strategy-fail events then say the caller aborted, unlike a connect that runs out of time), a
 * broker that disappears in the middle of a connect, and a node started with brokers and STUN
 * servers that cannot be reached (closed ports, or servers that accept and never answer).
 */
import { createSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { AbortError, TimeoutError } from '../src/errors.js';
import { startStunServer, type StunServer } from '../src/nat/stun/server.js';
import {
  P2pConnectError, SignalError, startBroker, startP2pNode, type Broker, type NodeEvent, type NodePipe, type P2pNode, type P2pNodeOptions,
} from '../src/node/index.js';
import { encodeAddress } from '../src/node/address.js';
import { deriveSignalKey } from '../src/node/envelope.js';
import { guardUnhandled } from './helpers/pipes.js';
import { freePort } from './node-helpers.js';

guardUnhandled();

const nodes: P2pNode[] = [];
const brokers: Broker[] = [];
const stuns: StunServer[] = [];
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  await Promise.all([...brokers.map((b) => b.close()), ...stuns.map((s) => s.close())]);
});

async function node(opts: P2pNodeOptions = {}): Promise<P2pNode> {
  const n = await startP2pNode({ listen: 'loopback', portMapping: false, ...opts });
  nodes.push(n);
  return n;
}

async function broker(): Promise<Broker> {
  const b = await startBroker({ host: '127.0.0.1' });
  brokers.push(b);
  return b;
}

function pong(n: P2pNode): void {
  n.addMsgCb(async (msg, pipe) => {
    if (msg.toString() === 'PING') await pipe.send('PONG');
  });
}

async function roundTrip(p: NodePipe): Promise<string> {
  await p.send('PING');
  return (await p.recv({ timeout: 3000 })).data.toString();
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A UDP port on 127.0.0.1 with nothing bound to it. */
async function closedUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('connect: the caller’s AbortSignal', () => {
  it('aborting a reverse connect to a node that is gone rejects with AbortError at once and leaves nothing behind', async () => {
    const br = await broker();
    const cfg = { signalling: { brokers: [br.url] } };
    const events: NodeEvent[] = [];
    const a = await node({ ...cfg, onEvent: (e) => events.push(e) });
    const b = await node(cfg);
    const gone = b.addr; // names the shared broker: the request is published, nobody ever answers
    await b.close();
    const pipesBefore = a.pipes.size;
    const sentBefore = a.signalling?.stats.sent ?? 0;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = performance.now();
    const err = await a.connect(gone, { strategies: ['reverse'], signal: ac.signal, timeout: 10_000 }).catch((e: unknown) => e);
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(AbortError);
    expect((err as Error).name).toBe('AbortError');
    expect(ms).toBeLessThan(2000);
    // The request did go out (the abort came while waiting for the peer).
    expect(a.signalling?.stats.sent).toBe(sentBefore + 1);
    // The strategy itself stopped too (not only the outer promise), long before its own 4 s timeout.
    await waitFor(() => events.some((e) => e.type === 'strategy-fail' && e.strategy === 'reverse'), 1000);
    // Its failure event says the caller aborted (not a timeout, not the strategy's own failure).
    expect(events.filter((e) => e.type === 'strategy-fail').map((e) => e.detail)).toEqual(['aborted by the caller']);
    expect(events.some((e) => e.type === 'strategy-win')).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(a.pipes.size).toBe(pipesBefore);
    // The node is fine afterwards: a new connect (to itself) works.
    pong(a);
    const p = await a.connect(a.addr);
    expect(await roundTrip(p)).toBe('PONG');
    await p.close();
    expect(a.pipes.size).toBe(pipesBefore);
  });

  it('an already aborted signal rejects at once with AbortError: no strategy starts, nothing is sent', async () => {
    const br = await broker();
    const cfg = { signalling: { brokers: [br.url] } };
    const events: NodeEvent[] = [];
    const a = await node({ ...cfg, onEvent: (e) => events.push(e) });
    const b = await node(cfg);
    const sent = a.signalling?.stats.sent ?? 0;
    const reason = new Error('caller gave up');
    for (const strategies of [['reverse'] as const, undefined]) {
      const err = await a.connect(b.addr, { ...(strategies ? { strategies: [...strategies] } : {}), signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AbortError);
      expect((err as AbortError).cause).toBe(reason);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(events.filter((e) => e.type.startsWith('strategy-'))).toEqual([]);
    expect(a.signalling?.stats.sent).toBe(sent);
    expect(a.pipes.size).toBe(0);
    expect(b.pipes.size).toBe(0);
  });
});

describe('connect: strategy-fail events name the caller’s abort', () => {
  /** A TCP server on 127.0.0.1 that accepts and never answers (a direct handshake to it hangs). */
  async function silentTcp(): Promise<{ port: number; close(): Promise<void> }> {
    const socks = new Set<Socket>();
    const srv = createServer((s) => {
      socks.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      port: (srv.address() as { port: number }).port,
      async close() {
        for (const s of socks) s.destroy();
        await new Promise((r) => srv.close(r));
      },
    };
  }

  /** A signed address of a peer whose only endpoint is `port` on loopback. */
  function silentPeer(port: number): string {
    const other = Identity.fromPrivateKey(Buffer.alloc(32, 7));
    const endpoints = [{ kind: 'loopback' as const, proto: 'tcp' as const, host: '127.0.0.1', port, family: 4 as const }];
    return encodeAddress(other, { signalKey: deriveSignalKey(other).publicKey, interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints }], signal: [] });
  }

  it('a direct connect aborted by the caller: "aborted by the caller"; one that runs out of time: a timeout, not an abort', async () => {
    const silent = await silentTcp();
    try {
      const events: NodeEvent[] = [];
      const a = await node({ signalling: false, timeouts: { direct: 10_000, handshake: 10_000 }, onEvent: (e) => events.push(e) });
      const peer = silentPeer(silent.port);
      const fails = (): NodeEvent[] => events.filter((e) => e.type === 'strategy-fail');
      // The caller aborts while the handshake waits.
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('user pressed cancel')), 150);
      const err = await a.connect(peer, { strategies: ['direct'], signal: ac.signal, timeout: 10_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AbortError);
      await waitFor(() => fails().length === 1, 1000);
      expect(fails()[0]).toMatchObject({ strategy: 'direct', detail: 'aborted by the caller' });
      // The connect's own time limit ends it: a timeout, not the caller.
      events.length = 0;
      const err2 = await a.connect(peer, { strategies: ['direct'], timeout: 150 }).catch((e: unknown) => e);
      expect(err2).toBeInstanceOf(TimeoutError);
      await waitFor(() => fails().length === 1, 1000);
      expect(fails()[0]?.strategy).toBe('direct');
      expect(fails()[0]?.detail).not.toMatch(/abort/i);
      expect(a.pipes.size).toBe(0);
    } finally {
      await silent.close();
    }
  });
});

describe('connect: a broker that disappears mid-connect', () => {
  it('after the punch request reached the peer: the reply never comes, a typed error before the connect timeout', async () => {
    const stun = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    stuns.push(stun);
    const br = await broker();
    const cfg: P2pNodeOptions = { signalling: { brokers: [br.url] }, stun: [`127.0.0.1:${stun.endpoints[0]?.local.port}`], natDetection: false };
    let closing: Promise<void> | undefined;
    const bEvents: NodeEvent[] = [];
    const b = await node({
      ...cfg,
      onEvent: (e) => {
        bEvents.push(e);
        // The request was published and delivered: the broker goes away now, before b answers.
        if (e.type === 'signal' && e.detail === 'punch') closing ??= br.close();
      },
    });
    const a = await node({ ...cfg, timeouts: { punch: 3000 } });
    const t0 = performance.now();
    const err = await a.connect(b.addr, { strategies: ['punch'], timeout: 10_000 }).catch((e: unknown) => e);
    const ms = performance.now() - t0;
    expect(closing).toBeDefined();
    await closing;
    // A typed error from the strategy (not the connect timeout, which would be a TimeoutError at 10 s).
    expect(err).toBeInstanceOf(P2pConnectError);
    const attempts = (err as P2pConnectError).attempts;
    expect(attempts.map((x) => x.strategy)).toEqual(['punch']);
    expect(attempts[0]?.error).toBeInstanceOf(TimeoutError);
    expect(ms).toBeLessThan(9000);
    expect(a.pipes.size).toBe(0);
    // b could not answer: its failure is a warning event, not a crash.
    await waitFor(() => bEvents.some((e) => e.type === 'warning' && /punch/.test(e.detail ?? '')), 8000);
    expect(b.pipes.size).toBe(0);
  });

  it('while the request is being published: the publish fails with a SignalError, not a hang', async () => {
    const br = await broker();
    const cfg = { signalling: { brokers: [br.url] } };
    let closing: Promise<void> | undefined;
    const bSignals: NodeEvent[] = [];
    const b = await node({ ...cfg, onEvent: (e) => void bSignals.push(e) });
    const a = await node({
      ...cfg,
      onEvent: (e) => {
        if (e.type === 'strategy-start' && e.strategy === 'reverse') closing ??= br.close();
      },
    });
    const err = await a.connect(b.addr, { strategies: ['reverse'], timeout: 10_000 }).catch((e: unknown) => e);
    await closing;
    expect(err).toBeInstanceOf(P2pConnectError);
    const first = (err as P2pConnectError).attempts[0]?.error;
    expect(first).toBeInstanceOf(SignalError);
    expect((first as SignalError).reason).toBe('not-connected');
    expect(bSignals.filter((e) => e.type === 'signal')).toEqual([]);
    expect(a.pipes.size).toBe(0);
    expect(b.pipes.size).toBe(0);
  });
});

describe('start with unreachable infrastructure', () => {
  /** A TCP server that accepts and never says a word; and a UDP socket that never answers. */
  async function silentServers(): Promise<{ seen: { tcp: number; udp: number }; tcpPort: number; udpPort: number; close(): Promise<void> }> {
    const socks = new Set<Socket>();
    const seen = { tcp: 0, udp: 0 };
    const tcp = createServer((s) => {
      seen.tcp++;
      socks.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
    const udp = createSocket('udp4');
    udp.on('message', () => void seen.udp++);
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    return {
      seen,
      tcpPort: (tcp.address() as { port: number }).port,
      udpPort: udp.address().port,
      async close() {
        for (const s of socks) s.destroy();
        await new Promise((r) => tcp.close(r));
        await new Promise<void>((r) => udp.close(() => r()));
      },
    };
  }

  for (const kind of ['closed ports', 'servers that never answer'] as const) {
    it(`brokers and STUN on ${kind}: start resolves; self-connect and loopback direct connects work`, async () => {
      const silent = kind === 'servers that never answer' ? await silentServers() : undefined;
      try {
        const brokerPort = silent?.tcpPort ?? (await freePort());
        const stunPort = silent?.udpPort ?? (await closedUdpPort());
        const url = `mqtt://127.0.0.1:${brokerPort}`;
        const t0 = performance.now();
        // listen 'all' so that the start runs its STUN requests; no interfaces: only the loopback endpoint is advertised.
        const a = await node({ listen: 'all', nics: [], signalling: { brokers: [url], connectTimeout: 1000 }, stun: [`127.0.0.1:${stunPort}`] });
        expect(performance.now() - t0).toBeLessThan(8000);
        expect(a.signalling?.connected).toEqual([]);
        // They were tried: the broker connection and the STUN requests reached the silent servers.
        if (silent) expect(silent.seen.tcp > 0 && silent.seen.udp > 0).toBe(true);
        expect(a.address.signal).toEqual([{ type: 'mqtt', url }]);
        expect(a.address.interfaces.flatMap((i) => i.endpoints)).toEqual([{ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: a.listenPort, family: 4 }]);
        pong(a);
        const self = await a.connect(a.addr, { timeout: 5000 });
        expect(self.path.strategy).toBe('direct');
        expect(await roundTrip(self)).toBe('PONG');
        await self.close();
        const b = await node({ signalling: false });
        pong(b);
        const ab = await a.connect(b.addr, { timeout: 5000 });
        expect(ab.path.strategy).toBe('direct');
        expect(await roundTrip(ab)).toBe('PONG');
        const ba = await b.connect(a.addr, { timeout: 5000 });
        expect(ba.path.strategy).toBe('direct');
        expect(await roundTrip(ba)).toBe('PONG');
        await Promise.all([ab.close(), ba.close()]);
        const t1 = performance.now();
        await a.close();
        expect(performance.now() - t1).toBeLessThan(5000);
      } finally {
        await silent?.close();
      }
    });
  }
});
