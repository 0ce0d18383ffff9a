/**
 * Record operations of {@link DhtNode}: the write path of `set` / `put` / `delete` (look the
 * key up, check ownership, pick the next sequence number, sign, replicate), the quorum read of
 * `getRecord` (expiry filter, resolution, read repair), the α-wide batch of `update`, and
 * re-signing our own records before they expire.
 * @module
 */
import { InvalidArgumentError, RecordError, UnreachableError } from '../errors.js';
import type { AbortOptions } from '../util/abort.js';
import { checkOptions, entryPairs } from '../util/args.js';
import { idEquals, idToHex, keyBytes, keyToId, type DhtId } from './id.js';
import type { LookupResult } from './lookup.js';
import type { NodeRpc } from './node-rpc.js';
import type { DhtEntries, DhtGetOptions } from './options.js';
import {
  checkRecordLimits, createRecord, decodeValue, encodeValue,
  type DhtKey, type DhtRecord, type DhtValue, type Signer,
} from './record.js';
import type { PutResult, Replicator } from './replication.js';
import { resolveRecords } from './resolve.js';

/**
 * A read that found no copy here, asked nodes and got no answer from any: the DHT is
 * unreachable from this node, which is an `UnreachableError`, not a missing key.
 */
function unreachableCheck(res: LookupResult): void {
  if (res.closest.length === 0 && res.records.length === 0 && res.failures > 0) {
    throw new UnreachableError(`no DHT node answered (${res.failures} asked)`);
  }
}

/** `q` if it is a positive integer or `Infinity` (a read quorum), else `InvalidArgumentError`. */
export function checkQuorum(q: unknown): number {
  if (typeof q !== 'number' || !((Number.isInteger(q) && q >= 1) || q === Infinity)) throw new InvalidArgumentError(`quorum must be a positive integer, got ${String(q)}`);
  return q;
}

/** What {@link RecordOps} runs with (settled by the `DhtNode` constructor). */
export interface RecordOpsOptions {
  /** Lookups and lifetime-bound operations. */
  readonly net: NodeRpc;
  /** Replica placement, our local copies and the records we wrote. */
  readonly replicator: Replicator;
  /** Signs our records; `undefined` = read-only node. */
  readonly signer: Signer | undefined;
  /** Clock, ms. */
  readonly now: () => number;
  /** Record lifetime after signing, ms (`0` = never expire). */
  readonly recordTtl: number;
  /** Copies a read collects by default. */
  readonly quorum: number;
}

/** The record operations of one node (bad arguments reject, as the `DhtNode` methods document). */
export class RecordOps {
  readonly #o: RecordOpsOptions;

  constructor(opts: RecordOpsOptions) {
    this.#o = opts;
  }

  /** `DhtNode.put`: signs `value` under `key` and stores it on the k closest nodes. */
  async put(key: DhtKey, value: DhtValue, opts?: AbortOptions): Promise<PutResult> {
    checkOptions(opts);
    const signer = this.#requireSigner();
    const kb = keyBytes(key);
    checkRecordLimits(kb, encodeValue(value).bytes.length);
    const o = this.#o;
    return o.net.op(opts, 'DHT set', async (signal) => {
      const keyId = keyToId(kb);
      const look = await o.net.lookup(keyId, 'value', signal, Infinity);
      const current = this.#resolve(keyId, look).winner;
      const seq = this.#nextSeq(signer, keyId, current);
      const record = createRecord(signer, { key: kb, value, seq, timestamp: o.now() });
      return o.replicator.replicate(record, keyId, look.closest, signal, true);
    });
  }

  /** `DhtNode.getRecord`: the winning record for `key` among `quorum` copies, repairing stale ones. */
  async getRecord(key: DhtKey, opts?: Omit<DhtGetOptions<unknown>, 'default'>): Promise<DhtRecord | undefined> {
    checkOptions(opts);
    const o = this.#o;
    const keyId = keyToId(key);
    const wanted = opts?.quorum === undefined ? o.quorum : checkQuorum(opts.quorum);
    return o.net.op(opts, 'DHT get', async (signal) => {
      const local = o.replicator.localCopies(keyId).length > 0 ? 1 : 0;
      const quorum = Math.max(1, wanted - local);
      const look = await o.net.lookup(keyId, 'value', signal, quorum);
      if (local === 0) unreachableCheck(look);
      const { winner, stale } = this.#resolve(keyId, look);
      if (winner && stale.length > 0) o.replicator.readRepair(winner, keyId, stale, look);
      return winner;
    });
  }

