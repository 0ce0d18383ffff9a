/**
 * The two legs of the punch strategy, run side by side from one signalling exchange: UDP hole
 * punching (then a reliable stream over UDP) and TCP simultaneous open (then the kernel's TCP).
 *
 * - The **connecting side** takes the first leg that punches, but gives TCP a short grace
 *   ({@link TCP_PREFERENCE_GRACE}) when UDP comes first: a punched TCP connection carries bulk
 *   data faster than the user-space stream. It runs the secure handshake on that leg only
 *   and aborts the other, which closes its sockets.
 * - The **answering side** follows: it runs the responder's handshake on every leg that
 *   punches and keeps the first one that completes with the exchange's connection id (the
 *   one the connecting side chose); the other leg is aborted.
 * @module
 */
import { ConnectError } from '../errors.js';
import type { SecurePipe } from '../crypto/secure-pipe.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import type { TcpPipe } from '../pipes/tcp.js';
import type { UdpPipe } from '../pipes/udp.js';
import type { PeerAddress } from './address.js';
import type { NodeContext } from './context.js';
import { decodeHello, errorOf, type Hello } from './hello.js';
import type { PunchModule } from './punch-api.js';
import { secureDatagram, secureStream } from './secure-datagram.js';
import type { PipePath } from './types.js';

/** How long the connecting side waits for the TCP leg once the UDP leg has punched (ms). */
export const TCP_PREFERENCE_GRACE = 150;

/** What one side brings to a punch. */
export interface PunchLegs {
  /** The UDP socket and its candidates. */
  udp: UdpPipe;
  /** The peer's UDP candidates. */
  udpRemotes: readonly Endpoint[];
  /** The local TCP port whose mapping the peer was told about, when TCP punching is on. */
  tcpPort?: number;
  /** The peer's TCP candidates (empty: no TCP leg). */
  tcpRemotes: readonly Endpoint[];
  /** Session nonce shared through signalling. */
  nonce: Buffer;
  /** NAT port-allocation hint for the peer. */
  predict?: { kind: string; value: number } | undefined;
}

type Punched = { kind: 'udp'; remote: Endpoint; rtt: number } | { kind: 'tcp'; pipe: TcpPipe; remote: Endpoint };

interface Leg {
  ac: AbortController;
  result: Promise<Punched>;
}

function startLegs(ctx: NodeContext, mod: PunchModule, l: PunchLegs, signal: AbortSignal): { udp: Leg; tcp: Leg | undefined } {
  const udpAc = new AbortController();
  const udp: Leg = {
    ac: udpAc,
    result: mod
      .punch({
        pipe: l.udp,
        peerCandidates: l.udpRemotes,
        nonce: l.nonce,
        signal: AbortSignal.any([signal, udpAc.signal]),
        timeout: ctx.timeouts.punch,
        ...(l.predict ? { predictDelta: l.predict } : {}),
      })
      .then((r) => ({ kind: 'udp' as const, remote: r.remote, rtt: r.rtt })),
  };
  let tcp: Leg | undefined;
  if (l.tcpPort !== undefined && l.tcpRemotes.length > 0) {
    const tcpAc = new AbortController();
    tcp = {
      ac: tcpAc,
      result: mod
        .tcpPunch({ localPort: l.tcpPort, remotes: l.tcpRemotes, nonce: l.nonce, signal: AbortSignal.any([signal, tcpAc.signal]), timeout: ctx.timeouts.punch })
        .then((r) => ({ kind: 'tcp' as const, pipe: r.pipe, remote: r.remote })),
    };
  }
  for (const leg of [udp, tcp]) leg?.result.catch(() => undefined);
  return { udp, tcp };
}

/** Closes what a leg produced after it lost. */
function discard(p: Punched): void {
  if (p.kind === 'tcp') void p.pipe.close();
}

