/**
 * Hole punching and reliable streams over datagram pipes: `punch()` agrees on a UDP path
 * with a peer (authenticated probes, NAT keep-alive with `keepAlive()`), `openReliable()`
 * runs a TCP-like stream over it (or over a TURN relay) that `secure()` can encrypt.
 * @module
 */
export {
  punch,
  DEFAULT_PUNCH_TIMEOUT, DEFAULT_MAX_CANDIDATES, MAX_PREDICTED, MAX_PEER_REFLEXIVE, DEFAULT_PUNCH_RATE,
  DEFAULT_MAX_INTERVAL, DEFAULT_PUNCH_LINGER,
  type PunchOptions, type PunchResult, type PredictDelta,
} from './udp-punch.js';
export { keepAlive, DEFAULT_KEEPALIVE_INTERVAL, type KeepAliveOptions } from './keepalive.js';
export { PunchTimeoutError, type PunchStats } from './errors.js';
export {
  PunchKey, encodePunch, decodePunch, encodeKeepAlive, isPunchPacket,
  PUNCH_MAGIC, PUNCH_PROBE, PUNCH_ACK, PUNCH_KEEPALIVE, PUNCH_FLAG_NOMINATE, PUNCH_PACKET_SIZE, PUNCH_KEEPALIVE_SIZE,
  MIN_NONCE_LENGTH, MAX_NONCE_LENGTH,
  type PunchPacket, type PunchDecodeResult,
} from './punch-wire.js';
export {
  openReliable, ReliablePipe,
  DEFAULT_RELIABLE_MTU, DEFAULT_RELIABLE_BUFFER, DEFAULT_RELIABLE_TIMEOUT, DEFAULT_RELIABLE_KEEPALIVE, DEFAULT_RELIABLE_IDLE,
  DEFAULT_MIN_RTO, DEFAULT_MAX_RTO, DEFAULT_MAX_RETRIES, DEFAULT_RELIABLE_LINGER,
  type OpenReliableOptions,
} from './reliable.js';
export { ReliableSocket } from './reliable-stream.js';
export { ReliableConnection, type ConnectionHooks } from './reliable-conn.js';
export { TICK_MS, MIN_CWND, INITIAL_CWND, ACK_EVERY, INITIAL_RTO, type ReliableStats, type ReliableSocketOptions } from './reliable-types.js';
export { ReliableMux, peerKey, type ReliableMuxStats, type MuxTarget, type MuxAcceptor } from './reliable-mux.js';
export {
  encodeReliable, decodeReliable, isReliablePacket, seqAdd, seqDiff,
  RELIABLE_MAGIC, FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_PING, HEADER_SIZE, MAX_HEADER_SIZE, MAX_SACK_BLOCKS, MAX_SACK_SPAN,
  MAX_RELIABLE_PAYLOAD, MIN_MSS,
  type ReliablePacket, type SackBlock,
} from './reliable-wire.js';
export { Sender, RttEstimator, type SenderOptions, type SenderCounters, type TxSegment } from './reliable-send.js';
export { Receiver, type AcceptResult } from './reliable-recv.js';
export {
  tcpPunch,
  DEFAULT_TCP_PUNCH_TIMEOUT, DEFAULT_TCP_ATTEMPT_INTERVAL, DEFAULT_TCP_MAX_ATTEMPT_INTERVAL, TCP_PUNCH_FIRST_GAP, MAX_TCP_PUNCH_REMOTES,
  MAX_TCP_PUNCH_UNVERIFIED, TCP_PUNCH_REFUSED_RETRY, TCP_PUNCH_FAST_RETRIES,
  type TcpPunchOptions, type TcpPunchResult, type TcpPunchStats,
} from './tcp-punch.js';
export { tcpMapping, DEFAULT_TCP_MAPPING_TIMEOUT, type TcpMapping, type TcpMappingOptions } from './tcp-mapping.js';
