/**
 * p2pd — peer-to-peer networking for Node.js.
 *
 * Layers (each uses only those above it in this list): errors/util, interfaces, pipes,
 * nat, crypto, node, swarm/dht/sync.
 * @module
 */
export * from './errors.js';
export { cancellable, sleep, throwIfAborted, type AbortOptions } from './util/abort.js';
export * from './interfaces/index.js';
export * from './pipes/index.js';
export * from './nat/index.js';
export { bytesToIp, ipToBytes } from './interfaces/index.js';
export * from './crypto/index.js';
export type { FrameDecoder } from './pipes/index.js';
export * from './dht/index.js';
export * from './node/index.js';
// Swarm, synced dict and testnet: their main API here; wire-level helpers stay in their modules.
/**
 * The swarm's limits and defaults (`swarmConstants.DEFAULT_MAX_LINKS`, `.MAX_QUEUE_BYTES`,
 * `.SNAPSHOT_TIMEOUT`, …), as a namespace: some share a name with a pipe or crypto constant
 * of another value (`DEFAULT_MAX_QUEUE`, `MAX_FRAME_SIZE`, `MAX_PAYLOAD_SIZE`).
 */
export * as swarmConstants from './swarm/constants.js';
export { SwarmPeer, resolveProtocol, sameProtocol, type SwarmPeerEvents, type ResolvedProtocol, type SwarmProtocol } from './swarm/index.js';
export type { BroadcastOptions, SendOptions, SwarmBindOptions, SwarmConnection, SwarmHandler, SwarmHooks, SwarmMessage, SwarmPeerInfo, SwarmPeerOptions, SwarmStats, SwarmTarget } from './swarm/index.js';
export {
  SyncDict, DEFAULT_LEASE_TIME, DEFAULT_SYNC_INTERVAL, MAX_OWNERS_PER_KEY, MIN_STATE_REPLY_INTERVAL, type SyncDictEvents, type SyncDictOptions, type SyncDictStats, type SyncMeta,
} from './sync/index.js';
export { createTestnet, isConverged, SwarmDhtTransport, type Testnet, type TestnetOptions } from './testnet/index.js';
