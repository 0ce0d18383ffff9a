/**
 * Signed synced-dict records and the deterministic rule that picks a key's value.
 *
 * ## Record (signed by its owner)
 * ```
 * 32  namespace id (dict name + leasing settings; other dicts ignore the record)
 * 32  owner Ed25519 public key
 * u64 since: start of the owner's current claim on the key (ms)
 * u64 ts: time of this write (ms); since ≤ ts
 * u8  flags: bit0 = tombstone (delete; releases the lease)
 * u16 key length, key      u32 value length, value (empty for tombstones)
 * 64  signature over "p2pd/sync/record/v1\0" ‖ swarm protocol hash ‖ the bytes above
 * ```
 *
 * ## Resolution
 * A node keeps, per key, each owner's latest record (highest `ts`). The key's value is a pure
 * function of that set, so members that hold the same records agree, whatever the order they
 * learnt them in (partitions converge once records are exchanged):
 * - **leasing**: claims are ordered by `(since, owner id)`; the first is the holder; a later
 *   claim takes over only if it started after the holder's lease ended (`holder.ts + leaseTime`,
 *   or the holder's delete). The holder's record is the value. Same-instant claims: the
 *   smaller owner id wins.
 * - **no leasing**: last writer wins by `(ts, smaller owner id)`.
 *
 * Writers prove ownership by signature; a record more than `maxClockSkew` in the future is
 * rejected. Note: times in the past are the writer's claim — a member that backdates a claim
 * cannot be told from one that was partitioned.
 * @module
 */
