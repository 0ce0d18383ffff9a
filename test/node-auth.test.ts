/**
 * The punch and relay paths authenticate the peer's key: `secureDatagram` (reliable stream
 * over UDP, then the handshake) and `secureStream` (the handshake over a punched TCP
 * connection) pin the id of the address they were given, so a peer that answers with another
 * key fails the handshake with a PeerIdMismatchError and the stream / TCP pipe is closed.
 * And the reverse strategy's waiters take a pipe only from the peer they asked.
 */
import { describe, expect, it } from 'vitest';
import { Identity, listenSecure, connectSecure, type SecurePipe } from '../src/crypto/index.js';
import { HandshakeError, PeerIdMismatchError, TimeoutError } from '../src/errors.js';
import { pipeOpen, SUB_ALL, type Pipe, type TcpPipe, type UdpPipe } from '../src/pipes/index.js';
import { encodeAddress, parseAddress, type PeerAddress } from '../src/node/address.js';
import type { NodeContext } from '../src/node/context.js';
import { deriveSignalKey } from '../src/node/envelope.js';
import { asNodePipe, encodeHello } from '../src/node/hello.js';
import { loadPunch, type PunchModule } from '../src/node/punch-api.js';
import { secureDatagram, secureStream } from '../src/node/secure-datagram.js';
import { ReverseWaiters } from '../src/node/strategy-direct.js';
import type { NodePipe, PipePath } from '../src/node/types.js';
import { guardUnhandled, useCleanup } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

const A = Identity.generate(); // us (the connecting side)
const X = Identity.generate(); // the identity the peer address names
const Y = Identity.generate(); // who actually answers
const Z = Identity.generate(); // a third node

/** A valid address for `id` (only its id matters here). */
function addrOf(id: Identity): PeerAddress {
  return parseAddress(encodeAddress(id, { signalKey: deriveSignalKey(id).publicKey, interfaces: [], signal: [{ type: 'mqtt-self', port: 1883 }] }));
}

/** The part of a node context the handshakes use. */
function ctxOf(identity: Identity, handshake = 3000): NodeContext {
  return { identity, opts: {}, timeouts: { handshake }, dispatch: () => undefined } as unknown as NodeContext;
}

/** The real punch module, with every reliable stream it opens recorded. */
async function recordingPunch(): Promise<{ mod: PunchModule; streams: Pipe[] }> {
  const real = await loadPunch();
  if (!real) throw new Error('src/node/punch cannot be loaded');
  const streams: Pipe[] = [];
  const mod: PunchModule = {
    ...real,
    openReliable: async (...args: Parameters<PunchModule['openReliable']>) => {
      const s = await real.openReliable(...args);
      streams.push(s);
      cleanup.track(s);
      return s;
    },
  };
  return { mod, streams };
}

async function udp(): Promise<UdpPipe> {
  const p = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
  p.unsubscribe(SUB_ALL);
  return p;
}

async function tcpPair(): Promise<[TcpPipe, TcpPipe]> {
  const srv = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
  const c = cleanup.track(await pipeOpen('tcp', srv.local));
  const s = cleanup.track(await srv.accept());
  return [c, s];
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const settled = <T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> =>
  p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));

