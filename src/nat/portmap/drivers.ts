/**
 * One function per method that creates a mapping and returns the {@link MappingDriver} that
 * renews and deletes it: NAT-PMP, PCP (same nonce for renew/delete), UPnP port mappings and
 * UPnP IPv6 pinholes. `exactPort` makes a mapping on another port than the one asked for a
 * failure (the stray mapping is deleted first).
 * @module
 */
import { PortMappingError, type PortMappingMethod } from '../../errors.js';
import type { Family } from '../../interfaces/endpoint.js';
import type { MappingDriver, MappingGrant } from './mapping.js';
import type { NatPmpClient } from './natpmp-client.js';
import type { PcpClient } from './pcp-client.js';
import { routeSourceAddress, stepBudget } from './transport.js';
import type { UpnpClient } from './upnp-client.js';

/** What every method needs to create a mapping. @internal */
export interface StartRequest {
  protocol: 'udp' | 'tcp';
  internalPort: number;
  externalPort: number;
  lifetime: number;
  exactPort: boolean;
  description: string;
  signal: AbortSignal;
  /** Time budget for the creation, ms. */
  timeout: number;
}

/** A created mapping. @internal */
export interface Started {
  driver: MappingDriver;
  grant: MappingGrant;
  internalAddress: string;
  family: Family;
}

function deadlineOf(timeout: number): () => number {
  const end = performance.now() + timeout;
  return () => Math.max(1, Math.floor(end - performance.now()));
}

/**
 * With `exactPort`, the gateway could only map another external port than the one asked for
 * (that mapping was deleted). Code `ERR_PORT_MAPPING`.
 */
export class ExternalPortUnavailableError extends PortMappingError {
  /** The port asked for. */
  readonly requestedPort: number;
  /** The port the gateway offered instead. */
  readonly offeredPort: number;
  constructor(method: PortMappingMethod, requestedPort: number, offeredPort: number) {
    super(method, `${method}: the gateway mapped external port ${offeredPort}, not the requested ${requestedPort} (exactPort)`);
    this.requestedPort = requestedPort;
    this.offeredPort = offeredPort;
  }
}

function wrongPort(method: PortMappingMethod, asked: number, got: number): PortMappingError {
  return new ExternalPortUnavailableError(method, asked, got);
}

/** NAT-PMP (RFC 6886). */
export async function startNatPmp(client: NatPmpClient, r: StartRequest): Promise<Started> {
  const left = deadlineOf(r.timeout);
  const internalAddress = client.localAddress ?? (await routeSourceAddress(client.server, { signal: r.signal, timeout: left() }));
  const g = await client.map(
    { protocol: r.protocol, internalPort: r.internalPort, externalPort: r.externalPort, lifetime: r.lifetime },
    { signal: r.signal, timeout: left() },
  );
  if (r.exactPort && g.externalPort !== r.externalPort) {
    await client.unmap(r.protocol, r.internalPort, { signal: r.signal, timeout: Math.min(left(), 2_000) }).catch(() => undefined);
    throw wrongPort('nat-pmp', r.externalPort, g.externalPort);
  }
  const address = async (timeout: number, signal?: AbortSignal): Promise<string | undefined> =>
    client.externalAddress({ timeout, ...(signal ? { signal } : {}) }).then(
      (a) => a.externalAddress,
      () => undefined, // e.g. NETWORK_FAILURE from a gateway whose WAN address is reserved: the mapping still works
    );
  let externalPort = g.externalPort;
  const driver: MappingDriver = {
    method: 'nat-pmp',
    async refresh(o) {
      const step = stepBudget(o); // the map and the address query after a reboot share o.timeout
      const n = await client.map({ protocol: r.protocol, internalPort: r.internalPort, externalPort, lifetime: r.lifetime }, step());
      externalPort = n.externalPort;
      const left = step().timeout;
      const ext = n.lostState !== undefined ? await address(left !== undefined && left > 0 && Number.isFinite(left) ? Math.min(left, 2_000) : 2_000, o.signal) : undefined;
      return { externalAddress: ext, externalPort: n.externalPort, lifetime: n.lifetime };
    },
    remove: (o) => client.unmap(r.protocol, r.internalPort, o),
    onLostState: (cb) => client.epoch.onLostState(cb),
  };
  return {
    driver,
    grant: { externalAddress: await address(Math.min(left(), 2_000), r.signal), externalPort: g.externalPort, lifetime: g.lifetime },
    internalAddress,
    family: 4,
  };
}

