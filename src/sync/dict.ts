/**
 * `SyncDict`: a dict replicated to every member of a swarm (py2p's sync socket, made safe).
 *
 * - Writes are signed records (see `record.ts`) broadcast over the swarm; every member
 *   verifies them (signature, owner, clock) and resolves each key with the same pure rule, so
 *   all members converge — also after a partition.
 * - Leases (default on, one hour): the member whose claim holds a key is its owner until its
 *   lease lapses (renewed by each write) or it deletes the key; `set`/`delete` by anyone else
 *   meanwhile throws {@link LeaseError}. Remote writes breaking a live lease lose on every member.
 * - State transfer (`exchange.ts`): on every new link both ends exchange a digest of their
 *   records and, when they differ, their records; records new to a node are re-broadcast to
 *   its side of the swarm. So a key set before others join reaches them. Only neighbours are
 *   answered, at most once per {@link MIN_STATE_REPLY_INTERVAL} each.
 * - Events `update (key, value, meta)` and `delete (key, meta)` fire on every member
 *   (the writer included) whenever a key's resolved value changes.
 * @module
 */
import { EventEmitter } from 'node:events';
import { checkOptions, entryPairs } from '../util/args.js';
import { InvalidArgumentError, LeaseError, NotFoundError, StateError } from '../errors.js';
import { handled } from '../pipes/pipe.js';
import { Reader } from '../swarm/codec.js';
import { throwIfAborted, type AbortOptions } from '../util/abort.js';
import type { Envelope } from '../swarm/envelope.js';
import type { SwarmPeer } from '../swarm/peer.js';
import type { SwarmPeerInfo } from '../swarm/types.js';
import {
  DEFAULT_SYNC_INTERVAL, KIND_SYNC, MAX_KEYS, MAX_RECORDS_PER_MESSAGE, MIN_STATE_REPLY_INTERVAL, MSG_DIGEST, MSG_RECORDS, MSG_STATE,
} from './constants.js';
import { AntiEntropy, type SyncDictStats } from './exchange.js';
import {
  DEFAULT_LEASE_TIME, DEFAULT_MAX_CLOCK_SKEW, MAX_KEY_SIZE, MAX_VALUE_SIZE, decodeRecordList, leaseEnd, namespaceId, recordProblem,
  signRecord, type SyncRecord,
} from './record.js';
import { RecordStore } from './store.js';
import { recordMessages } from './wire.js';

export { DEFAULT_SYNC_INTERVAL, KIND_SYNC, MAX_KEYS, MAX_OWNERS_PER_KEY, MIN_STATE_REPLY_INTERVAL } from './constants.js';
export type { SyncDictStats } from './exchange.js';

/** Bytes-like input: strings are UTF-8 encoded. */
export type Bytes = string | Uint8Array;

/** Who holds a key. */
export interface SyncMeta {
  /** Owner's node id (hex). */
  readonly owner: string;
  /** Time of the write (ms). */
  readonly timestamp: number;
  /** When the owner's lease ends (ms); `undefined` without leasing. */
  readonly expires: number | undefined;
}

/** Options of {@link SyncDict}. */
export interface SyncDictOptions {
  /** Dict name; dicts with other names (or other leasing settings) are separate. @default 'default' */
  name?: string;
  /** Enforce leases. @default true */
  leasing?: boolean;
  /** Lease duration (ms). @default DEFAULT_LEASE_TIME (1 h) */
  leaseTime?: number;
  /** Future clock skew tolerated on remote records (ms). @default DEFAULT_MAX_CLOCK_SKEW (30 s) */
  maxClockSkew?: number;
  /** Clock (ms). @default Date.now */
  now?: () => number;
  /**
   * Anti-entropy period (ms): each period the dict sends its digest to one random neighbour,
   * which answers with its records if they differ (at most once per MIN_STATE_REPLY_INTERVAL),
   * so a write whose broadcast was lost (a full link buffer, a link being replaced) still
   * reaches every member. `0` = only when links come up. @default DEFAULT_SYNC_INTERVAL (30 s)
   */
  syncInterval?: number;
}

/** Events of a {@link SyncDict}. */
export interface SyncDictEvents {
  /** A key got a new value (a local or a remote write). */
  update: [key: Buffer, value: Buffer, meta: SyncMeta];
  /** A key was deleted. */
  delete: [key: Buffer, meta: SyncMeta];
  /** A remote record was rejected (bad signature, future timestamp, malformed). */
  rejected: [reason: string, from: SwarmPeerInfo];
}

