/**
 * `SyncDict`: a dict replicated to every member of a swarm (py2p's sync socket, made safe).
 *
 * - Writes are signed records (see `record.ts`) broadcast over the swarm; every member
 *   verifies them (signature, owner, clock) and resolves each key with the same pure rule, so
 *   all members converge — also after a partition.
 * - Leases (default on, one hour): the member whose claim holds a key is its owner until its
 *   lease lapses (renewed by each write) or it deletes the key; `set`/`delete` by anyone else
 *   meanwhile throws {@link LeaseError}. Remote writes breaking a live lease lose on every member.
 * - State transfer: on every new link both ends exchange a digest of their records and, when
 *   they differ, their records; records new to a node are re-broadcast to its side of the
 *   swarm. So a key set before others join reaches them.
 * - Events `update (key, value, meta)` and `delete (key, meta)` fire on every member
 *   (the writer included) whenever a key's resolved value changes.
 * @module
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { checkOptions, entryPairs } from '../util/args.js';
import { InvalidArgumentError, LeaseError, NotFoundError, StateError } from '../errors.js';
import { handled } from '../pipes/pipe.js';
import { Reader } from '../swarm/codec.js';
import { throwIfAborted, type AbortOptions } from '../util/abort.js';
import { MAX_PAYLOAD_SIZE } from '../swarm/constants.js';
import type { Envelope } from '../swarm/envelope.js';
import type { SwarmPeer } from '../swarm/peer.js';
import type { SwarmPeerInfo } from '../swarm/types.js';
import {
  DEFAULT_LEASE_TIME, DEFAULT_MAX_CLOCK_SKEW, MAX_KEY_SIZE, MAX_VALUE_SIZE, decodeRecordList, encodeRecordList, leaseEnd,
  namespaceId, newerOf, recordProblem, resolveKey, signRecord, type SyncRecord,
} from './record.js';

/** Swarm message kind of the synced dict. */
export const KIND_SYNC = 1;
/** Most keys one dict holds; writes of new keys beyond fail. */
export const MAX_KEYS = 100_000;
/** Most owners' records kept per key (oldest writes dropped first). */
export const MAX_OWNERS_PER_KEY = 64;
const MSG_RECORDS = 1;
const MSG_DIGEST = 2;
const MSG_STATE = 3;
/** Most records in one RECORDS/STATE sync message: larger batches are split on send; decoding rejects more. */
const MAX_RECORDS_PER_MESSAGE = 4096;

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
  /** Future clock skew tolerated on remote records (ms). @default 30 000 */
  maxClockSkew?: number;
  /** Clock (ms). @default Date.now */
  now?: () => number;
  /**
   * Anti-entropy period (ms): each period the dict sends its digest to one random neighbour,
   * which answers with its records if they differ, so a write whose broadcast was lost (a
   * full link buffer, a link being replaced) still reaches every member. `0` = only when links
   * come up. @default DEFAULT_SYNC_INTERVAL (30 s)
   */
  syncInterval?: number;
}

