/**
 * Choosing one record among the copies a lookup found.
 *
 * Copies are grouped by writer. The group held by the most distinct nodes wins (ties: the
 * group with the holder closest to the key), which keeps a later squatter who slipped its
 * record onto a few nodes from overriding the owner held by the rest; within the group the
 * newest version wins (higher `seq`, then larger signature).
 * @module
 */
import { compareDistance, idToHex, type DhtId } from './id.js';
import { compareVersions, type DhtRecord } from './record.js';

/** A copy of a record and the node that holds it. */
export interface HeldRecord {
  readonly record: DhtRecord;
  /** Id of the holder (our own id for local copies). */
  readonly holder: DhtId;
}

/** Result of {@link resolveRecords}. */
export interface Resolution {
  /** The winning record, if any copy was given. */
  readonly winner: DhtRecord | undefined;
  /** Holders of the winner's writer whose copy is older than the winner (read-repair targets). */
  readonly stale: DhtId[];
}

interface Group {
  holders: Set<string>;
  best: DhtRecord;
  closest: DhtId;
  copies: HeldRecord[];
}

/** Picks the winning record for `keyId` among verified copies (see module doc). */
export function resolveRecords(keyId: DhtId, copies: readonly HeldRecord[]): Resolution {
  const groups = new Map<string, Group>();
  for (const c of copies) {
    const w = idToHex(c.record.writer);
    let g = groups.get(w);
    if (!g) {
      g = { holders: new Set(), best: c.record, closest: c.holder, copies: [] };
      groups.set(w, g);
    }
    g.holders.add(idToHex(c.holder));
    g.copies.push(c);
    if (compareVersions(c.record, g.best) > 0) g.best = c.record;
    if (compareDistance(keyId, c.holder, g.closest) < 0) g.closest = c.holder;
  }
  let win: Group | undefined;
  for (const g of groups.values()) {
    if (!win || g.holders.size > win.holders.size) win = g;
    else if (g.holders.size === win.holders.size && compareDistance(keyId, g.closest, win.closest) < 0) win = g;
  }
  if (!win) return { winner: undefined, stale: [] };
  const best = win.best;
  const stale = win.copies.filter((c) => compareVersions(best, c.record) > 0).map((c) => c.holder);
  return { winner: best, stale };
}
