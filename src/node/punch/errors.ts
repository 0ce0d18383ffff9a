/**
 * Typed errors of hole punching. Reliable streams reuse the library's errors
 * (`TimeoutError`, `ConnectionResetError`, `ConnectionRefusedError`, `PipeClosedError`).
 * @module
 */
import { TimeoutError, type P2pdErrorOptions } from '../../errors.js';

/** Counters of one {@link punch} attempt (also carried by {@link PunchTimeoutError}). */
export interface PunchStats {
  /** Probes sent (including nominations). */
  probesSent: number;
  /** Acks sent in answer to the peer's probes. */
  acksSent: number;
  /** Authenticated probes received from the peer. */
  probesReceived: number;
  /** Authenticated acks of our probes received. */
  acksReceived: number;
  /** Punch packets ignored: malformed, failed authentication, reflected, stale or unknown acks. */
  ignored: number;
  /** Destinations probed (candidates, predicted ports and peer-reflexive addresses). */
  destinations: number;
  /** Probes postponed because the packet-rate budget was spent. */
  rateLimited: number;
}

/**
 * No probe/ack round trip succeeded within the punch's `timeout`: typically both NATs map
 * per destination (symmetric × symmetric) or filter every candidate. A `TimeoutError`
 * (code `ERR_TIMEOUT`) carrying the attempt's counters, so callers can tell "the peer never
 * answered" (`probesReceived === 0`) from "packets got through one way only".
 */
export class PunchTimeoutError extends TimeoutError {
  /** What the attempt saw. */
  readonly stats: PunchStats;
  constructor(message: string, stats: PunchStats, options?: P2pdErrorOptions) {
    super(message, options);
    this.stats = { ...stats };
  }
}
