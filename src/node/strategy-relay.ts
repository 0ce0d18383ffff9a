/**
 * The relay strategy (TURN), the last resort. Three shapes, chosen by who has a TURN server:
 * - **both sides**: each allocates a relay on its own TURN server; the relayed addresses are
 *   swapped over signalling, each side permits the other's, and the reliable stream runs
 *   relay to relay. Works whatever the NATs are.
 * - **one side** (either the connecting one or the answering one): that side allocates a
 *   relay and permits the other side's candidate addresses (its reflexive address from STUN,
 *   its LAN addresses); the other side sends from a plain UDP socket to the relayed address.
 *   Both run the authenticated punch exchange (src/node/punch) over their pipe, so the relay
 *   side learns the exact address the other side's NAT uses towards the TURN server (any
 *   NAT kind works: TURN permissions ignore the port), and then the reliable stream.
 * - **neither**: the request is refused (`relay-err`) and the strategy fails.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ConnectError } from '../errors.js';
import { formatEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import { turnAllocate } from '../nat/turn/allocate.js';
import type { TurnPipe } from '../nat/turn/pipe.js';
import type { Pipe } from '../pipes/pipe.js';
import type { UdpPipe } from '../pipes/udp.js';
import { throwIfAborted } from '../util/abort.js';
import type { PeerAddress } from './address.js';
import type { NodeContext } from './context.js';
import { refusalOf } from './errors.js';
import { asNodePipe, decodeHello, endpointFrom, endpointsFrom, errorOf } from './hello.js';
import type { PunchModule } from './punch-api.js';
import { secureDatagram } from './secure-datagram.js';
import type { SignalMessage, Signalling } from './signalling.js';
import { MAX_PUNCH_CANDIDATES, nonceFrom, openPunchSocket, udpCandidates } from './strategy-punch.js';
import type { NodePipe } from './types.js';
import { stunServers } from './external.js';

/** True when this node may allocate relays: a TURN server is configured and `relay` is not false. */
export function relayEnabled(ctx: NodeContext): boolean {
  return (ctx.opts.turn ?? []).length > 0 && ctx.opts.relay !== false;
}

/**
 * True when this node can take part in a relayed connection: it has a TURN server, or it can
 * use the peer's (it knows its own reflexive address through STUN, for the peer's permission).
 */
export function relayPossible(ctx: NodeContext): boolean {
  return ctx.opts.relay !== false && (relayEnabled(ctx) || stunServers(ctx.opts.stun, 4).length > 0);
}

/** Allocates a relay on the first configured TURN server that grants one. */
export async function allocateRelay(ctx: NodeContext, signal: AbortSignal): Promise<TurnPipe> {
  const errors: Error[] = [];
  for (const t of ctx.opts.turn ?? []) {
    try {
      const r = await turnAllocate({
        server: t.server,
        username: t.username,
        password: t.password,
        ...(t.proto ? { proto: t.proto } : {}),
        signal,
        timeout: Math.min(5_000, ctx.timeouts.relay),
        onMessage: () => undefined, // the punch / reliable stream reads it
      });
      ctx.relays.add(r);
      r.onClose(() => ctx.relays.delete(r));
      return r;
    } catch (e) {
      errors.push(errorOf(e));
      throwIfAborted(signal);
    }
  }
  // The servers' own errors stay reachable (`cause`): e.g. a TurnError for a refused allocation.
  const cause = errors.length === 1 ? errors[0] : errors.length > 1 ? new AggregateError(errors, 'every TURN server failed') : undefined;
  throw new ConnectError(`no TURN allocation (${errors.map((e) => e.message).join('; ') || 'no server'})`, cause ? { cause } : undefined);
}

/** Permits the peer's candidate hosts on our relay (same family only); fails if none could be permitted. */
async function permitCandidates(relay: TurnPipe, cands: readonly Endpoint[]): Promise<void> {
  const hosts = [...new Set(relayable(relay, cands).map((c) => c.host))];
  if (hosts.length === 0) throw new ConnectError('the peer gave no address our relay can permit');
  const r = await Promise.allSettled(hosts.map((h) => relay.permit(h)));
  if (!r.some((x) => x.status === 'fulfilled')) {
    const why = r.map((x) => (x.status === 'rejected' ? errorOf(x.reason).message : '')).join('; ');
    throw new ConnectError(`the TURN server refused every permission (${why.slice(0, 200)})`);
  }
}

