/**
 * A node's peer slots: how many live pipes it holds, and how many of them peers opened.
 *
 * `maxPeers` caps all live pipes; `maxInboundPeers` (by default three quarters of
 * `maxPeers`) caps the ones peers opened to us, including the pipes a node makes to answer a
 * peer's reverse, punch or relay request. Identities cost nothing to make, so without the
 * second cap anyone could fill every slot with inbound pipes and the node could no longer
 * `connect()` to anyone; with it, the rest stays for the node's own connections.
 * @module
 */
import { LimitError } from '../errors.js';
import type { NodePipe } from './types.js';

/** The share of `maxPeers` inbound pipes may take by default (see {@link defaultMaxInbound}). */
export const DEFAULT_INBOUND_SHARE = 0.75;

/** The default `maxInboundPeers` for `maxPeers`: {@link DEFAULT_INBOUND_SHARE} of it, at least 1. */
export function defaultMaxInbound(maxPeers: number): number {
  return Math.max(1, Math.floor(maxPeers * DEFAULT_INBOUND_SHARE));
}

/** Live pipe counts of one node, against its caps. */
export class PeerSlots {
  private readonly inbound = new Set<NodePipe>();

  /**
   * @param all the node's live pipes (inbound and outbound; maintained by its lifecycle)
   * @param maxPeers cap on `all`
   * @param maxInbound cap on the inbound ones
   */
  constructor(
    private readonly all: ReadonlySet<NodePipe>,
    readonly maxPeers: number,
    readonly maxInbound: number,
  ) {}

  /** Inbound pipes alive now. */
  get inboundCount(): number {
    return this.inbound.size;
  }

  /** Why a new inbound pipe cannot be kept, or undefined if it can. */
  refuseInbound(): string | undefined {
    if (this.all.size >= this.maxPeers) return `maxPeers (${this.maxPeers}) pipes are open`;
    if (this.inbound.size >= this.maxInbound) return `maxInboundPeers (${this.maxInbound}) inbound pipes are open`;
    return undefined;
  }

  /** @throws LimitError when no pipe of ours can be added (`maxPeers` are open). */
  checkOutbound(): void {
    if (this.all.size >= this.maxPeers) throw new LimitError('maxPeers', this.maxPeers, `cannot connect: maxPeers (${this.maxPeers}) pipes are open`);
  }

  /** Counts `np` as inbound until it closes. */
  addInbound(np: NodePipe): void {
    this.inbound.add(np);
    np.onClose(() => this.inbound.delete(np));
  }
}