  /** `DhtNode.delete`: stores a signed tombstone for an existing `key`; `false` if there is none. */
  async delete(key: DhtKey, opts?: AbortOptions): Promise<boolean> {
    checkOptions(opts);
    const signer = this.#requireSigner();
    const kb = keyBytes(key);
    checkRecordLimits(kb, 0);
    const o = this.#o;
    return o.net.op(opts, 'DHT delete', async (signal) => {
      const keyId = keyToId(kb);
      const look = await o.net.lookup(keyId, 'value', signal, Infinity);
      const current = this.#resolve(keyId, look).winner;
      if (!current || current.deleted) return false;
      const seq = this.#nextSeq(signer, keyId, current);
      const tomb = createRecord(signer, { key: kb, seq, timestamp: o.now(), deleted: true });
      await o.replicator.replicate(tomb, keyId, look.closest, signal, true);
      return true;
    });
  }

  /**
   * `DhtNode.update`: checks every pair of `entries`, then calls `set` on them α at a time;
   * rejects with the first error after all settle.
   */
  async update(entries: DhtEntries, opts: AbortOptions | undefined, set: (k: DhtKey, v: DhtValue, opts?: AbortOptions) => Promise<void>): Promise<void> {
    checkOptions(opts);
    const pairs = entryPairs<DhtKey, DhtValue>(entries, 'DHT update entries');
    if (pairs.length > 0) this.#requireSigner();
    for (const [k, v] of pairs) checkRecordLimits(keyBytes(k), encodeValue(v).bytes.length);
    const errors: unknown[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < pairs.length) {
        const [k, v] = pairs[next++] as readonly [DhtKey, DhtValue];
        await set(k, v, opts).catch((e: unknown) => errors.push(e));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.net.alpha, pairs.length) }, worker));
    if (errors.length > 0) throw errors[0];
  }

  /**
   * Records expire `recordTtl` after they were signed: re-signs (new timestamp, next seq) our
   * own live records once they are half that old, so they are republished before anyone drops
   * them; forgets our expired tombstones (nothing older can outlive them).
   */
  renewOwn(): void {
    const { recordTtl: ttl, signer } = this.#o;
    if (ttl <= 0) return;
    const now = this.#o.now();
    const pub = this.#o.replicator.published;
    for (const [hex, r] of pub) {
      if (r.deleted) {
        if (r.timestamp + ttl <= now) pub.delete(hex);
        continue;
      }
      if (now - r.timestamp < ttl / 2 || !signer) continue;
      try {
        pub.set(hex, createRecord(signer, { key: r.key, value: decodeValue(r), seq: Math.max(now, r.seq + 1), timestamp: now }));
      } catch {
        /* cannot happen for a record we wrote; keep the old one */
      }
    }
  }

  #requireSigner(): Signer {
    if (!this.#o.signer) throw new InvalidArgumentError('this DHT node has no signer; it is read-only');
    return this.#o.signer;
  }

  #nextSeq(signer: Signer, keyId: DhtId, current: DhtRecord | undefined): number {
    const mine = this.#o.replicator.published.get(idToHex(keyId));
    if (current && !idEquals(current.writer, signer.publicKey)) throw new RecordError('DHT key is owned by another writer');
    return Math.max(this.#o.now(), (current?.seq ?? -1) + 1, (mine?.seq ?? -1) + 1);
  }

  #resolve(keyId: DhtId, look: LookupResult): ReturnType<typeof resolveRecords> {
    const copies = [...this.#o.replicator.localCopies(keyId), ...look.records.map((f) => ({ record: f.record, holder: f.from.id }))];
    const ttl = this.#o.recordTtl;
    const now = this.#o.now();
    return resolveRecords(keyId, ttl > 0 ? copies.filter((c) => c.record.timestamp + ttl > now) : copies);
  }
}
