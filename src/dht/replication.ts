/**
 * Replica placement for {@link DhtNode}: storing a record on the k closest nodes, read
 * repair, pushing held records to newly seen nodes that become one of a key's k closest,
 * and choosing what to republish.
 * @module
 */
import { P2pdError, RecordError } from '../errors.js';
import { toAbortError } from '../util/abort.js';
import type { Contact } from './contact.js';
import { compareDistance, idEquals, idToHex, keyToId, type DhtId } from './id.js';
import type { LookupResult } from './lookup.js';
import type { DhtRequest, DhtResponse, StoreStatus } from './messages.js';
import type { Background } from './node-support.js';
import { compareVersions, sameWriter, type DhtRecord } from './record.js';
import type { HeldRecord } from './resolve.js';
import type { RoutingTable } from './routing-table.js';
import type { RecordStore } from './store.js';

/** STORE attempts per replica (a timed-out STORE is retried once). */
export const STORE_ATTEMPTS = 2;

/** What the replication and request-handling helpers need from their node. */
export interface NodeCore {
  readonly id: DhtId;
  readonly contact: Contact;
  readonly k: number;
  readonly table: RoutingTable;
  readonly store: RecordStore;
  readonly bg: Background;
  readonly closed: boolean;
  now(): number;
  /** One RPC with the node's bookkeeping (routing table, metrics). */
  rpc(to: Contact, req: DhtRequest, signal: AbortSignal, opts?: { passive?: boolean }): Promise<DhtResponse>;
}

/** Result of storing a record on its replica set. */
export interface PutResult {
  /** The signed record that was stored. */
  readonly record: DhtRecord;
  /** Nodes (ourselves included) that accepted it. */
  readonly replicas: number;
}

function storeRequest(record: DhtRecord): DhtRequest {
  return { type: record.deleted ? 'DELETE' : 'STORE', record };
}

/** Replica placement for one node. */
export class Replicator {
  /** Records we wrote, by key id hex (republished by us as their writer). */
  readonly published = new Map<string, DhtRecord>();
  readonly #core: NodeCore;
  readonly #pushQueue = new Map<string, { contact: Contact; records: Map<string, DhtRecord> }>();

  constructor(core: NodeCore) {
    this.#core = core;
  }

  /** Our copies of a key: the replica we hold and the record we wrote, if any. */
  localCopies(keyId: DhtId): HeldRecord[] {
    const core = this.#core;
    const out: HeldRecord[] = [];
    const s = core.store.get(keyId);
    if (s) out.push({ record: s.record, holder: core.id });
    const p = this.published.get(idToHex(keyId));
    if (p && (!s || p !== s.record)) out.push({ record: p, holder: core.id });
    return out;
  }

  /**
   * Stores `record` on the k closest of `closest` ∪ us and counts acceptances. `own` marks
   * a record we wrote (kept for republishing). A replica we hold is dropped when we are no
   * longer among the k closest and all k of them accepted the record.
   * @throws RecordError when every node refused it for ownership/staleness/validity;
   *   P2pdError `ERR_DHT_STORE` when no node stored it at all.
   */
  async replicate(record: DhtRecord, keyId: DhtId, closest: readonly Contact[], signal: AbortSignal, own: boolean): Promise<PutResult> {
    const core = this.#core;
    const targets = [core.contact, ...closest.filter((c) => !idEquals(c.id, core.id))];
    targets.sort((a, b) => compareDistance(keyId, a.id, b.id));
    const chosen = targets.slice(0, core.k);
    const statuses = await Promise.all(chosen.map(async (c): Promise<StoreStatus | 'failed'> => {
      if (idEquals(c.id, core.id)) return core.store.offer(record, { keyId });
      for (let attempt = 0; attempt < STORE_ATTEMPTS && !signal.aborted; attempt++) {
        try {
          const res = await core.rpc(c, storeRequest(record), signal);
          return res.type === 'STORED' ? res.status : 'failed';
        } catch {
          // timeout or unreachable: try again, then give up on this node
        }
      }
      return 'failed';
    }));
    if (signal.aborted) throw toAbortError(signal);
    const replicas = statuses.filter((s) => s === 'ok').length;
    if (replicas === 0) {
      if (statuses.includes('not-owner')) throw new RecordError('DHT key is owned by another writer');
      if (statuses.includes('stale')) throw new RecordError('DHT record is older than the stored one');
      if (statuses.includes('invalid')) throw new RecordError('DHT record rejected as invalid (clock skew?)');
      throw new P2pdError('ERR_DHT_STORE', statuses.includes('full') ? 'DHT nodes are full' : 'no DHT node stored the record');
    }
    if (own) this.published.set(idToHex(keyId), record);
    // Hand our replica over only once every one of the k closer nodes confirmed it.
    if (!chosen.some((c) => idEquals(c.id, core.id)) && replicas >= core.k) core.store.delete(keyId);
    const held = core.store.get(keyId);
    if (held) held.lastReplicated = core.now();
    return { record, replicas };
  }

  /** Sends the winning record (in the background) to holders that returned an older version. */
  readRepair(winner: DhtRecord, keyId: DhtId, stale: readonly DhtId[], look: LookupResult): void {
    const core = this.#core;
    for (const c of look.closest) {
      if (stale.some((s) => idEquals(s, c.id))) core.bg.run((signal) => core.rpc(c, storeRequest(winner), signal));
    }
    if (stale.some((s) => idEquals(s, core.id))) core.store.offer(winner, { keyId });
  }

  /**
   * Routing-table hook: queues every held or published record for which `c` is among the
   * k closest known nodes, and sends them to `c` on the next turn.
   */
  onContactAdded(c: Contact): void {
    const core = this.#core;
    if (core.closed || (core.store.size === 0 && this.published.size === 0)) return;
    const check = (r: DhtRecord, keyId: DhtId): void => {
      if (core.table.rankOf(keyId, c.id, core.k) >= core.k) return;
      const hex = idToHex(c.id);
      let q = this.#pushQueue.get(hex);
      if (!q) {
        q = { contact: c, records: new Map() };
        this.#pushQueue.set(hex, q);
        core.bg.run((signal) => this.#flush(hex, signal));
      }
      q.records.set(idToHex(keyId), r);
    };
    for (const s of core.store.values()) check(s.record, s.keyId);
    for (const r of this.published.values()) check(r, keyToId(r.key));
  }

  async #flush(hex: string, signal: AbortSignal): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    const q = this.#pushQueue.get(hex);
    this.#pushQueue.delete(hex);
    if (!q) return;
    for (const r of q.records.values()) {
      if (signal.aborted) return;
      await this.#core.rpc(q.contact, storeRequest(r), signal).catch(() => undefined);
    }
  }

  /**
   * Records due for republishing: replicas nobody re-stored within `interval` ms (all with
   * `force`), plus every record we wrote (newest version per key).
   */
  due(interval: number, force: boolean): DhtRecord[] {
    const now = this.#core.now();
    const due = new Map<string, DhtRecord>();
    for (const s of this.#core.store.values()) {
      if (force || now - s.lastReplicated >= interval) due.set(idToHex(s.keyId), s.record);
    }
    for (const [hex, r] of this.published) {
      const d = due.get(hex);
      if (!d || (sameWriter(d, r) && compareVersions(r, d) > 0)) due.set(hex, r);
    }
    return [...due.values()];
  }

  /** Drops queued pushes (on close). */
  clear(): void {
    this.#pushQueue.clear();
  }
}
