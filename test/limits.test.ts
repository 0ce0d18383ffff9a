/**
 * Explicit caps on what a remote party can make us hold: a TCP server's live connections
 * (`maxConnections`) and a P2P node's live pipes (`maxPeers`).
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, LimitError } from '../src/errors.js';
import { DEFAULT_INBOUND_SHARE, DEFAULT_MAX_PEERS, defaultMaxInbound, startP2pNode, type NodeEvent, type P2pNode } from '../src/node/index.js';
import { DEFAULT_MAX_SERVER_CONNECTIONS, pipeOpen, type TcpPipe } from '../src/pipes/index.js';
import { guardUnhandled, rejection, useCleanup, waitFor, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

function rawClient(port: number): Promise<{ s: Socket; closed: Promise<void> }> {
  const s = cleanup.socket(netConnect({ host: '127.0.0.1', port }));
  s.on('error', () => undefined);
  const closed = once(s, 'close').then(() => undefined);
  return once(s, 'connect').then(() => ({ s, closed }));
}

describe('TCP server maxConnections', () => {
  it('a connection beyond the cap is closed on arrival and counted; once one closes, a new one is accepted', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', maxConnections: 2 }));
    const port = server.local.port;
    const first = (await Promise.all([rawClient(port), rawClient(port)])).map((c) => c.s);
    await waitFor(() => server.connections.size === 2, 'two connections');
    const third = await rawClient(port);
    await within(third.closed, 3000, 'the third connection is closed');
    expect(server.refusedConnections).toBe(1);
    expect(server.connections.size).toBe(2);
    first[0]!.destroy();
    await waitFor(() => server.connections.size === 1, 'one left');
    const fourth = await rawClient(port);
    await waitFor(() => server.connections.size === 2, 'the fourth accepted');
    fourth.s.write('hi');
    const accepted = [...server.connections].at(-1) as TcpPipe;
    expect((await accepted.recv({ timeout: 2000 })).data.toString()).toBe('hi');
    expect(server.refusedConnections).toBe(1);
  });

  it('maxConnections is validated; the default is a named constant', async () => {
    expect(DEFAULT_MAX_SERVER_CONNECTIONS).toBeGreaterThan(4000);
    expect(await rejection(pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', maxConnections: 0 }))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('P2P node maxPeers', () => {
  const opts = { listen: 'loopback', portMapping: false, signalling: false } as const;
  async function node(extra: { maxPeers?: number; maxInboundPeers?: number } = {}): Promise<{ n: P2pNode; events: NodeEvent[] }> {
    const events: NodeEvent[] = [];
    const n = await startP2pNode({ ...opts, ...extra, onEvent: (e) => events.push(e) });
    cleanup.add(() => n.close());
    return { n, events };
  }

  it('an inbound pipe beyond maxPeers is closed at once with a warning; connect() beyond it rejects with LimitError', async () => {
    const b = await node({ maxPeers: 1 });
    const a = await node();
    const c = await node();
    const pa = await a.n.connect(b.n.addr, { timeout: 5000 });
    await waitFor(() => b.n.pipes.size === 1, 'b holds a');
    const pc = await c.n.connect(b.n.addr, { timeout: 5000 }).catch((e: unknown) => e);
    if (!(pc instanceof Error)) await within(new Promise<void>((r) => (pc as TcpPipe).onClose(() => r())), 3000, 'b closes c');
    await waitFor(() => b.events.some((e) => e.type === 'warning' && /maxPeers/.test(e.detail ?? '')), 'the warning');
    expect(b.n.pipes.size).toBe(1);
    // b itself cannot open a second pipe either.
    const err = await rejection(b.n.connect(c.n.addr, { timeout: 5000 }));
    expect(err).toBeInstanceOf(LimitError);
    expect((err as LimitError).limit).toBe('maxPeers');
    // The first pipe still works, and once it closes there is room again.
    await pa.close();
    await waitFor(() => b.n.pipes.size === 0, 'b drops a');
    const again = await c.n.connect(b.n.addr, { timeout: 5000 });
    await waitFor(() => b.n.pipes.size === 1, 'b holds c');
    expect(again.closed).toBe(false);
  });

  it('maxPeers is validated', async () => {
    await expect(startP2pNode({ ...opts, maxPeers: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startP2pNode({ ...opts, maxPeers: 1.5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(startP2pNode({ ...opts, maxInboundPeers: 0 })).rejects.toThrow(/maxInboundPeers/);
    await expect(startP2pNode({ ...opts, maxInboundPeers: 2.5 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('inbound pipes take at most maxInboundPeers (by default 3/4 of maxPeers): peers connecting in cannot stop connect()', async () => {
    expect(defaultMaxInbound(4)).toBe(3);
    expect(defaultMaxInbound(1)).toBe(1);
    expect(defaultMaxInbound(DEFAULT_MAX_PEERS)).toBe(Math.floor(DEFAULT_MAX_PEERS * DEFAULT_INBOUND_SHARE));
    const b = await node({ maxPeers: 4 });
    const peers = [await node(), await node(), await node(), await node(), await node()] as const;
    for (const p of peers.slice(0, 3)) await p.n.connect(b.n.addr, { timeout: 5000 });
    await waitFor(() => b.n.pipes.size === 3, 'b holds three inbound pipes');
    // A fourth inbound pipe is refused although maxPeers (4) is not reached.
    const late = await peers[3].n.connect(b.n.addr, { timeout: 5000 }).catch((e: unknown) => e);
    if (!(late instanceof Error)) await within(new Promise<void>((r) => (late as TcpPipe).onClose(() => r())), 3000, 'b closes the fourth');
    await waitFor(() => b.events.some((e) => e.type === 'warning' && /maxInboundPeers \(3\)/.test(e.detail ?? '')), 'the warning');
    expect(b.n.pipes.size).toBe(3);
    // b still connects out: the slot kept for it.
    const out = await b.n.connect(peers[4].n.addr, { timeout: 5000 });
    expect(out.closed).toBe(false);
    expect(b.n.pipes.size).toBe(4);
    // Now maxPeers is reached.
    const err = await rejection(b.n.connect(peers[3].n.addr, { timeout: 5000 }));
    expect((err as LimitError).limit).toBe('maxPeers');
    // An inbound pipe that closes frees its inbound slot.
    await out.close();
    const first = [...b.n.pipes][0];
    await first?.close();
    await waitFor(() => b.n.pipes.size === 2, 'b drops two');
    await peers[3].n.connect(b.n.addr, { timeout: 5000 });
    await waitFor(() => b.n.pipes.size === 3, 'b takes the fourth peer now');
  });

  it('an explicit maxInboundPeers is honoured', async () => {
    const b = await node({ maxPeers: 10, maxInboundPeers: 1 });
    const a = await node();
    const c = await node();
    await a.n.connect(b.n.addr, { timeout: 5000 });
    await waitFor(() => b.n.pipes.size === 1, 'b holds a');
    const pc = await c.n.connect(b.n.addr, { timeout: 5000 }).catch((e: unknown) => e);
    if (!(pc instanceof Error)) await within(new Promise<void>((r) => (pc as TcpPipe).onClose(() => r())), 3000, 'b closes c');
    expect(b.n.pipes.size).toBe(1);
    const out = await b.n.connect(c.n.addr, { timeout: 5000 });
    expect(out.closed).toBe(false);
  });

  it('signalling.replayCacheSize is validated', async () => {
    await expect(startP2pNode({ ...opts, signalling: { embedded: true, replayCacheSize: 0 } })).rejects.toThrow(/replayCacheSize/);
    await expect(startP2pNode({ ...opts, signalling: { embedded: true, replayCacheSize: 2.5 } })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
