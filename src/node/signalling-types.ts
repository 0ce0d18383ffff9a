/**
 * Signalling settings and messages: defaults, the options and counters of `Signalling`, and
 * the verified message it hands out (see `signalling.ts`).
 * @module
 */
import type { PeerAddress } from './address.js';
import type { Identity } from '../crypto/identity.js';
import type { X25519KeyPair } from '../crypto/x25519.js';
import type { SignalError, SignalRejection } from './errors.js';

/** Default time to connect to a broker (ms). */
export const BROKER_CONNECT_TIMEOUT = 2_000;
/** Default TTL of a signalling message (ms). */
export const DEFAULT_SIGNAL_TTL = 10_000;
/**
 * Most broker connections opened on demand for peers at once (beyond the configured ones).
 * Past it, the least recently used one that nothing waits on is closed to make room.
 */
export const MAX_PEER_BROKERS = 16;

/** A verified signalling message. */
export interface SignalMessage {
  /** Sender's node id, hex (authenticated by the envelope signature). */
  from: string;
  /** Sender's Ed25519 identity key. */
  senderKey: Buffer;
  /** Message type. */
  type: string;
  /** Message body (an object; validate it before use). */
  body: Record<string, unknown>;
  /** Envelope id, hex. */
  msgId: string;
  /** The id of the message this one answers, if any. */
  re: string | undefined;
  /** The broker URL it came through. */
  via: string;
  /** Expiry, Unix ms. */
  expires: number;
}

/** Default of {@link SignallingOptions.replayCacheSize}. */
export const DEFAULT_REPLAY_CACHE_SIZE = 65_536;

/** Options of `Signalling`. */
export interface SignallingOptions {
  /** Our identity (signs what we send; the inbox is its id). */
  identity: Identity;
  /** Our X25519 signalling key (decrypts what we receive). */
  signalKey: X25519KeyPair;
  /** Brokers to stay connected to (URLs such as `mqtt://host:1883`). @default [] */
  brokers?: readonly string[];
  /** Time allowed to connect to a broker (ms). @default 2000 */
  connectTimeout?: number;
  /** Clock difference tolerated between peers (ms). @default 5000 */
  clockSkew?: number;
  /**
   * Message ids the replay cache holds at most (the general budget; a quarter more is reserved
   * for answers from peers we asked, one sender holds at most 1/64). Live ids are never
   * forgotten, so when a flood fills it, new messages from unexpected senders are refused
   * until ids expire (≤ one TTL). @default DEFAULT_REPLAY_CACHE_SIZE (65 536)
   */
  replayCacheSize?: number;
  /** Called with each verified message. */
  onMessage?: (m: SignalMessage) => void;
  /** Delay before reconnecting a configured broker (ms). @default 1000 */
  reconnectPeriod?: number;
  /**
   * Whether a peer runs on this host. A peer on another host is never signalled through a
   * loopback broker URL (that would be our own broker, not the peer's). @default every peer is
   * taken to be on another host unless its address has only loopback endpoints
   */
  sameHost?: (peer: PeerAddress) => boolean;
  /**
   * Called once for each configured broker whose first connection attempt in `start()` failed
   * (refused, timed out, closed, …; the error's `cause` tells): it keeps being retried in the
   * background. @default none (the failure is silent)
   */
  onBrokerFailure?: (url: string, err: SignalError) => void;
}

/** Counters. */
export interface SignallingStats {
  /** Envelopes published. */
  sent: number;
  /** Verified messages received. */
  received: number;
  /** Envelopes dropped, by reason. */
  rejected: Partial<Record<SignalRejection, number>>;
}
