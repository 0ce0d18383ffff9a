/**
 * TURN client (RFC 8656): `turnAllocate()` returns a relay as a `TurnPipe`, a Pipe whose
 * messages come from peers and whose `send(data, peer)` relays through the server, with
 * long-term credentials, permissions, channels and automatic refreshes.
 * @module
 */
export { turnAllocate, turnServerEndpoint, type TurnAllocateOptions } from './allocate.js';
export { TurnPipe, type TurnPipeInit, type TurnStats } from './pipe.js';
export { TurnAuth, type ChallengeOutcome } from './auth.js';
export { TurnSession, type TurnRequestOptions } from './session.js';
export { PeerTable, peerKey, type PeerTableHost, type PeerTableOptions } from './peers.js';
export { AllocationRefresher, refreshDelay, type RefresherOptions } from './refresh.js';
export { TurnAuthError, methodName, turnError } from './errors.js';
export * from './constants.js';
