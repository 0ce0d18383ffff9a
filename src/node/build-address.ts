/**
 * Builds a node's address text from what it knows: its interfaces and listen port, its NAT
 * kind and external addresses, its gateway port mapping and its signalling channels.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import { formatEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';
import type { Interface } from '../interfaces/interfaces.js';
import type { NatDetection } from '../nat/detect/nat-type.js';
import type { PortMapping } from '../nat/portmap/mapping.js';
import { StateError } from '../errors.js';
import {
  encodeAddress, endpointProblem, MAX_ADDR_ENDPOINTS, MAX_ADDR_INTERFACES, MAX_ADDR_SIGNAL, parseAddress,
  type AddrEndpoint, type AddrInterface, type PeerAddress, type SignalChannel,
} from './address.js';
import { AddressError } from './errors.js';

/** What goes into a node's address. */
export interface AddressInput {
  /** The node's identity (signs the address). */
  identity: Identity;
  /** The node's signalling public key (X25519, raw). */
  signalKey: Uint8Array;
  /** The node's interfaces. */
  nics: readonly Interface[];
  /** Address families the node listens on. */
  families: ReadonlySet<Family>;
  /** The TCP (and UDP) listen port. */
  port: number;
  /** Only loopback endpoints (a node listening on loopback only). */
  loopbackOnly: boolean;
  /** NAT detection result. */
  nat?: NatDetection | undefined;
  /** The listen UDP socket's reflexive address. */
  externalUdp?: Endpoint | undefined;
  /** Gateway port mappings (TCP and/or UDP). */
  mappings?: readonly (PortMapping | undefined)[];
  /** Signalling channels, in order of preference. */
  signal: readonly SignalChannel[];
  /**
   * Called for each endpoint learned from outside (STUN, gateway) that is left out because no
   * address may carry it (loopback, unspecified, multicast, …: what a STUN server on loopback
   * or a gateway without a WAN address reports), with why.
   */
  onDropped?: (e: AddrEndpoint, why: string) => void;
}

