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
 * @module
 */
import { setMaxListeners } from 'node:events';
import { AbortError, ConnectError, DecodeError, InvalidArgumentError, NotFoundError, P2pdError, RecordError, UnreachableError } from '../errors.js';
import { handled } from '../pipes/pipe.js';
import { closeWithin, toAbortError, type AbortOptions } from '../util/abort.js';
import { checkOptions, entryPairs } from '../util/args.js';
import { contactProblem, type Contact } from './contact.js';
import { assertId, idEquals, idToHex, keyBytes, keyToId, randomIdInBucket, type DhtId } from './id.js';
import { DEFAULT_ALPHA, iterativeLookup, type LookupResult, type QueryAnswer } from './lookup.js';
import { responseTypeFor, type DhtRequest, type DhtResponse } from './messages.js';
import {
  checkRecordLimits, createRecord, decodeValue, encodeValue, MAX_CLOCK_SKEW_MS, verifyRecord,
  type DhtKey, type DhtRecord, type DhtValue, type Signer,
} from './record.js';
import { resolveRecords } from './resolve.js';
import { DEFAULT_K, RoutingTable } from './routing-table.js';
import { RecordStore } from './store.js';
import { createRequestHandler } from './handler.js';
import { Background, DhtMetricsRecorder, type DhtMetrics } from './node-support.js';
import { Replicator, type NodeCore, type PutResult } from './replication.js';
import { linkSignals, type DhtTransport } from './transport.js';
import {
  DEFAULT_GET_QUORUM, DEFAULT_RECORD_TTL, DEFAULT_REFRESH_INTERVAL, DEFAULT_REPUBLISH_INTERVAL, DEFAULT_REQUEST_TIMEOUT, JOIN_PING_ATTEMPTS,
  nonNegative, type DhtEntries, type DhtGetOptions, type DhtNodeOptions,
} from './options.js';

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
function checkQuorum(q: unknown): number {
  if (typeof q !== 'number' || !((Number.isInteger(q) && q >= 1) || q === Infinity)) throw new InvalidArgumentError(`quorum must be a positive integer, got ${String(q)}`);
  return q;
}

/**
 * The `ConnectError` of a join whose bootstrap contacts all failed: the message names each
 * contact and why it failed (wrong node id, handshake refused, timeout, ...); the `cause` is
 * that error when there is one contact, else an `AggregateError` of them (in contact order).
 */
