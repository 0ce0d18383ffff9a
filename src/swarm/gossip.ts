/**
 * Membership gossip batching: announcements learned during one turn of the event loop go out
 * together, as MEMBERS frames to every neighbour, on the next turn.
 * @module
 */
import { encodeMembers } from './frames.js';
import type { LinkSet } from './links.js';
import type { SwarmStats } from './types.js';

/** Collects signed announcements and floods them to every link in one batch. */
export class GossipQueue {
  #batch: Buffer[] = [];
  #scheduled = false;

  /**
   * @param links The neighbours the batches go to.
   * @param stats Counters (`framesSent.members`).
   * @param closed True once the node closed: pending batches are then dropped.
   */
  constructor(
    private readonly links: LinkSet,
    private readonly stats: SwarmStats,
    private readonly closed: () => boolean,
  ) {}

  /** Adds raw announcements to the next batch (sent on the next turn of the event loop). */
  queue(raws: readonly Buffer[]): void {
    for (const r of raws) this.#batch.push(r);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const batch = this.#batch;
      this.#batch = [];
      if (this.closed() || batch.length === 0) return;
      const frames = encodeMembers(batch);
      for (const l of this.links.values()) for (const f of frames) if (l.send(f)) this.stats.framesSent.members++;
    }).unref();
  }
}