/** Default {@link SyncDictOptions.syncInterval} (ms). */
export const DEFAULT_SYNC_INTERVAL = 30_000;

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
  readonly #records = new Map<string, Map<string, SyncRecord>>();
  readonly #winners = new Map<string, SyncRecord>();
  readonly #nsHex: string;
  #digest: Buffer | undefined;
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
    const onPeer = (info: SwarmPeerInfo): void => this.#sendDigest(info.id);
    peer.on('peer', onPeer);
    this.#offPeer = () => peer.off('peer', onPeer);
    // Neighbours we already have learn about us (and send what we miss) now.
    if (peer.bound && !peer.closed) for (const p of peer.peers) this.#sendDigest(p.id);
    if (every > 0) {
      this.#timer = setInterval(() => this.#gossip(), every);
      this.#timer.unref();
    }
  }

  /** One anti-entropy round: our digest to a random neighbour (it answers with its records if they differ). */
  #gossip(): void {
    if (this.#peer.closed) return this.close(); // the peer is gone: so is this dict's part in the swarm
    if (this.#closed || !this.#peer.bound) return;
    const nbs = this.#peer.peers;
    if (nbs.length === 0) return;
    const nb = nbs[Math.floor(Math.random() * nbs.length)];
    try {
      if (nb) this.#sendDigest(nb.id);
    } catch {
      // The neighbour went away in the meantime: the next round picks another.
    }
  }

  /** Number of keys with a value. */
  get size(): number {
    let n = 0;
    for (const w of this.#winners.values()) if (!w.tombstone) n++;
    return n;
  }

  /** The value of `key`, or `dflt` (default `undefined`) when absent. */
  get(key: Bytes): Buffer | undefined;
  get<D>(key: Bytes, dflt: D): Buffer | D;
  get<D>(key: Bytes, dflt?: D): Buffer | D | undefined {
    const w = this.#winners.get(bytes(key, 'key', MAX_KEY_SIZE, false).toString('latin1'));
    return w && !w.tombstone ? w.value : dflt;
  }

  /** Whether `key` has a value. */
  has(key: Bytes): boolean {
    return this.get(key) !== undefined;
  }

  /** Owner, write time and lease end of `key`, or `undefined` when absent. */
  meta(key: Bytes): SyncMeta | undefined {
    const w = this.#winners.get(bytes(key, 'key', MAX_KEY_SIZE, false).toString('latin1'));
    return w && !w.tombstone ? this.#meta(w) : undefined;
  }

  #meta(w: SyncRecord): SyncMeta {
    return { owner: w.ownerHex, timestamp: w.ts, expires: this.leasing ? leaseEnd(w, this.leaseTime) : undefined };
  }

  /** Keys with a value. */
  *keys(): IterableIterator<Buffer> {
    for (const w of this.#winners.values()) if (!w.tombstone) yield w.key;
  }

  /** `[key, value]` pairs. */
  *entries(): IterableIterator<[Buffer, Buffer]> {
    for (const w of this.#winners.values()) if (!w.tombstone) yield [w.key, w.value];
  }

  /** Values. */
  *values(): IterableIterator<Buffer> {
    for (const w of this.#winners.values()) if (!w.tombstone) yield w.value;
  }

  /** Throws {@link LeaseError} unless we may write `key` now. */
  #checkLease(k: string, now: number): void {
    if (!this.leasing) return;
    const w = this.#winners.get(k);
    if (w && !w.ownerId.equals(this.#peer.id) && now < leaseEnd(w, this.leaseTime)) {
      throw new LeaseError(`key is leased by ${w.ownerHex.slice(0, 16)}… until ${new Date(leaseEnd(w, this.leaseTime)).toISOString()}`, w.ownerHex, leaseEnd(w, this.leaseTime));
    }
  }

  #write(key: Buffer, value: Buffer, tombstone: boolean): SyncRecord {
    const k = key.toString('latin1');
    const now = this.#now();
    const w = this.#winners.get(k);
    const mine = this.#records.get(k)?.get(this.#peer.idHex);
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
    if (!this.#winners.has(k) && !this.#records.has(k) && this.#records.size >= MAX_KEYS) throw new StateError(`the dict holds ${MAX_KEYS} keys already`);
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
    const w = this.#winners.get(k.toString('latin1'));
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
    for (const chunk of this.#chunks(raws)) this.#peer.broadcastInternal(KIND_SYNC, this.#message(MSG_RECORDS, encodeRecordList(chunk)));
  }

  *#chunks(raws: Buffer[]): IterableIterator<Buffer[]> {
    let cur: Buffer[] = [];
    let size = 64;
    for (const r of raws) {
      if (cur.length > 0 && (size + r.length + 4 > MAX_PAYLOAD_SIZE || cur.length >= MAX_RECORDS_PER_MESSAGE)) {
        yield cur;
        cur = [];
        size = 64;
      }
      cur.push(r);
      size += r.length + 4;
    }
    if (cur.length > 0) yield cur;
  }

  #message(type: number, body: Buffer): Buffer {
    return Buffer.concat([Buffer.from([type]), this.namespace, body]);
  }

  /** Stores a verified record; returns true if our store changed. Emits events when the value changed. */
  #merge(r: SyncRecord): boolean {
    const k = r.key.toString('latin1');
    let owners = this.#records.get(k);
    if (!owners) {
      if (this.#records.size >= MAX_KEYS) return false;
      owners = new Map();
      this.#records.set(k, owners);
    }
    const old = owners.get(r.ownerHex);
    if (old && !newerOf(r, old)) return false;
    owners.set(r.ownerHex, r);
    let after = resolveKey(owners.values(), this.leasing, this.leaseTime);
    if (owners.size > MAX_OWNERS_PER_KEY) {
      // Forget the oldest write that is not the key's current value: a flood of claims from
      // throw-away keys cannot push out the holder's record and with it the holder's lease.
      let oldest: SyncRecord | undefined;
      for (const x of owners.values()) {
        if (x === after) continue;
        if (!oldest || x.ts < oldest.ts || (x.ts === oldest.ts && Buffer.compare(x.ownerId, oldest.ownerId) > 0)) oldest = x;
      }
      if (oldest) owners.delete(oldest.ownerHex);
      after = resolveKey(owners.values(), this.leasing, this.leaseTime);
      if (oldest === r) return false;
    }
    this.#digest = undefined;
    const before = this.#winners.get(k);
    if (after) this.#winners.set(k, after);
    else this.#winners.delete(k);
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

  /** Digest of every record we hold (order-independent). */
  digest(): Buffer {
    if (this.#digest) return this.#digest;
    const hashes: Buffer[] = [];
    for (const owners of this.#records.values()) for (const r of owners.values()) hashes.push(createHash('sha256').update(r.raw).digest());
    hashes.sort(Buffer.compare);
    const h = createHash('sha256');
    for (const x of hashes) h.update(x);
    this.#digest = h.digest();
    return this.#digest;
  }

  #sendDigest(to: Buffer): void {
    if (this.#closed || !this.#peer.bound || this.#peer.closed) return;
    this.#peer.sendInternal(KIND_SYNC, to, this.#message(MSG_DIGEST, this.digest()));
  }

  #sendState(to: Buffer): void {
    const raws: Buffer[] = [];
    for (const owners of this.#records.values()) for (const r of owners.values()) raws.push(r.raw);
    for (const chunk of this.#chunks(raws)) this.#peer.sendInternal(KIND_SYNC, to, this.#message(MSG_STATE, encodeRecordList(chunk)));
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
        if (!d.equals(this.digest())) this.#sendState(src.id);
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
    const dicts = registry.get(this.#peer);
    if (dicts?.get(this.#nsHex) === this) dicts.delete(this.#nsHex);
  }
}
