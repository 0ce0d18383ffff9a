/**
 * DHT API errors: a failed bootstrap says why each contact failed; failing writes nobody
 * awaits are not unhandled rejections (awaited, they reject with the typed error); bad
 * arguments are `InvalidArgumentError`, never a `TypeError`.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { AbortError, ConnectError, HandshakeError, InvalidArgumentError, PeerIdMismatchError, TimeoutError } from '../src/errors.js';
import {
  DhtNode, MemoryNetwork, randomId, startDhtNode, type StandaloneDhtNode, type StartDhtNodeOptions,
} from '../src/dht/index.js';
import { SwarmPeer } from '../src/swarm/index.js';
import { unhandledDuring } from './helpers/unhandled.js';

const BASE: StartDhtNodeOptions = { bind: '127.0.0.1:0', requestTimeout: 1_000, republishInterval: 0, refreshInterval: 0 };
const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((x) => x.close().catch(() => undefined)));
});

async function node(opts: StartDhtNodeOptions = {}): Promise<StandaloneDhtNode> {
  const n = await startDhtNode({ ...BASE, ...opts });
  opened.push(n);
  return n;
}

async function bootstrapError(bootstrap: string[], opts: StartDhtNodeOptions = {}): Promise<ConnectError> {
  const e = await startDhtNode({ ...BASE, ...opts, bootstrap }).then(
    (n) => {
      opened.push(n);
      throw new Error('the join should have failed');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ConnectError);
  return e as ConnectError;
}

describe('DHT bootstrap failure names the cause per contact', () => {
  it('a wrong node id in the contact: cause PeerIdMismatchError, named in the message', async () => {
    const a = await node();
    const wrong = Identity.generate().idHex;
    const e = await bootstrapError([`${wrong}@127.0.0.1:${a.contact.port}`]);
    expect(e.message).toMatch(/no DHT bootstrap node answered/);
    expect(e.message).toMatch(/PeerIdMismatchError/);
    expect(e.message).toContain(`127.0.0.1:${a.contact.port}`);
    expect(e.cause).toBeInstanceOf(PeerIdMismatchError);
  });

  it('a swarm port given as a DHT contact: the handshake error, not just "no node answered"', async () => {
    const sp = new SwarmPeer();
    opened.push(sp);
    await sp.bind('127.0.0.1', 0);
    const e = await bootstrapError([`${sp.idHex}@127.0.0.1:${sp.endpoint.port}`]);
    expect(e.cause).toBeInstanceOf(Error);
    expect(e.cause).not.toBeInstanceOf(ConnectError);
    expect(e.message).toMatch(new RegExp((e.cause as Error).name));
    expect(e.cause).toBeInstanceOf(HandshakeError);
  });

  it('a silent server: TimeoutError; several contacts: an AggregateError of each one\'s error', async () => {
    const accepted: Socket[] = [];
    const silent: Server = createServer((s) => accepted.push(s.on('error', () => undefined)));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    opened.push({
      close: () => {
        for (const s of accepted) s.destroy();
        return new Promise<void>((r) => silent.close(() => r()));
      },
    });
    const port = (silent.address() as { port: number }).port;
    const a = await node();
    const wrong = Identity.generate().idHex;
    const e = await bootstrapError(
      [`${Identity.generate().idHex}@127.0.0.1:${port}`, `${wrong}@127.0.0.1:${a.contact.port}`],
      { requestTimeout: 300, handshakeTimeout: 300 },
    );
    expect(e.cause).toBeInstanceOf(AggregateError);
    const errors = (e.cause as AggregateError).errors;
    expect(errors.length).toBe(2);
    expect(errors[0]).toBeInstanceOf(TimeoutError);
    expect(errors[1]).toBeInstanceOf(PeerIdMismatchError);
    expect(e.message).toMatch(/TimeoutError/);
    expect(e.message).toMatch(/PeerIdMismatchError/);
  });
});

describe('DHT: un-awaited failing writes are not unhandled rejections', () => {
  it('set / put / delete / update / republish / refresh on a closed node: none unhandled; awaited: AbortError', async () => {
    const n = await node();
    await n.close();
    expect(
      await unhandledDuring(() => {
        void n.set('k', 'v');
        void n.put('k', 'v');
        void n.delete('k');
        void n.update({ k: 'v' });
        void n.republish();
        void n.refresh();
      }),
    ).toEqual([]);
    await expect(n.set('k', 'v')).rejects.toBeInstanceOf(AbortError);
    await expect(n.delete('k')).rejects.toBeInstanceOf(AbortError);
    await expect(n.update({ k: 'v' })).rejects.toBeInstanceOf(AbortError);
  });

  it('a write refused by its arguments (read-only node, bad key): none unhandled; awaited: InvalidArgumentError', async () => {
    const net = new MemoryNetwork();
    const id = randomId();
    const transport = net.createTransport(id);
    const ro = new DhtNode({ transport, contact: transport.contact });
    opened.push(ro);
    expect(await unhandledDuring(() => void ro.set('k', 'v'))).toEqual([]);
    await expect(ro.set('k', 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
    const n = await node();
    expect(await unhandledDuring(() => void n.set(1 as never, 'v'))).toEqual([]);
    await expect(n.set(1 as never, 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('DHT: bad arguments are InvalidArgumentError, not TypeError', () => {
  it('update / set / get / join / lookup', async () => {
    const n = await node();
    for (const bad of ['x', null, undefined, 5, [1], [['k']]]) {
      await expect(n.update(bad as never), JSON.stringify(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(n.update({ k: undefined } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    // A bad pair stops the whole update before anything is written.
    await expect(n.update([['good', 1], ['bad', () => 1]] as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(n.localRecord('good')).toBeUndefined();
    await expect(n.set('k', 'v', 'x' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.set('k', 'v', { signal: 1 as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.set('k', 'v', { timeout: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.get('k', 'x' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.get('k', { quorum: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.get('k', { quorum: 'x' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.join('x' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.join(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.join([1] as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.lookup(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(n.lookup('x' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => new DhtNode(undefined as never)).toThrow(InvalidArgumentError);
    // Valid calls still work.
    await n.update([['a', 1], ['b', 'two']]);
    expect(await n.get('b')).toBe('two');
    expect(await n.get('missing', { default: null, quorum: Infinity })).toBeNull();
  });
});