const isLoopback = (host: string): boolean => host.startsWith('127.') || host === '::1';

/**
 * The peer's candidates a relay of ours may send to: same family; loopback only when the TURN
 * server itself is on loopback (elsewhere it would be the TURN server's own host).
 */
function relayable(relay: TurnPipe, cands: readonly Endpoint[]): Endpoint[] {
  const local = isLoopback(relay.server.host);
  return cands.filter((c) => c.family === relay.relayed.family && (local || !isLoopback(c.host)));
}

/** Punch exchange over `pipe` towards `towards`, then the reliable stream and the handshake. */
async function punchThenSecure(
  ctx: NodeContext,
  mod: PunchModule,
  pipe: Pipe,
  towards: readonly Endpoint[],
  nonce: Buffer,
  o: { initiator: boolean; peer: PeerAddress; conn: string; signal: AbortSignal },
): Promise<{ sp: Awaited<ReturnType<typeof secureDatagram>>; remote: Endpoint }> {
  const r = await mod.punch({ pipe, peerCandidates: towards, nonce, signal: o.signal, timeout: ctx.timeouts.relay });
  const sp = await secureDatagram(ctx, mod, pipe, r.remote, {
    initiator: o.initiator,
    peer: o.peer,
    signal: o.signal,
    rtt: r.rtt,
    ...(o.initiator ? { hello: { v: 1, s: 'relay', c: o.conn } } : {}),
  });
  return { sp, remote: r.remote };
}

/** The relay strategy (the connecting side). */
export async function connectRelay(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
  const sig = ctx.signalling as Signalling;
  const timeout = ctx.timeouts.relay;
  const sub = AbortSignal.any([signal, AbortSignal.timeout(timeout)]);
  const conn = randomBytes(16).toString('hex');
  const nonce = randomBytes(32);
  const relay = relayEnabled(ctx) ? await allocateRelay(ctx, sub) : undefined;
  const own: Pipe = relay ?? (await openPunchSocket());
  try {
    const body: Record<string, unknown> = { addr: ctx.addr, conn, nonce: nonce.toString('hex') };
    if (relay) body.relay = formatEndpoint(relay.relayed);
    else body.cands = (await udpCandidates(ctx, own as UdpPipe, sub)).map((c) => formatEndpoint(c));
    const reply = await sig.request(peer, 'relay', body, { signal: sub, timeout: timeout / 2 });
    if (reply.type !== 'relay-ok') throw refusalOf('relay', reply, 'peer refused the relay');
    const theirRelay = reply.body.relay === undefined ? undefined : endpointFrom(reply.body.relay);
    if (reply.body.relay !== undefined && !theirRelay) throw new ConnectError('peer sent a malformed relay address');
    if (relay && theirRelay) {
      // Relay to relay.
      await relay.permit(theirRelay.host);
      const sp = await secureDatagram(ctx, mod, relay, theirRelay, { initiator: true, peer, hello: { v: 1, s: 'relay', c: conn }, signal: sub });
      return asNodePipe(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote: theirRelay, server: relay.server });
    }
    if (relay) {
      // Our relay only: the peer sends from its UDP socket.
      const theirs = relayable(relay, endpointsFrom(reply.body.cands, MAX_PUNCH_CANDIDATES));
      await permitCandidates(relay, theirs);
      const { sp, remote } = await punchThenSecure(ctx, mod, relay, theirs, nonce, { initiator: true, peer, conn, signal: sub });
      return asNodePipe(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote, server: relay.server });
    }
    // The peer's relay only: we send to it from our UDP socket.
    if (!theirRelay) throw new ConnectError('neither side has a TURN relay');
    const { sp } = await punchThenSecure(ctx, mod, own, [theirRelay], nonce, { initiator: true, peer, conn, signal: sub });
    return asNodePipe(sp, { strategy: 'relay', transport: 'turn', local: own.local, remote: theirRelay });
  } catch (e) {
    await own.close();
    throw e;
  }
}