describe('punch / relay paths pin the peer key (secureDatagram over UDP)', () => {
  it('the connecting side expects X but Y answers: PeerIdMismatchError, both reliable streams closed', async () => {
    const { mod, streams } = await recordingPunch();
    const [ua, uy] = await Promise.all([udp(), udp()]);
    const signal = AbortSignal.timeout(10_000);
    const [ra, ry] = await Promise.all([
      settled(secureDatagram(ctxOf(A), mod, ua, uy.local, { initiator: true, peer: addrOf(X), hello: { v: 1, s: 'punch' }, signal })),
      settled(secureDatagram(ctxOf(Y), mod, uy, ua.local, { initiator: false, peer: addrOf(A), signal })),
    ]);
    expect(ra.ok).toBe(false);
    const err = (ra as { error: unknown }).error;
    expect(err).toBeInstanceOf(PeerIdMismatchError);
    expect((err as PeerIdMismatchError).expected).toBe(X.idHex);
    expect((err as PeerIdMismatchError).actual).toBe(Y.idHex);
    // Y never got an authenticated pipe either (A gave up before revealing itself).
    expect(ry.ok).toBe(false);
    expect((ry as { error: unknown }).error).toBeInstanceOf(HandshakeError);
    expect(streams).toHaveLength(2);
    await waitFor(() => streams.every((s) => s.closed));
  });

  it('the answering side expects X but A connects: PeerIdMismatchError on its side, streams closed', async () => {
    const { mod, streams } = await recordingPunch();
    const [ua, uy] = await Promise.all([udp(), udp()]);
    const signal = AbortSignal.timeout(10_000);
    const [ra, ry] = await Promise.all([
      settled(secureDatagram(ctxOf(A), mod, ua, uy.local, { initiator: true, peer: addrOf(Y), hello: { v: 1, s: 'relay' }, signal })),
      settled(secureDatagram(ctxOf(Y), mod, uy, ua.local, { initiator: false, peer: addrOf(X), signal })),
    ]);
    expect(ry.ok).toBe(false);
    expect((ry as { error: unknown }).error).toBeInstanceOf(PeerIdMismatchError);
    expect(((ry as { error: unknown }).error as PeerIdMismatchError).actual).toBe(A.idHex);
    // The initiator may complete its side of Noise XX first; its pipe is then closed by the peer.
    if (ra.ok) {
      cleanup.track(ra.value);
      await waitFor(() => ra.value.closed);
    } else expect(ra.error).toBeInstanceOf(HandshakeError);
    await waitFor(() => streams.every((s) => s.closed));
  });

  it('control: with the right ids both sides get the authenticated pipe', async () => {
    const { mod } = await recordingPunch();
    const [ua, uy] = await Promise.all([udp(), udp()]);
    const signal = AbortSignal.timeout(10_000);
    const [pa, py] = await Promise.all([
      secureDatagram(ctxOf(A), mod, ua, uy.local, { initiator: true, peer: addrOf(Y), hello: { v: 1, s: 'punch' }, signal }),
      secureDatagram(ctxOf(Y), mod, uy, ua.local, { initiator: false, peer: addrOf(A), signal }),
    ]);
    cleanup.track(pa);
    cleanup.track(py);
    expect(pa.remoteIdHex).toBe(Y.idHex);
    expect(py.remoteIdHex).toBe(A.idHex);
  });
});

describe('punched TCP pins the peer key (secureStream)', () => {
  it('expects X, Y answers: PeerIdMismatchError and both TCP pipes closed', async () => {
    const [ta, ty] = await tcpPair();
    const signal = AbortSignal.timeout(10_000);
    const [ra, ry] = await Promise.all([
      settled(secureStream(ctxOf(A), ta, { initiator: true, peer: addrOf(X), hello: { v: 1, s: 'punch' }, signal })),
      settled(secureStream(ctxOf(Y), ty, { initiator: false, peer: addrOf(A), signal })),
    ]);
    expect(ra.ok).toBe(false);
    expect((ra as { error: unknown }).error).toBeInstanceOf(PeerIdMismatchError);
    expect(ry.ok).toBe(false);
    expect((ry as { error: unknown }).error).toBeInstanceOf(HandshakeError);
    expect(ta.closed).toBe(true);
    await waitFor(() => ty.closed);
  });

  it('the answering side expects X, A connects: PeerIdMismatchError and its TCP pipe closed', async () => {
    const [ta, ty] = await tcpPair();
    const signal = AbortSignal.timeout(10_000);
    const [ra, ry] = await Promise.all([
      settled(secureStream(ctxOf(A), ta, { initiator: true, peer: addrOf(Y), hello: { v: 1, s: 'punch' }, signal })),
      settled(secureStream(ctxOf(Y), ty, { initiator: false, peer: addrOf(X), signal })),
    ]);
    expect(ry.ok).toBe(false);
    expect((ry as { error: unknown }).error).toBeInstanceOf(PeerIdMismatchError);
    expect(ty.closed).toBe(true);
    if (ra.ok) cleanup.track(ra.value);
    await waitFor(() => ta.closed);
  });
});

