/**
 * TURN client defaults: ports, lifetimes, refresh schedule, retry bounds and size limits
 * (RFC 8656). Every value here is a default that {@link TurnAllocateOptions} can override
 * where it makes sense (tests use short intervals).
 * @module
 */
import { MAX_TIMER_MS } from '../../util/abort.js';

/** Default TURN server port for UDP and TCP (RFC 8656 §4). */
export const TURN_DEFAULT_PORT = 3478;

/** Default time allowed for `turnAllocate` as a whole, all redirects and auth rounds included (ms). */
export const TURN_ALLOCATE_TIMEOUT = 10_000;

/** Default time allowed for one authenticated request after allocation (Refresh, CreatePermission, ChannelBind) (ms). */
export const TURN_REQUEST_TIMEOUT = 10_000;

/** Default time `close()` waits for the answer to its Refresh(lifetime 0) before closing anyway (ms). */
export const TURN_CLOSE_TIMEOUT = 1_000;

/** Allocation lifetime the server grants when the client asks for none (RFC 8656 §7.2: 10 min). */
export const TURN_DEFAULT_LIFETIME = 600;

/** A long allocation is refreshed this many seconds before it expires. */
export const TURN_REFRESH_MARGIN = 60;
/** Shortest delay between refreshes (ms), whatever tiny lifetime a server grants: no refresh storm. */
export const TURN_MIN_REFRESH_DELAY = 500;
/** Longest timer Node can arm (ms, 2^31 − 1); a longer refresh delay is cut to it (the refresh then comes early). */
export const TURN_MAX_REFRESH_DELAY = MAX_TIMER_MS;

/** Permissions last 300 s on the server (RFC 8656 §9); p2pd refreshes them every 240 s (ms). */
export const TURN_PERMISSION_REFRESH = 240_000;

/** Channel bindings last 600 s on the server (RFC 8656 §12); p2pd refreshes them every 540 s (ms). */
export const TURN_CHANNEL_REFRESH = 540_000;

/** How long a permission lives on the server (RFC 8656 §9, ms): the most `permissionRefresh` may be. */
export const TURN_PERMISSION_LIFETIME = 300_000;

/** How long a channel binding lives on the server (RFC 8656 §12, ms): the most `channelRefresh` may be. */
export const TURN_CHANNEL_LIFETIME = 600_000;

/** After a failed (timed-out) refresh of the allocation, retry after this long (ms), while it has not expired. */
export const TURN_REFRESH_RETRY = 5_000;

/** After a failed ChannelBind to a peer, do not try again for this long (ms); Send indications are used meanwhile. */
export const TURN_CHANNEL_RETRY = 30_000;

/** Most authentication rounds (401 challenge, 438 stale nonce) for one request before giving up. */
export const TURN_MAX_AUTH_ROUNDS = 4;

/** Most 300 (Try Alternate) redirects followed by one `turnAllocate`. */
export const TURN_MAX_REDIRECTS = 3;

/**
 * Largest payload `TurnPipe.send` accepts: what fits, as a Send indication to an IPv6 peer,
 * in one UDP datagram to the server (65507 − 20 header − 24 XOR-PEER-ADDRESS − 4 DATA header,
 * rounded down to a multiple of 4). ChannelData could carry a little more; one limit is simpler.
 */
export const MAX_TURN_PAYLOAD = 65_456;

/** SOFTWARE attribute sent in Allocate requests. */
export const TURN_SOFTWARE = 'p2pd';