function bootstrapError(failures: ReadonlyArray<{ contact: Contact; error: unknown }>): ConnectError {
  const describe = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  const detail = failures.map((f) => `${idToHex(f.contact.id).slice(0, 16)}…@${f.contact.family === 6 ? `[${f.contact.host}]` : f.contact.host}:${f.contact.port}: ${describe(f.error)}`);
  const errors = failures.map((f) => f.error);
  const msg = `no DHT bootstrap node answered${detail.length ? ` (${detail.join('; ')})` : ''}`;
  if (errors.length === 0) return new ConnectError(msg);
  return new ConnectError(msg, { cause: errors.length === 1 ? errors[0] : new AggregateError(errors, 'every DHT bootstrap contact failed') });
}

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
  readonly #signer: Signer | undefined;
  readonly #store: RecordStore;
  readonly #replicator: Replicator;
  readonly #closeCtrl = new AbortController();
  readonly #bg = new Background();
  readonly #metrics: DhtMetricsRecorder;
  readonly #now: () => number;
  readonly #requestTimeout: number;
  readonly #republishInterval: number;
  readonly #refreshInterval: number;
  readonly #quorum: number;
  readonly #maxClockSkew: number;
  readonly #recordTtl: number;
  readonly #advertise: boolean;

  constructor(opts: DhtNodeOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('DhtNode options must be an object');
    setMaxListeners(0, this.#closeCtrl.signal); // every operation listens for close
    const problem = contactProblem(opts.contact);
    if (problem) throw new InvalidArgumentError(`DHT contact: ${problem}`);
    this.contact = opts.contact;
    this.id = opts.contact.id;
    this.#transport = opts.transport;
    this.#signer = opts.signer;
    this.#now = opts.now ?? Date.now;
    this.k = opts.k ?? DEFAULT_K;
    this.alpha = opts.alpha ?? DEFAULT_ALPHA;
    if (!Number.isInteger(this.alpha) || this.alpha < 1) throw new InvalidArgumentError('alpha must be a positive integer');
    this.#requestTimeout = nonNegative(opts.requestTimeout, DEFAULT_REQUEST_TIMEOUT, 'requestTimeout');
    this.#republishInterval = nonNegative(opts.republishInterval, DEFAULT_REPUBLISH_INTERVAL, 'republishInterval');
    this.#refreshInterval = nonNegative(opts.refreshInterval, DEFAULT_REFRESH_INTERVAL, 'refreshInterval');
    this.#quorum = checkQuorum(opts.quorum ?? DEFAULT_GET_QUORUM);
    this.#maxClockSkew = nonNegative(opts.maxClockSkew, MAX_CLOCK_SKEW_MS, 'maxClockSkew');
    this.#advertise = opts.advertise ?? true;
    this.#recordTtl = nonNegative(opts.recordTtl, DEFAULT_RECORD_TTL, 'recordTtl');
    this.#store = new RecordStore({ now: this.#now, maxClockSkew: this.#maxClockSkew, ttl: this.#recordTtl,
      ...(opts.maxRecords !== undefined ? { maxRecords: opts.maxRecords } : {}) });
    this.table = new RoutingTable(this.id, {
      k: this.k,
      now: this.#now,
      ...(opts.maxFailures !== undefined ? { maxFailures: opts.maxFailures } : {}),
      ping: (c) => this.ping(c),
      onAdded: (c) => this.#replicator.onContactAdded(c),
    });
    this.#metrics = new DhtMetricsRecorder(() => ({ contacts: this.table.size, records: this.#store.size }));
    const isClosed = (): boolean => this.closed;
    const core: NodeCore = {
      id: this.id, contact: this.contact, k: this.k, table: this.table, store: this.#store, bg: this.#bg,
      get closed() {
        return isClosed();
      },
      now: this.#now,
      rpc: (to, req, signal, o) => this.#rpc(to, req, signal, o),
    };
    this.#replicator = new Replicator(core);
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

  // ---- dict-like API ------------------------------------------------------------------
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
    return handled(this.#put(key, value, opts).then(() => undefined));
  }

  /** {@link set}, also reporting the record and how many nodes accepted it. */
  put(key: DhtKey, value: DhtValue, opts?: AbortOptions): Promise<PutResult> {
    return handled(this.#put(key, value, opts));
  }

  async #put(key: DhtKey, value: DhtValue, opts?: AbortOptions): Promise<PutResult> {
    checkOptions(opts);
    const signer = this.#requireSigner();
    const kb = keyBytes(key);
    checkRecordLimits(kb, encodeValue(value).bytes.length);
    return this.#op(opts, 'DHT set', async (signal) => {
      const keyId = keyToId(kb);
      const look = await this.#lookup(keyId, 'value', signal, Infinity);
      const current = this.#resolve(keyId, look).winner;
      const seq = this.#nextSeq(signer, keyId, current);
      const record = createRecord(signer, { key: kb, value, seq, timestamp: this.#now() });
      return this.#replicator.replicate(record, keyId, look.closest, signal, true);
    });
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
    checkOptions(opts);
    const keyId = keyToId(key);
    const wanted = opts?.quorum === undefined ? this.#quorum : checkQuorum(opts.quorum);
    return this.#op(opts, 'DHT get', async (signal) => {
      const local = this.#replicator.localCopies(keyId).length > 0 ? 1 : 0;
      const quorum = Math.max(1, wanted - local);
      const look = await this.#lookup(keyId, 'value', signal, quorum);
      if (local === 0) unreachableCheck(look);
      const { winner, stale } = this.#resolve(keyId, look);
      if (winner && stale.length > 0) this.#replicator.readRepair(winner, keyId, stale, look);
      return winner;
    });
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
    return handled(this.#delete(key, opts));
  }

  async #delete(key: DhtKey, opts?: AbortOptions): Promise<boolean> {
    checkOptions(opts);
    const signer = this.#requireSigner();
    const kb = keyBytes(key);
    checkRecordLimits(kb, 0);
    return this.#op(opts, 'DHT delete', async (signal) => {
      const keyId = keyToId(kb);
      const look = await this.#lookup(keyId, 'value', signal, Infinity);
      const current = this.#resolve(keyId, look).winner;
      if (!current || current.deleted) return false;
      const seq = this.#nextSeq(signer, keyId, current);
      const tomb = createRecord(signer, { key: kb, seq, timestamp: this.#now(), deleted: true });
      await this.#replicator.replicate(tomb, keyId, look.closest, signal, true);
      return true;
    });
  }

  /**
   * Sets every pair of `entries` — a `Map`, an iterable of `[key, value]` pairs or a plain
   * object — α at a time; rejects with the first error after all settle. Bad arguments (not
   * such a collection, a bad key or value, no signer) reject with `InvalidArgumentError`
   * (oversized ones with `RecordError`) before anything is written.
   */
  update(entries: DhtEntries, opts?: AbortOptions): Promise<void> {
    return handled(this.#update(entries, opts));
  }

  async #update(entries: DhtEntries, opts?: AbortOptions): Promise<void> {
    checkOptions(opts);
    const pairs = entryPairs<DhtKey, DhtValue>(entries, 'DHT update entries');
    if (pairs.length > 0) this.#requireSigner();
    for (const [k, v] of pairs) checkRecordLimits(keyBytes(k), encodeValue(v).bytes.length);
    const errors: unknown[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < pairs.length) {
        const [k, v] = pairs[next++] as readonly [DhtKey, DhtValue];
        await this.set(k, v, opts).catch((e: unknown) => errors.push(e));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.alpha, pairs.length) }, worker));
    if (errors.length > 0) throw errors[0];
  }

  // ---- network ------------------------------------------------------------------------

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
    return this.#op(opts, 'DHT join', async (signal) => {
      const valid = bootstrap.filter((c) => !idEquals(c.id, this.id) && contactProblem(c) === undefined);
      // The last error of each contact that never answered, to say why in the ConnectError.
      const failures: Array<{ contact: Contact; error: unknown } | undefined> = [];
      const pingUntilAnswered = async (c: Contact, index: number): Promise<boolean> => {
        let last: unknown;
        for (let i = 0; i < JOIN_PING_ATTEMPTS && !signal.aborted; i++) {
          try {
            await this.#rpc(c, { type: 'PING' }, signal);
            return true;
          } catch (e) {
            last = e;
          }
        }
        if (last !== undefined) failures[index] = { contact: c, error: last };
        return false;
      };
      const alive = await Promise.all(valid.map(pingUntilAnswered));
      if (valid.length > 0 && !alive.includes(true)) throw bootstrapError(failures.filter((f) => f !== undefined));
      await this.#lookup(this.id, 'node', signal);
      await Promise.all(this.table.bucketsToRefresh(0).map((i) => this.#lookup(randomIdInBucket(this.id, i), 'node', signal)));
      return this.table.size;
    });
  }

  /** Iterative lookup of the k closest nodes to `target`, with statistics. */
  async lookup(target: DhtId, opts?: AbortOptions): Promise<LookupResult> {
    checkOptions(opts);
    assertId(target, 'lookup target');
    return this.#op(opts, 'DHT lookup', (signal) => this.#lookup(target, 'node', signal));
  }

  /** Pings `contact`; resolves `true` if it answered as the expected node. Never rejects. */
  async ping(contact: Contact, opts?: AbortOptions): Promise<boolean> {
    if (this.closed) return false;
    return this.#op(opts, 'DHT ping', (signal) => this.#rpc(contact, { type: 'PING' }, signal)).then(() => true, () => false);
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
    return this.#op(opts, 'DHT republish', async (signal) => {
      this.#renewOwn();
      this.#store.expire();
      const jobs = this.#replicator.due(this.#republishInterval, opts?.force === true);
      let done = 0;
      const worker = async (): Promise<void> => {
        for (let r = jobs.shift(); r; r = jobs.shift()) {
          const keyId = keyToId(r.key);
          try {
            const look = await this.#lookup(keyId, 'node', signal);
            await this.#replicator.replicate(r, keyId, look.closest, signal, false);
            done++;
          } catch (e) {
            if (signal.aborted) throw e;
          }
        }
      };
      await Promise.all(Array.from({ length: this.alpha }, worker));
      return done;
    });
  }

  /** Refreshes buckets not looked up for `refreshInterval` (all with `force`). */
  refresh(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    return handled(this.#refresh(opts));
  }

  async #refresh(opts?: AbortOptions & { force?: boolean }): Promise<number> {
    checkOptions(opts);
    return this.#op(opts, 'DHT refresh', async (signal) => {
      const idx = this.table.bucketsToRefresh(opts?.force ? 0 : this.#refreshInterval);
      for (const i of idx) await this.#lookup(randomIdInBucket(this.id, i), 'node', signal);
      return idx.length;
    });
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

  // ---- internals ----------------------------------------------------------------------

  /**
   * Records expire `recordTtl` after they were signed: re-signs (new timestamp, next seq) our
   * own live records once they are half that old, so they are republished before anyone drops
   * them; forgets our expired tombstones (nothing older can outlive them).
   */
  #renewOwn(): void {
    const ttl = this.#recordTtl;
    if (ttl <= 0) return;
    const now = this.#now();
    const pub = this.#replicator.published;
    for (const [hex, r] of pub) {
      if (r.deleted) {
        if (r.timestamp + ttl <= now) pub.delete(hex);
        continue;
      }
      if (now - r.timestamp < ttl / 2 || !this.#signer) continue;
      try {
        pub.set(hex, createRecord(this.#signer, { key: r.key, value: decodeValue(r), seq: Math.max(now, r.seq + 1), timestamp: now }));
      } catch {
        /* cannot happen for a record we wrote; keep the old one */
      }
    }
  }

  #requireSigner(): Signer {
    if (!this.#signer) throw new InvalidArgumentError('this DHT node has no signer; it is read-only');
    return this.#signer;
  }

  #nextSeq(signer: Signer, keyId: DhtId, current: DhtRecord | undefined): number {
    const mine = this.#replicator.published.get(idToHex(keyId));
    if (current && !idEquals(current.writer, signer.publicKey)) throw new RecordError('DHT key is owned by another writer');
    return Math.max(this.#now(), (current?.seq ?? -1) + 1, (mine?.seq ?? -1) + 1);
  }

  async #op<T>(opts: AbortOptions | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const link = linkSignals(opts, [this.#closeCtrl.signal], what);
    try {
      if (link.signal.aborted) throw toAbortError(link.signal);
      return await fn(link.signal);
    } catch (e) {
      if (link.signal.aborted) throw toAbortError(link.signal);
      throw e;
    } finally {
      link.done();
    }
  }

  async #rpc(to: Contact, req: DhtRequest, signal: AbortSignal, opts?: { passive?: boolean }): Promise<DhtResponse> {
    const full: DhtRequest = this.#advertise ? { ...req, sender: this.contact } : req;
    this.#metrics.sent++;
    try {
      const res = await this.#transport.request(to, full, { signal, timeout: this.#requestTimeout });
      if (!idEquals(res.responder, to.id)) throw new DecodeError('DHT reply from an unexpected node');
      this.table.add(to);
      if (res.type === 'ERROR') throw new P2pdError('ERR_DHT_REMOTE', `DHT peer error ${res.code}: ${res.message}`);
      if (res.type !== responseTypeFor(req.type)) throw new DecodeError(`DHT reply ${res.type} to ${req.type}`);
      return res;
    } catch (e) {
      if (!signal.aborted) {
        this.#metrics.failed++;
        // Only count the failure against the contact we know at that very address.
        const known = this.table.get(to.id);
        if (!opts?.passive && known && known.contact.host === to.host && known.contact.port === to.port) this.table.markFailed(to.id);
      }
      throw e;
    }
  }

  async #lookup(target: DhtId, mode: 'node' | 'value', signal: AbortSignal, quorum = Infinity): Promise<LookupResult> {
    this.table.touch(target);
    const seeds = this.table.closest(target, this.k);
    const res = await iterativeLookup(target, {
      selfId: this.id, k: this.k, alpha: this.alpha, seeds,
      query: (c, s) => this.#query(c, target, mode, s),
    }, signal, quorum);
    this.#metrics.lookup(res);
    return res;
  }

  async #query(c: Contact, target: DhtId, mode: 'node' | 'value', signal: AbortSignal): Promise<QueryAnswer> {
    const res = await this.#rpc(c, mode === 'node' ? { type: 'FIND_NODE', target } : { type: 'FIND_VALUE', keyId: target }, signal);
    if (res.type !== 'NODES' && res.type !== 'VALUE') throw new DecodeError('unexpected DHT reply');
    const contacts = res.contacts.filter((x) => contactProblem(x) === undefined);
    if (res.type === 'NODES' || !res.record) return { contacts };
    try {
      verifyRecord(res.record, { keyId: target, now: this.#now(), maxClockSkew: this.#maxClockSkew, maxAge: this.#recordTtl });
      return { contacts, record: res.record };
    } catch {
      this.#metrics.rejectedRecords++;
      return { contacts };
    }
  }

  #resolve(keyId: DhtId, look: LookupResult): ReturnType<typeof resolveRecords> {
    const copies = [...this.#replicator.localCopies(keyId), ...look.records.map((f) => ({ record: f.record, holder: f.from.id }))];
    const ttl = this.#recordTtl;
    const now = this.#now();
    return resolveRecords(keyId, ttl > 0 ? copies.filter((c) => c.record.timestamp + ttl > now) : copies);
  }
}
