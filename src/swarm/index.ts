/**
 * The swarm: an overlay of Identity-keyed nodes joined by encrypted links, with directed
 * messages (multi-hop, exactly once), broadcast (every member once) and a socket-like API.
 *
 * ## Design
 *
 * - **Nodes and links.** A node is an Ed25519 {@link Identity}; its id is SHA-256 of the
 *   public key. Neighbours are joined by links: TCP + the plaintext *preamble* (protocol name,
 *   version, encryption flag, random nonce) + Noise XX (`secure()`, prologue = hash of both
 *   preambles) + a signed HELLO carrying the node's member announcement. A peer with another
 *   protocol gets our preamble and is refused on both ends with `ProtocolMismatchError` (and a
 *   `protocolMismatch` event) — never silently. Plaintext mode (`encrypted: false`) skips Noise
 *   and only works when both ends chose it. Two simultaneous dials are deduplicated: both ends
 *   keep the link dialed by the smaller id.
 * - **Membership.** Every node knows every member: signed announcements `{key, endpoint, seq}`
 *   are exchanged in full on each new link and flooded when new (bounded table, refresh every
 *   5 min, expiry after 20 min, signed leave on close).
 * - **Neighbours.** In each non-empty XOR bucket (members sharing exactly b leading id bits
 *   with us) a node links to the `linksPerBucket` (2) closest members; inbound links add to
 *   that. One link per non-empty bucket is what makes greedy routing and the tree broadcast
 *   complete; that is also what `createTestnet().waitConverged()` waits for.
 * - **Messages.** A message is a frame signed by its origin (kind, origin key, target, random
 *   16-byte id, timestamp, exclude list, payload); relays rewrite only the unsigned routing
 *   header (hops, mode, limit). Every node verifies a message the first time it sees its id
 *   (signature, not older than 2 min, not more than 30 s in the future) before relaying or
 *   delivering, and remembers the id in a bounded seen-cache (LRU + TTL): duplicates — from
 *   `duplicates: k`, redundant broadcast copies or floods — are dropped, so delivery is
 *   exactly once. The cache is keyed by (origin, id), so a relay cannot squat an id it saw.
 *   Forged or modified frames count against the link that sent them; a link over
 *   `MAX_LINK_MALFORMED` is reset. Frames are bounded (`MAX_FRAME_SIZE`, 1 MiB): bigger ones
 *   close that link only. Links idle for 15 s get a PING; silent for 45 s, they are reset.
 * - **Routing.** Directed: greedy XOR over neighbours with strict progress (flood fallback when
 *   stuck, for known members only). Broadcast: bucket tree (see `routing.ts`),
 *   `broadcastRedundancy` copies per bucket — 1 gives exactly n − 1 frames — with a flood
 *   fallback when a bucket has reachable members but no link. Members a node failed to dial
 *   twice stop counting until heard from again. Relaying never depends on `recv()`.
 * - **Delivery.** Built-in services (message kind ≠ 0, e.g. the synced dict) first, then the
 *   `recv` hook, then user handlers (`registerHandler((msg, conn) => boolean)`, exactly two
 *   parameters, first truthy wins and the message is not queued), then `onMessage` callbacks
 *   or the bounded `recv()` queue (`{ src, data, more }`).
 * - **Lifecycle.** `bind()` first (anything that needs the network fails with `NotBoundError`
 *   before it; handlers, hooks and event listeners may be set up earlier). Timers are unref'd;
 *   `close()` says goodbye, closes links, listener and timers.
 * @module
 */
export { SwarmPeer, type SwarmPeerEvents } from './peer.js';
export type {
  BroadcastOptions, SendOptions, SwarmBindOptions, SwarmConnection, SwarmHandler, SwarmHooks, SwarmMessage, SwarmPeerInfo,
  SwarmPeerOptions, SwarmStats, SwarmTarget,
} from './types.js';
export { resolveProtocol, sameProtocol, type ResolvedProtocol, type SwarmProtocol } from './protocol.js';
export * from './constants.js';
export { KIND_USER, FRAME_BCAST, FRAME_DATA, MODE_FLOOD, MODE_NORMAL, buildEnvelope, decodeEnvelope, relayFrame, type Envelope } from './envelope.js';
export { FRAME_HELLO, FRAME_MEMBERS, encodeMembers, decodeMembers } from './frames.js';
export { signAnnouncement, decodeAnnouncement, type Member } from './member.js';
export { dialLink, acceptLink, type SetupContext, type SetupResult } from './setup.js';
export { SeenCache } from './seen.js';
export type { BuiltinHandler } from './delivery.js';
