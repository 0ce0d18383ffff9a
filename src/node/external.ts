/**
 * What a node learns about the outside at start: its NAT kind and port-allocation delta
 * (RFC 5780 detection against the configured STUN servers) and the reflexive address of its
 * UDP listen socket; later, in the background, gateway port mappings of its listen ports.
 * @module
 */
import { formatEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import type { Interface } from '../interfaces/interfaces.js';
import { detectNat, type NatDetection } from '../nat/detect/nat-type.js';
import { mapPort } from '../nat/portmap/map-port.js';
import type { PortMapping } from '../nat/portmap/mapping.js';
import { parseStunServer, stunGetMapping } from '../nat/stun/client.js';
import type { UdpPipe } from '../pipes/udp.js';
import { errorOf } from './hello.js';
import { describeFailure, StunOutcomes } from './start-warnings.js';

/** What {@link learnExternal} found (each part may be missing). */
export interface ExternalView {
  /** NAT detection result. */
  nat?: NatDetection;
  /** The UDP listen socket's reflexive address. */
  externalUdp?: Endpoint;
}

/** Options of {@link learnExternal}. */
export interface LearnExternalOptions {
  /** STUN servers (`host[:port]`); only IPv4 ones are used. */
  stun: readonly (string | { host: string; port?: number })[];
  /** The node's IPv4 UDP listen socket, if any. */
  udp4: UdpPipe | undefined;
  /** Run NAT type + delta detection. */
  detect: boolean;
  /** Total budget (ms). */
  budget: number;
  /** Cancels everything. */
  signal: AbortSignal;
  /** Non-fatal problems. */
  warn: (detail: string) => void;
}

/** The configured STUN servers of one address family, parsed, in their order. */
export function stunServers(list: readonly (string | { host: string; port?: number })[] | undefined, family: 4 | 6): Endpoint[] {
  const out: Endpoint[] = [];
  for (const s of list ?? []) {
    try {
      const e = parseStunServer(s);
      if (e.family === family) out.push(e);
    } catch {
      /* checked by the node's options */
    }
  }
  return out;
}

/**
 * Runs NAT detection and the listen socket's binding request in parallel. Never throws. Each
 * configured server that was asked and never answered gets one warning (naming it and what
 * failed); so does a failed detection.
 */
export async function learnExternal(o: LearnExternalOptions): Promise<ExternalView> {
  const out: ExternalView = {};
  const v4 = stunServers(o.stun, 4);
  for (const e of stunServers(o.stun, 6)) {
    o.warn(`STUN server ${formatEndpoint(e)} is not used: the node asks STUN over IPv4 only (its IPv6 addresses are published as they are)`);
  }
  const outcomes = new StunOutcomes(v4);
  const jobs: Promise<void>[] = [];
  if (o.detect && v4.length > 0) {
    jobs.push(
      detectNat({ servers: v4, family: 4, signal: o.signal, timeout: o.budget, bindingTimeout: Math.min(1000, o.budget), delta: { count: 4 } }).then(
        (r) => {
          out.nat = r;
          outcomes.detection(r);
        },
        (e: unknown) => {
          if (!o.signal.aborted) o.warn(`NAT detection failed: ${errorOf(e).message}`);
        },
      ),
    );
  }
  const first = v4[0];
  if (o.udp4 && first !== undefined) {
    jobs.push(
      stunGetMapping({ server: first, pipe: o.udp4, signal: o.signal, timeout: Math.min(1500, o.budget), rto: 200 }).then(
        (m) => {
          out.externalUdp = m.mapped;
          outcomes.record(first, true);
        },
        (e: unknown) => outcomes.record(first, false, describeFailure(e)),
      ),
    );
  }
  await Promise.all(jobs);
  if (!o.signal.aborted) for (const w of outcomes.warnings()) o.warn(w);
  return out;
}

/** Options of {@link mapListenPorts}. */
export interface MapPortsOptions {
  /** The node's interfaces (the default IPv4 one with a gateway is used). */
  nics: readonly Interface[];
  /** The listen port (the same internal port for TCP and UDP). */
  port: number;
  /** Protocols to map, in order. */
  protocols: readonly ('tcp' | 'udp')[];
  /** Cancels the requests and, through `mapPort`, the renewals. */
  signal: AbortSignal;
  /** A mapping was made (return false to have it closed: the node is closing). */
  onMapping: (m: PortMapping) => boolean;
  /** A mapping changed or expired. */
  onChange: () => void;
  /** Non-fatal problems. */
  warn: (detail: string) => void;
}

/**
 * Asks the default gateway (UPnP IGD, NAT-PMP or PCP) to map the listen port for each protocol;
 * mappings renew themselves until closed. Skipped when the default interface has a public
 * address or no gateway. Never throws.
 */
export async function mapListenPorts(o: MapPortsOptions): Promise<void> {
  const def = o.nics.find((i) => i.up && !i.loopback && i.isDefault[4]);
  if (!def || !def.gateways[4]) return;
  const primary = def.primary(4);
  if (!primary || primary.scope === 'global') return;
  for (const protocol of o.protocols) {
    try {
      const m = await mapPort({
        internalPort: o.port,
        protocol,
        interface: def.name,
        methodTimeout: 2_000,
        signal: o.signal,
        onChange: o.onChange,
        onExpire: o.onChange,
      });
      if (!o.onMapping(m)) await m.close();
    } catch (e) {
      o.warn(`no ${protocol.toUpperCase()} port mapping: ${errorOf(e).message}`);
    }
  }
}
