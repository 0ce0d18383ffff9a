/**
 * Failing swarm / synced-dict calls nobody awaits must not be unhandled rejections (as with
 * `Pipe.send`), while awaited ones still reject with the typed error; bad arguments are
 * `InvalidArgumentError`, never a `TypeError`; the testnet supports `await using`.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, LeaseError, NotFoundError, RoutingError, StateError } from '../src/errors.js';
import { SwarmPeer } from '../src/swarm/index.js';
import { SyncDict } from '../src/sync/index.js';
import { createTestnet } from '../src/testnet/index.js';
import { unhandledDuring } from './helpers/unhandled.js';
import { boundPeer, swarmOf, until } from './swarm-helpers.js';

describe('swarm: un-awaited sends are not unhandled rejections', () => {
  it('send to a member that left (the swarm-echo pattern): no unhandled rejection; awaited: RoutingError', async () => {
    const [b, c] = await swarmOf(2);
    const cId = c!.id;
    await c!.close();
    await until(() => !b!.members.some((m) => m.id.equals(cId)), 5000, 'b forgot c');
    expect(await unhandledDuring(() => void b!.send(cId, 'echo'))).toEqual([]);
    await expect(b!.send(cId, 'echo')).rejects.toBeInstanceOf(RoutingError);
  });

  it('send / broadcast on a closed peer: no unhandled rejection; awaited: StateError', async () => {
    const p = await boundPeer();
    await p.close();
    expect(await unhandledDuring(() => {
      void p.send(p.id, 'x');
      void p.broadcast('x');
    })).toEqual([]);
    await expect(p.send(p.id, 'x')).rejects.toBeInstanceOf(StateError);
    await expect(p.broadcast('x')).rejects.toBeInstanceOf(StateError);
  });

  it('swarm-echo example handler: the echo to a sender that already left neither crashes nor warns', async () => {
    const [a] = await swarmOf(1);
    const b = await boundPeer();
    await b.connect(a!.endpoint, undefined, { timeout: 5000 });
    const c = await boundPeer();
    await c.connect(a!.endpoint, undefined, { timeout: 5000 });
    let echoed: Promise<void> | undefined;
    b.registerHandler((msg, _conn) => {
      if (msg.broadcast) return false;
      // Reply a little later, once the sender left (as in /examples/swarm-echo.ts, un-awaited).
      setTimeout(() => {
        echoed = b.send(msg.src, Buffer.from(msg.data).reverse());
      }, 200);
      return true;
    });
    const seen = await unhandledDuring(async () => {
      await c.send(b.endpoint, 'ECHO ME');
      await c.close();
      await until(() => echoed !== undefined, 2000, 'the echo was tried');
    });
    expect(seen).toEqual([]);
    await expect(echoed).rejects.toBeInstanceOf(RoutingError);
  });
});

describe('synced dict: un-awaited writes are not unhandled rejections', () => {
  it('set / update / delete that fail: no unhandled rejection; awaited: LeaseError / NotFoundError / StateError', async () => {
    const [a, b] = await swarmOf(2);
    const da = new SyncDict(a!, { syncInterval: 0 });
    const db = new SyncDict(b!, { syncInterval: 0 });
    await da.set('k', 'a owns it');
    await until(() => db.has('k'), 5000, 'b sees k');
    expect(await unhandledDuring(() => {
      void db.set('k', 'b wants it');
      void db.update({ k: 'b wants it' });
      void db.delete('k');
      void db.delete('missing');
    })).toEqual([]);
    await expect(db.set('k', 'b wants it')).rejects.toBeInstanceOf(LeaseError);
    await expect(db.delete('missing')).rejects.toBeInstanceOf(NotFoundError);
    db.close();
    expect(await unhandledDuring(() => void db.set('x', 'y'))).toEqual([]);
    await expect(db.set('x', 'y')).rejects.toBeInstanceOf(StateError);
    da.close();
  });
});

describe('bad arguments are InvalidArgumentError, not TypeError', () => {
  it('SwarmPeer', async () => {
    expect(() => new SwarmPeer(null as never)).toThrow(InvalidArgumentError);
    await expect(new SwarmPeer().bind('127.0.0.1', 0, null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    const p = await boundPeer();
    await expect(p.send(p.id, 'x', null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.send(p.id, 'x', { signal: 1 as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.send(p.id, 'x', { timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.broadcast('x', null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.broadcast('x', { exclude: 'y' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.connect('127.0.0.1', 1, null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('SyncDict', async () => {
    expect(() => new SyncDict(null as never)).toThrow(InvalidArgumentError);
    const p = await boundPeer();
    expect(() => new SyncDict(p, { name: 1 as never })).toThrow(InvalidArgumentError);
    expect(() => new SyncDict(p, { now: 1 as never })).toThrow(InvalidArgumentError);
    const d = new SyncDict(p, { syncInterval: 0 });
    for (const bad of [null, undefined, 5, 'x', [1], [['k']]]) {
      await expect(d.update(bad as never), JSON.stringify(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(d.set('k', 'v', null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(d.delete('k', 'x' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(d.size).toBe(0);
    d.close();
  });

  it('createTestnet', async () => {
    await expect(createTestnet(1, null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('Testnet', () => {
  it('supports await using (Symbol.asyncDispose closes every node)', async () => {
    let nodes: SwarmPeer[] = [];
    {
      await using net = await createTestnet(3, { seed: 'dispose' });
      nodes = net.nodes;
      expect(nodes.every((n) => !n.closed)).toBe(true);
    }
    expect(nodes.length).toBe(3);
    expect(nodes.every((n) => n.closed)).toBe(true);
  });
});
