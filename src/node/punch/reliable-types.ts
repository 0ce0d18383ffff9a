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
  packetsIn: number;
  packetsOut: number;
  /** Payload bytes delivered in order / accepted for sending. */
  bytesIn: number;
  bytesOut: number;
  segmentsSent: number;
  retransmits: number;
  /** Tail loss probes (included in `retransmits`). */
  probes: number;
  lossEpisodes: number;
  timeouts: number;
  /** Segments received twice. */
  duplicates: number;
  /** Segments beyond the receive window (dropped). */
  outOfWindow: number;
  /** Well-formed packets that made no sense here (bad ack, oversized payload, bad RST). */
  invalid: number;
  acksSent: number;
  pingsSent: number;
  srtt: number | undefined;
  rto: number;
  cwnd: number;
  inflight: number;
}

/** The clock carried in packets: µs, wrapping at 2³². */
export function nowUs(): number {
  return Math.floor(performance.now() * 1000) >>> 0;
}
