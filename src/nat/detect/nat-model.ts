/**
 * What NAT detection reports: P2PD's seven NAT types, the RFC 4787 behaviours, the options
 * and result of `detectNat` (see `nat-type.ts`), and the pure mapping between them.
 * @module
 */
import { sameEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import type { BindOptions } from '../../pipes/types.js';
import type { AbortOptions } from '../../util/abort.js';
import type { DeltaOptions, DeltaResult } from './delta.js';

/** P2PD's seven NAT types. */
export type NatType =
  | 'OPEN'
  | 'SYMMETRIC_UDP_FIREWALL'
  | 'FULL_CONE'
  | 'RESTRICTED_CONE'
  | 'PORT_RESTRICTED_CONE'
  | 'SYMMETRIC'
  | 'BLOCKED';

/** Every {@link NatType}, in P2PD's order. */
export const NAT_TYPES: readonly NatType[] = [
  'OPEN', 'SYMMETRIC_UDP_FIREWALL', 'FULL_CONE', 'RESTRICTED_CONE', 'PORT_RESTRICTED_CONE', 'SYMMETRIC', 'BLOCKED',
];

/** P2PD's numeric NAT type codes, as its peer addresses carry them. */
export const NAT_TYPE_CODE: Readonly<Record<NatType, number>> = {
  OPEN: 1, SYMMETRIC_UDP_FIREWALL: 2, FULL_CONE: 3, RESTRICTED_CONE: 4, PORT_RESTRICTED_CONE: 5, SYMMETRIC: 6, BLOCKED: 7,
};

/** RFC 4787 mapping / filtering behaviour; `'unknown'` when the tests could not tell. */
export type NatBehavior = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown';

/** Which discovery the result came from. */
export type NatMethod = 'rfc5780' | 'rfc3489' | 'basic' | 'none';

/** One test of the detection, for diagnostics. */
export interface NatTestRecord {
  /** `'I'`, `'filter-II'`, `'filter-III'`, `'map-base'`, `'map-II'`, `'map-III'`, `'hairpin'`. */
  name: string;
  /** Where the request went. */
  to: Endpoint;
  /** Whether an answer arrived. */
  ok: boolean;
  /** Where the answer came from. */
  from?: Endpoint;
  /** The mapped address it reported. */
  mapped?: Endpoint;
  /** Milliseconds from start of the detection to the answer (or the give-up). */
  at: number;
  /** Why it failed, when it did (`timeout`, an error message). */
  error?: string;
}

/** Progress of `detectNat`, for spinners and logs. */
export interface NatProgress {
  /** What is running or what finished. */
  step: 'binding' | 'filtering' | 'mapping' | 'delta' | 'hairpin' | 'done';
  /** Human-readable state. */
  message: string;
}

/** Options of `detectNat`. */
export interface DetectNatOptions extends AbortOptions {
  /**
   * STUN servers (IP literals, default port 3478), tried in order until one answers. One that
   * supports RFC 5780 (or RFC 3489 CHANGE-REQUEST) gives the full answer; with only plain
   * servers, mapping is measured across two of them and filtering stays `'unknown'`.
   */
  servers: (EndpointLike | { host: string; port?: number })[];
  /** Address family. @default the first server's */
  family?: Family;
  /** Local address or interface (`{ host }`, `{ iface }`); `port` fixes socket A's port. */
  bind?: BindOptions;
  /** Run the delta test too (`false` to skip; an object to tune it). @default true */
  delta?: boolean | Omit<DeltaOptions, 'servers' | 'family' | 'bind' | 'signal' | 'timeout'>;
  /** Test hairpinning (a request from a second socket to our own mapped address). @default false */
  hairpin?: boolean;
  /** Send RFC 3489 classic requests from the start. @default false (switches by itself for classic servers) */
  classic?: boolean;
  /** Time allowed for test I per server (ms); no answer → next server, or `BLOCKED`. @default 2000 */
  bindingTimeout?: number;
  /** Initial RTO of test I (ms). @default 200 */
  rto?: number;
  /** How long a filtering (CHANGE-REQUEST) test waits for its answer (ms). @default 250 ms + 4 × test I's RTT, at most 2000 */
  filterTimeout?: number;
  /** Progress callback. */
  onProgress?: (p: NatProgress) => void;
}

/** The result of `detectNat`. */
export interface NatDetection {
  /**
   * P2PD's NAT type (see {@link natTypeOf}). When `filtering` is `'unknown'` (`method:
   * 'basic'`: no server could run the CHANGE-REQUEST tests) the type assumes the most
   * restrictive filtering, as P2PD's classic algorithm does when test II gets no answer: an
   * un-NATed host is then `SYMMETRIC_UDP_FIREWALL`, not `OPEN`. Check `filtering` before
   * relying on the firewall part.
   */
  type: NatType;
  /** RFC 4787 mapping behaviour (`'endpoint-independent'` when there is no NAT). */
  mapping: NatBehavior;
  /** RFC 4787 filtering behaviour. */
  filtering: NatBehavior;
  /** Our external (reflexive) address as test I saw it; `undefined` when BLOCKED. */
  external: Endpoint | undefined;
  /** Socket A's local endpoint (routed source address in place of a wildcard). */
  local: Endpoint | undefined;
  /** Whether there is a NAT (`external` differs from `local`); `undefined` when BLOCKED. */
  nat: boolean | undefined;
  /** Port allocation delta, when the delta test ran and got answers. */
  delta: DeltaResult | undefined;
  /** Why the delta test gave nothing, if it was asked for and failed. */
  deltaError?: string;
  /** Hairpinning (only when asked for): did a packet to our own mapped address come back to us. */
  hairpin?: boolean;
  /** Which discovery was used. */
  method: NatMethod;
  /** The server that answered. */
  server: Endpoint | undefined;
  /** Its alternate address (OTHER-ADDRESS / CHANGED-ADDRESS). */
  otherAddress: Endpoint | undefined;
  /** Wall time in milliseconds. */
  ms: number;
  /** Every test and its outcome. */
  tests: NatTestRecord[];
}

/**
 * P2PD's NAT type from the RFC 4787 behaviours (pure).
 *
 * An `'unknown'` behaviour counts as the most restrictive one, so the type never promises
 * more reachability than was measured (P2PD's classic algorithm reads an unanswered test II
 * the same way; its seven types have no "unknown"):
 * - no NAT, filtering `'unknown'` → `SYMMETRIC_UDP_FIREWALL` (only `'endpoint-independent'`
 *   filtering, i.e. an answer from the server's other address, makes it `OPEN`);
 * - NAT, mapping `'unknown'` → `PORT_RESTRICTED_CONE`; NAT with endpoint-independent
 *   mapping, filtering `'unknown'` → `PORT_RESTRICTED_CONE`.
 * Callers that need to tell "measured" from "assumed" look at the `filtering` / `mapping`
 * fields of the {@link NatDetection}.
 */
export function natTypeOf(nat: boolean, mapping: NatBehavior, filtering: NatBehavior): NatType {
  if (!nat) return filtering === 'endpoint-independent' ? 'OPEN' : 'SYMMETRIC_UDP_FIREWALL';
  if (mapping !== 'endpoint-independent') return mapping === 'unknown' ? 'PORT_RESTRICTED_CONE' : 'SYMMETRIC';
  if (filtering === 'endpoint-independent') return 'FULL_CONE';
  if (filtering === 'address-dependent') return 'RESTRICTED_CONE';
  return 'PORT_RESTRICTED_CONE';
}

/** Mapping behaviour from the base mapping and those seen by O.ip:P.port and O.ip:O.port (pure). */
export function mappingBehaviorOf(base: Endpoint | undefined, altIp: Endpoint | undefined, altBoth: Endpoint | undefined): NatBehavior {
  if (!base || !altIp) return 'unknown';
  if (sameEndpoint(base, altIp)) return 'endpoint-independent';
  if (!altBoth) return 'unknown';
  return sameEndpoint(altIp, altBoth) ? 'address-dependent' : 'address-and-port-dependent';
}
