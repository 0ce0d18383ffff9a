/**
 * Swarm API on loopback: echo, `more`, API misuse, handler chain, hooks, protocol identity,
 * plaintext mode, callbacks and iteration, close.
 */
import { describe, expect, it } from 'vitest';
import {
  CongestedError, InvalidArgumentError, NotBoundError, ProtocolMismatchError, RoutingError, StateError, type ProtocolMismatchError as PME,
} from '../src/errors.js';
import { SwarmPeer, type SwarmMessage } from '../src/swarm/index.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import type { SecurePipe } from '../src/crypto/secure-pipe.js';
import { boundPeer, delay, linkBetween, rejection, swarmOf, track, until } from './swarm-helpers.js';

describe('swarm: two peers', () => {
  it('echo: src identifies the sender (id and listening endpoint)', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    await a.send(b.endpoint, 'ECHO ME');
    const m = await b.recv({ timeout: 3000 });
    expect(m.data.toString()).toBe('ECHO ME');
    expect(m.src.idHex).toBe(a.idHex);
    expect(m.src.endpoint).toEqual(a.endpoint);
    expect(m.more).toBe(false);
    expect(m.broadcast).toBe(false);
    await b.send(m.src, Buffer.from(m.data).reverse());
    const r = await a.recv({ timeout: 3000 });
    expect(r.data.toString()).toBe('EM OHCE');
    expect(r.src.idHex).toBe(b.idHex);
  });

  it('targets: endpoint string, [host, port] tuple, { host, port }, id bytes, hex id, peer, info; reply()', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const ep = b.endpoint;
    const targets = [`${ep.host}:${ep.port}`, [ep.host, ep.port] as const, { host: ep.host, port: ep.port }, b.id, b.idHex, b, a.peers[0]!];
    for (const [i, t] of targets.entries()) await a.send(t, `t${i}`);
    const got: string[] = [];
    for (let i = 0; i < targets.length; i++) got.push((await b.recv({ timeout: 3000 })).data.toString());
    expect(got).toEqual(targets.map((_, i) => `t${i}`));
    await a.send(b, 'ping');
    const m = await b.recv({ timeout: 3000 });
    await m.reply('pong');
    expect((await a.recv({ timeout: 3000 })).data.toString()).toBe('pong');
  });

  it('more is true, true, false for three queued messages', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    for (const s of ['1', '2', '3']) await a.send(b, s);
    await until(() => b.queued === 3, 3000, 'three queued messages');
    const r = [await b.recv(), await b.recv(), await b.recv()];
    expect(r.map((m) => m.data.toString())).toEqual(['1', '2', '3']);
    expect(r.map((m) => m.more)).toEqual([true, true, false]);
  });

  it('sending to ourselves delivers locally once', async () => {
    const a = await boundPeer();
    await a.send(a, 'me');
    const m = await a.recv({ timeout: 1000 });
    expect(m.src.idHex).toBe(a.idHex);
    expect(m.data.toString()).toBe('me');
  });

  it('onMessage callbacks take messages instead of the queue; async iteration; recv timeout', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const seen: string[] = [];
    const off = b.onMessage((m) => void seen.push(m.data.toString()));
    await a.send(b, 'cb');
    await until(() => seen.length === 1);
    expect(b.queued).toBe(0);
    off();
    await a.send(b, 'x1');
    await a.send(b, 'x2');
    const it = b.messages();
    expect((await it.next()).value?.data.toString()).toBe('x1');
    expect((await it.next()).value?.data.toString()).toBe('x2');
    await it.return(undefined);
    expect((await rejection(b.recv({ timeout: 50 }))).code).toBe('ERR_TIMEOUT');
  });
});

