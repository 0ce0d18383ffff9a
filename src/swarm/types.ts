/**
 * Public types of the swarm API.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { Endpoint, EndpointLike } from '../interfaces/endpoint.js';
import type { AbortOptions } from '../util/abort.js';
import type { SwarmProtocol } from './protocol.js';

/** Another swarm node as seen from here. */
export interface SwarmPeerInfo {
  /** Node id: SHA-256 of its Ed25519 public key (32 bytes). */
  readonly id: Buffer;
  /** {@link id} as 64 hex characters. */
  readonly idHex: string;
  /** Its Ed25519 public key (raw, 32 bytes). */
  readonly publicKey: Buffer;
  /** The endpoint it listens on (from its signed announcement), when known. */
  readonly endpoint: Endpoint | undefined;
}

/** A message delivered to this node. */
export interface SwarmMessage {
  /** The origin (verified by its signature; relays cannot change it). */
  readonly src: SwarmPeerInfo;
  /** The payload. */
  readonly data: Buffer;
  /** Whether further messages were already queued when this one was taken (`recv()` only; otherwise `false`). */
  readonly more: boolean;
  /** True for broadcasts, false for directed messages. */
  readonly broadcast: boolean;
  /** Random 16-byte message id. */
  readonly msgId: Buffer;
  /** The origin's timestamp (ms since epoch). */
  readonly timestamp: number;
  /** Number of relays it crossed (0 = sent by a neighbour). */
  readonly hops: number;
  /** Sends a directed message back to {@link src}. */
  reply(data: string | Uint8Array, opts?: SendOptions): Promise<void>;
}

/** The link a message arrived on, as given to handlers. */
export interface SwarmConnection {
  /** The neighbour that handed us the message (the last hop; the origin if `hops === 0`). */
  readonly peer: SwarmPeerInfo;
  /** The neighbour's TCP endpoint of this link. */
  readonly remote: Endpoint;
  /** Sends a directed message to this neighbour. */
  send(data: string | Uint8Array, opts?: SendOptions): Promise<void>;
}

/**
 * A message handler. Called with exactly two parameters; return (or resolve) a truthy value
 * to mark the message handled: the chain stops and the message is not queued for `recv()`.
 */
export type SwarmHandler = (msg: SwarmMessage, conn: SwarmConnection | undefined) => boolean | Promise<boolean>;

/** Where {@link SwarmPeer.send} delivers: an endpoint, a node id (32 bytes / 64 hex), a peer, or a peer's info. */
export type SwarmTarget = EndpointLike | readonly [string, number] | Uint8Array | { readonly id: Uint8Array } | { readonly identity: Identity };

/** Hooks, called synchronously; a throwing hook is reported and ignored. */
export interface SwarmHooks {
  /** An application message we originate (`send`/`broadcast`/`reply`). `target` is undefined for broadcasts. */
  send?(info: { target: SwarmPeerInfo | undefined; data: Buffer; broadcast: boolean }): void;
  /** Every application message delivered to us, before the handler chain. */
  recv?(msg: SwarmMessage): void;
  /** A new neighbour link is up. */
  newPeer?(peer: SwarmPeerInfo): void;
}

/** Options of `new SwarmPeer()`. */
export interface SwarmPeerOptions {
  /** Our identity. @default a fresh one */
  identity?: Identity;
  /** Protocol identity; peers with another one are refused. @default { name: 'p2pd-swarm', version: '1', encrypted: true } */
  protocol?: SwarmProtocol;
  /** Hooks. */
  hooks?: SwarmHooks;
  /** Neighbours chosen per non-empty XOR bucket. @default DEFAULT_LINKS_PER_BUCKET (2) */
  linksPerBucket?: number;
  /** Soft cap of links; over it, undesired links we dialed are pruned. @default DEFAULT_MAX_LINKS (32) */
  maxLinks?: number;
  /** Copies of a broadcast sent into each bucket (1 = n−1 frames in total). @default 2 */
  broadcastRedundancy?: number;
  /** Bound of link setup (ms). @default DEFAULT_LINK_TIMEOUT (10 s) */
  linkTimeout?: number;
  /** Messages queued for `recv()`; beyond it the oldest is dropped. @default 4096 */
  maxQueue?: number;
  /** Message ids remembered for dedupe. @default 65 536 */
  seenCacheSize?: number;
  /** Clock (ms since epoch). Tests only. @default Date.now */
  now?: () => number;
  /** Period of the neighbour maintenance (ms). @default MAINTAIN_INTERVAL (1 s) */
  maintainInterval?: number;
}

/** Options of `bind`. */
export interface SwarmBindOptions {
  /** Address others should dial (e.g. the NAT's external address). @default the bound host */
  externalHost?: string;
  /** Port others should dial. @default the bound port */
  externalPort?: number;
}

/** Options of `send`. */
export interface SendOptions extends AbortOptions {
  /** Extra copies sent over disjoint first hops; the receiver still delivers once. @default 0 */
  duplicates?: number;
}

/** Options of `broadcast`. */
export interface BroadcastOptions extends AbortOptions {
  /** Nodes that relay but do not deliver it (ids, peers or infos; at most 64). */
  exclude?: readonly SwarmTarget[];
}

/** Counters of a swarm node. */
export interface SwarmStats {
  /** Frames sent, by type. */
  framesSent: { members: number; data: number; bcast: number };
  /** Frames received (all types). */
  framesReceived: number;
  /** Messages delivered to this node (all kinds). */
  delivered: number;
  /** Messages forwarded for others. */
  relayed: number;
  /** Copies dropped as already seen. */
  duplicates: number;
  /** Frames dropped as malformed, forged, too old or from the future. */
  invalid: number;
  /** Directed messages that used flood mode here. */
  floods: number;
  /** Frames not sent because the link was closing or its socket buffer was full. */
  sendDropped: number;
  /** Messages dropped because the `recv()` queue was full. */
  queueDropped: number;
  /** Incoming connections refused for another protocol. */
  protocolMismatches: number;
  /** Link setups that failed for other reasons. */
  setupFailures: number;
}

/** Creates zeroed counters. */
export function emptyStats(): SwarmStats {
  return {
    framesSent: { members: 0, data: 0, bcast: 0 },
    framesReceived: 0, delivered: 0, relayed: 0, duplicates: 0, invalid: 0, floods: 0,
    sendDropped: 0, queueDropped: 0, protocolMismatches: 0, setupFailures: 0,
  };
}
