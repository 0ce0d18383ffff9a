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
import { refusalOf } from './errors.js';
import { asNodePipe, endpointsFrom } from './hello.js';
import { punchHopeless } from './nat-pairs.js';
import { punchAsInitiator, punchAsResponder, type PunchLegs } from './punch-legs.js';
import type { TcpMapping } from './punch/tcp-mapping.js';
import type { PunchModule } from './punch-api.js';
import type { SignalMessage, Signalling } from './signalling.js';
import type { NodePipe } from './types.js';
import { stunServers } from './external.js';

/** Most candidates sent to, or taken from, a peer. */
export const MAX_PUNCH_CANDIDATES = 8;

/** Our UDP candidates for a socket: its reflexive address (first STUN server), then its LAN addresses and loopback. */
export async function udpCandidates(ctx: NodeContext, udp: UdpPipe, signal: AbortSignal): Promise<Endpoint[]> {
  const out: Endpoint[] = [];
  const stun = stunServers(ctx.opts.stun, 4)[0];
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

/** How long the TCP mapping may take beyond the UDP candidates (ms): a STUN server without TCP must not slow the punch down. */
export const TCP_MAPPING_GRACE = 250;

/** A TCP mapping for the TCP leg, or undefined (no STUN server, no TCP on it, or too slow). */
async function tcpLeg(ctx: NodeContext, mod: PunchModule, udpReady: Promise<unknown>, signal: AbortSignal): Promise<TcpMapping | undefined> {
  const stun = stunServers(ctx.opts.stun, 4)[0];
  if (stun === undefined || ctx.opts.tcpPunch === false) return undefined;
  const ac = new AbortController();
  const m = mod.tcpMapping({ server: stun, signal: AbortSignal.any([signal, ac.signal]), timeout: 1500 }).catch(() => undefined);
  const late = udpReady.then(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), TCP_MAPPING_GRACE).unref()));
  const r = await Promise.race([m, late]);
  if (!r) {
    ac.abort();
    void m.then((x) => x?.close());
  }
  return r;
}

/** Our TCP candidates: the mapped endpoint, then LAN addresses on the same port. */
function tcpCandidates(ctx: NodeContext, m: TcpMapping): Endpoint[] {
  const out: Endpoint[] = [m.mapped];
  for (const i of ctx.nics) {
    if (!i.up || i.loopback) continue;
    for (const a of i.addresses) if (a.family === m.local.family && a.scope !== 'link-local' && !out.some((o) => o.host === a.address)) out.push({ host: a.address, port: m.local.port, family: a.family });
  }
  return out.slice(0, MAX_PUNCH_CANDIDATES);
}

/** Everything one side sends and keeps for a punch. */
async function gather(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, signal: AbortSignal): Promise<{ udp: UdpPipe; cands: Endpoint[]; tcp: TcpMapping | undefined; tcands: Endpoint[] }> {
  const udp = await openPunchSocket();
  try {
    const candsP = udpCandidates(ctx, udp, signal);
    // TCP punching cannot pass where UDP cannot (a symmetric NAT facing a port-filtering one).
    const peerNat = peer.interfaces.find((i) => i.nat !== 'UNKNOWN')?.nat;
    const tcpP = punchHopeless(ctx.natType, peerNat) ? Promise.resolve(undefined) : tcpLeg(ctx, mod, candsP, signal);
    const [cands, tcp] = await Promise.all([candsP, tcpP]);
    return { udp, cands, tcp, tcands: tcp ? tcpCandidates(ctx, tcp) : [] };
  } catch (e) {
    await udp.close();
    throw e;
  }
}

/** The punch strategy (the connecting side): UDP and TCP legs from one exchange. */
export async function connectPunch(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, signal: AbortSignal): Promise<NodePipe> {
  const sig = ctx.signalling as Signalling;
  const sub = AbortSignal.any([signal, AbortSignal.timeout(ctx.timeouts.punch)]);
  const g = await gather(ctx, mod, peer, sub);
  try {
    const conn = randomBytes(16).toString('hex');
    const nonce = randomBytes(32);
    const reply = await sig.request(
      peer,
      'punch',
      { addr: ctx.addr, conn, nonce: nonce.toString('hex'), cands: g.cands.map((c) => formatEndpoint(c)), tcands: g.tcands.map((c) => formatEndpoint(c)) },
      { signal: sub, timeout: ctx.timeouts.punch / 2 },
    );
    if (reply.type !== 'punch-ok') throw refusalOf('punch', reply, 'peer refused to punch');
    const theirs = endpointsFrom(reply.body.cands, MAX_PUNCH_CANDIDATES);
    if (theirs.length === 0) throw new ConnectError('peer sent no usable candidates');
    const legs: PunchLegs = {
      udp: g.udp,
      udpRemotes: theirs,
      ...(g.tcp ? { tcpPort: g.tcp.local.port } : {}),
      tcpRemotes: g.tcp ? endpointsFrom(reply.body.tcands, MAX_PUNCH_CANDIDATES) : [],
      nonce,
      predict: predictOf(peer),
    };
    const { sp, path } = await punchAsInitiator(ctx, mod, peer, legs, { v: 1, s: 'punch', c: conn }, sub);
    // Adopted by connect() if it wins the race (a losing pipe is closed, never counted).
    return asNodePipe(sp, path);
  } catch (e) {
    await g.udp.close();
    throw e;
  } finally {
    void g.tcp?.close();
  }
}

/** A nonce from a peer's request: 16–128 bytes, hex; undefined if malformed. */
export function nonceFrom(v: unknown): Buffer | undefined {
  if (typeof v !== 'string' || !/^[0-9a-f]{32,256}$/.test(v) || v.length % 2 !== 0) return undefined;
  return Buffer.from(v, 'hex');
}

/** Serves a peer's punch request. */
export async function servePunch(ctx: NodeContext, m: SignalMessage, peer: PeerAddress, conn: string, signal: AbortSignal): Promise<void> {
  const sig = ctx.signalling as Signalling;
  const mod = await ctx.punchModule();
  const theirs = endpointsFrom(m.body.cands, MAX_PUNCH_CANDIDATES);
  const nonce = nonceFrom(m.body.nonce);
  if (!mod || theirs.length === 0 || !nonce) {
    await sig.reply(m, peer, 'punch-err', { error: mod ? 'bad punch request' : 'no hole punching here' }).catch(() => undefined);
    return;
  }
  const theirTcp = endpointsFrom(m.body.tcands, MAX_PUNCH_CANDIDATES);
  const sub = AbortSignal.any([signal, AbortSignal.timeout(ctx.timeouts.punch)]);
  const g = await gather(ctx, mod, peer, sub);
  try {
    await sig.reply(m, peer, 'punch-ok', { cands: g.cands.map((c) => formatEndpoint(c)), tcands: g.tcands.map((c) => formatEndpoint(c)) }, { signal: sub });
    const legs: PunchLegs = {
      udp: g.udp,
      udpRemotes: theirs,
      ...(g.tcp ? { tcpPort: g.tcp.local.port } : {}),
      tcpRemotes: g.tcp ? theirTcp : [],
      nonce,
      predict: predictOf(peer),
    };
    const { sp, path } = await punchAsResponder(ctx, mod, peer, legs, conn, sub);
    ctx.adopt(sp, path, true);
  } catch (e) {
    await g.udp.close();
    throw e;
  } finally {
    void g.tcp?.close();
  }
}
