/**
 * Limits, defaults and wire constants of the synced dict.
 * @module
 */

/** Swarm message kind of the synced dict. */
export const KIND_SYNC = 1;
/** Most keys one dict holds; writes of new keys beyond fail. */
export const MAX_KEYS = 100_000;
/** Most owners' records kept per key (oldest writes dropped first). */
export const MAX_OWNERS_PER_KEY = 64;
/** Default `SyncDictOptions.syncInterval` (ms): one anti-entropy round (our digest to a random neighbour) every 30 s. */
export const DEFAULT_SYNC_INTERVAL = 30_000;
/**
 * Least time (ms) between two full-state replies of a dict to the same neighbour. A digest
 * that differs from ours is answered with our whole state (every record, each message signed),
 * which costs far more than the digest: a neighbour asking again sooner gets one reply when the
 * interval has passed (if its last digest still differs), however many digests it sent
 * meanwhile. Digests from nodes we hold no link to are never answered.
 */
export const MIN_STATE_REPLY_INTERVAL = 5_000;

/** Sync message: records (a write broadcast, or one pushed to a member). */
export const MSG_RECORDS = 1;
/** Sync message: the sender's digest (the receiver answers with its state if they differ). */
export const MSG_DIGEST = 2;
/** Sync message: part of the sender's state (answers a digest). */
export const MSG_STATE = 3;
/** Most records in one RECORDS/STATE sync message: larger batches are split on send; decoding rejects more. */
export const MAX_RECORDS_PER_MESSAGE = 4096;