import { createHash } from 'node:crypto';
import { DecodeError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { Reader, Writer } from '../swarm/codec.js';
import { nodeIdOf, signingInput, verifySignature } from '../swarm/protocol.js';

/** Longest key (bytes). */
export const MAX_KEY_SIZE = 1024;
/** Largest value (bytes). */
export const MAX_VALUE_SIZE = 256 * 1024;
/** Default lease (ms): one hour. */
export const DEFAULT_LEASE_TIME = 60 * 60 * 1000;
/** Default tolerated clock skew for record timestamps in the future (ms). */
export const DEFAULT_MAX_CLOCK_SKEW = 30_000;

const RECORD_DOMAIN = Buffer.from('p2pd/sync/record/v1\0', 'latin1');
const FLAG_TOMBSTONE = 0x01;

/** A verified record. */
export interface SyncRecord {
  /** Namespace id (dict name and leasing settings), 32 bytes. */
  readonly namespace: Buffer;
  /** The owner's Ed25519 public key. */
  readonly owner: Buffer;
  /** SHA-256 of {@link owner}. */
  readonly ownerId: Buffer;
  /** {@link ownerId}, hex. */
  readonly ownerHex: string;
  /** Start of the owner's current claim on the key (ms). */
  readonly since: number;
  /** Time of this write (ms); `since ≤ ts`. */
  readonly ts: number;
  /** True for a delete (releases the lease). */
  readonly tombstone: boolean;
  /** The key. */
  readonly key: Buffer;
  /** The value (empty for a tombstone). */
  readonly value: Buffer;
  /** The signed encoding. */
  readonly raw: Buffer;
}

/** Namespace id of a dict: its name and leasing settings. */
export function namespaceId(name: string, leasing: boolean, leaseTime: number): Buffer {
  const n = Buffer.from(name, 'utf8');
  return createHash('sha256')
    .update('p2pd/sync/namespace/v1\0')
    .update(Buffer.from([n.length >> 8, n.length & 0xff]))
    .update(n)
    .update(Buffer.from([leasing ? 1 : 0]))
    .update(String(leasing ? leaseTime : 0))
    .digest();
}

/** Builds and signs a record. */
export function signRecord(
  identity: Identity,
  protocolHash: Buffer,
  r: { namespace: Buffer; since: number; ts: number; tombstone: boolean; key: Buffer; value: Buffer },
): SyncRecord {
  const body = new Writer(32 + 32 + 8 + 8 + 1 + 2 + r.key.length + 4 + r.value.length)
    .bytes(r.namespace)
    .bytes(identity.publicKey)
    .u64(r.since)
    .u64(r.ts)
    .u8(r.tombstone ? FLAG_TOMBSTONE : 0)
    .u16(r.key.length)
    .bytes(r.key)
    .u32(r.value.length)
    .bytes(r.value)
    .done();
  const raw = Buffer.concat([body, identity.sign(signingInput(RECORD_DOMAIN, protocolHash, body))]);
  return decodeRecord(raw);
}

/** Decodes a record (structure and limits; see {@link recordProblem} for the signature). */
export function decodeRecord(raw: Buffer): SyncRecord {
  const r = new Reader(raw, 'sync record');
  const namespace = r.bytes(32, 'namespace');
  const owner = r.bytes(32, 'owner');
  const since = r.u64('since');
  const ts = r.u64('ts');
  const flags = r.u8('flags');
  if ((flags & ~FLAG_TOMBSTONE) !== 0) throw new DecodeError('sync record: unknown flags');
  const klen = r.u16('key length');
  if (klen === 0 || klen > MAX_KEY_SIZE) throw new DecodeError('sync record: bad key length');
  const key = r.bytes(klen, 'key');
  const vlen = r.u32('value length');
  if (vlen > MAX_VALUE_SIZE) throw new DecodeError('sync record: value too large');
  const tombstone = (flags & FLAG_TOMBSTONE) !== 0;
  if (tombstone && vlen !== 0) throw new DecodeError('sync record: tombstone with a value');
  const value = r.bytes(vlen, 'value');
  r.bytes(64, 'signature');
  r.end();
  if (since > ts) throw new DecodeError('sync record: claim starts after the write');
  const ownerId = nodeIdOf(owner);
  return { namespace, owner, ownerId, ownerHex: ownerId.toString('hex'), since, ts, tombstone, key, value, raw };
}

/** Why a record is unacceptable now, or `undefined`. */
export function recordProblem(rec: SyncRecord, protocolHash: Buffer, now: number, maxClockSkew: number): string | undefined {
  if (rec.ts > now + maxClockSkew) return 'timestamp in the future';
  const body = rec.raw.subarray(0, rec.raw.length - 64);
  if (!verifySignature(rec.owner, signingInput(RECORD_DOMAIN, protocolHash, body), rec.raw.subarray(rec.raw.length - 64))) return 'bad signature';
  return undefined;
}

/** True if `a` replaces `b` as the same owner's latest record. */
export function newerOf(a: SyncRecord, b: SyncRecord): boolean {
  if (a.ts !== b.ts) return a.ts > b.ts;
  return Buffer.compare(a.raw, b.raw) > 0;
}

/** The record that gives a key its value (a tombstone = absent), or `undefined`. */
export function resolveKey(records: Iterable<SyncRecord>, leasing: boolean, leaseTime: number): SyncRecord | undefined {
  const list = [...records];
  if (list.length === 0) return undefined;
  if (!leasing) {
    let best = list[0] as SyncRecord;
    for (const r of list) if (r.ts > best.ts || (r.ts === best.ts && Buffer.compare(r.ownerId, best.ownerId) < 0)) best = r;
    return best;
  }
  list.sort((a, b) => a.since - b.since || Buffer.compare(a.ownerId, b.ownerId));
  let holder: SyncRecord | undefined;
  for (const r of list) {
    if (!holder || r.since >= leaseEnd(holder, leaseTime)) holder = r;
  }
  return holder;
}

/** When a holder's lease ends: its last write + lease, or at once after its delete. */
export function leaseEnd(holder: SyncRecord, leaseTime: number): number {
  return holder.tombstone ? holder.ts : holder.ts + leaseTime;
}

/** Encodes records as `u16 n · (u32 len · record)*`. */
export function encodeRecordList(records: readonly Buffer[]): Buffer {
  let size = 2;
  for (const r of records) size += 4 + r.length;
  const w = new Writer(size).u16(records.length);
  for (const r of records) w.u32(r.length).bytes(r);
  return w.done();
}

/** Decodes {@link encodeRecordList}; each record is decoded (not verified). */
export function decodeRecordList(r: Reader, max: number): SyncRecord[] {
  const n = r.u16('record count');
  if (n > max) throw new DecodeError('sync: too many records in one message');
  const out: SyncRecord[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.u32('record length');
    out.push(decodeRecord(Buffer.from(r.bytes(len, 'record'))));
  }
  return out;
}
