/**
 * `DhtNode`: a Kademlia node with a dict-like async API over an injected {@link DhtTransport}.
 *
 * - `set`/`get`/`has`/`delete`/`update` work on signed records ({@link DhtRecord}) stored on
 *   the k nodes closest to SHA-256(key). Only the key's first writer can overwrite or delete it.
 * - Lookups are iterative and α-parallel ({@link iterativeLookup}).
 * - Replicas are republished every `republishInterval` (skipped for records someone else
 *   re-stored within the interval), and pushed to a newly seen contact at once when it falls
 *   among the k closest known nodes of a held key.
 * - Buckets not looked up for `refreshInterval` are refreshed by a lookup of a random id in
 *   their range.
 * - Timers are `unref`'d; {@link DhtNode.close} stops them and cancels every operation.
 *
 * The class wires the mechanisms together and delegates to them: record operations in
 * `node-records.ts`, RPCs / lookups / operation lifetimes in `node-rpc.ts`, join, republish
 * and refresh in `node-maintenance.ts`, replica placement in `replication.ts` and serving
 * requests in `handler.ts`.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, InvalidArgumentError, NotFoundError } from '../errors.js';
import { handled } from '../pipes/pipe.js';
import { closeWithin, type AbortOptions } from '../util/abort.js';
import { checkOptions } from '../util/args.js';
import { contactProblem, type Contact } from './contact.js';
import { assertId, keyBytes, keyToId, type DhtId } from './id.js';
import { DEFAULT_ALPHA, type iterativeLookup, type LookupResult } from './lookup.js';
import { MAX_CLOCK_SKEW_MS, decodeValue, type DhtKey, type DhtRecord, type DhtValue } from './record.js';
import { DEFAULT_K, RoutingTable } from './routing-table.js';
import { RecordStore } from './store.js';
import { createRequestHandler } from './handler.js';
import { joinNetwork, refreshBuckets, republishRecords } from './node-maintenance.js';
import { RecordOps, checkQuorum } from './node-records.js';
import { NodeRpc } from './node-rpc.js';
import { Background, DhtMetricsRecorder, type DhtMetrics } from './node-support.js';
import { Replicator, type NodeCore, type PutResult } from './replication.js';
import type { DhtTransport } from './transport.js';
import {
  DEFAULT_GET_QUORUM, DEFAULT_RECORD_TTL, DEFAULT_REFRESH_INTERVAL, DEFAULT_REPUBLISH_INTERVAL, DEFAULT_REQUEST_TIMEOUT, JOIN_PING_ATTEMPTS,
  nonNegative, type DhtEntries, type DhtGetOptions, type DhtNodeOptions,
} from './options.js';


/** A Kademlia DHT node. */
export class DhtNode {
  /** Our id. */
  readonly id: DhtId;
  /** Our advertised contact. */
  readonly contact: Contact;
  /** The routing table. */
  readonly table: RoutingTable;
  /** Bucket size / replication factor. */
  readonly k: number;
  /** Lookup parallelism. */
  readonly alpha: number;
  readonly #transport: DhtTransport;
  readonly #store: RecordStore;
  readonly #replicator: Replicator;
  readonly #net: NodeRpc;
  readonly #records: RecordOps;
  readonly #closeCtrl = new AbortController();
  readonly #bg = new Background();
  readonly #metrics: DhtMetricsRecorder;
  readonly #republishInterval: number;
  readonly #refreshInterval: number;