describe('reverse strategy: only the asked peer answers', () => {
  /** A reverse connect of A to Y with a stub signalling that records the connection id. */
  function reverseToY(timeout: number) {
    const waiters = new ReverseWaiters();
    let conn: string | undefined;
    const ctx = {
      identity: A,
      opts: {},
      timeouts: { reverse: timeout },
      addr: 'p2pd-us',
      signalling: {
        // The request is answered only by a refusal (never, here): the pipe is the answer.
        request: (_peer: PeerAddress, _type: string, body: Record<string, unknown>, o: { signal?: AbortSignal }) => {
          conn = body.conn as string;
          return new Promise((_resolve, reject) => o.signal?.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
        },
      },
      adopt: (p: SecurePipe, path: PipePath): NodePipe => asNodePipe(p, path),
    } as unknown as NodeContext;
    const result = settled(waiters.connect(ctx, addrOf(Y), AbortSignal.timeout(10_000)));
    let done = false;
    void result.then(() => (done = true));
    return { waiters, result, conn: () => conn, done: () => done };
  }

  /** Real inbound secure pipes on our listener (identity A), from `who`, with a reverse hello. */
  async function inboundFrom(who: Identity, conn: string): Promise<SecurePipe> {
    const inbound: SecurePipe[] = [];
    const srv = cleanup.track(await listenSecure('127.0.0.1:0', { identity: A, onPipe: (p) => void inbound.push(p) }));
    const out = cleanup.track(await connectSecure(srv.local, { identity: who, remoteId: A.idHex, extensions: encodeHello({ v: 1, s: 'reverse', c: conn }) }));
    expect(out.remoteIdHex).toBe(A.idHex);
    await waitFor(() => inbound.length === 1);
    return cleanup.track(inbound[0] as SecurePipe);
  }

  it('a pipe from a third node carrying the right connection id is refused; the waiter stays pending for the peer', async () => {
    const r = reverseToY(5000);
    await waitFor(() => r.conn() !== undefined);
    const conn = r.conn() as string;
    const fromZ = await inboundFrom(Z, conn);
    expect(fromZ.remoteIdHex).toBe(Z.idHex);
    expect(r.waiters.offer(conn, 'reverse', fromZ)).toBe(false);
    // Wrong strategy or unknown id: refused too, even from the right peer.
    const fromY = await inboundFrom(Y, conn);
    expect(r.waiters.offer(conn, 'direct', fromY)).toBe(false);
    expect(r.waiters.offer('00'.repeat(16), 'reverse', fromY)).toBe(false);
    expect(r.waiters.offer(undefined, 'reverse', fromY)).toBe(false);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.done()).toBe(false);
    expect(fromZ.closed).toBe(false); // refused, not taken (the node then closes it: a reverse pipe nobody waits for)
    // The asked peer's pipe is taken and ends the wait.
    expect(r.waiters.offer(conn, 'reverse', fromY)).toBe(true);
    const res = await r.result;
    expect(res.ok).toBe(true);
    const p = (res as { value: NodePipe }).value;
    expect(p).toBe(fromY);
    expect(p.path.strategy).toBe('reverse');
    // Taken once only.
    expect(r.waiters.offer(conn, 'reverse', fromY)).toBe(false);
  });

  it('only a third node answers: the reverse connect times out instead of taking its pipe', async () => {
    const r = reverseToY(400);
    await waitFor(() => r.conn() !== undefined);
    const fromZ = await inboundFrom(Z, r.conn() as string);
    expect(r.waiters.offer(r.conn(), 'reverse', fromZ)).toBe(false);
    const res = await r.result;
    expect(res.ok).toBe(false);
    expect((res as { error: unknown }).error).toBeInstanceOf(TimeoutError);
    expect(fromZ.closed).toBe(false);
  });
});
