/**
 * The hole punching strategy: each side opens a UDP socket, learns its reflexive address
 * (STUN) and sends its candidates through signalling; then both punch at once (probes
 * authenticated with a nonce shared through the encrypted signalling), and the reliable
 * stream and the secure handshake run over the punched path.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ConnectError } from '../errors.js';
import { formatEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import { stunGetMapping } from '../nat/stun/client.js';
import { pipeOpen } from '../pipes/open.js';
import type { UdpPipe } from '../pipes/udp.js';
import type { PeerAddress } from './address.js';
import type { NodeContext } from './context.js';
import { decodeHello, endpointsFrom } from './hello.js';
import type { PunchModule } from './punch-api.js';
import { secureDatagram } from './secure-datagram.js';
import type { SignalMessage, Signalling } from './signalling.js';
import type { NodePipe } from './types.js';

/** Most candidates sent to, or taken from, a peer. */
export const MAX_PUNCH_CANDIDATES = 8;

/** Our UDP candidates for a socket: its reflexive address (first STUN server), then its LAN addresses and loopback. */
export async function udpCandidates(ctx: NodeContext, udp: UdpPipe, signal: AbortSignal): Promise<Endpoint[]> {
  const out: Endpoint[] = [];
  const stun = (ctx.opts.stun ?? [])[0];
  if (stun !== undefined) {
    try {
      const m = await stunGetMapping({ server: stun, pipe: udp, signal, timeout: 1500, rto: 200 });
      out.push(m.mapped);
    } catch {
      /* no reflexive candidate */
    }
  }
  for (const i of ctx.nics) {
    if (!i.up || i.loopback) continue;
    for (const a of i.addresses) if (a.family === 4 && a.scope !== 'link-local' && !out.some((o) => o.host === a.address)) out.push({ host: a.address, port: udp.local.port, family: 4 });
  }
  out.push({ host: '127.0.0.1', port: udp.local.port, family: 4 });
  return out.slice(0, MAX_PUNCH_CANDIDATES);
}

/** The peer's NAT delta from its address, as a port prediction hint. */
export function predictOf(peer: PeerAddress): { kind: string; value: number } | undefined {
  for (const i of peer.interfaces) if (i.delta.type === 'INDEPENDENT' || i.delta.type === 'DEPENDENT') return { kind: i.delta.type, value: i.delta.value };
  return undefined;
}

/** Opens a fresh IPv4 UDP socket for one punch. */
export function openPunchSocket(): Promise<UdpPipe> {
  return pipeOpen('udp', undefined, { bind: { host: '0.0.0.0', port: 0 }, onMessage: () => undefined }) as Promise<UdpPipe>;
}

/** The punch strategy (the connecting side). */
export async function connectPunch(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
  const sig = ctx.signalling as Signalling;
  const sub = AbortSignal.any([signal, AbortSignal.timeout(ctx.timeouts.punch)]);
  const udp = await openPunchSocket();
  try {
    const cands = await udpCandidates(ctx, udp, sub);
    const conn = randomBytes(16).toString('hex');
    const nonce = randomBytes(32);
    const reply = await sig.request(
      peer,
      'punch',
      { addr: ctx.addr, conn, nonce: nonce.toString('hex'), cands: cands.map((c) => formatEndpoint(c)) },
      { signal: sub, timeout: ctx.timeouts.punch / 2 },
    );
    if (reply.type !== 'punch-ok') throw new ConnectError(`peer refused to punch: ${String(reply.body.error ?? reply.type).slice(0, 200)}`);
    const theirs = endpointsFrom(reply.body.cands, MAX_PUNCH_CANDIDATES);
    if (theirs.length === 0) throw new ConnectError('peer sent no usable candidates');
    const predict = predictOf(peer);
    const r = await mod.punch({ pipe: udp, peerCandidates: theirs, nonce, signal: sub, timeout: ctx.timeouts.punch, ...(predict ? { predictDelta: predict } : {}) });
    const sp = await secureDatagram(ctx, mod, udp, r.remote, { initiator: true, peer, hello: { v: 1, s: 'punch', c: conn }, signal: sub, rtt: r.rtt });
    return ctx.adopt(sp, { strategy: 'punch', transport: 'udp', local: udp.local, remote: r.remote }, false);
  } catch (e) {
    await udp.close();
    throw e;
  }
}

/** A nonce from a peer's request: 16–128 bytes, hex; undefined if malformed. */
export function nonceFrom(v: unknown): Buffer | undefined {
  if (typeof v !== 'string' || !/^[0-9a-f]{32,256}$/.test(v) || v.length % 2 !== 0) return undefined;
  return Buffer.from(v, 'hex');
}

/** Serves a peer's punch request. */
export async function servePunch(ctx: NodeContext, m: SignalMessage, peer: PeerAddress, conn: string): Promise<void> {
  const sig = ctx.signalling as Signalling;
  const mod = await ctx.punchModule();
  const theirs = endpointsFrom(m.body.cands, MAX_PUNCH_CANDIDATES);
  const nonce = nonceFrom(m.body.nonce);
  if (!mod || theirs.length === 0 || !nonce) {
    await sig.reply(m, peer, 'punch-err', { error: mod ? 'bad punch request' : 'no hole punching here' }).catch(() => undefined);
    return;
  }
  const sub = AbortSignal.any([ctx.lifeSignal, AbortSignal.timeout(ctx.timeouts.punch)]);
  const udp = await openPunchSocket();
  try {
    const cands = await udpCandidates(ctx, udp, sub);
    await sig.reply(m, peer, 'punch-ok', { cands: cands.map((c) => formatEndpoint(c)) }, { signal: sub });
    const predict = predictOf(peer);
    const r = await mod.punch({ pipe: udp, peerCandidates: theirs, nonce, signal: sub, timeout: ctx.timeouts.punch, ...(predict ? { predictDelta: predict } : {}) });
    const sp = await secureDatagram(ctx, mod, udp, r.remote, { initiator: false, peer, signal: sub, rtt: r.rtt });
    if (decodeHello(sp.remoteExtensions)?.c !== conn) {
      await sp.close();
      return;
    }
    ctx.adopt(sp, { strategy: 'punch', transport: 'udp', local: udp.local, remote: r.remote }, true);
  } catch (e) {
    await udp.close();
    throw e;
  }
}
