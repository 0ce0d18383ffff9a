/**
 * The DHT over real TCP pipes on loopback: `PipeDhtTransport` (secure and plain) and
 * `startDhtNode`. Networks of 2, 5 and 50 nodes set and get from every node, also after a
 * third of the nodes left; forged ids, malformed frames, the connection pool and close().
 */
import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { AbortError, ConnectError, PeerIdMismatchError, PipeClosedError, TimeoutError } from '../src/errors.js';
import {
  ContactParseError, PipeDhtTransport, decodeMessage, encodeMessage, formatContactString, idToHex, parseContact, randomId, startDhtNode,
  type Contact, type DhtId, type StandaloneDhtNode, type StartDhtNodeOptions,
} from '../src/dht/index.js';
import { guardUnhandled, lengthFrame, waitFor } from './helpers/pipes.js';

guardUnhandled();

const LOOPBACK = '127.0.0.1';
const BASE: StartDhtNodeOptions = { bind: `${LOOPBACK}:0`, requestTimeout: 2_000, republishInterval: 0, refreshInterval: 0 };

/** Everything a test opened, closed after it (idempotent closes). */
const opened: Array<{ close(): Promise<void> }> = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(opened.splice(0).map((x) => x.close()));
});

function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}

async function node(opts: StartDhtNodeOptions = {}): Promise<StandaloneDhtNode> {
  const n = await startDhtNode({ ...BASE, ...opts });
  opened.push(n);
  return n;
}

/** `n` nodes, each joining through a random earlier one. */
async function network(n: number, opts: StartDhtNodeOptions = {}): Promise<StandaloneDhtNode[]> {
  const nodes: StandaloneDhtNode[] = [];
  for (let i = 0; i < n; i++) {
    const boot = nodes.length > 0 ? [(nodes[Math.floor(Math.random() * nodes.length)] as StandaloneDhtNode).contactString] : [];
    nodes.push(await node({ ...opts, bootstrap: boot }));
  }
  return nodes;
}

/** Every node of `writers` sets one key; returns key → expected value. */
async function setFromEach(writers: readonly StandaloneDhtNode[], tag: string): Promise<Map<string, unknown>> {
  const expected = new Map<string, unknown>();
  await Promise.all(
    writers.map(async (w, i) => {
      const key = `${tag}-${i}`;
      const value = { writer: idToHex(w.id), i };
      await w.set(key, value);
      expected.set(key, value);
    }),
  );
  return expected;
}

/** Every reader gets every key (bounded concurrency); returns the misses as `reader:key`. */
async function getFromEach(readers: readonly StandaloneDhtNode[], expected: ReadonlyMap<string, unknown>): Promise<string[]> {
  const misses: string[] = [];
  await Promise.all(
    readers.map(async (r, ri) => {
      for (const [key, value] of expected) {
        const got = await r.get(key, { default: undefined }).catch((e: unknown) => e);
        try {
          expect(got).toEqual(value);
        } catch {
          misses.push(`${ri}:${key}`);
        }
      }
    }),
  );
  return misses;
}

async function rawSocket(port: number): Promise<Socket> {
  const s = connect({ host: LOOPBACK, port });
  sockets.push(s);
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

function socketClosed(s: Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed && s.closed ? resolve() : s.once('close', () => resolve())));
}