  constructor(opts: DhtNodeOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('DhtNode options must be an object');
    setMaxListeners(0, this.#closeCtrl.signal); // every operation listens for close
    const problem = contactProblem(opts.contact);
    if (problem) throw new InvalidArgumentError(`DHT contact: ${problem}`);
    this.contact = opts.contact;
    this.id = opts.contact.id;
    this.#transport = opts.transport;
    const signer = opts.signer;
    const now = opts.now ?? Date.now;
    this.k = opts.k ?? DEFAULT_K;
    this.alpha = opts.alpha ?? DEFAULT_ALPHA;
    if (!Number.isInteger(this.alpha) || this.alpha < 1) throw new InvalidArgumentError('alpha must be a positive integer');
    const requestTimeout = nonNegative(opts.requestTimeout, DEFAULT_REQUEST_TIMEOUT, 'requestTimeout');
    this.#republishInterval = nonNegative(opts.republishInterval, DEFAULT_REPUBLISH_INTERVAL, 'republishInterval');
    this.#refreshInterval = nonNegative(opts.refreshInterval, DEFAULT_REFRESH_INTERVAL, 'refreshInterval');
    const quorum = checkQuorum(opts.quorum ?? DEFAULT_GET_QUORUM);
    const maxClockSkew = nonNegative(opts.maxClockSkew, MAX_CLOCK_SKEW_MS, 'maxClockSkew');
    const advertise = opts.advertise ?? true;
    const recordTtl = nonNegative(opts.recordTtl, DEFAULT_RECORD_TTL, 'recordTtl');
    this.#store = new RecordStore({ now, maxClockSkew, ttl: recordTtl,
      ...(opts.maxRecords !== undefined ? { maxRecords: opts.maxRecords } : {}) });
    this.table = new RoutingTable(this.id, {
      k: this.k,
      now,
      ...(opts.maxFailures !== undefined ? { maxFailures: opts.maxFailures } : {}),
      ping: (c) => this.ping(c),
      onAdded: (c) => this.#replicator.onContactAdded(c),
    });
    this.#metrics = new DhtMetricsRecorder(() => ({ contacts: this.table.size, records: this.#store.size }));
    this.#net = new NodeRpc({
      closeSignal: this.#closeCtrl.signal, transport: this.#transport, contact: this.contact, table: this.table, k: this.k, alpha: this.alpha,
      metrics: this.#metrics, now, requestTimeout, maxClockSkew, recordTtl, advertise,
    });
    const isClosed = (): boolean => this.closed;
    const core: NodeCore = {
      id: this.id, contact: this.contact, k: this.k, table: this.table, store: this.#store, bg: this.#bg,
      get closed() {
        return isClosed();
      },
      now,
      rpc: (to, req, signal, o) => this.#net.rpc(to, req, signal, o),
    };
    this.#replicator = new Replicator(core);
    this.#records = new RecordOps({ net: this.#net, replicator: this.#replicator, signer, now, recordTtl, quorum });
    this.#transport.onRequest(createRequestHandler(core, this.#replicator, () => this.#metrics.received++));
    if (this.#republishInterval > 0) this.#bg.every(this.#republishInterval, () => this.republish());
    if (this.#refreshInterval > 0) this.#bg.every(this.#refreshInterval, () => this.refresh());
  }

  /** True after {@link close}. */
  get closed(): boolean {
    return this.#closeCtrl.signal.aborted;
  }

  /** Counters and lookup statistics. */
  get metrics(): DhtMetrics {
    return this.#metrics.snapshot();
  }

  /** The copy of `key` this node holds as a replica (tombstones included), if any. */
  localRecord(key: DhtKey): DhtRecord | undefined {
    return this.#store.get(keyToId(key))?.record;
  }

  /** Number of records this node holds as a replica. */
  get storedRecords(): number {
    return this.#store.size;
  }

  // ---- dict-like API (record operations in node-records.ts) ------------------------------
  //
  // The writes (`set`, `put`, `delete`, `update`) and the maintenance calls (`republish`,
  // `refresh`) return promises marked handled, as `Pipe.send` does: a call nobody awaits
  // (`void node.set(…)`) that fails is not an unhandled rejection; an awaited one still
  // rejects with the typed error. Bad arguments reject with `InvalidArgumentError`.

  /**
   * Stores `value` under `key` on the k closest nodes, signed by our signer.
   * @throws RecordError if the key is owned by another writer or over the size limits;
   *   InvalidArgumentError without a signer or for a bad key/value/options; P2pdError
   *   `ERR_DHT_STORE` if no node stored it.
   */
  set(key: DhtKey, value: DhtValue, opts?: AbortOptions): Promise<void> {
    return handled(this.#records.put(key, value, opts).then(() => undefined));
  }

  /** {@link set}, also reporting the record and how many nodes accepted it. */
  put(key: DhtKey, value: DhtValue, opts?: AbortOptions): Promise<PutResult> {
    return handled(this.#records.put(key, value, opts));
  }

  /**
   * The value stored under `key`, typed as it was set. A missing (or deleted) key throws
   * {@link NotFoundError}, or returns `opts.default` when given. When this node holds no copy
   * and every node it asked failed to answer, it throws `UnreachableError`
   * (`ERR_UNREACHABLE`), default or not (as do `getRecord` and `has`).
   */
  async get(key: DhtKey, opts?: DhtGetOptions): Promise<DhtValue>;
  async get<D>(key: DhtKey, opts: DhtGetOptions<D> & { default: D }): Promise<DhtValue | D>;
  async get<D>(key: DhtKey, opts?: DhtGetOptions<D>): Promise<DhtValue | D> {
    checkOptions(opts);
    const r = await this.getRecord(key, opts);
    if (!r || r.deleted) {
      if (opts && 'default' in opts) return opts.default as D;
      throw new NotFoundError(`DHT key not found: ${JSON.stringify(Buffer.from(keyBytes(key)).toString('utf8')).slice(0, 80)}`);
    }
    return decodeValue(r);
  }

  /** The winning record for `key` (a tombstone if deleted), or `undefined` if none exists. */
  async getRecord(key: DhtKey, opts?: Omit<DhtGetOptions<unknown>, 'default'>): Promise<DhtRecord | undefined> {
    return this.#records.getRecord(key, opts);
  }

  /** True if `key` exists (and is not deleted). */
  async has(key: DhtKey, opts?: AbortOptions): Promise<boolean> {
    const r = await this.getRecord(key, opts);
    return r !== undefined && !r.deleted;
  }

  /**
   * Deletes `key` by storing a signed tombstone on the k closest nodes. Resolves `false` if
   * the key does not exist (nothing is written).
   * @throws RecordError if another writer owns the key.
   */
  delete(key: DhtKey, opts?: AbortOptions): Promise<boolean> {
    return handled(this.#records.delete(key, opts));
  }

  /**
   * Sets every pair of `entries` — a `Map`, an iterable of `[key, value]` pairs or a plain
   * object — α at a time; rejects with the first error after all settle. Bad arguments (not
   * such a collection, a bad key or value, no signer) reject with `InvalidArgumentError`
   * (oversized ones with `RecordError`) before anything is written.
   */
  update(entries: DhtEntries, opts?: AbortOptions): Promise<void> {
    return handled(this.#records.update(entries, opts, (k, v, o) => this.set(k, v, o)));
  }

  // ---- network (rpc/lookup plumbing in node-rpc.ts, upkeep in node-maintenance.ts) -------

  /**
   * Joins the network: pings `bootstrap` (up to {@link JOIN_PING_ATTEMPTS} times each),
   * looks up our own id, then refreshes every bucket further than our closest neighbour.
   * Resolves with the routing table size.
   * @throws ConnectError if bootstrap contacts were given and none answered.
   */
  async join(bootstrap: readonly Contact[], opts?: AbortOptions): Promise<number> {
    checkOptions(opts);
    if (!Array.isArray(bootstrap)) throw new InvalidArgumentError('bootstrap must be an array of contacts');
    if (bootstrap.some((c) => c === null || typeof c !== 'object')) throw new InvalidArgumentError('bootstrap must be an array of contacts');
    return this.#net.op(opts, 'DHT join', (signal) => joinNetwork(this.#net, bootstrap, signal));
  }

  /** Iterative lookup of the k closest nodes to `target`, with statistics. */
  async lookup(target: DhtId, opts?: AbortOptions): Promise<LookupResult> {
    checkOptions(opts);
    assertId(target, 'lookup target');
    return this.#net.op(opts, 'DHT lookup', (signal) => this.#net.lookup(target, 'node', signal));
  }

  /** Pings `contact`; resolves `true` if it answered as the expected node. Never rejects. */
  async ping(contact: Contact, opts?: AbortOptions): Promise<boolean> {
    if (this.closed) return false;
    return this.#net.op(opts, 'DHT ping', (signal) => this.#net.rpc(contact, { type: 'PING' }, signal)).then(() => true, () => false);
  }

  /**
   * Re-sends held replicas (not re-stored by anyone within `republishInterval`, or all with
   * `force`) and our own records to the current k closest nodes; drops replicas we are no
   * longer among the k closest for. Resolves with the number of records republished.
   */
  republish(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    return handled(this.#republish(opts));
  }

  async #republish(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    checkOptions(opts);
    return this.#net.op(opts, 'DHT republish', async (signal) => {
      this.#records.renewOwn();
      this.#store.expire();
      const jobs = this.#replicator.due(this.#republishInterval, opts?.force === true);
      return republishRecords(this.#net, this.#replicator, jobs, signal);
    });
  }

  /** Refreshes buckets not looked up for `refreshInterval` (all with `force`). */
  refresh(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    return handled(this.#refresh(opts));
  }

  async #refresh(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    checkOptions(opts);
    return this.#net.op(opts, 'DHT refresh', (signal) => refreshBuckets(this.#net, opts?.force ? 0 : this.#refreshInterval, signal));
  }

  /**
   * Stops timers, cancels every operation and unregisters from the transport. Idempotent.
   * `opts` bounds the wait for the cancelled operations to settle (`AbortError` /
   * `TimeoutError`; the node is closed either way).
   */
  async close(opts?: AbortOptions): Promise<void> {
    if (!this.closed) {
      this.#closeCtrl.abort(new AbortError('DHT node closed'));
      this.table.close();
      this.#transport.onRequest(undefined);
      this.#replicator.clear();
    }
    await closeWithin(() => this.#bg.close(), opts, () => undefined, 'DHT node close');
  }

  /** `await using node = new DhtNode(…)` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
