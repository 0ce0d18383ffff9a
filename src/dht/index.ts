/**
 * Kademlia DHT: 256-bit ids, k = 20, α = 3, signed owner-only records, dict-like async API,
 * transport-independent core plus an in-memory transport for tests, a TCP transport
 * (`PipeDhtTransport`, Noise or plain) and standalone nodes on real sockets (`startDhtNode`).
 *
 * ```ts
 * const dht = new DhtNode({ transport, contact, signer: identity });
 * await dht.join([bootstrapContact]);
 * await dht.set('color', 'blue');
 * await dht.get('color');                       // 'blue'
 * await dht.get('missing', { default: null });  // null (without a default: NotFoundError)
 * ```
 * @module
 */
export {
  ID_BITS, ID_BYTES, bucketIndex, commonPrefixLength, compareDistance, compareIds, idEquals, idFromHex, idToHex,
  isId, keyBytes, keyToId, randomId, randomIdInBucket, shortId, sortByDistance, xorDistance, type DhtId,
} from './id.js';
export { PUBLIC_KEY_BYTES, contactAddress, contactProblem, formatContact, isValidContact, type Contact } from './contact.js';
export {
  DEFAULT_K, DEFAULT_MAX_FAILURES, RoutingTable, type AddResult, type RoutingEntry, type RoutingTableOptions,
} from './routing-table.js';
export {
  MAX_CLOCK_SKEW_MS, MAX_KEY_BYTES, MAX_RECORD_BYTES, MAX_VALUE_BYTES, RECORD_VERSION, SIGNATURE_BYTES,
  checkRecordLimits, compareVersions, createRecord, decideStore, decodeRecord, decodeValue, ed25519PublicKey, encodeRecord, encodeValue,
  generateSigner, isRecordValid, recordSigningData, sameWriter, verifyRecord,
  type DhtKey, type DhtRecord, type DhtValue, type RecordInit, type Signer, type StoreDecision, type ValueType,
  type VerifyRecordOptions,
} from './record.js';
export {
  MAX_CONTACTS, MAX_CONTACT_BYTES, MAX_ERROR_TEXT_BYTES, MAX_MESSAGE_BYTES, MAX_TXID, MESSAGE_VERSION,
  decodeMessage, encodeMessage, isRequest, responseTypeFor,
  type DeleteRequest, type DhtFrame, type DhtMessage, type DhtRequest, type DhtResponse, type ErrorResponse,
  type FindNodeRequest, type FindValueRequest, type NodesResponse, type PingRequest, type PongResponse,
  type RpcErrorCode, type StoreRequest, type StoreStatus, type StoredResponse, type ValueResponse,
} from './messages.js';
export { linkSignals, type DhtRequestContext, type DhtRequestHandler, type DhtRequestOptions, type DhtTransport, type LinkedSignal } from './transport.js';
export { DEFAULT_ALPHA, MAX_LOOKUP_QUERIES, iterativeLookup, type FoundRecord, type LookupDeps, type LookupResult, type QueryAnswer } from './lookup.js';
export { resolveRecords, type HeldRecord, type Resolution } from './resolve.js';
export { DEFAULT_MAX_RECORDS, RecordStore, type RecordStoreOptions, type StoredRecord } from './store.js';
export { LOOKUP_HISTORY, TIMER_JITTER, median, type DhtMetrics } from './node-support.js';
export { DhtNode } from './node.js';
export {
  DEFAULT_GET_QUORUM, DEFAULT_RECORD_TTL, DEFAULT_REFRESH_INTERVAL, DEFAULT_REPUBLISH_INTERVAL, DEFAULT_REQUEST_TIMEOUT, JOIN_PING_ATTEMPTS,
  type DhtEntries, type DhtGetOptions, type DhtNodeOptions,
} from './options.js';
export { STORE_ATTEMPTS, Replicator, type NodeCore, type PutResult } from './replication.js';
export { MAX_PENDING_VERIFICATIONS, createRequestHandler } from './handler.js';
export {
  DEFAULT_MAX_MALFORMED, MEMORY_BASE_PORT, MemoryNetwork, MemoryTransport,
  type KillMode, type MemoryNetworkOptions, type MemoryNetworkStats, type RawResponder,
} from './memory-transport.js';
export {
  DEFAULT_CONNECTION_MAX_MALFORMED, DEFAULT_MAX_PENDING, DEFAULT_MAX_SERVING, DhtConnection, type DhtConnectionOptions,
} from './connection.js';
export { createMemoryDhtTestnet, type MemoryDhtTestnet, type MemoryDhtTestnetOptions } from './testnet.js';
export {
  DEFAULT_DHT_CONNECT_TIMEOUT, DEFAULT_DHT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INBOUND,
  MAX_DHT_FRAME, PipeDhtTransport, noiseUpgrade,
  type LinkUpgrade, type LinkUpgradeOptions, type PipeDhtTransportOptions, type PipeDhtTransportStats, type UpgradedLink,
} from './pipe-transport.js';
export {
  ContactParseError, MAX_CONTACT_STRING, StandaloneDhtNode, formatContactString, parseContact, startDhtNode, toContact,
  type StartDhtNodeOptions,
} from './standalone.js';
