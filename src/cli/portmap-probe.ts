/**
 * Hook for the `p2pd nat` port-mapping probe: which port-mapping methods (UPnP IGD, NAT-PMP,
 * PCP) the gateway offers.
 *
 * The probe itself belongs to `src/nat/portmap/`. The default probe loads that module lazily
 * and uses, in this order:
 * 1. `probePortMapping(opts): Promise<PortMappingProbeResult[]>` if the module exports it
 *    (preferred; it can run the three protocols concurrently);
 * 2. otherwise `getExternalAddress({ methods: [method], methodTimeout, timeout, signal, interface? })`,
 *    once for UPnP and once for NAT-PMP (an answer means the method is available); PCP is then
 *    reported as not probed.
 * Until one of them exists the CLI reports the probe as not available. Another probe can be
 * installed with {@link setPortMappingProbe} (tests, embedders).
 * @module
 */
import type { PortMappingMethod } from '../errors.js';
import type { Family } from '../interfaces/endpoint.js';

/** What the probe found for one method. */
export interface PortMappingProbeResult {
  /** `'upnp'`, `'nat-pmp'` or `'pcp'`. */
  method: PortMappingMethod;
  /** Whether the gateway answered this protocol. */
  available: boolean;
  /** The external address the gateway reported, if any. */
  externalAddress?: string;
  /** Error or extra information. */
  detail?: string;
  /** Milliseconds the probe took. */
  ms?: number;
}

/** Options handed to the probe. */
export interface PortMappingProbeOptions {
  /** Cancels the probe. */
  signal?: AbortSignal;
  /** Time limit per method (ms). */
  timeout: number;
  /** Address family. */
  family: Family;
  /** Interface the NAT test ran on, when given. */
  iface?: string;
}

/** A port-mapping probe. */
export type PortMappingProbe = (opts: PortMappingProbeOptions) => Promise<PortMappingProbeResult[]>;

/** The methods reported, in order. */
export const PORT_MAPPING_METHODS: readonly PortMappingMethod[] = ['upnp', 'nat-pmp', 'pcp'];

let installed: PortMappingProbe | undefined;

/** Installs `probe` as the port-mapping probe of the CLI (`undefined` restores the default). */
export function setPortMappingProbe(probe: PortMappingProbe | undefined): void {
  installed = probe;
}

/** The probe in use: the installed one, else {@link defaultPortMappingProbe}. */
export function getPortMappingProbe(): PortMappingProbe {
  return installed ?? defaultPortMappingProbe;
}

/** Loads `src/nat/portmap` and probes with what it offers (see the module doc). */
export async function defaultPortMappingProbe(opts: PortMappingProbeOptions): Promise<PortMappingProbeResult[]> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import('../nat/portmap/index.js')) as Record<string, unknown>;
  } catch (e) {
    return PORT_MAPPING_METHODS.map((method) => ({ method, available: false, detail: `port-mapping module unavailable: ${(e as Error).message}` }));
  }
  const probe = mod['probePortMapping'];
  if (typeof probe === 'function') return (probe as PortMappingProbe)(opts);
  const get = mod['getExternalAddress'];
  if (typeof get !== 'function') {
    return PORT_MAPPING_METHODS.map((method) => ({ method, available: false, detail: 'not implemented yet' }));
  }
  // getExternalAddress({ methods, methodTimeout, interface, signal, timeout }) answers for UPnP
  // and NAT-PMP; PCP has no such query (a PCP probe needs a mapping: left to probePortMapping).
  return Promise.all(
    PORT_MAPPING_METHODS.map(async (method): Promise<PortMappingProbeResult> => {
      if (method === 'pcp') return { method, available: false, detail: 'not probed: PCP has no query without a mapping' };
      const t0 = performance.now();
      try {
        const r = (await (get as (o: object) => Promise<unknown>)({
          methods: [method], methodTimeout: opts.timeout, timeout: opts.timeout, signal: opts.signal,
          ...(opts.iface !== undefined ? { interface: opts.iface } : {}),
        })) as unknown;
        const addr = typeof r === 'string' ? r : typeof r === 'object' && r !== null && typeof (r as { address?: unknown }).address === 'string' ? (r as { address: string }).address : undefined;
        return { method, available: true, ...(addr ? { externalAddress: addr } : {}), ms: performance.now() - t0 };
      } catch (e) {
        return { method, available: false, detail: shortError(e), ms: performance.now() - t0 };
      }
    }),
  );
}

function shortError(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > 120 ? `${m.slice(0, 117)}...` : m;
}
