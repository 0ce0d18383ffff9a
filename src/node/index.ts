/**
 * The P2P node: peer addresses, signalling over MQTT (with an embedded broker), connection
 * strategies (direct, reverse, hole punching, TURN relay), encrypted pipes to peers.
 * @module
 */
export { P2pNode, startP2pNode } from './node.js';
export { DEFAULT_TIMEOUTS } from './options.js';
export { DEFAULT_MAX_PEERS, KEEPALIVE_MS } from './context.js';
export { DEFAULT_INBOUND_SHARE, defaultMaxInbound } from './peer-slots.js';
export * from './types.js';
export { AddressError, SignalError, P2pConnectError, PeerRefusedError, type RefusalReason, type SignalRejection, type StrategyFailure } from './errors.js';
export { MAX_SERVING, MAX_SERVING_PER_PEER, MAX_REFUSING, REFUSAL_TIMEOUT } from './requests.js';
export {
  encodeAddress, parseAddress, describeAddress, sameNode, checkBrokerUrl, ADDR_PREFIX, ADDR_VERSION, MAX_ADDR_TEXT, MAX_ADDR_BYTES,
  MAX_ADDR_INTERFACES, MAX_ADDR_ENDPOINTS, MAX_ADDR_SIGNAL, MAX_BROKER_URL,
  type PeerAddress, type PeerAddressInit, type AddrEndpoint, type AddrEndpointKind, type AddrInterface, type AddrNatType, type AddrDelta,
  type SignalChannel, type ParseAddressOptions,
} from './address.js';
export {
  startBroker, inboxTopic, DEFAULT_BROKER_MAX_CONNECTIONS, MAX_BROKER_CONNECTIONS_PER_HOST, MAX_BROKER_SUBSCRIPTIONS, type Broker, type BrokerOptions, type BrokerStats,
} from './broker.js';
export { MAX_MQTT_PACKET } from './mqtt-guard.js';
export { Signalling, BROKER_CONNECT_TIMEOUT, DEFAULT_REPLAY_CACHE_SIZE, DEFAULT_SIGNAL_TTL, MAX_EXPECTED_SENDERS, type SignalMessage, type SignallingOptions, type SignallingStats } from './signalling.js';
export { sealEnvelope, openEnvelope, deriveSignalKey, ReplayCache, MAX_SIGNAL_TTL, MAX_ENVELOPE, type OpenedEnvelope } from './envelope.js';
export { directCandidates, sameSubnet, type DirectCandidate } from './candidates.js';
export { base58Encode, base58Decode, MAX_BASE58_TEXT } from './base58.js';
export type { PunchModule } from './punch-api.js';
