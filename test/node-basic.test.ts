/**
 * The P2P node on loopback: start, address, direct / reverse / punch / relay connections,
 * self-connect, message callbacks, typed errors for bad addresses, wrong keys, forged
 * requests, vanished brokers and refusing TURN servers, and close() releasing everything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SERVING_PER_PEER } from '../src/node/requests.js';
import { Identity } from '../src/crypto/identity.js';
import { InvalidArgumentError, StateError } from '../src/errors.js';
import { Interface } from '../src/interfaces/interfaces.js';
import { startStunServer, type StunServer } from '../src/nat/stun/server.js';
import { TurnAuthError } from '../src/nat/turn/errors.js';
import {
  AddressError, P2pConnectError, P2pNode, encodeAddress, parseAddress, startBroker, startP2pNode, type NodeEvent, type NodePipe, type P2pNodeOptions,
} from '../src/node/index.js';
import { addressAt, silentTcpServer, useLoopbackNodes } from './helpers/nodes.js';
import { CI, liveHandles, onPath, startCoturn, type Coturn } from './node-helpers.js';

const node = useLoopbackNodes();

function pong(n: P2pNode): void {
  n.addMsgCb(async (msg, pipe) => {
    if (msg.toString().startsWith('PING')) await pipe.send(`PONG${msg.toString().slice(4)}`);
  });
}

async function roundTrip(p: NodePipe, text = 'PING'): Promise<string> {
  await p.send(text);
  return (await p.recv({ timeout: 3000 })).data.toString();
}

describe('P2P node on loopback', () => {
  it('starts fast, has a valid address with a loopback endpoint and its embedded broker', async () => {
    const t0 = performance.now();
    const a = await node();
    expect(performance.now() - t0).toBeLessThan(1000);
    const addr = parseAddress(a.addr);
    expect(addr.idHex).toBe(a.idHex);
    expect(addr.interfaces.flatMap((i) => i.endpoints)).toContainEqual({ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: a.listenPort, family: 4 });
    expect(addr.signal).toEqual([{ type: 'mqtt-self', port: a.broker?.port }]);
  });

  it('direct: PING → PONG, both ends authenticated, path reported', async () => {
    const a = await node();
    const b = await node();
    pong(b);
    const seen: NodePipe[] = [];
    b.onPipe((p) => seen.push(p));
    const p = await a.connect(b.addr, { strategies: ['direct'] });
    expect(await roundTrip(p)).toBe('PONG');
    expect(p.path).toMatchObject({ strategy: 'direct', transport: 'tcp' });
    expect(p.path.ms).toBeLessThan(500);
    expect(p.remoteIdHex).toBe(b.idHex);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.remoteIdHex).toBe(a.idHex);
    expect(seen[0]?.path.strategy).toBe('inbound');
    // The other way on the same pipe: b sends first.
    await seen[0]?.send('hello from b');
    expect((await p.recv({ timeout: 2000 })).data.toString()).toBe('hello from b');
    await p.close();
  });

  it('reverse: the peer connects back through signalling', async () => {
    const a = await node();
    const b = await node();
    pong(b);
    const p = await a.connect(b.addr, { strategies: ['reverse'] });
    expect(p.path.strategy).toBe('reverse');
    expect(await roundTrip(p, 'PING 2')).toBe('PONG 2');
    expect(p.path.ms).toBeLessThan(1000);
    await p.close();
  });

  it('a peer that speaks first: recv() gets its greeting whichever strategy wins (reverse: it came with the last handshake message)', async () => {
    const a = await node();
    const b = await node();
    b.onPipe((p) => void p.send(`HELLO ${p.path.strategy}`));
    for (const strategy of ['direct', 'reverse'] as const) {
      const p = await a.connect(b.addr, { strategies: [strategy] });
      expect(p.path.strategy).toBe(strategy);
      expect((await p.recv({ timeout: 3000 })).data.toString()).toBe(`HELLO ${strategy === 'direct' ? 'inbound' : 'reverse'}`);
      await p.close();
    }
  });

  it('P2PD style, callbacks only (addMsgCb, never recv): thousands of messages from the peer arrive, no stall on the unread default queue', async () => {
    const a = await node();
    const b = await node();
    const N = 3000;
    const got: number[] = [];
    let all!: () => void;
    const done = new Promise<void>((r) => (all = r));
    a.addMsgCb((msg) => {
      got.push(msg.readUInt32BE(0));
      if (got.length === N) all();
    });
    const inbound = new Promise<NodePipe>((r) => b.onPipe(r));
    const p = await a.connect(b.addr, { strategies: ['direct'] });
    const q = await inbound;
    const m = Buffer.alloc(4096);
    for (let i = 0; i < N; i++) {
      m.writeUInt32BE(i, 0);
      await q.send(m);
    }
    await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error(`stalled after ${got.length} of ${N}`)), 20_000))]);
    expect(got).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(p.stats.dropped).toBeGreaterThan(0); // the default queue went, unread
    await p.close();
  });

  it('message callbacks: onMessage (alias of addMsgCb) and its remover, delMsgCb, and onError for a throwing callback', async () => {
    const a = await node();
    const b = await node();
    const viaOn: string[] = [];
    const viaAdd: string[] = [];
    const errors: Error[] = [];
    const offOn = b.onMessage((msg) => void viaOn.push(msg.toString()));
    const add = (msg: Buffer): void => void viaAdd.push(msg.toString());
    b.addMsgCb(add);
    b.addMsgCb((msg) => {
      if (msg.toString() === 'boom') throw new Error('handler failed');
    });
    b.onError((e) => errors.push(e));
    const p = await a.connect(b.addr, { strategies: ['direct'], queue: false });
    await p.send('one');
    await new Promise((r) => setTimeout(r, 100));
    offOn();
    b.delMsgCb(add);
    await p.send('two');
    await p.send('boom');
    const t0 = Date.now();
    while (errors.length === 0 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(viaOn).toEqual(['one']);
    expect(viaAdd).toEqual(['one']);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toBe('handler failed');
    await p.close();
  });

  it('self-connect: node.connect(node.addr)', async () => {
    const a = await node();
    pong(a);
    const p = await a.connect(a.addr);
    expect(p.remoteIdHex).toBe(a.idHex);
    expect(await roundTrip(p)).toBe('PONG');
    await p.close();
  });

  it('default strategies pick direct on loopback; many messages keep their order both ways', async () => {
    const a = await node();
    const b = await node();
    b.addMsgCb((msg, pipe) => void pipe.send(msg).catch(() => undefined));
    const p = await a.connect(b.addr);
    expect(p.path.strategy).toBe('direct');
    for (let i = 0; i < 200; i++) void p.send(`m${i}`);
    for (let i = 0; i < 200; i++) expect((await p.recv({ timeout: 2000 })).data.toString()).toBe(`m${i}`);
    await p.close();
  });

  it('starts offline (no signalling, no STUN): loopback and self-connect still work; signalling strategies are skipped', async () => {
    const a = await node({ signalling: false });
    const b = await node({ signalling: false });
    pong(a);
    expect(parseAddress(a.addr).signal).toEqual([]);
    expect(await roundTrip(await a.connect(a.addr))).toBe('PONG');
    const err = await a.connect(b.addr, { strategies: ['reverse', 'relay'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect((err as P2pConnectError).attempts.map((x) => x.strategy)).toEqual(['reverse', 'relay']);
  });
});

describe('P2P node: address building', () => {
  it('a host with more interfaces and addresses than an address holds still starts; the address keeps loopback first', async () => {
    const addresses = (k: number) => Array.from({ length: 12 }, (_, j) => ({
      address: `10.${k}.${j}.1`, family: 4 as const, prefixLength: 24, netmask: '255.255.255.0', scope: 'private' as const,
    })).concat(Array.from({ length: 8 }, (_, j) => ({
      address: `2001:db8:${k}:${j}::1`, family: 6 as const, prefixLength: 64, netmask: 'ffff:ffff:ffff:ffff::', scope: 'global' as const,
    })) as never[]);
    const nics = Array.from({ length: 12 }, (_, k) => new Interface({ name: `br${k}`, index: k + 2, mac: '02:00:00:00:00:01', up: true, loopback: false, addresses: addresses(k) }));
    const a = await node({ nics, listen: 'all', signalling: false });
    const parsed = parseAddress(a.addr);
    expect(parsed.interfaces[0]?.endpoints[0]?.kind).toBe('loopback');
    expect(parsed.interfaces.length).toBeGreaterThan(1);
    expect(a.addr.length).toBeLessThan(2048);
  });
});

describe('P2P node: bad input and hostile peers', () => {
  it('a bad address is an AddressError; a bad strategy an InvalidArgumentError; before start a StateError', async () => {
    const a = await node();
    await expect(a.connect('p2pdnotanaddress')).rejects.toBeInstanceOf(AddressError);
    await expect(a.connect(a.addr.slice(0, -3))).rejects.toBeInstanceOf(AddressError);
    await expect(a.connect(a.addr, { strategies: ['teleport' as 'direct'] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(new P2pNode().connect(a.addr)).rejects.toBeInstanceOf(StateError);
    expect(() => new P2pNode({ stun: ['not an ip'] })).toThrow(InvalidArgumentError);
    expect(() => new P2pNode({ turn: [{ server: '1.2.3.4', username: 'u' } as never] })).toThrow(InvalidArgumentError);
    expect(() => new P2pNode({ signalling: { brokers: ['http://x'] } })).toThrow(InvalidArgumentError);
    expect(() => new P2pNode({ port: 70000 })).toThrow(InvalidArgumentError);
  });

  it('a peer that cannot prove the key in the address is refused (wrong key at those endpoints)', async () => {
    const b = await node();
    const got: string[] = [];
    b.addMsgCb((m) => void got.push(m.toString()));
    // An address signed by X, pointing at b's endpoints: whoever answers there is not X.
    const x = Identity.generate();
    const fake = encodeAddress(x, { signalKey: Buffer.alloc(32, 9), interfaces: [...b.address.interfaces], signal: [] });
    const a = await node();
    const t0 = performance.now();
    const err = await a.connect(fake, { strategies: ['direct'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect(String((err as Error).message)).toMatch(/peer id mismatch|mismatch/i);
    expect(performance.now() - t0).toBeLessThan(2500);
    expect(got).toEqual([]);
  });

  it('a connection to a closed node fails fast with a typed error; a silent address times out on time', async () => {
    const a = await node({ signalling: false });
    const gone = await node({ signalling: false });
    const addr = gone.addr;
    await gone.close();
    const err = await a.connect(addr, { strategies: ['direct'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    // A LAN endpoint that never answers (TEST-NET-1 is not routed here): bounded by our timeout.
    const silent = encodeAddress(Identity.generate(), {
      signalKey: Buffer.alloc(32, 1),
      interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'global', proto: 'tcp', host: '192.0.2.123', port: 9, family: 4 }] }],
      signal: [],
    });
    const t0 = performance.now();
    const e2 = await a.connect(silent, { timeout: 700 }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(Error);
    expect(['TimeoutError', 'P2pConnectError']).toContain((e2 as Error).name);
    expect(performance.now() - t0).toBeLessThan(1500);
  });

  it('a reverse request carrying someone else’s address is ignored', async () => {
    const a = await node();
    const b = await node();
    const m = await node();
    const inboundA: NodePipe[] = [];
    a.onPipe((p) => inboundA.push(p));
    const bEvents: NodeEvent[] = [];
    (b as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => bEvents.push(e);
    // m asks b to connect to a (claiming a's address as its own).
    await m.signalling?.send(b.address, 'reverse', { addr: a.addr, conn: 'ab'.repeat(16) }, { timeout: 2000 });
    await new Promise((r) => setTimeout(r, 300));
    expect(bEvents.filter((e) => e.type === 'signal')).toHaveLength(1);
    expect(inboundA).toEqual([]);
  });

  it('one peer cannot take every request slot: past MAX_SERVING_PER_PEER its requests are dropped, with a warning', async () => {
    const b = await node();
    const m = await node();
    const bEvents: NodeEvent[] = [];
    (b as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => bEvents.push(e);
    // A TCP server that accepts and never answers: b's reverse dials hang in the handshake.
    const silent = await silentTcpServer();
    try {
      const mAddr = addressAt(m, silent.port);
      const extra = 3;
      for (let i = 0; i < MAX_SERVING_PER_PEER + extra; i++) {
        await m.signalling?.send(b.address, 'reverse', { addr: mAddr, conn: i.toString(16).padStart(32, '0') }, { timeout: 2000 });
      }
      const dropped = (): number => bEvents.filter((e) => e.type === 'warning' && /too many requests/.test(e.detail ?? '')).length;
      const t0 = Date.now();
      while (dropped() < extra && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
      expect(dropped()).toBe(extra);
      expect(bEvents.filter((e) => e.type === 'signal')).toHaveLength(MAX_SERVING_PER_PEER + extra);
    } finally {
      silent.close();
    }
  });

  it('a broker that disappears mid-connect gives a typed error before the timeout', async () => {
    const broker = await startBroker({ host: '127.0.0.1' });
    const cfg = { signalling: { brokers: [broker.url] } };
    const a = await node(cfg);
    const b = await node(cfg);
    await broker.close();
    const t0 = performance.now();
    const err = await a.connect(b.addr, { strategies: ['reverse'], timeout: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('close() releases sockets, servers and timers; a closed node refuses to connect', async () => {
    const before = liveHandles();
    const a = await startP2pNode({ listen: 'loopback', portMapping: false });
    const b = await startP2pNode({ listen: 'loopback', portMapping: false });
    pong(b);
    const p = await a.connect(b.addr, { strategies: ['reverse'] });
    expect(await roundTrip(p)).toBe('PONG');
    await Promise.all([a.close(), b.close()]);
    await new Promise((r) => setTimeout(r, 50));
    const after = liveHandles();
    for (const k of ['TCPSocketWrap', 'TCPServerWrap', 'UDPWrap'] as const) expect(after[k] ?? 0).toBeLessThanOrEqual(before[k] ?? 0);
    await expect(a.connect(b.addr)).rejects.toBeInstanceOf(StateError);
    expect(p.closed).toBe(true);
  });
});

// ---- hole punching and TURN relay on loopback: a local STUN server and coturn ----
const HAVE_TURN = onPath('turnserver');
describe.runIf(HAVE_TURN || CI)('P2P node: punch and relay on loopback', () => {
  let stun: StunServer;
  let coturn: Coturn;
  let stunAddr = '';
  beforeAll(async () => {
    if (!HAVE_TURN) throw new Error('turnserver (coturn) is not installed; run test/lab/install-deps.sh');
    stun = await startStunServer({ addresses: ['127.0.0.1'], ports: [0] });
    stunAddr = `127.0.0.1:${stun.endpoints[0]?.local.port}`;
    coturn = await startCoturn();
  });
  afterAll(async () => {
    await stun?.close();
    await coturn?.stop();
  });

  const withInfra = (): P2pNodeOptions => ({ stun: [stunAddr], natDetection: false, turn: [{ server: coturn.server, username: coturn.username, password: coturn.password }] });

  it('punch: UDP path, reliable stream, encrypted; large messages', async () => {
    const a = await node(withInfra());
    const b = await node(withInfra());
    b.addMsgCb((msg, pipe) => void pipe.send(msg).catch(() => undefined));
    const p = await a.connect(b.addr, { strategies: ['punch'] });
    expect(p.path).toMatchObject({ strategy: 'punch', transport: 'udp' });
    const big = Buffer.alloc(200_000, 3);
    await p.send(big);
    expect((await p.recv({ timeout: 5000 })).data.equals(big)).toBe(true);
    const t0 = performance.now();
    await p.close();
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('relay: through TURN, both ways', async () => {
    const a = await node(withInfra());
    const b = await node(withInfra());
    pong(b);
    const p = await a.connect(b.addr, { strategies: ['relay'] });
    expect(p.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(p.path.server).toBeDefined();
    expect(await roundTrip(p)).toBe('PONG');
    await p.close();
  });

  it('a TURN server that refuses (wrong password) gives a typed error, not a hang', async () => {
    const a = await node({ ...withInfra(), turn: [{ server: coturn.server, username: 'p2pd', password: 'wrong' }] });
    const b = await node(withInfra());
    const t0 = performance.now();
    const err = await a.connect(b.addr, { strategies: ['relay'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect((err as Error).message).toMatch(/TURN|401|auth/i);
    expect(performance.now() - t0).toBeLessThan(5000);
    // The TURN server's own typed refusal is kept as the strategy error's cause.
    const relay = (err as P2pConnectError).attempts.find((x) => x.strategy === 'relay');
    expect(relay?.error.cause).toBeInstanceOf(TurnAuthError);
  });

  it('a relay request the peer cannot serve after allocating (nothing it may permit) is refused at once, not left to time out', async () => {
    const a = await node({ stun: [stunAddr], natDetection: false });
    const b = await node(withInfra());
    const t0 = performance.now();
    const reply = await a.signalling!.request(parseAddress(b.addr), 'relay', {
      addr: a.addr,
      conn: 'c'.repeat(32),
      nonce: 'ab'.repeat(32),
      cands: ['[2001:db8::1]:5000'], // IPv6 only: b's IPv4 relay can permit none of them
    }, { timeout: 8000 });
    expect(reply.type).toBe('relay-err');
    expect(String(reply.body.error)).toMatch(/permit/);
    expect(performance.now() - t0).toBeLessThan(4000);
  });

  it('relay with a TURN server on one side only (ours): the peer sends from a plain UDP socket', async () => {
    const a = await node(withInfra());
    const b = await node({ stun: [stunAddr], natDetection: false });
    pong(b);
    const p = await a.connect(b.addr, { strategies: ['relay'], timeout: 8000 });
    expect(p.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(p.path.server).toBeDefined();
    expect(await roundTrip(p)).toBe('PONG');
    await p.close();
  });

  it('relay with a TURN server on one side only (the peer\'s): we send from a plain UDP socket', async () => {
    const a = await node({ stun: [stunAddr], natDetection: false });
    const b = await node(withInfra());
    pong(b);
    const p = await a.connect(b.addr, { strategies: ['relay'], timeout: 8000 });
    expect(p.path).toMatchObject({ strategy: 'relay', transport: 'turn' });
    expect(await roundTrip(p)).toBe('PONG');
    const big = Buffer.alloc(100_000, 7);
    b.addMsgCb((msg, pipe) => void (msg.length === big.length ? pipe.send(msg).catch(() => undefined) : undefined));
    await p.send(big);
    const echoed = await p.recv({ timeout: 5000 });
    expect(echoed.data.equals(big)).toBe(true);
    await p.close();
  });

  it('no TURN server on either side: typed refusal', async () => {
    const a = await node({ stun: [stunAddr], natDetection: false });
    const b = await node({ stun: [stunAddr], natDetection: false });
    const t0 = performance.now();
    const err = await a.connect(b.addr, { strategies: ['relay'], timeout: 4000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pConnectError);
    expect((err as Error).message).toMatch(/refused the relay.*no TURN server on either side/);
    expect(performance.now() - t0).toBeLessThan(4000);
  });

  it('when direct is impossible the next strategies take over (fallback order)', async () => {
    const broker = await startBroker({ host: '127.0.0.1' });
    try {
      const cfg = { ...withInfra(), signalling: { brokers: [broker.url] } };
      const a = await node(cfg);
      const b = await node(cfg);
      pong(b);
      // b's address without its endpoints: direct has nothing to try; reverse needs only a's
      // endpoints, so reverse wins.
      const noDirect = encodeAddress(b.identity, { signalKey: b.address.signalKey, interfaces: [], signal: [...b.address.signal] });
      const events: NodeEvent[] = [];
      (a as unknown as { opts: P2pNodeOptions }).opts.onEvent = (e) => events.push(e);
      const p = await a.connect(noDirect);
      expect(p.path.strategy).toBe('reverse');
      expect(await roundTrip(p)).toBe('PONG');
      await p.close();
      // b's address without endpoints and a that cannot be reached back: punch or relay.
      const a2 = await node({ ...cfg, listen: 'loopback' });
      const p2 = await a2.connect(noDirect, { strategies: ['punch', 'relay'] });
      expect(['punch', 'relay']).toContain(p2.path.strategy);
      expect(await roundTrip(p2)).toBe('PONG');
      const t0 = performance.now();
      await p2.close();
      expect(performance.now() - t0).toBeLessThan(3000);
    } finally {
      await broker.close();
    }
  });
});