/** Resolves with the first fulfilled value; rejects with every error when all fail. */
function firstOf<T>(ps: readonly Promise<T>[]): Promise<T> {
  return new Promise((resolve, reject) => {
    let left = ps.length;
    const errors: string[] = [];
    for (const p of ps) {
      p.then(resolve, (e: unknown) => {
        errors.push(errorOf(e).message);
        if (--left === 0) reject(new ConnectError(`hole punching failed (${errors.join('; ')})`));
      });
    }
  });
}

/** The connecting side: punch both legs, choose one, run the handshake on it. */
export async function punchAsInitiator(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, l: PunchLegs, hello: Hello, signal: AbortSignal): Promise<{ sp: SecurePipe; path: PipePath }> {
  const { udp, tcp } = startLegs(ctx, mod, l, signal);
  let chosen: Punched;
  try {
    chosen = await firstOf([udp.result, ...(tcp ? [tcp.result] : [])]);
    if (chosen.kind === 'udp' && tcp) {
      // Prefer TCP if it comes within the grace.
      const late = await Promise.race([tcp.result.catch(() => undefined), new Promise<undefined>((r) => setTimeout(() => r(undefined), TCP_PREFERENCE_GRACE).unref())]);
      if (late) chosen = late;
    }
  } catch (e) {
    udp.ac.abort();
    tcp?.ac.abort();
    throw e;
  }
  const other = chosen.kind === 'tcp' ? udp : tcp;
  other?.ac.abort();
  other?.result.then(discard, () => undefined);
  if (chosen.kind === 'tcp') {
    void l.udp.close();
    const sp = await secureStream(ctx, chosen.pipe, { initiator: true, peer, hello, signal });
    return { sp, path: { strategy: 'punch', transport: 'tcp', local: sp.local, remote: chosen.remote } };
  }
  const sp = await secureDatagram(ctx, mod, l.udp, chosen.remote, { initiator: true, peer, hello, signal, rtt: chosen.rtt });
  return { sp, path: { strategy: 'punch', transport: 'udp', local: l.udp.local, remote: chosen.remote } };
}

/** The answering side: handshake on every leg that punches, keep the one the peer chose. */
export async function punchAsResponder(ctx: NodeContext, mod: PunchModule, peer: PeerAddress, l: PunchLegs, conn: string, signal: AbortSignal): Promise<{ sp: SecurePipe; path: PipePath }> {
  const { udp, tcp } = startLegs(ctx, mod, l, signal);
  const legs = [udp, ...(tcp ? [tcp] : [])];
  const attempts = legs.map(async (leg) => {
    const p = await leg.result;
    const sub = AbortSignal.any([signal, leg.ac.signal]);
    if (p.kind === 'tcp') {
      const sp = await secureStream(ctx, p.pipe, { initiator: false, peer, signal: sub });
      return { leg, sp, path: { strategy: 'punch', transport: 'tcp', local: sp.local, remote: p.remote } as PipePath };
    }
    const sp = await secureDatagram(ctx, mod, l.udp, p.remote, { initiator: false, peer, signal: sub, rtt: p.rtt });
    return { leg, sp, path: { strategy: 'punch', transport: 'udp', local: l.udp.local, remote: p.remote } as PipePath };
  });
  for (const a of attempts) a.catch(() => undefined);
  let won: Awaited<(typeof attempts)[number]>;
  try {
    won = await firstOf(attempts);
  } catch (e) {
    for (const leg of legs) leg.ac.abort();
    throw e;
  }
  for (const leg of legs) {
    if (leg === won.leg) continue;
    leg.ac.abort();
    leg.result.then(discard, () => undefined);
  }
  // A handshake that completes later on the losing leg is closed.
  for (const a of attempts) void a.then((x) => x !== won && void x.sp.close(), () => undefined);
  if (won.path.transport === 'tcp') void l.udp.close();
  if (decodeHello(won.sp.remoteExtensions)?.c !== conn) {
    await won.sp.close();
    throw new ConnectError('the punched connection carries another exchange');
  }
  return { sp: won.sp, path: won.path };
}
