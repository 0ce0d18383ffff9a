/**
 * The NAT layer's public surface: STUN (codec, transport, client, server), NAT detection,
 * and (added by their owners) TURN and port mapping.
 * @module
 */
export * from './stun/index.js';
export * from './detect/index.js';
// --- TURN (src/nat/turn/): re-export its public API here, e.g. `export * from './turn/index.js';`
export * from './turn/index.js';
// --- port mapping (src/nat/portmap/): re-export its public API here, e.g. `export * from './portmap/index.js';`
export * from './portmap/index.js';