/** PCP (RFC 6887): renewals and the deletion reuse the mapping's nonce. */
export async function startPcp(client: PcpClient, r: StartRequest): Promise<Started> {
  const left = deadlineOf(r.timeout);
  const g = await client.map(
    { protocol: r.protocol, internalPort: r.internalPort, externalPort: r.externalPort, lifetime: r.lifetime },
    { signal: r.signal, timeout: left() },
  );
  const ident = { nonce: g.nonce, protocol: r.protocol, internalPort: r.internalPort };
  if (r.exactPort && g.externalPort !== r.externalPort) {
    await client.unmap(ident, { signal: r.signal, timeout: Math.min(left(), 2_000) }).catch(() => undefined);
    throw wrongPort('pcp', r.externalPort, g.externalPort);
  }
  let cur = { externalPort: g.externalPort, externalAddress: g.externalAddress };
  const driver: MappingDriver = {
    method: 'pcp',
    jitter: true,
    async refresh(o) {
      const n = await client.map({ ...ident, ...cur, lifetime: r.lifetime }, o);
      cur = { externalPort: n.externalPort, externalAddress: n.externalAddress };
      return { externalAddress: n.externalAddress, externalPort: n.externalPort, lifetime: n.lifetime };
    },
    remove: (o) => client.unmap(ident, o),
    onLostState: (cb) => client.epoch.onLostState(cb),
  };
  return {
    driver,
    grant: { externalAddress: g.externalAddress, externalPort: g.externalPort, lifetime: g.lifetime },
    internalAddress: g.internalAddress,
    family: client.server.family,
  };
}

/** UPnP IGD port mapping (IPv4). */
export async function startUpnp(client: UpnpClient, r: StartRequest): Promise<Started> {
  const left = deadlineOf(r.timeout);
  const req = { protocol: r.protocol, internalPort: r.internalPort, lifetime: r.lifetime, description: r.description };
  const g = await client.addPortMapping({ ...req, externalPort: r.externalPort, exact: r.exactPort }, { signal: r.signal, timeout: left() });
  let externalPort = g.externalPort;
  const ext = await client.getExternalAddress({ signal: r.signal, timeout: Math.min(left(), 3_000) }).catch(() => undefined);
  const driver: MappingDriver = {
    method: 'upnp',
    async refresh(o) {
      const n = await client.addPortMapping({ ...req, externalPort, exact: true }, o);
      externalPort = n.externalPort;
      return { externalAddress: undefined, externalPort: n.externalPort, lifetime: n.lifetime, permanent: n.permanent };
    },
    remove: (o) => client.deletePortMapping(r.protocol, externalPort, o),
  };
  return {
    driver,
    grant: { externalAddress: ext, externalPort: g.externalPort, lifetime: g.lifetime, permanent: g.permanent },
    internalAddress: client.localAddress,
    family: 4,
  };
}

/**
 * UPnP IPv6 pinhole (WANIPv6FirewallControl:1): no translation, so the external address and
 * port are our own. A refresh whose UpdatePinhole finds no such entry (gateway restarted)
 * opens a new pinhole.
 */
export async function startUpnpPinhole(client: UpnpClient, r: StartRequest): Promise<Started> {
  const req = { protocol: r.protocol, internalPort: r.internalPort, lifetime: r.lifetime };
  const first = await client.addPinhole(req, { signal: r.signal, timeout: r.timeout });
  let id = first.uniqueId;
  const driver: MappingDriver = {
    method: 'upnp',
    async refresh(o) {
      const step = stepBudget(o); // UpdatePinhole and a new AddPinhole share o.timeout
      let lifetime: number;
      try {
        lifetime = await client.updatePinhole(id, r.lifetime, step());
      } catch (e) {
        if (!(e instanceof PortMappingError) || e.resultCode !== 704) throw e; // 704 NoSuchEntry
        const n = await client.addPinhole(req, step());
        id = n.uniqueId;
        lifetime = n.lifetime;
      }
      return { externalAddress: client.localAddress, externalPort: r.internalPort, lifetime };
    },
    remove: (o) => client.deletePinhole(id, o),
  };
  return {
    driver,
    grant: { externalAddress: client.localAddress, externalPort: r.internalPort, lifetime: first.lifetime },
    internalAddress: client.localAddress,
    family: 6,
  };
}
