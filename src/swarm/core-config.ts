/**
 * What a `SwarmCore` (see `core.ts`) is given: its validated configuration, and the events it
 * reports to its owner.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { ProtocolMismatchError } from '../errors.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import type { Envelope } from './envelope.js';
import type { Link } from './link.js';
import type { ApplyResult, Member } from './member.js';
import type { ResolvedProtocol } from './protocol.js';

/** Configuration of a core (validated by `SwarmPeer`). */
export interface CoreConfig {
  /** Our identity (node id, signs announcements and messages). */
  identity: Identity;
  /** The protocol spoken (peers of another one are refused). */
  protocol: ResolvedProtocol;
  /** Clock, Unix ms. */
  now: () => number;
  /** Neighbours chosen per non-empty XOR bucket. */
  linksPerBucket: number;
  /** Soft cap of links. */
  maxLinks: number;
  /** Copies of a broadcast sent into each bucket. */
  redundancy: number;
  /** Time allowed to set up a link, ms. */
  linkTimeout: number;
  /** Message ids remembered to drop duplicates. */
  seenCacheSize: number;
  /** Period of neighbour maintenance, ms. */
  maintainInterval: number;
}

/** What the core reports to its owner. Callbacks must not throw. */
export interface CoreEvents {
  /** A verified message addressed to us (directed) or a broadcast we should deliver. */
  deliver(env: Envelope, from: Link | undefined): void;
  /** A new neighbour. */
  linkUp(link: Link): void;
  /** A neighbour is gone (its last link closed). */
  linkDown(link: Link, err: Error | undefined): void;
  /** A peer was refused for speaking another protocol. */
  mismatch(err: ProtocolMismatchError, remote: Endpoint | undefined): void;
  /** Membership changed. */
  member(m: Member, change: ApplyResult | 'expired'): void;
}
