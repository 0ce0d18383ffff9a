/**
 * Options, counters and constants shared by the reliable-stream modules.
 * @module
 */
import type { Endpoint } from '../../interfaces/endpoint.js';
import type { Pipe } from '../../pipes/pipe.js';

/** Timer granularity while data is in flight (ms). */
export const TICK_MS = 10;
/** Congestion window floor (segments). */
export const MIN_CWND = 4;
/** Initial congestion window (segments). */
export const INITIAL_CWND = 10;
/** Acknowledge at least every this many in-order segments (TCP's delayed-ACK rule). */
export const ACK_EVERY = 2;
/** Retransmission timeout of the handshake before any RTT is known (ms). */
export const INITIAL_RTO = 500;

/** Tunables of a reliable stream (validated by `openReliable`). */
export interface ReliableSocketOptions {
  /** The datagram pipe. */
  pipe: Pipe;
  /** The peer. */
  remote: Endpoint;
  /** Whether this side sends the SYN. */
  initiator: boolean;
  /** Conversation id (initiator: chosen at random when omitted; responder: any when omitted). */
  conv: number | undefined;
  /** Largest payload per packet we send and accept. */
  mtu: number;
  /** Send buffer (segments): writes are accepted until it is full. */
  sendBuffer: number;
  /** Receive window (segments). */
  receiveBuffer: number;
  /** PING after this long without sending (ms). */
  keepAlive: number;
  /** Fail after this long without receiving (ms). */
  idleTimeout: number;
  /** Retransmission timeout bounds (ms). */
  minRto: number;
  maxRto: number;
  /** Consecutive retransmission timeouts before failing. */
  maxRetries: number;
  /** RTT known beforehand (e.g. from the punch), ms. */
  initialRtt: number | undefined;
  /** How long a cleanly closed conversation still answers the peer's retransmissions (ms). */
  linger: number;
}

/** Counters and state of one stream's ARQ. */
export interface ReliableStats {
  /** Packets of this conversation received (any kind, invalid ones included). */
  packetsIn: number;
  /** Packets sent (SYN, data, FIN, acks, PINGs, RST). */
  packetsOut: number;
  /** Payload bytes delivered in order. */
  bytesIn: number;
  /** Payload bytes accepted for sending. */
  bytesOut: number;
  /** Data/FIN segment transmissions, retransmissions included. */
  segmentsSent: number;
  /** Segments sent again (declared lost, or as a tail loss probe). */
  retransmits: number;
  /** Tail loss probes (included in `retransmits`). */
  probes: number;
  /** Congestion-window reductions after loss detected by acks (at most one per window of data). */
  lossEpisodes: number;
  /** Retransmission timeouts that fired (every segment in flight declared lost). */
  timeouts: number;
  /** Segments received twice. */
  duplicates: number;
  /** Segments beyond the receive window (dropped). */
  outOfWindow: number;
  /** Well-formed packets that made no sense here (bad ack, oversized payload, bad RST). */
  invalid: number;
  /** Pure acknowledgements sent (PINGs not included). */
  acksSent: number;
  /** PINGs sent (keep-alives and zero-window probes). */
  pingsSent: number;
  /** Smoothed round-trip time (ms); `undefined` until the first sample. */
  srtt: number | undefined;
  /** Current retransmission timeout (ms). */
  rto: number;
  /** Congestion window (segments; may be fractional). */
  cwnd: number;
  /** Segments in flight (sent, neither acknowledged nor declared lost). */
  inflight: number;
}

/** The clock carried in packets: µs, wrapping at 2³². */
export function nowUs(): number {
  return Math.floor(performance.now() * 1000) >>> 0;
}
