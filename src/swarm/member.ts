/**
 * Swarm membership: signed member announcements and the table of known members.
 *
 * ## Announcement (signed by the member itself)
 * ```
 * 32  Ed25519 public key (node id = SHA-256 of it)
 * u64 seq: issue time in ms; a higher seq replaces a lower one
 * u8  flags: bit0 = leaving
 * u8 n, host (IP literal)     u16 port      — where the member listens
 * 64  signature over "p2pd/swarm/member/v1\0" ‖ protocol hash ‖ the bytes above
 * ```
 * Announcements are gossiped: on a new link both ends send every member they know, and a
 * node forwards each announcement that was new to it to all its links. Members refresh
 * theirs every `ANNOUNCE_INTERVAL`; those not heard from for `MEMBER_TTL` are forgotten.
 * @module
 */
import { DecodeError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { formatEndpoint, parseHost, type Endpoint } from '../interfaces/endpoint.js';
import { commonPrefix, Reader, Writer } from './codec.js';
import { MAX_CLOCK_SKEW, MAX_HOST_LENGTH, MAX_MEMBERS, MEMBER_TTL } from './constants.js';
import { nodeIdOf, signingInput, verifySignature } from './protocol.js';

const MEMBER_DOMAIN = Buffer.from('p2pd/swarm/member/v1\0', 'latin1');
const FLAG_LEAVING = 0x01;

/** A known swarm member (another node, or ourselves). */
export interface Member {
  /** Node id: SHA-256 of {@link publicKey}. */
  readonly id: Buffer;
  /** {@link id} in hex. */
  readonly idHex: string;
  /** Raw Ed25519 public key. */
  readonly publicKey: Buffer;
  /** Where it listens (its advertised endpoint). */
  readonly endpoint: Endpoint;
  /** Version of the announcement (its issue time, ms). */
  readonly seq: number;
  /** Announced that it is leaving. */
  readonly leaving: boolean;
  /** The signed announcement as received (forwarded verbatim). */
  readonly raw: Buffer;
  /** Bucket: bits of id shared with our id (0..255). */
  readonly bucket: number;
  /** Local time it was last accepted (ms). */
  heardAt: number;
}

/** Hex node id of a public key. */
export function nodeIdHex(publicKey: Uint8Array): string {
  return nodeIdOf(publicKey).toString('hex');
}

/** Creates and signs our own announcement. */
export function signAnnouncement(identity: Identity, protocolHash: Buffer, endpoint: Endpoint, seq: number, leaving = false): Buffer {
  const host = Buffer.from(endpoint.host, 'latin1');
  const body = new Writer(32 + 8 + 1 + 1 + host.length + 2)
    .bytes(identity.publicKey)
    .u64(seq)
    .u8(leaving ? FLAG_LEAVING : 0)
    .u8(host.length)
    .bytes(host)
    .u16(endpoint.port)
    .done();
  return Buffer.concat([body, identity.sign(signingInput(MEMBER_DOMAIN, protocolHash, body))]);
}

/** An announcement read from the wire, not yet verified. */
export interface RawAnnouncement {
  readonly publicKey: Buffer;
  readonly seq: number;
  readonly leaving: boolean;
  readonly endpoint: Endpoint;
  readonly body: Buffer;
  readonly signature: Buffer;
  readonly raw: Buffer;
}

/** Reads one announcement from `r` (structure only; see {@link verifyAnnouncement}). @throws {@link DecodeError} */
export function readAnnouncement(r: Reader): RawAnnouncement {
  const start = r.pos;
  r.bytes(32, 'member key'); // returned below as a view of `raw`
  const seq = r.u64('member seq');
  const flags = r.u8('member flags');
  if ((flags & ~FLAG_LEAVING) !== 0) throw new DecodeError('member announcement: unknown flags');
  const hostLen = r.u8('member host length');
  if (hostLen === 0 || hostLen > MAX_HOST_LENGTH) throw new DecodeError('member announcement: bad host length');
  const hostStr = r.bytes(hostLen, 'member host').toString('latin1');
  const port = r.u16('member port');
  if (port === 0) throw new DecodeError('member announcement: port 0');
  let h: ReturnType<typeof parseHost>;
  try {
    h = parseHost(hostStr);
  } catch (e) {
    throw new DecodeError('member announcement: host is not an IP literal', { cause: e });
  }
  if (h.host !== hostStr || h.scopeId !== undefined) throw new DecodeError('member announcement: host not in canonical form');
  const body = r.buf.subarray(start, r.pos);
  const signature = r.bytes(64, 'member signature');
  const raw = Buffer.from(r.buf.subarray(start, r.pos));
  return { publicKey: raw.subarray(0, 32), seq, leaving: (flags & FLAG_LEAVING) !== 0, endpoint: { host: h.host, port, family: h.family }, body, signature, raw };
}

/** Decodes a standalone announcement (no trailing bytes). */
export function decodeAnnouncement(buf: Buffer): RawAnnouncement {
  const r = new Reader(buf, 'member announcement');
  const a = readAnnouncement(r);
  r.end();
  return a;
}

/** Checks the signature and the clock of an announcement. */
export function verifyAnnouncement(a: RawAnnouncement, protocolHash: Buffer, now: number): boolean {
  if (a.seq > now + MAX_CLOCK_SKEW) return false;
  return verifySignature(a.publicKey, signingInput(MEMBER_DOMAIN, protocolHash, a.body), a.signature);
}

/** Outcome of {@link MemberTable.apply}. */
export type ApplyResult = 'new' | 'updated' | 'left' | 'stale' | 'invalid' | 'full';

/**
 * How a full table makes room for a member that proved its key on a live link (its HELLO):
 * such a peer outranks gossip, so announcements of made-up members filling the table cannot
 * make a node refuse every new neighbour.
 */
export interface MakeRoom {
  /** Members never dropped to make room (those we hold a link to). */
  keep(idHex: string): boolean;
  /** Members we failed to reach: dropped before the others. */
  unreachable(idHex: string): boolean;
  /** A member was dropped to make room. */
  evicted(m: Member): void;
}

/** The members a node knows, keyed by id. Our own entry is kept apart (never in the table). */
export class MemberTable {
  readonly #byId = new Map<string, Member>();
  readonly #byEndpoint = new Map<string, string>();
  /** Members alive (not leaving) per bucket. */
  readonly #bucketCounts = new Int32Array(257);
  #version = 0;

  constructor(
    readonly selfId: Buffer,
    private readonly protocolHash: Buffer,
  ) {}

  /** Bumped on every change; lets callers cache derived views. */
  get version(): number {
    return this.#version;
  }

  /** Number of members alive (not leaving), ourselves excluded. */
  get size(): number {
    let n = 0;
    for (const m of this.#byId.values()) if (!m.leaving) n++;
    return n;
  }

  /** A member by hex id (leaving ones included). */
  get(idHex: string): Member | undefined {
    return this.#byId.get(idHex);
  }

  /** The live member listening at `endpoint`, if any. */
  byEndpoint(endpoint: Endpoint): Member | undefined {
    const id = this.#byEndpoint.get(formatEndpoint(endpoint));
    const m = id !== undefined ? this.#byId.get(id) : undefined;
    return m && !m.leaving ? m : undefined;
  }

  /** Members alive (not leaving). */
  *alive(): IterableIterator<Member> {
    for (const m of this.#byId.values()) if (!m.leaving) yield m;
  }

  /** Every entry, leaving ones included (for state exchange). */
  all(): IterableIterator<Member> {
    return this.#byId.values();
  }

  /** Live members sharing exactly `bucket` leading bits with us. */
  bucketCount(bucket: number): number {
    return this.#bucketCounts[bucket] ?? 0;
  }

  /**
   * Verifies (unless it is byte-identical to what we hold) and applies an announcement.
   * Our own id is ignored ('stale'). A new member when the table is full: 'full', unless
   * `room` is given (a HELLO); then the member `room` can best spare is dropped for it.
   */
  apply(a: RawAnnouncement, now: number, room?: MakeRoom): ApplyResult {
    const id = nodeIdOf(a.publicKey);
    if (id.equals(this.selfId)) return 'stale';
    const idHex = id.toString('hex');
    const old = this.#byId.get(idHex);
    if (old && (old.seq > a.seq || (old.seq === a.seq && old.raw.equals(a.raw)))) {
      if (old.raw.equals(a.raw)) old.heardAt = Math.max(old.heardAt, now);
      return 'stale';
    }
    if (old && old.seq === a.seq) return 'stale'; // same seq, other bytes: first one wins
    if (!old && this.#byId.size >= MAX_MEMBERS && !room) return 'full';
    if (!verifyAnnouncement(a, this.protocolHash, now)) return 'invalid';
    if (!old && a.leaving) return 'stale'; // nothing to remove; do not store a stranger's tombstone
    if (!old && this.#byId.size >= MAX_MEMBERS && !this.#evictFor(room as MakeRoom)) return 'full';
    const m: Member = {
      id,
      idHex,
      publicKey: Buffer.from(a.publicKey),
      endpoint: a.endpoint,
      seq: a.seq,
      leaving: a.leaving,
      raw: a.raw,
      bucket: commonPrefix(this.selfId, id),
      heardAt: now,
    };
    if (old) this.#unindex(old);
    this.#byId.set(idHex, m);
    this.#index(m);
    this.#version++;
    if (a.leaving) return 'left';
    return old && !old.leaving ? 'updated' : 'new';
  }

  /** Drops a member for a newcomer: tombstones first, then unreachable members, then the longest unheard. */
  #evictFor(room: MakeRoom): boolean {
    let best: Member | undefined;
    let bestRank = 3;
    for (const m of this.#byId.values()) {
      if (room.keep(m.idHex)) continue;
      const rank = m.leaving ? 0 : room.unreachable(m.idHex) ? 1 : 2;
      if (rank < bestRank || (rank === bestRank && m.heardAt < (best as Member).heardAt)) {
        best = m;
        bestRank = rank;
      }
    }
    if (!best) return false;
    this.#unindex(best);
    this.#byId.delete(best.idHex);
    this.#version++;
    room.evicted(best);
    return true;
  }

  #index(m: Member): void {
    if (m.leaving) return;
    this.#byEndpoint.set(formatEndpoint(m.endpoint), m.idHex);
    (this.#bucketCounts as unknown as number[])[m.bucket]++;
  }

  #unindex(m: Member): void {
    if (m.leaving) return;
    const key = formatEndpoint(m.endpoint);
    if (this.#byEndpoint.get(key) === m.idHex) this.#byEndpoint.delete(key);
    (this.#bucketCounts as unknown as number[])[m.bucket]--;
  }

  /** Forgets members not heard from for `MEMBER_TTL` (tombstones too), except those in `keep`. Returns the forgotten. */
  expire(now: number, keep: (idHex: string) => boolean, ttl = MEMBER_TTL): Member[] {
    const out: Member[] = [];
    for (const m of this.#byId.values()) {
      if (now - m.heardAt > ttl && !keep(m.idHex)) out.push(m);
    }
    for (const m of out) {
      this.#unindex(m);
      this.#byId.delete(m.idHex);
    }
    if (out.length > 0) this.#version++;
    return out;
  }
}