describe('contact strings', () => {
  const id = 'ab'.repeat(32);

  it('round-trip IPv4 and IPv6 contacts', () => {
    const c4 = parseContact(`${id}@127.0.0.1:4000`);
    expect(idToHex(c4.id)).toBe(id);
    expect(c4).toMatchObject({ host: '127.0.0.1', port: 4000, family: 4 });
    expect(formatContactString(c4)).toBe(`${id}@127.0.0.1:4000`);
    const c6 = parseContact(`${id.toUpperCase()}@[::1]:65535`);
    expect(c6).toMatchObject({ host: '::1', port: 65535, family: 6 });
    expect(formatContactString(c6)).toBe(`${id}@[::1]:65535`);
  });

  it.each([
    ['empty', ''],
    ['no @', `${id}127.0.0.1:4000`],
    ['short id', `${id.slice(2)}@127.0.0.1:4000`],
    ['non-hex id', `${'zz'.repeat(32)}@127.0.0.1:4000`],
    ['no port', `${id}@127.0.0.1`],
    ['hostname', `${id}@example.com:80`],
    ['port 0', `${id}@127.0.0.1:0`],
    ['port too big', `${id}@127.0.0.1:70000`],
    ['unbracketed v6', `${id}@::1:4000`],
    ['zone', `${id}@[fe80::1%eth0]:4000`],
    ['two @', `${id}@${id}@127.0.0.1:4000`],
    ['huge', `${id}@${'1'.repeat(500)}`],
  ])('rejects %s with ContactParseError', (_what, s) => {
    let err: unknown;
    try {
      parseContact(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ContactParseError);
    expect((err as ContactParseError).code).toBe('ERR_BAD_CONTACT');
  });

  it('rejects non-strings', () => {
    expect(() => parseContact(42 as unknown as string)).toThrow(ContactParseError);
    expect(() => parseContact(undefined as unknown as string)).toThrow(ContactParseError);
  });

  it('startDhtNode refuses a malformed bootstrap contact before opening anything', async () => {
    const before = tcpHandles();
    await expect(startDhtNode({ ...BASE, bootstrap: ['not-a-contact'] })).rejects.toBeInstanceOf(ContactParseError);
    expect(tcpHandles()).toBe(before);
  });
});

describe('DHT over secure pipes', () => {
  it('2 nodes: set/get from both', async () => {
    const [a, b] = (await network(2)) as [StandaloneDhtNode, StandaloneDhtNode];
    expect(a.transport.secure).toBe(true);
    const expected = await setFromEach([a, b], 'two');
    expect(await getFromEach([a, b], expected)).toEqual([]);
    expect(a.table.size).toBe(1);
    expect(b.table.size).toBe(1);
    // One authenticated connection serves both directions.
    expect(a.transport.connections.outbound + a.transport.connections.inbound).toBe(1);
  });

  it('5 nodes: set/get from every node', async () => {
    const nodes = await network(5);
    const expected = await setFromEach(nodes, 'five');
    expect(await getFromEach(nodes, expected)).toEqual([]);
    for (const n of nodes) expect(n.table.size).toBe(4);
  });

  it('50 nodes: set/get from every node, then again after a third left and the rest republished', async () => {
    const before = tcpHandles();
    const nodes = await network(50);
    const expected = await setFromEach(nodes, 'fifty');
    expect(await getFromEach(nodes, expected)).toEqual([]);

    // A third of the nodes leave (their ports close; their own records stay only as replicas).
    const shuffled = [...nodes].sort(() => Math.random() - 0.5);
    const gone = shuffled.slice(0, Math.floor(nodes.length / 3));
    const alive = shuffled.slice(gone.length);
    await Promise.all(gone.map((n) => n.close()));
    const republished = await Promise.all(alive.map((n) => n.republish({ force: true })));
    expect(republished.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(await getFromEach(alive, expected)).toEqual([]);

    await Promise.all(alive.map((n) => n.close()));
    for (const n of nodes) {
      expect(n.transport.server.closed).toBe(true);
      expect(n.transport.server.server.listening).toBe(false);
      expect(n.transport.connections).toEqual({ outbound: 0, inbound: 0, handshaking: 0 });
    }
    await waitFor(() => tcpHandles() <= before, 'every socket closed');
  }, 60_000);

  it('refuses a node listening at an address under another id', async () => {
    const [a, victim] = (await network(2)) as [StandaloneDhtNode, StandaloneDhtNode];
    const impostor = await node();
    // A contact with the victim's id at the impostor's address: the pinned handshake fails.
    const forged: Contact = { id: victim.id, host: impostor.contact.host, port: impostor.contact.port, family: 4 };
    await expect(a.transport.request(forged, { type: 'PING', sender: a.contact }, { timeout: 2_000 })).rejects.toBeInstanceOf(PeerIdMismatchError);
    expect(a.transport.stats.handshakeFailures).toBe(1);
    expect(await a.ping(forged)).toBe(false);
    expect(a.table.get(victim.id)?.contact.port).toBe(victim.contact.port);
    // The victim at its own address still answers.
    expect(await a.ping(victim.contact)).toBe(true);
  });

  it('drops requests whose sender claims another id than the authenticated one', async () => {
    const [a, victim] = (await network(2)) as [StandaloneDhtNode, StandaloneDhtNode];
    const impostorId = Identity.generate();
    const impostor = await PipeDhtTransport.listen({ identity: impostorId, bind: `${LOOPBACK}:0` });
    opened.push(impostor);
    const lie: Contact = { id: victim.id, host: impostor.contact.host, port: impostor.contact.port, family: 4 };
    await expect(
      impostor.request(a.contact, { type: 'FIND_NODE', target: randomId(), sender: lie }, { timeout: 500 }),
    ).rejects.toBeInstanceOf(TimeoutError);
    expect(a.table.get(victim.id)?.contact.port).toBe(victim.contact.port);
    // Telling the truth over the same link works, and the sender is added at once.
    const res = await impostor.request(a.contact, { type: 'FIND_NODE', target: randomId(), sender: impostor.contact }, { timeout: 2_000 });
    expect(res.type).toBe('NODES');
    expect(a.table.get(impostor.contact.id)).toBeDefined();
  });

  it('a plain node cannot join a secure network', async () => {
    const a = await node();
    const before = tcpHandles();
    await expect(startDhtNode({ ...BASE, secure: false, bootstrap: [a.contact], requestTimeout: 300 })).rejects.toBeInstanceOf(ConnectError);
    await waitFor(() => tcpHandles() <= before, 'the failed node closed its sockets');
  });

  it('closes a raw TCP peer that sends garbage instead of a handshake, and only it', async () => {
    const [a, b] = (await network(2)) as [StandaloneDhtNode, StandaloneDhtNode];
    const s = await rawSocket(a.contact.port);
    s.write(Buffer.alloc(64, 0xff));
    await socketClosed(s);
    await waitFor(() => a.transport.stats.handshakeFailures === 1, 'handshake failure counted');
    await b.set('still-fine', 1);
    expect(await a.get('still-fine')).toBe(1);
  });

  it('limits connections still in the handshake to maxInbound', async () => {
    const a = await node({ maxInbound: 1 });
    const first = await rawSocket(a.contact.port); // never completes the handshake
    await waitFor(() => a.transport.connections.handshaking === 1, 'first connection in the handshake');
    const second = connect({ host: LOOPBACK, port: a.contact.port });
    sockets.push(second);
    second.on('error', () => undefined); // reset, maybe before 'connect' is reported
    await socketClosed(second);
    expect(a.transport.stats.refused).toBe(1);
    expect(first.destroyed).toBe(false);
  });
});

describe('DHT over plain pipes', () => {
  it('5 nodes: set/get from every node', async () => {
    const nodes = await network(5, { secure: false });
    expect(nodes.every((n) => !n.transport.secure)).toBe(true);
    const expected = await setFromEach(nodes, 'plain');
    expect(await getFromEach(nodes, expected)).toEqual([]);
  });

  it('speaks length-framed DHT messages to any TCP client', async () => {
    const a = await node({ secure: false });
    const s = await rawSocket(a.contact.port);
    const reply = new Promise<Buffer>((resolve) => {
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) resolve(buf.subarray(4, 4 + buf.readUInt32BE(0)));
      });
    });
    s.write(lengthFrame(Buffer.from(encodeMessage({ type: 'PING' }, 77))));
    const f = decodeMessage(await reply);
    expect(f.txid).toBe(77);
    expect(f.message).toMatchObject({ type: 'PONG' });
    expect(idToHex((f.message as { responder: DhtId }).responder)).toBe(idToHex(a.id));
  });

  it('malformed frames from a raw TCP peer drop only that peer', async () => {
    const [a, b, c] = (await network(3, { secure: false, maxMalformed: 2 })) as [StandaloneDhtNode, StandaloneDhtNode, StandaloneDhtNode];
    await b.set('k', 'v');
    const linksBefore = b.transport.connections.outbound + b.transport.connections.inbound;

    // Frames that do not decode: tolerated up to maxMalformed, then the peer is cut off.
    const s1 = await rawSocket(a.contact.port);
    for (let i = 0; i < 3; i++) s1.write(lengthFrame(Buffer.from(`garbage ${i}`)));
    await socketClosed(s1);
    expect(a.transport.stats.misbehaving).toBe(1);

    // A frame over the size limit: cut off at once.
    const s2 = await rawSocket(a.contact.port);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(0xffffffff, 0);
    s2.write(huge);
    await socketClosed(s2);
    await waitFor(() => a.transport.stats.misbehaving === 2, 'oversized frame counted');

    // Everyone else is unaffected.
    expect(b.transport.connections.outbound + b.transport.connections.inbound).toBe(linksBefore);
    expect(await a.get('k')).toBe('v');
    expect(await c.get('k')).toBe('v');
    await c.set('k2', 'v2');
    expect(await a.get('k2')).toBe('v2');
  });
});

