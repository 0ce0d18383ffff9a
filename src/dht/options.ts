/**
 * Options, defaults and option parsing of `DhtNode`.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { AbortOptions } from '../util/abort.js';
import type { Contact } from './contact.js';
import type { DhtKey, DhtValue, Signer } from './record.js';
import type { DhtTransport } from './transport.js';

/** Default per-RPC timeout, ms. */
export const DEFAULT_REQUEST_TIMEOUT = 5_000;
/** Default record lifetime after its writer signed it, ms (24 h; see `DhtNodeOptions.recordTtl`). */
export const DEFAULT_RECORD_TTL = 24 * 60 * 60 * 1000;

/** Default republish interval, ms (1 h). */
export const DEFAULT_REPUBLISH_INTERVAL = 60 * 60 * 1000;
/** Default bucket refresh interval, ms (1 h). */
export const DEFAULT_REFRESH_INTERVAL = 60 * 60 * 1000;
/** PINGs sent to each bootstrap contact before `DhtNode.join` gives up on it. */
export const JOIN_PING_ATTEMPTS = 3;
/** Default number of copies a `get` collects before it stops looking. */
export const DEFAULT_GET_QUORUM = 3;

/** Options of `DhtNode`. */
export interface DhtNodeOptions {
  /** How requests reach other nodes. */
  transport: DhtTransport;
  /** Our own advertised contact; `id` should be SHA-256 of the identity's public key. */
  contact: Contact;
  /** Signs our records; without it the node is read-only (`set`/`delete` throw). */
  signer?: Signer;
  /** Bucket size and replication factor. @default 20 */
  k?: number;
  /** Lookup parallelism. @default 3 */
  alpha?: number;
  /** Per-RPC timeout, ms. @default {@link DEFAULT_REQUEST_TIMEOUT} */
  requestTimeout?: number;
  /** Republish period, ms; `0` disables the timer. @default {@link DEFAULT_REPUBLISH_INTERVAL} */
  republishInterval?: number;
  /** Bucket refresh period, ms; `0` disables the timer. @default {@link DEFAULT_REFRESH_INTERVAL} */
  refreshInterval?: number;
  /** Most records held for others. @default 10 000 */
  maxRecords?: number;
  /** Tolerated future clock skew of record timestamps, ms. @default 5 min */
  maxClockSkew?: number;
  /**
   * Records expire this long after their writer signed them (ms), as in Kademlia: held
   * replicas are dropped and stop counting against `maxRecords`, and expired copies are
   * ignored. A writer re-signs its live records when they are half that age, so values of a
   * writer that stays online never expire; those of one that left are gone after this time.
   * `0` = records never expire. @default {@link DEFAULT_RECORD_TTL} (24 h)
   */
  recordTtl?: number;
  /** Consecutive RPC failures before a contact is evicted. @default 3 */
  maxFailures?: number;
  /** Copies a `get` collects before stopping. @default {@link DEFAULT_GET_QUORUM} */
  quorum?: number;
  /** Send our contact with requests so others add us; `false` = client mode. @default true */
  advertise?: boolean;
  /** Clock, ms. @default `Date.now` */
  now?: () => number;
}

/** Options of `DhtNode.get`. */
export interface DhtGetOptions<D = never> extends AbortOptions {
  /** Returned instead of throwing {@link NotFoundError} when the key is missing. */
  default?: D;
  /** Copies to collect before stopping. @default the node's `quorum` */
  quorum?: number;
}

/** Key/value pairs accepted by `DhtNode.update`. */
export type DhtEntries = Record<string, DhtValue> | Map<DhtKey, DhtValue> | Iterable<readonly [DhtKey, DhtValue]>;

/** `v`, or `dflt` if undefined. @throws InvalidArgumentError unless a finite number ≥ 0. */
export function nonNegative(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`${what} must be a non-negative number`);
  return v;
}
