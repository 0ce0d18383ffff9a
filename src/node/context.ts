/**
 * What the connection strategies (direct, reverse, punch, relay) need from their node. The
 * node builds one {@link NodeContext} and hands it to each strategy module, so that every
 * strategy lives in a file of its own and sees only this surface.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { SecurePipe } from '../crypto/secure-pipe.js';
import type { Interface } from '../interfaces/interfaces.js';
import type { TurnPipe } from '../nat/turn/pipe.js';
import type { Pipe } from '../pipes/pipe.js';
import type { Message } from '../pipes/types.js';
import type { PeerAddress } from './address.js';
import type { PunchModule } from './punch-api.js';
import type { Signalling } from './signalling.js';
import type { NodeEvent, NodePipe, NodeTimeouts, P2pNodeOptions, PipePath } from './types.js';

/**
 * Default cap on a node's live pipes to peers, inbound and outbound together (`maxPeers`).
 * Identities cost nothing to make, so without a cap anyone could open pipes until the process
 * runs out of descriptors or memory.
 */
export const DEFAULT_MAX_PEERS = 1024;

/** TCP keep-alive and reliable-stream keep-alive on node pipes (ms): shorter than NAT binding timeouts. */
export const KEEPALIVE_MS = 15_000;

/** The node as its strategies see it. */
export interface NodeContext {
  /** The node's identity. */
  readonly identity: Identity;
  /** The node's options, as given. */
  readonly opts: P2pNodeOptions;
  /** Effective timeouts. */
  readonly timeouts: Required<NodeTimeouts>;
  /** The node's interfaces. */
  readonly nics: readonly Interface[];
  /** Signalling, when enabled. */
  readonly signalling: Signalling | undefined;
  /** The node's current address text. */
  readonly addr: string;
  /** Aborted when the node closes. */
  readonly lifeSignal: AbortSignal;
  /** The node's NAT type, when detected. */
  readonly natType: string | undefined;
  /** Relay allocations alive (closed with the node). */
  readonly relays: Set<TurnPipe>;
  /** Message dispatcher for new pipes. */
  readonly dispatch: (m: Message) => void;
  /**
   * Registers a pipe with the node (bookkeeping, keep-alive; `announce`: onPipe callbacks).
   * Used for the pipes a node makes for a peer's request; the connecting strategies return
   * theirs unadopted, and `connect()` adopts only the winner of its race.
   */
  adopt(p: SecurePipe | Pipe, path: PipePath, announce: boolean): NodePipe;
  /** The hole punching / reliable stream module, or null when it cannot be loaded. */
  punchModule(): Promise<PunchModule | null>;
  /** Reports a node event. */
  event(e: NodeEvent): void;
  /** True when `peer` is this node. */
  isSelf(peer: PeerAddress): boolean;
}

/** The parts of a node its context reads when asked (they change while the node starts). */
export interface NodeLive {
  nics(): readonly Interface[];
  signalling(): Signalling | undefined;
  addr(): string;
  natType(): string | undefined;
}

/** Builds a node's context: the fixed parts as given, the {@link NodeLive} ones read on each access. */
export function nodeContext(
  n: Pick<NodeContext, 'identity' | 'opts' | 'timeouts' | 'lifeSignal' | 'relays' | 'dispatch' | 'adopt' | 'punchModule' | 'event'> & { live: NodeLive },
): NodeContext {
  const { live } = n;
  return {
    identity: n.identity,
    opts: n.opts,
    timeouts: n.timeouts,
    lifeSignal: n.lifeSignal,
    relays: n.relays,
    dispatch: n.dispatch,
    adopt: n.adopt,
    punchModule: n.punchModule,
    event: n.event,
    get nics() {
      return live.nics();
    },
    get signalling() {
      return live.signalling();
    },
    get addr() {
      return live.addr();
    },
    get natType() {
      return live.natType();
    },
    isSelf: (peer) => peer.id.equals(n.identity.id),
  };
}
