/**
 * The direct and reverse strategies.
 * - **direct**: TCP connects + secure handshakes to every direct candidate of the peer's
 *   address (same host, LAN, link-local, public, port-mapped), staggered ("happy eyeballs");
 *   the first authenticated pipe wins.
 * - **reverse**: ask the peer through signalling to dial us directly; its pipe arrives on
 *   our listener carrying the exchange's connection id in its hello.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ConnectError } from '../errors.js';
import { connectSecure, type SecurePipe } from '../crypto/secure-pipe.js';
import { formatEndpoint } from '../interfaces/endpoint.js';
import { cancellable } from '../util/abort.js';
import type { PeerAddress } from './address.js';
import { directCandidates } from './candidates.js';
import type { NodeContext } from './context.js';
import { refusalOf } from './errors.js';
import { asNodePipe, decodeHello, encodeHello, errorOf, type Hello } from './hello.js';
import type { Signalling } from './signalling.js';
import type { ConnectOptions, NodePipe } from './types.js';

/** Gap between two direct attempts ("happy eyeballs"), ms. */
export const DIRECT_STAGGER = 25;

/** Races TCP connects + handshakes to the peer's direct candidates; the first authenticated one wins. */
export function dialDirect(ctx: NodeContext, peer: PeerAddress, hello: Hello, signal: AbortSignal, via?: ConnectOptions['via']): Promise<SecurePipe> {
  const cands = directCandidates(peer, ctx.nics, { self: ctx.isSelf(peer) }).filter((c) => !via || via.includes(c.kind));
  if (cands.length === 0) return Promise.reject(new ConnectError('no direct endpoint to try'));
  const ext = encodeHello(hello);
  return cancellable<SecurePipe>({ signal }, 'direct connect', (resolve, reject) => {
    const ac = new AbortController();
    const sig = AbortSignal.any([ac.signal, signal]);
    let done = false;
    let left = cands.length;
    const errors: string[] = [];
    const timers: NodeJS.Timeout[] = [];
    cands.forEach((c, i) => {
      const t = setTimeout(() => {
        if (done) return;
        connectSecure(c.dest, {
          identity: ctx.identity,
          remoteId: peer.id,
          extensions: ext,
          timeout: ctx.timeouts.direct,
          signal: sig,
          onMessage: ctx.dispatch,
        }).then(
          (p) => {
            if (done) {
              void p.close();
              return;
            }
            done = true;
            resolve(p);
          },
          (e: unknown) => {
            errors.push(`${formatEndpoint(c.dest)}: ${errorOf(e).message}`);
            if (--left === 0 && !done) {
              done = true;
              reject(new ConnectError(`no direct endpoint answered (${errors.join('; ')})`));
            }
          },
        );
      }, i * DIRECT_STAGGER);
      t.unref();
      timers.push(t);
    });
    return () => {
      for (const t of timers) clearTimeout(t);
      done = true;
      ac.abort();
    };
  });
}

/**
 * The direct strategy: {@link dialDirect}, as a `direct` pipe. Not adopted here: `connect()`
 * adopts the winner of its race, and a pipe that loses is closed without ever counting as one
 * of the node's pipes.
 */
export async function connectDirect(ctx: NodeContext, peer: PeerAddress, signal: AbortSignal, via?: ConnectOptions['via']): Promise<NodePipe> {
  const p = await dialDirect(ctx, peer, { v: 1, s: 'direct' }, signal, via);
  return asNodePipe(p, { strategy: 'direct', transport: 'tcp', local: p.local, remote: p.remote });
}

/**
 * Pipes we wait for after asking peers to connect back, by connection id.
 *
 * An inbound pipe whose (authenticated) hello says `reverse` answers a reverse request: it is
 * taken by the `connect()` waiting for its connection id, from the peer that was asked. Any
 * other (the waiter gave up — timeout, abort, another strategy won — or never existed, or a
 * third node replays the id) is not adopted as an ordinary inbound pipe: nobody asked for it,
 * so the node closes it ({@link P2pNode} `onInbound`), and the peer's side closes with it.
 * This needs no memory of abandoned ids, so no answer is ever too late to be recognised.
 */