/** Serves a peer's relay request. */
export async function serveRelay(ctx: NodeContext, m: SignalMessage, peer: PeerAddress, conn: string, signal: AbortSignal): Promise<void> {
  const sig = ctx.signalling as Signalling;
  const refuse = (error: string): Promise<void> => sig.reply(m, peer, 'relay-err', { error: error.slice(0, 200) }).then(() => undefined, () => undefined);
  const theirRelay = m.body.relay === undefined ? undefined : endpointFrom(m.body.relay);
  const theirCands = endpointsFrom(m.body.cands, MAX_PUNCH_CANDIDATES);
  const nonce = nonceFrom(m.body.nonce);
  const mod = await ctx.punchModule();
  if (!mod) return refuse('no reliable stream module here');
  if (!theirRelay && (m.body.relay !== undefined || theirCands.length === 0 || !nonce)) return refuse('bad relay request');
  const sub = AbortSignal.any([signal, AbortSignal.timeout(ctx.timeouts.relay)]);
  let relay: TurnPipe | undefined;
  let why = 'no TURN server here';
  if (relayEnabled(ctx)) {
    try {
      relay = await allocateRelay(ctx, sub);
    } catch (e) {
      why = errorOf(e).message;
    }
  }
  if (!relay) {
    // Only the peer has a relay: send to it from a UDP socket.
    if (!theirRelay) return refuse(relayEnabled(ctx) ? why : 'no TURN server on either side');
    if (!nonce || stunServers(ctx.opts.stun, 4).length === 0 || ctx.opts.relay === false) return refuse(why);
    const udp = await openPunchSocket();
    let replied = false;
    try {
      const cands = await udpCandidates(ctx, udp, sub);
      await sig.reply(m, peer, 'relay-ok', { cands: cands.map((c) => formatEndpoint(c)) }, { signal: sub });
      replied = true;
      const { sp } = await punchThenSecure(ctx, mod, udp, [theirRelay], nonce, { initiator: false, peer, conn, signal: sub });
      if (decodeHello(sp.remoteExtensions)?.c !== conn) return void (await sp.close());
      ctx.adopt(sp, { strategy: 'relay', transport: 'turn', local: udp.local, remote: theirRelay }, true);
    } catch (e) {
      await udp.close();
      // Failed before answering: say so at once rather than let the peer wait out its timeout.
      if (!replied) await refuse(errorOf(e).message);
      throw e;
    }
    return;
  }
  let replied = false;
  try {
    if (theirRelay) {
      // Relay to relay.
      await relay.permit(theirRelay.host);
      await sig.reply(m, peer, 'relay-ok', { relay: formatEndpoint(relay.relayed) }, { signal: sub });
      replied = true;
      const sp = await secureDatagram(ctx, mod, relay, theirRelay, { initiator: false, peer, signal: sub });
      if (decodeHello(sp.remoteExtensions)?.c !== conn) return void (await sp.close());
      ctx.adopt(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote: theirRelay, server: relay.server }, true);
      return;
    }
    // Our relay only: the peer sends from its UDP socket to it.
    const towards = relayable(relay, theirCands);
    await permitCandidates(relay, towards);
    await sig.reply(m, peer, 'relay-ok', { relay: formatEndpoint(relay.relayed) }, { signal: sub });
    replied = true;
    const { sp, remote } = await punchThenSecure(ctx, mod, relay, towards, nonce as Buffer, { initiator: false, peer, conn, signal: sub });
    if (decodeHello(sp.remoteExtensions)?.c !== conn) return void (await sp.close());
    ctx.adopt(sp, { strategy: 'relay', transport: 'turn', local: relay.relayed, remote, server: relay.server }, true);
  } catch (e) {
    await relay.close();
    if (!replied) await refuse(errorOf(e).message);
    throw e;
  }
}
