/**
 * Synced dict: a key/value map replicated to every member of a swarm, with signed,
 * leased ownership and deterministic convergence. See {@link SyncDict}.
 * @module
 */
export { SyncDict, type Bytes, type SyncDictEvents, type SyncDictOptions, type SyncMeta } from './dict.js';
export type { SyncDictStats } from './exchange.js';
export { DEFAULT_SYNC_INTERVAL, KIND_SYNC, MAX_KEYS, MAX_OWNERS_PER_KEY, MAX_RECORDS_PER_MESSAGE, MIN_STATE_REPLY_INTERVAL } from './constants.js';
export {
  DEFAULT_LEASE_TIME, DEFAULT_MAX_CLOCK_SKEW, MAX_KEY_SIZE, MAX_VALUE_SIZE, decodeRecord, encodeRecordList, leaseEnd, namespaceId, recordProblem, resolveKey,
  signRecord, type SyncRecord,
} from './record.js';