function bytes(x: Bytes, what: string, max: number, allowEmpty: boolean): Buffer {
  let b: Buffer;
  if (typeof x === 'string') b = Buffer.from(x, 'utf8');
  else if (x instanceof Uint8Array) b = Buffer.from(x);
  else throw new InvalidArgumentError(`${what} must be a string or a Uint8Array`);
  if (b.length > max || (!allowEmpty && b.length === 0)) throw new InvalidArgumentError(`${what} must be ${allowEmpty ? 0 : 1}..${max} bytes`);
  return b;
}

/** Dicts per peer, by namespace (one built-in handler per peer dispatches to them). */
const registry = new WeakMap<SwarmPeer, Map<string, SyncDict>>();

/**
 * A dict replicated to every swarm member.
 *
 * `set`, `update` and `delete` return promises marked handled (as `Pipe.send` does): a write
 * nobody awaits that fails (a lease held by another member, a closed dict) is not an
 * unhandled rejection; awaited, it rejects with the typed error. Bad arguments are
 * `InvalidArgumentError`.
 */
export class SyncDict extends EventEmitter<SyncDictEvents> {
  /** The dict name. */
  readonly name: string;
  /** Whether keys are leased to their writer. */
  readonly leasing: boolean;
  /** Lease length (ms). */
  readonly leaseTime: number;
  /** Namespace id: name and leasing settings (dicts with another one are separate). */
  readonly namespace: Buffer;
  readonly #peer: SwarmPeer;
  readonly #skew: number;
  readonly #now: () => number;
  readonly #store: RecordStore;
  readonly #sync: AntiEntropy;
  readonly #nsHex: string;
  #closed = false;
  readonly #offPeer: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(peer: SwarmPeer, opts: SyncDictOptions = {}) {
    super({ captureRejections: false });
    if (peer === null || typeof peer !== 'object' || typeof (peer as Partial<SwarmPeer>).registerBuiltin !== 'function') {
      throw new InvalidArgumentError('SyncDict needs a SwarmPeer');
    }
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('SyncDict options must be an object');
    if (opts.name !== undefined && typeof opts.name !== 'string') throw new InvalidArgumentError('name must be a string');
    if (opts.leasing !== undefined && typeof opts.leasing !== 'boolean') throw new InvalidArgumentError('leasing must be a boolean');
    if (opts.now !== undefined && typeof opts.now !== 'function') throw new InvalidArgumentError('now must be a function returning ms');
    if (opts.maxClockSkew !== undefined && (typeof opts.maxClockSkew !== 'number' || !(opts.maxClockSkew >= 0))) {
      throw new InvalidArgumentError('maxClockSkew must be a non-negative number of ms');
    }
    this.#peer = peer;
    this.name = opts.name ?? 'default';
    this.leasing = opts.leasing ?? true;
    this.leaseTime = opts.leaseTime ?? DEFAULT_LEASE_TIME;
    if (!Number.isFinite(this.leaseTime) || this.leaseTime <= 0) throw new InvalidArgumentError('leaseTime must be a positive number of ms');
    const every = opts.syncInterval ?? DEFAULT_SYNC_INTERVAL;
    if (!Number.isFinite(every) || every < 0) throw new InvalidArgumentError('syncInterval must be a non-negative number of ms');
    this.#skew = opts.maxClockSkew ?? DEFAULT_MAX_CLOCK_SKEW;
    this.#now = opts.now ?? Date.now;
    this.namespace = namespaceId(this.name, this.leasing, this.leaseTime);
    this.#nsHex = this.namespace.toString('hex');
    this.#store = new RecordStore(this.leasing, this.leaseTime);
    this.#sync = new AntiEntropy(peer, this.namespace, this.#store);
    let dicts = registry.get(peer);
    if (!dicts) {
      const map = new Map<string, SyncDict>();
      dicts = map;
      registry.set(peer, map);
      peer.registerBuiltin(KIND_SYNC, (env, _from, src) => {
        if (env.payload.length < 33) return;
        const d = map.get(env.payload.subarray(1, 33).toString('hex'));
        if (d) d.#onMessage(env, src);
      });
    }
    if (dicts.has(this.#nsHex)) throw new StateError(`this peer already has a dict named ${JSON.stringify(this.name)} with these settings`);
    dicts.set(this.#nsHex, this);
    const onPeer = (info: SwarmPeerInfo): void => this.#sync.sendDigest(info.id);
    peer.on('peer', onPeer);
    this.#offPeer = () => peer.off('peer', onPeer);
    // Neighbours we already have learn about us (and send what we miss) now.
    if (peer.bound && !peer.closed) for (const p of peer.peers) this.#sync.sendDigest(p.id);
    if (every > 0) {
      this.#timer = setInterval(() => this.#gossip(), every);
      this.#timer.unref();
    }
  }

  /** One anti-entropy round: our digest to a random neighbour (it answers with its records if they differ). */
  #gossip(): void {
    if (this.#peer.closed) return this.close(); // the peer is gone: so is this dict's part in the swarm
    if (!this.#closed) this.#sync.round();
  }

  /** Counters of the digest exchange (a live view). */
  get stats(): Readonly<SyncDictStats> {
    return this.#sync.stats;
  }

  /** Number of keys with a value. */
  get size(): number {
    let n = 0;
    for (const w of this.#store.winners()) if (!w.tombstone) n++;
    return n;
  }

  /** The value of `key`, or `dflt` (default `undefined`) when absent. */
  get(key: Bytes): Buffer | undefined;
  get<D>(key: Bytes, dflt: D): Buffer | D;
  get<D>(key: Bytes, dflt?: D): Buffer | D | undefined {
    const w = this.#store.winner(bytes(key, 'key', MAX_KEY_SIZE, false).toString('latin1'));
    return w && !w.tombstone ? w.value : dflt;
  }

  /** Whether `key` has a value. */
  has(key: Bytes): boolean {
    return this.get(key) !== undefined;
  }

  /** Owner, write time and lease end of `key`, or `undefined` when absent. */
  meta(key: Bytes): SyncMeta | undefined {
    const w = this.#store.winner(bytes(key, 'key', MAX_KEY_SIZE, false).toString('latin1'));
    return w && !w.tombstone ? this.#meta(w) : undefined;
  }

  #meta(w: SyncRecord): SyncMeta {
    return { owner: w.ownerHex, timestamp: w.ts, expires: this.leasing ? leaseEnd(w, this.leaseTime) : undefined };
  }

  /** Keys with a value. */
  *keys(): IterableIterator<Buffer> {
    for (const w of this.#store.winners()) if (!w.tombstone) yield w.key;
  }

  /** `[key, value]` pairs. */
  *entries(): IterableIterator<[Buffer, Buffer]> {
    for (const w of this.#store.winners()) if (!w.tombstone) yield [w.key, w.value];
  }

  /** Values. */
  *values(): IterableIterator<Buffer> {
    for (const w of this.#store.winners()) if (!w.tombstone) yield w.value;
  }

  /** Throws {@link LeaseError} unless we may write `key` now. */
  #checkLease(k: string, now: number): void {
    if (!this.leasing) return;
    const w = this.#store.winner(k);
    if (w && !w.ownerId.equals(this.#peer.id) && now < leaseEnd(w, this.leaseTime)) {
      throw new LeaseError(`key is leased by ${w.ownerHex.slice(0, 16)}… until ${new Date(leaseEnd(w, this.leaseTime)).toISOString()}`, w.ownerHex, leaseEnd(w, this.leaseTime));
    }
  }

  #write(key: Buffer, value: Buffer, tombstone: boolean): SyncRecord {
    const k = key.toString('latin1');
    const now = this.#now();
    const w = this.#store.winner(k);
    const mine = this.#store.recordOf(k, this.#peer.idHex);
    let since: number;
    let ts = Math.max(now, mine ? mine.ts + 1 : 0);
    if (!this.leasing) {
      ts = Math.max(ts, w ? w.ts + 1 : 0);
      since = ts;
    } else if (w && w.ownerId.equals(this.#peer.id) && !w.tombstone) {
      since = w.since; // our claim continues (a renewal)
    } else {
      since = Math.max(ts, w ? leaseEnd(w, this.leaseTime) : 0);
      ts = since;
    }
    if (!this.#store.hasKey(k) && this.#store.full) throw new StateError(`the dict holds ${MAX_KEYS} keys already`);
    return signRecord(this.#peer.identity, this.#protocolHash(), { namespace: this.namespace, since, ts, tombstone, key, value });
  }

  #protocolHash(): Buffer {
    return this.#peer.protocolHash;
  }

  /**
   * Sets `key` to `value` (both bytes-like) on every member. Rejects with {@link LeaseError}
   * while another member's lease on the key is live. Resolves once applied locally and handed
   * to the swarm (the write itself never waits, so `signal` is only checked at the start).
   */
  set(key: Bytes, value: Bytes, opts?: AbortOptions): Promise<void> {
    return handled(this.#update([[key, value]], opts));
  }

  /**
   * Sets several keys — a `Map`, an iterable of `[key, value]` pairs or a plain object; all
   * or nothing: if any key is leased by someone else, nothing is written and
   * {@link LeaseError} is thrown.
   */
  update(entries: Record<string, Bytes> | Map<Bytes, Bytes> | Iterable<readonly [Bytes, Bytes]>, opts?: AbortOptions): Promise<void> {
    return handled(this.#update(entries, opts));
  }

  async #update(entries: Record<string, Bytes> | Map<Bytes, Bytes> | Iterable<readonly [Bytes, Bytes]>, opts?: AbortOptions): Promise<void> {
    checkOptions(opts);
    this.#live();
    throwIfAborted(opts?.signal);
    const list: [Buffer, Buffer][] = [];
    for (const [k, v] of entryPairs<Bytes, Bytes>(entries, 'SyncDict entries')) list.push([bytes(k, 'key', MAX_KEY_SIZE, false), bytes(v, 'value', MAX_VALUE_SIZE, true)]);
    const now = this.#now();
    for (const [k] of list) this.#checkLease(k.toString('latin1'), now);
    this.#publish(list.map(([k, v]) => this.#write(k, v, false)));
  }

  /** Deletes `key` (and releases our lease). {@link NotFoundError} if absent, {@link LeaseError} if leased by another. */
  delete(key: Bytes, opts?: AbortOptions): Promise<void> {
    return handled(this.#delete(key, opts));
  }

  async #delete(key: Bytes, opts?: AbortOptions): Promise<void> {
    checkOptions(opts);
    this.#live();
    throwIfAborted(opts?.signal);
    const k = bytes(key, 'key', MAX_KEY_SIZE, false);
    const w = this.#store.winner(k.toString('latin1'));
    if (!w || w.tombstone) throw new NotFoundError('no such key in the synced dict');
    this.#checkLease(k.toString('latin1'), this.#now());
    this.#publish([this.#write(k, Buffer.alloc(0), true)]);
  }

  #live(): void {
    if (this.#closed) throw new StateError('synced dict is closed');
  }

  /** Applies our records locally and broadcasts them. */
  #publish(recs: SyncRecord[]): void {
    for (const r of recs) this.#merge(r);
    this.#broadcast(recs.map((r) => r.raw));
  }

  #broadcast(raws: Buffer[]): void {
    for (const m of recordMessages(MSG_RECORDS, this.namespace, raws)) this.#peer.broadcastInternal(KIND_SYNC, m);
  }

  /** Stores a verified record; returns true if our store changed. Emits events when the value changed. */
  #merge(r: SyncRecord): boolean {
    const change = this.#store.merge(r);
    if (!change) return false;
    const { before, after } = change;
    if (before !== after && !(before && after && before.raw.equals(after.raw))) {
      if (after && !after.tombstone) this.#emit('update', after);
      else if (before && !before.tombstone) this.#emit('delete', after ?? before);
    }
    return true;
  }

  #emit(ev: 'update' | 'delete', r: SyncRecord): void {
    try {
      if (ev === 'update') this.emit('update', r.key, r.value, this.#meta(r));
      else this.emit('delete', r.key, this.#meta(r));
    } catch (e) {
      process.emitWarning(`p2pd sync: a listener threw: ${String(e)}`, { code: 'P2PD_SYNC' });
    }
  }

  // -------------------------------------------------------------------- anti-entropy --

  /** Digest of every record we hold (order-independent; recomputed only after a change). */
  digest(): Buffer {
    return this.#store.digest();
  }

  #onMessage(env: Envelope, src: SwarmPeerInfo): void {
    if (this.#closed) return;
    const r = new Reader(env.payload, 'sync message');
    try {
      const type = r.u8('type');
      r.bytes(32, 'namespace');
      if (type === MSG_DIGEST) {
        const d = r.bytes(32, 'digest');
        r.end();
        this.#sync.onDigest(d, src);
        return;
      }
      if (type !== MSG_RECORDS && type !== MSG_STATE) throw new Error(`unknown sync message type ${type}`);
      const recs = decodeRecordList(r, MAX_RECORDS_PER_MESSAGE);
      r.end();
      const now = this.#now();
      const fresh: Buffer[] = [];
      const ph = this.#protocolHash();
      for (const rec of recs) {
        if (!rec.namespace.equals(this.namespace)) continue;
        const problem = recordProblem(rec, ph, now, this.#skew);
        if (problem) {
          this.emit('rejected', problem, src);
          continue;
        }
        if (this.#merge(rec)) fresh.push(rec.raw);
      }
      // Records learnt from a neighbour's state are news for our side of the swarm.
      if (type === MSG_STATE && fresh.length > 0) this.#broadcast(fresh);
    } catch (e) {
      this.emit('rejected', `malformed sync message: ${(e as Error).message}`, src);
    }
  }

  /** Stops taking part (the peer keeps running). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#offPeer();
    if (this.#timer) clearInterval(this.#timer);
    this.#sync.close();
    const dicts = registry.get(this.#peer);
    if (dicts?.get(this.#nsHex) === this) dicts.delete(this.#nsHex);
  }
}