describe('swarm: API misuse', () => {
  it('everything that needs the network fails before bind() with NotBoundError (ERR_STATE)', async () => {
    const p = track(new SwarmPeer());
    expect(() => p.endpoint).toThrow(NotBoundError);
    for (const op of [() => p.connect('127.0.0.1', 1), () => p.send('127.0.0.1:1', 'x'), () => p.broadcast('x'), () => p.recv()]) {
      const e = await rejection(op());
      expect(e).toBeInstanceOf(NotBoundError);
      expect(e.code).toBe('ERR_STATE');
    }
    expect(() => p.tryRecv()).toThrow(NotBoundError);
    // Local configuration is allowed before bind.
    expect(typeof p.registerHandler((_m, _c) => false)).toBe('function');
  });

  it('bind twice, bad targets, unknown targets, wildcard without externalHost, close twice', async () => {
    const [a] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    expect(await rejection(a.bind('127.0.0.1', 0))).toBeInstanceOf(StateError);
    for (const bad of [42, null, { foo: 1 }, new Uint8Array(5), ['h'], 'not-an-endpoint']) {
      expect(await rejection(a.send(bad as never, 'x'))).toBeInstanceOf(InvalidArgumentError);
    }
    expect(await rejection(a.send('127.0.0.1:9', 'x'))).toBeInstanceOf(RoutingError);
    expect(await rejection(a.send(Buffer.alloc(32, 7), 'x'))).toBeInstanceOf(RoutingError);
    expect(await rejection(a.send(a, 'x', { duplicates: -1 }))).toBeInstanceOf(InvalidArgumentError);
    const w = track(new SwarmPeer());
    expect(await rejection(w.bind('0.0.0.0', 0))).toBeInstanceOf(InvalidArgumentError);
    await w.bind('0.0.0.0', 0, { externalHost: '127.0.0.1', externalPort: 4242 });
    expect(w.endpoint).toEqual({ host: '127.0.0.1', port: 4242, family: 4 });
    const c1 = a.close();
    expect(a.close()).toBe(c1);
    await c1;
    expect(await rejection(a.send(a, 'x'))).toBeInstanceOf(StateError);
  });
});

describe('swarm: handler chain and hooks', () => {
  it('first truthy handler stops the chain and the message is not queued; others reach recv()', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const calls: string[] = [];
    b.registerHandler((msg, conn) => {
      calls.push(`h1:${msg.data}`);
      if (msg.data.toString() === 'test') {
        void conn!.send('handled');
        return true;
      }
      return false;
    });
    b.registerHandler(async (msg, _conn) => {
      calls.push(`h2:${msg.data}`);
      await delay(5);
      return msg.data.toString() === 'async';
    });
    await a.send(b, 'test');
    await a.send(b, 'async');
    await a.send(b, 'not test');
    const m = await b.recv({ timeout: 3000 });
    expect(m.data.toString()).toBe('not test');
    expect(b.queued).toBe(0);
    expect(calls).toEqual(['h1:test', 'h1:async', 'h2:async', 'h1:not test', 'h2:not test']);
    expect((await a.recv({ timeout: 3000 })).data.toString()).toBe('handled');
  });

  it('handlers of the wrong arity are rejected at registration; throwing handlers are skipped', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    expect(() => b.registerHandler((() => true) as never)).toThrow(InvalidArgumentError);
    expect(() => b.registerHandler(((m: SwarmMessage) => !!m) as never)).toThrow(InvalidArgumentError);
    expect(() => b.registerHandler(((m: SwarmMessage, c: unknown, x: unknown) => !!(m && c && x)) as never)).toThrow(InvalidArgumentError);
    expect(() => b.registerHandler('nope' as never)).toThrow(InvalidArgumentError);
    const errors: Error[] = [];
    b.on('error', (e) => errors.push(e));
    b.registerHandler((_m, _c) => {
      throw new Error('boom');
    });
    await a.send(b, 'still delivered');
    expect((await b.recv({ timeout: 3000 })).data.toString()).toBe('still delivered');
    expect(errors.map((e) => e.message)).toEqual(['boom']);
  });

  it('hooks: send (originated), recv (delivered), newPeer (new link)', async () => {
    const log: string[] = [];
    const a = await boundPeer({ hooks: { send: (i) => log.push(`a.send:${i.broadcast ? '*' : i.target?.idHex.slice(0, 4)}:${i.data}`) } });
    const b = await boundPeer({
      hooks: { recv: (m) => log.push(`b.recv:${m.data}`), newPeer: (p) => log.push(`b.newPeer:${p.idHex === a.idHex}`) },
    });
    await b.connect('127.0.0.1', a.endpoint.port);
    await a.send(b, 'd');
    await a.broadcast('B');
    await until(() => b.queued === 2);
    expect(log).toEqual(['b.newPeer:true', `a.send:${b.idHex.slice(0, 4)}:d`, 'a.send:*:B', 'b.recv:d', 'b.recv:B']);
  });
});