export class ReverseWaiters {
  private readonly waiters = new Map<string, { peer: string; take: (p: SecurePipe) => void }>();

  /**
   * Offers an inbound pipe: true if it is the answer to one of our reverse requests (its
   * hello names a pending connection id and it comes from the peer we asked). Called before
   * any message of the pipe is dispatched, so the waiting `connect()` sees them all.
   */
  offer(conn: string | undefined, strategy: string | undefined, p: SecurePipe): boolean {
    if (conn === undefined || strategy !== 'reverse') return false;
    const w = this.waiters.get(conn);
    if (!w || w.peer !== p.remoteIdHex) return false;
    this.waiters.delete(conn);
    w.take(p);
    return true;
  }

  /**
   * Takes an inbound pipe that says it answers a reverse request: hands it to the waiting
   * `connect()` ({@link offer}), or, when no `connect()` waits for it (any more: it gave up on
   * a timeout or an abort, another strategy won, or it never asked), closes it with a warning
   * (so is the peer's side with it): never announced, never counted. Returns false for any
   * other pipe (an ordinary inbound one).
   */
  claim(p: SecurePipe, warn: (detail: string) => void): boolean {
    const hello = decodeHello(p.remoteExtensions);
    if (this.offer(hello?.c, hello?.s, p)) return true;
    if (hello?.s !== 'reverse') return false;
    warn('reverse pipe closed: no connect() waits for it (it came after the connect gave up, or was never asked for)');
    void p.close().catch(() => undefined);
    return true;
  }

  /**
   * The reverse strategy: asks `peer` through signalling to dial us, and waits for its pipe.
   * `prepare` runs on the pipe as it arrives, before any of its messages is dispatched (the
   * peer may send with its last handshake message): it sets up the caller's queue. The pipe
   * is not adopted here (see {@link connectDirect}).
   * @throws TimeoutError after `timeouts.reverse`; SignalError if the request cannot be sent;
   *   PeerRefusedError at once when the peer answers with a refusal (`reason` `'busy'`: it
   *   serves too many requests).
   */
  async connect(ctx: NodeContext, peer: PeerAddress, signal: AbortSignal, prepare?: (p: SecurePipe) => void): Promise<NodePipe> {
    const sig = ctx.signalling as Signalling;
    const conn = randomBytes(16).toString('hex');
    let won: NodePipe | undefined;
    const arrived = new Promise<NodePipe>((resolve) =>
      this.waiters.set(conn, {
        peer: peer.idHex,
        take: (p) => {
          prepare?.(p);
          resolve(asNodePipe(p, { strategy: 'reverse', transport: 'tcp', local: p.local, remote: p.remote }));
        },
      }),
    );
    // Sending the request and waiting for the pipe share one time limit (whole milliseconds).
    const timeout = Math.max(1, Math.round(ctx.timeouts.reverse));
    const stop = new AbortController();
    try {
      won = await cancellable<NodePipe>({ signal, timeout }, 'reverse connect', (resolve, reject) => {
        void arrived.then(resolve);
        // The peer answers the request only to refuse it; its pipe is the positive answer.
        sig.request(peer, 'reverse', { addr: ctx.addr, conn }, { ttl: timeout, signal: stop.signal }).then(
          (reply) => reject(refusalOf('reverse', reply, 'peer refused to connect back')),
          (e: unknown) => {
            if (!stop.signal.aborted) reject(e);
          },
        );
        return () => stop.abort();
      });
      return won;
    } finally {
      this.waiters.delete(conn);
      // A pipe taken just as we gave up: nobody will use it.
      void arrived.then((p) => {
        if (p !== won) void p.close();
      });
    }
  }
}

/** Serves a peer's reverse request: dials it directly with the exchange's connection id. */
export async function serveReverse(ctx: NodeContext, peer: PeerAddress, conn: string, signal: AbortSignal): Promise<void> {
  const sub = AbortSignal.any([signal, AbortSignal.timeout(ctx.timeouts.reverse)]);
  const p = await dialDirect(ctx, peer, { v: 1, s: 'reverse', c: conn }, sub);
  ctx.adopt(p, { strategy: 'reverse', transport: 'tcp', local: p.local, remote: p.remote }, true);
}