/** Drops duplicate endpoints. */
function dedupe(eps: AddrEndpoint[]): AddrEndpoint[] {
  const seen = new Set<string>();
  return eps.filter((e) => {
    const k = `${e.kind}|${e.proto}|${e.host}|${e.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * The endpoints of the default interface learned from outside: external (STUN) and mapped
 * (gateway). Those no address may carry are left out (reported through `onDropped`): what
 * others report must not stop the node from having an address.
 */
function outsideEndpoints(a: AddressInput, eps: AddrEndpoint[]): void {
  const add = (e: AddrEndpoint): void => {
    const why = endpointProblem(e);
    if (why === undefined) eps.push(e);
    else a.onDropped?.(e, why);
  };
  const ext = a.nat?.external ?? a.externalUdp;
  if (ext && ext.family === 4 && !eps.some((e) => e.host === ext.host)) add({ kind: 'external', proto: 'tcp', host: ext.host, port: a.port, family: 4 });
  const u = a.externalUdp;
  if (u && !eps.some((e) => e.host === u.host && e.proto === 'udp')) add({ kind: 'external', proto: 'udp', host: u.host, port: u.port, family: u.family });
  for (const m of a.mappings ?? []) {
    if (m && m.state === 'active' && m.externalAddress) {
      const fam: Family = m.externalAddress.includes(':') ? 6 : 4;
      add({ kind: 'mapped', proto: m.protocol, host: m.externalAddress, port: m.externalPort, family: fam });
    }
  }
}

/**
 * Encodes the address. Most telling first: loopback, the default interface, then the rest;
 * whatever does not fit the address size limit is left out (a host with many bridges has more
 * than fits).
 */
export function buildAddress(a: AddressInput): string {
  const interfaces: AddrInterface[] = [];
  const port = a.port;
  const defName = a.nics.find((i) => i.up && !i.loopback && i.isDefault[4])?.name ?? a.nics.find((i) => i.up && !i.loopback)?.name;
  if (!a.loopbackOnly) {
    for (const i of a.nics) {
      if (!i.up || i.loopback) continue;
      const eps: AddrEndpoint[] = [];
      for (const x of i.addresses) {
        if (!a.families.has(x.family)) continue;
        const kind: AddrEndpoint['kind'] | undefined =
          x.scope === 'link-local' ? (x.family === 6 ? 'link-local' : undefined) : x.scope === 'global' ? 'global' : x.scope === 'loopback' ? undefined : 'lan';
        if (kind === undefined || eps.some((e) => e.host === x.address)) continue;
        eps.push({ kind, proto: 'tcp', host: x.address, port, family: x.family });
      }
      const iface: AddrInterface = { nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: eps };
      if (i.name === defName) {
        if (a.nat) {
          iface.nat = a.nat.type;
          if (a.nat.delta) iface.delta = { type: a.nat.delta.type, value: Math.max(-32768, Math.min(32767, a.nat.delta.value)) };
        }
        outsideEndpoints(a, eps);
      }
      if (eps.length > 0) interfaces.push({ ...iface, endpoints: dedupe(eps) });
    }
  }
  // Loopback: same-host connections (and the only endpoint of an offline machine).
  const lo: AddrEndpoint[] = [];
  if (a.families.has(4)) lo.push({ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port, family: 4 });
  else if (a.families.has(6)) lo.push({ kind: 'loopback', proto: 'tcp', host: '::1', port, family: 6 });
  interfaces.unshift({ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: lo });
  const defIdx = interfaces.findIndex((x) => x.nat !== 'UNKNOWN' || x.endpoints.some((e) => e.kind === 'external' || e.kind === 'mapped'));
  if (defIdx > 1) interfaces.splice(1, 0, ...interfaces.splice(defIdx, 1));
  let list = interfaces.slice(0, MAX_ADDR_INTERFACES).map((x) => ({ ...x, endpoints: x.endpoints.slice(0, MAX_ADDR_ENDPOINTS) }));
  for (;;) {
    try {
      return encodeAddress(a.identity, { signalKey: a.signalKey, interfaces: list, signal: a.signal.slice(0, MAX_ADDR_SIGNAL) });
    } catch (e) {
      if (!(e instanceof AddressError) || e.field !== 'length' || list.length <= 1) throw e;
      const last = list[list.length - 1] as AddrInterface;
      list = last.endpoints.length > 1 ? [...list.slice(0, -1), { ...last, endpoints: last.endpoints.slice(0, -1) }] : list.slice(0, -1);
    }
  }
}

/** Most distinct left-out endpoints remembered (so each is warned about once). */
const MAX_DROPPED_REMEMBERED = 64;

/**
 * A node's current address, rebuilt whenever the node learns more (NAT detection, a port
 * mapping). An endpoint learned from outside that no address may carry (e.g. a STUN server on
 * loopback reports `127.0.0.1`) is left out with a warning, once per endpoint.
 */
export class NodeAddress {
  private text = '';
  private parsed: PeerAddress | undefined;
  private readonly dropped = new Set<string>();

  /** @param warn reports a left-out endpoint */
  constructor(private readonly warn: (detail: string) => void) {}

  /** The address text. @throws StateError before the first {@link rebuild}. */
  get addr(): string {
    if (!this.text) throw new StateError('the node is not started');
    return this.text;
  }

  /** The address, parsed. @throws StateError before the first {@link rebuild}. */
  get address(): PeerAddress {
    if (!this.parsed) throw new StateError('the node is not started');
    return this.parsed;
  }

  /** Rebuilds the address from `a`; returns the new text when it changed, else undefined. */
  rebuild(a: Omit<AddressInput, 'onDropped'>): string | undefined {
    const text = buildAddress({ ...a, onDropped: (e, why) => this.droppedEndpoint(e, why) });
    this.parsed = parseAddress(text);
    if (text === this.text) return undefined;
    this.text = text;
    return text;
  }

  private droppedEndpoint(e: AddrEndpoint, why: string): void {
    const key = `${e.kind} ${e.proto} ${e.host}:${e.port}`;
    if (this.dropped.has(key)) return;
    if (this.dropped.size >= MAX_DROPPED_REMEMBERED) this.dropped.clear();
    this.dropped.add(key);
    this.warn(`${e.kind} ${e.proto} endpoint ${formatEndpoint(e)} left out of the address: ${why}`);
  }
}
