/**
 * Limits and defaults of the swarm. Every bound the wire decoders enforce is named here.
 * @module
 */

/** Largest link frame accepted or sent (bytes): one envelope with its payload. */
export const MAX_FRAME_SIZE = 1024 * 1024;
/** Fixed bytes of a DATA/BCAST frame around the payload (header, keys, ids, signature, exclude count). */
export const ENVELOPE_OVERHEAD = 5 + 1 + 1 + 32 + 32 + 16 + 8 + 1 + 4 + 64;
/** Most ids in a broadcast's `exclude` list. */
export const MAX_EXCLUDE = 64;
/** Largest application payload of one swarm message (bytes). */
export const MAX_PAYLOAD_SIZE = MAX_FRAME_SIZE - ENVELOPE_OVERHEAD - MAX_EXCLUDE * 32;
/** Most relays a message crosses before it is dropped. */
export const MAX_HOPS = 64;
/** Largest tolerated clock difference for timestamps in the future (ms). */
export const MAX_CLOCK_SKEW = 30_000;
/** Messages older than this (by their signed timestamp) are dropped (ms). */
export const MAX_MESSAGE_AGE = 120_000;
/** How long a message id is remembered for exactly-once delivery and relay dedupe (ms). */
export const SEEN_TTL = MAX_MESSAGE_AGE + 2 * MAX_CLOCK_SKEW;
/** Most message ids remembered (oldest forgotten first). */
export const DEFAULT_SEEN_CACHE_SIZE = 65_536;
/** Links chosen per non-empty XOR bucket when picking neighbours. */
export const DEFAULT_LINKS_PER_BUCKET = 2;
/** Links beyond which a node stops dialing extra neighbours and prunes its own undesired dials. */
export const DEFAULT_MAX_LINKS = 32;
/** Inbound links refused beyond this many links in total. */
export const HARD_MAX_LINKS = 128;
/** Copies of a broadcast sent into each XOR bucket (tree broadcast); 1 = exactly n-1 frames. */
export const DEFAULT_BROADCAST_REDUNDANCY = 2;
/** Bound of link setup (preamble + Noise handshake + hello), ms. */
export const DEFAULT_LINK_TIMEOUT = 10_000;
/** Link setups running at once (inbound); connections beyond are reset. */
export const MAX_PENDING_SETUPS = 64;
/** Outbound dials running at once from the maintenance loop. */
export const MAX_CONCURRENT_DIALS = 8;
/** Malformed or invalid frames tolerated from one link before it is closed. */
export const MAX_LINK_MALFORMED = 16;
/** Period of the neighbour maintenance loop (ms). */
export const MAINTAIN_INTERVAL = 1_000;
/** A link with nothing sent for this long gets a PING frame (ms). */
export const PING_INTERVAL = 15_000;
/** A link with nothing received for this long is considered dead and reset (ms). */
export const LINK_IDLE_TIMEOUT = 45_000;
/** Period at which a node re-signs and re-floods its member announcement (ms). */
export const ANNOUNCE_INTERVAL = 5 * 60_000;
/** Members not heard from for this long are forgotten, unless linked (ms). */
export const MEMBER_TTL = 4 * ANNOUNCE_INTERVAL;
/** Back-off after a failed dial to a member before it is tried again (ms); doubles per failure. */
export const DIAL_BACKOFF = 2_000;
/** Failed dials in a row after which a member no longer counts for bucket coverage (until heard from again). */
export const UNREACHABLE_AFTER = 2;
/** Most member announcements in one MEMBERS frame. */
export const MAX_MEMBERS_PER_FRAME = 512;
/** Most members remembered. */
export const MAX_MEMBERS = 100_000;
/** Most messages waiting in `recv()`'s queue; beyond it the oldest is dropped (counted). */
export const DEFAULT_MAX_QUEUE = 4096;
/**
 * Most payload bytes waiting in `recv()`'s queue; beyond it the oldest messages are dropped
 * (counted), so that large messages nobody reads yet cannot hold `maxQueue` × 1 MiB.
 */
export const MAX_QUEUE_BYTES = 64 * 1024 * 1024;
/** Most deliveries waiting for async handlers; beyond it messages are dropped (counted). */
export const MAX_PENDING_DELIVERIES = 4096;
/** Most payload bytes of the deliveries waiting for async handlers; beyond it messages are dropped (counted). */
export const MAX_PENDING_DELIVERY_BYTES = 64 * 1024 * 1024;
/** Longest wait of `connect()` without a timeout for the neighbour's member snapshot, counted from the start (ms). */
export const SNAPSHOT_TIMEOUT = 60_000;
/** Longest protocol name (UTF-8 bytes). */
export const MAX_PROTOCOL_NAME = 64;
/** Longest protocol version string (UTF-8 bytes). */
export const MAX_PROTOCOL_VERSION = 32;
/** Longest host string in a member announcement. */
export const MAX_HOST_LENGTH = 64;
/** Largest preamble accepted (bytes). */
export const MAX_PREAMBLE_SIZE = 256;
/** Default protocol name. */
export const DEFAULT_PROTOCOL_NAME = 'p2pd-swarm';
/** Default protocol version. */
export const DEFAULT_PROTOCOL_VERSION = '1';