describe('swarm: protocol identity', () => {
  const cases: [string, object, object][] = [
    ['name', { name: 'test' }, { name: 'test2' }],
    ['version', { name: 'x', version: 1 }, { name: 'x', version: 2 }],
    ['encryption', { encrypted: true }, { encrypted: false }],
  ];
  for (const [what, pa, pb] of cases) {
    it(`a different ${what} is refused and reported on both ends`, async () => {
      const a = await boundPeer({ protocol: pa });
      const b = await boundPeer({ protocol: pb });
      const reportedA: PME[] = [];
      const reportedB: PME[] = [];
      a.on('protocolMismatch', (e: PME, _r: Endpoint | undefined) => reportedA.push(e));
      b.on('protocolMismatch', (e: PME) => reportedB.push(e));
      const e = await rejection(b.connect('127.0.0.1', a.endpoint.port, { timeout: 3000 }));
      expect(e).toBeInstanceOf(ProtocolMismatchError);
      expect(e.code).toBe('ERR_PROTOCOL_MISMATCH');
      expect((e as PME).local).toEqual(b.protocol);
      expect((e as PME).remote).toEqual(a.protocol);
      await until(() => reportedA.length === 1 && reportedB.length === 1, 2000, 'mismatch events');
      expect(reportedA[0]!.remote).toEqual(b.protocol);
      await delay(50);
      expect(a.peers).toEqual([]);
      expect(b.peers).toEqual([]);
      expect(a.stats.protocolMismatches).toBe(1);
    });
  }

  it('a non-swarm client is refused without disturbing the node', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const { connect } = await import('node:net');
    const s = connect(a.endpoint.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write('GET / HTTP/1.1\r\n\r\n');
    await until(() => a.stats.protocolMismatches === 1, 2000);
    s.destroy();
    await b.send(a, 'fine');
    expect((await a.recv({ timeout: 3000 })).data.toString()).toBe('fine');
  });

  it('plaintext mode works when both ends opt in (messages still signed)', async () => {
    const [a, b, c] = (await swarmOf(3, { protocol: { name: 'plain', encrypted: false } })) as [SwarmPeer, SwarmPeer, SwarmPeer];
    await c.send(b, 'hi');
    const m = await b.recv({ timeout: 3000 });
    expect(m.src.idHex).toBe(c.idHex);
    await a.broadcast('all');
    expect((await b.recv({ timeout: 3000 })).data.toString()).toBe('all');
    expect((await c.recv({ timeout: 3000 })).data.toString()).toBe('all');
  });
});

describe('swarm: lifecycle', () => {
  it('close() says goodbye: neighbours drop the member; recv() rejects after close once drained', async () => {
    const [a, b, c] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    await until(() => a.members.length === 2 && c.members.length === 2);
    await b.send(a, 'queued');
    await until(() => a.queued === 1);
    const left: string[] = [];
    a.on('member', (p, change) => left.push(`${p.idHex === b.idHex}:${change}`));
    await b.close();
    await until(() => a.members.length === 1 && c.members.length === 1, 3000, 'leave');
    expect(left).toContain('true:left');
    const pending = a.recv();
    await a.close();
    expect((await pending).data.toString()).toBe('queued');
    expect((await rejection(a.recv())).code).toBe('ERR_PIPE_CLOSED');
  });
});

describe('swarm send under backpressure', () => {
  it('a directed send whose first hop is congested rejects with CongestedError; every send that resolved is delivered', async () => {
    const [a, b] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    // b stops reading from its link to a: a's send buffer fills up.
    const inner = (linkBetween(b, a).io.raw as SecurePipe).inner.socket;
    inner.pause();
    const payload = Buffer.alloc(512 * 1024, 7);
    let sent = 0;
    let err: unknown;
    for (let i = 0; i < 400 && err === undefined; i++) {
      try {
        await a.send(b.id, payload);
        sent++;
      } catch (e) {
        err = e;
      }
    }
    expect(err).toBeInstanceOf(CongestedError);
    expect((err as CongestedError).code).toBe('ERR_CONGESTED');
    expect(a.stats.sendDropped).toBeGreaterThan(0);
    inner.resume();
    for (let i = 0; i < sent; i++) expect((await b.recv({ timeout: 10_000 })).data.length).toBe(payload.length);
    // Drained: sending works again.
    await a.send(b.id, 'ok');
    expect((await b.recv({ timeout: 5000 })).data.toString()).toBe('ok');
  });
});