describe('connection pool', () => {
  it('keeps at most maxConnections idle outgoing links', async () => {
    const nodes = await network(6, { secure: false, maxConnections: 2 });
    const expected = await setFromEach(nodes, 'pool');
    expect(await getFromEach(nodes, expected)).toEqual([]);
    for (const n of nodes) expect(n.transport.connections.outbound).toBeLessThanOrEqual(2);
    expect(nodes.some((n) => n.transport.stats.evicted > 0)).toBe(true);
  });

  it('closes idle links and reconnects on demand', async () => {
    const [a, b] = (await network(2, { idleTimeout: 100 })) as [StandaloneDhtNode, StandaloneDhtNode];
    await a.set('idle', true);
    await waitFor(
      () => a.transport.connections.outbound + a.transport.connections.inbound === 0 && b.transport.connections.inbound + b.transport.connections.outbound === 0,
      'idle links closed',
      3_000,
    );
    expect(a.transport.stats.idleClosed + b.transport.stats.idleClosed).toBeGreaterThan(0);
    expect(await b.get('idle')).toBe(true);
  });

  it('reconnects to a node that restarted on the same address', async () => {
    const a = await node();
    const identity = Identity.generate();
    const b1 = await node({ identity, bootstrap: [a.contact] });
    const port = b1.contact.port;
    expect(await a.ping(b1.contact)).toBe(true);
    await b1.close();
    const b2 = await node({ identity, bind: `${LOOPBACK}:${port}` });
    expect(await a.ping(b2.contact)).toBe(true);
    expect(a.transport.stats.connects + a.transport.stats.accepted).toBeGreaterThanOrEqual(2);
  });
});

