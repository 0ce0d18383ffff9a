/**
 * The P2P node, review findings: reverse pipes that come after their connect() gave up (or
 * that lost the race) are closed on both sides, never announced, never among the node's
 * pipes; a busy peer refuses reverse requests at once with a typed error; a STUN server that
 * reports a loopback address does not stop the node from starting; many publishes in flight
 * on one broker connection share one close listener; bad addresses are typed errors.
 * Everything on loopback.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { connectSecure, listenSecure, type SecurePipe } from '../src/crypto/secure-pipe.js';
import { AbortError, P2pdError } from '../src/errors.js';
import { formatEndpoint } from '../src/interfaces/endpoint.js';
import { Interface } from '../src/interfaces/interfaces.js';
import { startStunServer } from '../src/nat/stun/server.js';
import { buildAddress } from '../src/node/build-address.js';
import type { NodeContext } from '../src/node/context.js';
import { deriveSignalKey } from '../src/node/envelope.js';
import { encodeHello } from '../src/node/hello.js';
import { connectDirect, ReverseWaiters } from '../src/node/strategy-direct.js';
import { MAX_SERVING, MAX_SERVING_PER_PEER } from '../src/node/requests.js';
import {
  AddressError, P2pConnectError, P2pNode, PeerRefusedError, SignalError, Signalling, describeAddress, encodeAddress, parseAddress, sameNode, startBroker,
  type NodeEvent, type NodePipe, type P2pNodeOptions,
} from '../src/node/index.js';
import { addressAt, silentTcpServer, useLoopbackNodes } from './helpers/nodes.js';

const node = useLoopbackNodes();

async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The node's diagnostics, collected. */
function events(n: P2pNode): NodeEvent[] {
  const out: NodeEvent[] = [];
  (n as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => out.push(e);
  return out;
}

/** Every pipe ever added to the node's live pipes. */
function additions(n: P2pNode): NodePipe[] {
  const out: NodePipe[] = [];
  const set = n.pipes;
  const add = set.add.bind(set);
  set.add = (p: NodePipe) => {
    out.push(p);
    return add(p);
  };
  return out;
}

describe('reverse pipes nobody waits for', () => {
  it('a reverse pipe that comes after the connect() gave up is closed on both sides, never announced, never counted', async () => {
    const a = await node();
    const b = await node();
    const aEvents = events(a);
    const aAnnounced: NodePipe[] = [];
    a.onPipe((p) => aAnnounced.push(p));
    const bPipes: NodePipe[] = [];
    b.onPipe((p) => bPipes.push(p));
    const aAdded = additions(a);
    // a gives up the moment b has its request: b's dial back comes after a stopped waiting.
    const ac = new AbortController();
    (b as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => {
      if (e.type === 'signal' && e.detail === 'reverse') ac.abort();
    };
    const err = await a.connect(b.addr, { strategies: ['reverse'], signal: ac.signal, timeout: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    // b dials back and has its side for a moment; a closes it, and b's side closes with it.
    await until(() => bPipes.length === 1, 3000, 'b to dial back');
    await until(() => bPipes[0]?.closed === true && b.pipes.size === 0, 3000, "b's reverse pipe to close");
    expect(bPipes[0]?.path.strategy).toBe('reverse');
    expect(aAnnounced).toEqual([]);
    expect(aAdded).toEqual([]);
    expect(a.pipes.size).toBe(0);
    expect(aEvents.some((e) => e.type === 'warning' && /reverse pipe closed/.test(e.detail ?? ''))).toBe(true);
    expect(aEvents.some((e) => e.type === 'inbound')).toBe(false);
  });

  it('a reverse pipe that loses the race to direct is closed on both sides; only the winner becomes one of the node\'s pipes', async () => {
    const a = await node();
    const b = await node();
    const aAnnounced: NodePipe[] = [];
    a.onPipe((p) => aAnnounced.push(p));
    const aAdded = additions(a);
    const bPipes: NodePipe[] = [];
    b.onPipe((p) => bPipes.push(p));
    // The direct attempt to b is held until b has the reverse request; b's dial back to a is
    // delayed 300 ms. So direct wins, and the reverse pipe comes after the race is decided.
    let release!: () => void;
    const requested = new Promise<void>((r) => (release = r));
    (b as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => {
      if (e.type === 'signal' && e.detail === 'reverse') release();
    };
    const toB = await proxyTo(b.listenPort, requested);
    const toA = await proxyTo(a.listenPort, new Promise((r) => setTimeout(r, 300)));
    try {
      // The address a sends in its reverse request (what b dials back).
      (a as unknown as { addrText: string }).addrText = addressAt(a, toA.port);
      const p = await a.connect(addressAt(b, toB.port), { strategies: ['reverse', 'direct'] });
      expect(p.path.strategy).toBe('direct');
      await until(() => bPipes.some((q) => q.path.strategy === 'reverse'), 3000, 'b to dial back');
      await until(() => bPipes.every((q) => q.path.strategy !== 'reverse' || q.closed), 3000, "b's losing reverse pipe to close");
      expect(aAnnounced).toEqual([]);
      expect(aAdded).toEqual([p]);
      expect([...a.pipes]).toEqual([p]);
      expect([...b.pipes].map((q) => q.path.strategy)).toEqual(['inbound']);
      await p.close();
      await until(() => a.pipes.size === 0 && b.pipes.size === 0, 3000, 'every pipe to close');
    } finally {
      await toA.close();
      await toB.close();
    }
  });
});

/** A TCP proxy to 127.0.0.1:`port` that connects onwards only once `gate` resolves. */
async function proxyTo(port: number, gate: Promise<unknown>): Promise<{ port: number; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const server = createServer((inbound) => {
    open.add(inbound);
    inbound.pause();
    inbound.on('error', () => undefined);
    inbound.on('close', () => open.delete(inbound));
    void gate.then(() => {
      if (inbound.destroyed) return;
      const out = connect(port, '127.0.0.1');
      open.add(out);
      out.on('error', () => inbound.destroy());
      out.on('close', () => (open.delete(out), inbound.end()));
      inbound.on('close', () => out.end());
      inbound.pipe(out);
      out.pipe(inbound);
      inbound.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('strategies do not adopt their pipes', () => {
  it('connectDirect and the reverse strategy hand their pipe to connect() without adopting it (a loser never counts)', async () => {
    const A = Identity.generate();
    const B = Identity.generate();
    const inbound: SecurePipe[] = [];
    const srv = await listenSecure('127.0.0.1:0', { identity: B, onPipe: (q) => void inbound.push(q) });
    const adopted: unknown[] = [];
    let conn: string | undefined;
    const ctx = {
      identity: A, opts: {}, nics: [], timeouts: { direct: 2000, reverse: 2000 }, addr: 'p2pd-us', dispatch: () => undefined, isSelf: () => false,
      adopt: (q: unknown) => (adopted.push(q), q),
      signalling: {
        request: (_peer: unknown, _type: string, body: Record<string, unknown>) => {
          conn = body.conn as string;
          return new Promise(() => undefined);
        },
      },
    } as unknown as NodeContext;
    const peerB = parseAddress(encodeAddress(B, {
      signalKey: deriveSignalKey(B).publicKey,
      interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: srv.local.port, family: 4 }] }],
      signal: [],
    }));
    try {
      const p = await connectDirect(ctx, peerB, AbortSignal.timeout(5000));
      expect(p.path.strategy).toBe('direct');
      await p.close();
      const waiters = new ReverseWaiters();
      const r = waiters.connect(ctx, peerB, AbortSignal.timeout(5000));
      await until(() => conn !== undefined, 2000, 'the reverse request');
      // B's dial back, as our listener would see it.
      const ours = await listenSecure('127.0.0.1:0', { identity: A, onPipe: (q) => void waiters.offer(conn, 'reverse', q) });
      const back = await connectSecure(ours.local, { identity: B, remoteId: A.idHex, extensions: encodeHello({ v: 1, s: 'reverse', c: conn as string }) });
      const q = await r;
      expect(q.path.strategy).toBe('reverse');
      expect(adopted).toEqual([]);
      await q.close();
      await back.close();
      await ours.close();
    } finally {
      await srv.close();
      for (const q of inbound) await q.close();
    }
  });
});

describe('a busy peer refuses at once', () => {
  it(`past MAX_SERVING_PER_PEER, a reverse connect fails at once with PeerRefusedError (reason 'busy'), not after the reverse timeout`, async () => {
    const b = await node({ timeouts: { direct: 5000, reverse: 5000 } });
    const m = await node();
    // A TCP server that accepts and never answers: b's dials back to it hang in the handshake.
    const silent = await silentTcpServer();
    try {
      const mAddr = addressAt(m, silent.port);
      const bEvents = events(b);
      for (let i = 0; i < MAX_SERVING_PER_PEER; i++) {
        await m.signalling?.send(b.address, 'reverse', { addr: mAddr, conn: i.toString(16).padStart(32, '0') }, { timeout: 2000 });
      }
      await until(() => bEvents.filter((e) => e.type === 'signal').length === MAX_SERVING_PER_PEER, 3000, 'b to take the requests');
      const t0 = performance.now();
      const err = await m.connect(b.addr, { strategies: ['reverse'], timeout: 10_000 }).catch((e: unknown) => e);
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(P2pConnectError);
      const cause = (err as P2pConnectError).attempts[0]?.error;
      expect(cause).toBeInstanceOf(PeerRefusedError);
      expect(cause).toMatchObject({ code: 'ERR_PEER_REFUSED', request: 'reverse', reason: 'busy' });
      expect(cause?.message).toMatch(/too many requests being served for this peer/);
      expect(ms).toBeLessThan(2000); // the reverse timeout is 4000 ms
      expect(bEvents.some((e) => e.type === 'warning' && /reverse request refused: too many requests/.test(e.detail ?? ''))).toBe(true);
    } finally {
      silent.close();
    }
  });

  it(`with all MAX_SERVING slots held by throw-away identities, a newcomer takes the biggest holder's oldest slot and is served`, async () => {
    const b = await node({ timeouts: { direct: 5000, reverse: 5000 } });
    const silent = await silentTcpServer();
    try {
      const bEvents = events(b);
      // MAX_SERVING / MAX_SERVING_PER_PEER identities fill every slot with reverse requests
      // whose dials hang in the handshake (until the 5 s reverse timeout).
      const holders = await Promise.all(Array.from({ length: MAX_SERVING / MAX_SERVING_PER_PEER }, () => node()));
      for (const [k, m] of holders.entries()) {
        const mAddr = addressAt(m, silent.port);
        for (let i = 0; i < MAX_SERVING_PER_PEER; i++) {
          await m.signalling?.send(b.address, 'reverse', { addr: mAddr, conn: (k * 16 + i).toString(16).padStart(32, '0') }, { timeout: 2000 });
        }
      }
      await until(() => bEvents.filter((e) => e.type === 'signal').length === MAX_SERVING, 3000, 'b to take the requests');
      // One more from a holder at its own cap is still refused...
      const first = holders[0] as P2pNode;
      await first.signalling?.send(b.address, 'reverse', { addr: addressAt(first, silent.port), conn: 'ff'.repeat(16) }, { timeout: 2000 });
      await until(() => bEvents.some((e) => e.type === 'warning' && /too many requests being served for this peer/.test(e.detail ?? '')), 3000, 'the refusal');
      // ...but a newcomer is served at once: a reverse connect needs b to dial back.
      const h = await node();
      const t0 = performance.now();
      const pipe = await h.connect(b.addr, { strategies: ['reverse'], timeout: 4000 });
      expect(performance.now() - t0).toBeLessThan(4000);
      expect(pipe.path.strategy).toBe('reverse');
      expect(bEvents.filter((e) => e.type === 'warning' && /reverse request given up/.test(e.detail ?? ''))).toHaveLength(1);
      await pipe.close();
    } finally {
      silent.close();
    }
  });

  it('a reverse connect that times out says so in whole milliseconds', async () => {
    const broker = await startBroker({ host: '127.0.0.1' });
    const a = await node({ signalling: { brokers: [broker.url] }, timeouts: { reverse: 400 } });
    // A peer that reads its inbox and never answers.
    const y = Identity.generate();
    const ySig = new Signalling({ identity: y, signalKey: deriveSignalKey(y), brokers: [broker.url] });
    await ySig.start();
    try {
      const yAddr = encodeAddress(y, {
        signalKey: deriveSignalKey(y).publicKey,
        interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: 9, family: 4 }] }],
        signal: [{ type: 'mqtt', url: broker.url }],
      });
      const err = await a.connect(yAddr, { strategies: ['reverse'], timeout: 5000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(P2pConnectError);
      const msg = (err as P2pConnectError).attempts[0]?.error.message ?? '';
      expect(msg).toMatch(/timed out after \d+ ms/);
      expect(msg).toBe('reverse connect timed out after 400 ms');
    } finally {
      await ySig.close();
      await a.close();
      await broker.close();
    }
  });
});

describe('a STUN server that reports a loopback address', () => {
  it('the node starts; the unusable external endpoints are left out of its address, with a warning', async () => {
    const stun = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
    try {
      // A default interface (its address is only written into our address: no traffic goes there).
      const nics = [
        new Interface({ name: 'lo', index: 1, mac: '00:00:00:00:00:00', up: true, loopback: true, addresses: [{ address: '127.0.0.1', family: 4, prefixLength: 8, netmask: '255.0.0.0', scope: 'loopback' }] as never[] }),
        new Interface({
          name: 'eth-test', index: 2, mac: '02:00:00:00:00:01', up: true, loopback: false, isDefault: { 4: true, 6: false },
          addresses: [{ address: '10.99.0.2', family: 4, prefixLength: 24, netmask: '255.255.255.0', scope: 'private' }] as never[],
        }),
      ];
      const warnings: string[] = [];
      const n = await node({
        nics, listen: 'all', signalling: false, stun: [formatEndpoint(stun.primary)], onEvent: (e) => {
          if (e.type === 'warning') warnings.push(e.detail ?? '');
        },
      });
      const eps = parseAddress(n.addr).interfaces.flatMap((i) => i.endpoints);
      expect(eps.some((e) => e.kind === 'lan' && e.host === '10.99.0.2')).toBe(true);
      expect(eps.some((e) => e.kind === 'external')).toBe(false);
      expect(warnings.some((w) => /external .*127\.0\.0\.1:\d+ left out of the address: loopback address 127\.0\.0\.1/.test(w))).toBe(true);
      // Warned once per endpoint, not at every address rebuild.
      const before = warnings.length;
      (n as unknown as { rebuildAddr(): void }).rebuildAddr();
      expect(warnings.length).toBe(before);
      await n.close();
    } finally {
      await stun.close();
    }
  });
});

describe('address building: unusable outside endpoints', () => {
  it('a gateway mapping to 0.0.0.0 or a multicast STUN answer is left out (reported), not an AddressError', () => {
    const id = Identity.generate();
    const nics = [
      new Interface({
        name: 'eth-test', index: 2, mac: '02:00:00:00:00:01', up: true, loopback: false, isDefault: { 4: true, 6: false },
        addresses: [{ address: '10.99.0.2', family: 4, prefixLength: 24, netmask: '255.255.255.0', scope: 'private' }] as never[],
      }),
    ];
    const dropped: string[] = [];
    const text = buildAddress({
      identity: id, signalKey: deriveSignalKey(id).publicKey, nics, families: new Set([4]), port: 4000, loopbackOnly: false, signal: [],
      externalUdp: { host: '239.1.2.3', port: 5000, family: 4 },
      mappings: [{ state: 'active', protocol: 'tcp', externalAddress: '0.0.0.0', externalPort: 4000 } as never],
      onDropped: (e, why) => dropped.push(`${e.kind} ${e.proto} ${e.host}: ${why}`),
    });
    expect(dropped).toEqual([
      'external tcp 239.1.2.3: multicast address 239.1.2.3',
      'external udp 239.1.2.3: multicast address 239.1.2.3',
      'mapped tcp 0.0.0.0: unspecified address 0.0.0.0',
    ]);
    const eps = parseAddress(text).interfaces.flatMap((i) => i.endpoints);
    expect(eps.map((e) => e.kind).sort()).toEqual(['lan', 'loopback']);
  });
});

/** A broker that accepts connections and subscriptions, and never acknowledges a publish. */
async function stallingBroker(): Promise<{ url: string; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        let len = 0;
        let mul = 1;
        let i = 1;
        for (; i < buf.length && i <= 4; i++) {
          const b = buf[i] as number;
          len += (b & 0x7f) * mul;
          mul *= 128;
          if (!(b & 0x80)) break;
        }
        if (i >= buf.length || buf.length < i + 1 + len) return;
        const type = (buf[0] as number) >> 4;
        const body = buf.subarray(i + 1, i + 1 + len);
        buf = buf.subarray(i + 1 + len);
        if (type === 1) s.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNECT → CONNACK
        else if (type === 8) s.write(Buffer.from([0x90, 0x03, body[0] as number, body[1] as number, 0x01])); // SUBSCRIBE → SUBACK
        else if (type === 12) s.write(Buffer.from([0xd0, 0x00])); // PINGREQ → PINGRESP
        // PUBLISH: never acknowledged.
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('signalling: many publishes in flight on one broker connection', () => {
  it('share one close listener (no MaxListenersExceededWarning), and all fail at once when the broker goes away', async () => {
    const broker = await stallingBroker();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    const a = Identity.generate();
    const sig = new Signalling({ identity: a, signalKey: deriveSignalKey(a), brokers: [broker.url], reconnectPeriod: 60_000 });
    try {
      await sig.start();
      expect(sig.connected).toEqual([broker.url]);
      const y = Identity.generate();
      const peer = parseAddress(encodeAddress(y, {
        signalKey: deriveSignalKey(y).publicKey,
        interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: 9, family: 4 }] }],
        signal: [{ type: 'mqtt', url: broker.url }],
      }));
      const client = (sig as unknown as { conns: Map<string, { client: { listenerCount(e: string): number } }> }).conns.get(broker.url)?.client;
      const baseline = client?.listenerCount('close') ?? -1;
      const N = 24;
      const sends = Array.from({ length: N }, (_, i) => sig.send(peer, 'hello', { i }, { timeout: 10_000 }).then(() => 'sent', (e: unknown) => e));
      await new Promise((r) => setTimeout(r, 200));
      expect(client?.listenerCount('close')).toBe(baseline);
      // The broker vanishes: every publish in flight fails now, typed.
      const t0 = performance.now();
      for (const s of broker.sockets) s.destroy();
      const results = await Promise.all(sends);
      expect(performance.now() - t0).toBeLessThan(2000);
      for (const r of results) {
        expect(r).toBeInstanceOf(SignalError);
        expect((r as SignalError).reason).toBe('not-connected');
      }
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await sig.close();
      await broker.close();
    }
  });
});

describe('bad addresses are typed errors', () => {
  it('node.connect() of undefined, null, a number or a stray object: AddressError, not TypeError', async () => {
    const a = await node({ signalling: false });
    for (const bad of [undefined, null, 42, {}, { id: 'x' }]) {
      const err = await a.connect(bad as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AddressError);
      expect(err).toBeInstanceOf(P2pdError);
    }
  });

  it('describeAddress and sameNode take the text form too; anything else is an AddressError', async () => {
    const a = await node({ signalling: false });
    expect(describeAddress(a.addr)).toBe(describeAddress(a.address));
    expect(describeAddress(a.addr)).toContain(`id        ${a.idHex}`);
    expect(sameNode(a.addr, a.address)).toBe(true);
    for (const bad of [undefined, null, 7, {}, 'p2pdnotanaddress']) {
      expect(() => describeAddress(bad as never)).toThrow(AddressError);
      expect(() => sameNode(bad as never, a.address)).toThrow(AddressError);
    }
  });
});
