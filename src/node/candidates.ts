/**
 * Which of a peer's advertised endpoints to try for a direct TCP connection, in what order.
 * Pure functions of the peer address and our interfaces.
 * @module
 */
import type { Endpoint, Family } from '../interfaces/endpoint.js';
import type { Interface } from '../interfaces/interfaces.js';
import { ipToBytes } from '../interfaces/scope.js';
import type { AddrEndpoint, PeerAddress } from './address.js';

/** One direct connection attempt. */
export interface DirectCandidate {
  /** Where to connect (link-local addresses carry our interface as zone). */
  dest: Endpoint;
  /** The advertised kind it came from. */
  kind: AddrEndpoint['kind'];
  /** Lower is tried first. */
  rank: number;
}

/** Whether `a` and `b` are in the same `prefix`-bit network. */
export function sameSubnet(a: string, b: string, prefix: number): boolean {
  let x: Uint8Array;
  let y: Uint8Array;
  try {
    x = ipToBytes(a);
    y = ipToBytes(b);
  } catch {
    return false;
  }
  if (x.length !== y.length || prefix <= 0) return false;
  const bits = Math.min(prefix, x.length * 8);
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (x[i] !== y[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((x[full] as number) & mask) === ((y[full] as number) & mask);
}

/** Our own addresses, for "same host" and "same LAN" tests. */
export function localAddresses(nics: readonly Interface[]): { host: string; prefix: number; family: Family; iface: string }[] {
  const out: { host: string; prefix: number; family: Family; iface: string }[] = [];
  for (const i of nics) {
    if (!i.up) continue;
    for (const a of i.addresses) out.push({ host: a.address, prefix: a.prefixLength, family: a.family, iface: i.name });
  }
  return out;
}

/**
 * Whether `peer` looks like it runs on this host: one of its non-loopback TCP endpoints is an
 * address of ours, or it has loopback endpoints only.
 */
export function peerOnThisHost(peer: PeerAddress, nics: readonly Interface[], ours = localAddresses(nics)): boolean {
  const ourHosts = new Set(ours.map((o) => o.host));
  const eps = peer.interfaces.flatMap((i) => i.endpoints).filter((e) => e.proto === 'tcp');
  return eps.some((e) => e.kind !== 'loopback' && ourHosts.has(e.host)) || eps.every((e) => e.kind === 'loopback');
}

/**
 * Direct TCP candidates for `peer`, best first:
 * same host (loopback) when the peer has one of our addresses or is us; LAN addresses in one
 * of our subnets; IPv6 link-local on each of our interfaces that has a link-local address;
 * public and port-mapped addresses; the external (reflexive) address; other LAN addresses;
 * loopback last when the peer does not look local.
 */
export function directCandidates(peer: PeerAddress, nics: readonly Interface[], opts: { self?: boolean; max?: number } = {}): DirectCandidate[] {
  const ours = localAddresses(nics);
  const ourHosts = new Set(ours.map((o) => o.host));
  const eps = peer.interfaces.flatMap((i) => i.endpoints).filter((e) => e.proto === 'tcp');
  const sameHost = opts.self === true || peerOnThisHost(peer, nics, ours);
  const out: DirectCandidate[] = [];
  const seen = new Set<string>();
  const add = (dest: Endpoint, kind: AddrEndpoint['kind'], rank: number): void => {
    const key = `${dest.host}%${dest.scopeId ?? ''}:${dest.port}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ dest, kind, rank });
  };
  const llIfaces = nics.filter((i) => i.up && !i.loopback && i.linkLocal(6) !== undefined);
  for (const e of eps) {
    const base: Endpoint = { host: e.host, port: e.port, family: e.family };
    switch (e.kind) {
      case 'loopback':
        add(base, e.kind, sameHost ? 0 : 90);
        break;
      case 'lan': {
        const near = ours.some((o) => o.family === e.family && o.host !== e.host && sameSubnet(o.host, e.host, o.prefix));
        add(base, e.kind, ourHosts.has(e.host) ? 1 : near ? 10 : 60);
        break;
      }
      case 'link-local':
        if (e.family === 6) for (const i of llIfaces) add({ ...base, scopeId: i.name }, e.kind, 20);
        break;
      case 'global':
        add(base, e.kind, ourHosts.has(e.host) ? 1 : 30);
        break;
      case 'mapped':
        add(base, e.kind, 35);
        break;
      case 'external':
        add(base, e.kind, 40);
        break;
    }
  }
  out.sort((a, b) => a.rank - b.rank);
  return out.slice(0, opts.max ?? 12);
}