describe('PipeDhtTransport', () => {
  it('retries once on a fresh connection when a pooled link dies under a request', async () => {
    // A raw plain-DHT peer that answers PINGs, but drops the connection on its second request.
    const peerId = randomId();
    let conns = 0;
    const server = createServer((sock) => {
      const n = ++conns;
      let requests = 0;
      let buf = Buffer.alloc(0);
      sock.on('error', () => undefined);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const frame = buf.subarray(4, 4 + buf.readUInt32BE(0));
          buf = buf.subarray(4 + frame.length);
          if (n === 1 && ++requests === 2) {
            sock.destroy();
            return;
          }
          const { txid } = decodeMessage(frame);
          sock.write(lengthFrame(Buffer.from(encodeMessage({ type: 'PONG', responder: peerId }, txid))));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
    opened.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const port = (server.address() as { port: number }).port;
    const t = await PipeDhtTransport.listen({ id: randomId(), bind: `${LOOPBACK}:0` });
    opened.push(t);
    expect(t.secure).toBe(false);
    const peer: Contact = { id: peerId, host: LOOPBACK, port, family: 4 };
    expect((await t.request(peer, { type: 'PING' }, { timeout: 2_000 })).type).toBe('PONG');
    expect((await t.request(peer, { type: 'PING' }, { timeout: 2_000 })).type).toBe('PONG');
    expect(t.stats).toMatchObject({ connects: 2, reconnects: 1 });
    expect(conns).toBe(2);
  });

  it('refuses secure mode without an identity, and bad options', async () => {
    await expect(PipeDhtTransport.listen({ id: randomId(), secure: true })).rejects.toThrow(/identity/);
    await expect(PipeDhtTransport.listen({})).rejects.toThrow(/identity or a 32-byte id/);
    await expect(PipeDhtTransport.listen({ id: randomId(), bind: `${LOOPBACK}:0`, maxConnections: 0 })).rejects.toThrow(/maxConnections/);
  });

  it('advertises a reachable host when bound to the wildcard address', async () => {
    const a = await node({ bind: '0.0.0.0:0' });
    expect(a.contact.host).not.toBe('0.0.0.0');
    const b = await node({ bind: '0.0.0.0:0', publicHost: LOOPBACK });
    expect(b.contact.host).toBe(LOOPBACK);
    const c = await node({ bootstrap: [b.contactString] });
    expect(c.table.size).toBe(1);
  });
});

describe('close()', () => {
  it('closes the server, every link and connection attempt; requests fail afterwards', async () => {
    const before = tcpHandles();
    const nodes = await network(5);
    const expected = await setFromEach(nodes, 'close');
    expect(await getFromEach(nodes, expected)).toEqual([]);
    const first = nodes[0] as StandaloneDhtNode;
    // Raced with close: answered, or failed with a typed error; never left hanging.
    const pending = first.transport
      .request((nodes[1] as StandaloneDhtNode).contact, { type: 'PING', sender: first.contact }, { timeout: 5_000 })
      .then(() => 'answered', (e: unknown) => (e instanceof AbortError || e instanceof PipeClosedError ? 'closed' : e));
    await Promise.all(nodes.map((n) => n.close()));
    const outcome = await pending;
    expect(['answered', 'closed']).toContain(outcome);
    await Promise.all(nodes.map((n) => n.close())); // idempotent
    for (const n of nodes) {
      expect(n.closed).toBe(true);
      expect(n.transport.closed).toBe(true);
      expect(n.transport.server.closed).toBe(true);
      expect(n.transport.server.server.listening).toBe(false);
      expect(n.transport.connections).toEqual({ outbound: 0, inbound: 0, handshaking: 0 });
    }
    await expect(first.transport.request((nodes[1] as StandaloneDhtNode).contact, { type: 'PING' }, {})).rejects.toBeInstanceOf(PipeClosedError);
    await waitFor(() => tcpHandles() <= before, 'every socket closed');
  });
});
