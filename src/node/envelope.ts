/**
 * Signalling envelopes: signed by the sender's Ed25519 identity, encrypted to the recipient's
 * X25519 signalling key, bound to the recipient's node id, with an expiry and a random id
 * (replay protection). What a broker or an eavesdropper sees: the two keys/ids, the expiry,
 * the message id, ciphertext.
 *
 * ```
 * header     1  version (1)
 *           32  sender's Ed25519 identity key
 *           32  recipient's node id
 *           16  message id (random)
 *            8  expiry, Unix milliseconds (u64)
 *           32  ephemeral X25519 public key
 * ciphertext    ChaCha20-Poly1305(key, nonce 0, aad = header) of the JSON payload
 * signature 64  Ed25519 over "p2pd-signal-v1\0" + header + ciphertext
 * ```
 * key = HKDF-SHA256(X25519(ephemeral, recipient signal key), salt = ephemeral key ‖ recipient
 * signal key, info = "p2pd-signal-v1"). A fresh ephemeral key per message makes the zero
 * nonce safe.
 *
 * {@link openEnvelope} checks, in order (cheap first): size and version, recipient, expiry
 * window, signature, replay, decryption, payload shape; anything that fails is a
 * {@link SignalError} with its `reason`.
 * @module
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { Identity, idFromPublicKey } from '../crypto/identity.js';
import { generateX25519KeyPair, x25519, x25519KeyPairFromPrivate, type X25519KeyPair } from '../crypto/x25519.js';
import { SignalError } from './errors.js';

/** Envelope version byte. */
export const ENVELOPE_VERSION = 1;
/** Largest envelope accepted, bytes. */
export const MAX_ENVELOPE = 16 * 1024;
/** Longest TTL a sender may ask for (ms); anything expiring later is rejected. */
export const MAX_SIGNAL_TTL = 120_000;
const HEADER = 1 + 32 + 32 + 16 + 8 + 32;
const TAG = 16;
const SIG = 64;
const DOMAIN = Buffer.from('p2pd-signal-v1\0', 'latin1');
const INFO = Buffer.from('p2pd-signal-v1', 'latin1');
const NONCE = Buffer.alloc(12);

/** The signalling key pair of an identity: derived from it, so it is the same every run. */
export function deriveSignalKey(identity: Identity): X25519KeyPair {
  // Ed25519 signatures are deterministic: this is a secret only the identity can compute.
  const seed = createHash('sha256').update(identity.sign(Buffer.from('p2pd-signal-key-v1', 'latin1'))).digest();
  try {
    return x25519KeyPairFromPrivate(seed);
  } finally {
    seed.fill(0);
  }
}

/** An opened (verified, decrypted) envelope. */
export interface OpenedEnvelope {
  /** Sender's Ed25519 identity key. */
  senderKey: Buffer;
  /** Sender's node id. */
  senderId: Buffer;
  /** Sender's node id, hex. */
  senderIdHex: string;
  /** Message id, hex. */
  msgId: string;
  /** Expiry, Unix ms. */
  expires: number;
  /** The decoded JSON payload (an object). */
  payload: Record<string, unknown>;
}

/** Seals `payload` (a JSON-serialisable object) for the recipient. */
export function sealEnvelope(
  sender: Identity,
  recipient: { id: Uint8Array; signalKey: Uint8Array },
  payload: Record<string, unknown>,
  ttl: number,
  now = Date.now(),
): { bytes: Buffer; msgId: string } {
  const eph = generateX25519KeyPair();
  const header = Buffer.alloc(HEADER);
  header[0] = ENVELOPE_VERSION;
  sender.publicKey.copy(header, 1);
  Buffer.from(recipient.id).copy(header, 33);
  const msgId = randomBytes(16);
  msgId.copy(header, 65);
  header.writeBigUInt64BE(BigInt(Math.floor(now + ttl)), 81);
  eph.publicKey.copy(header, 89);
  const key = senderKey(eph, Buffer.from(recipient.signalKey));
  const pt = Buffer.from(JSON.stringify(payload), 'utf8');
  const c = createCipheriv('chacha20-poly1305', key, NONCE, { authTagLength: TAG });
  c.setAAD(header, { plaintextLength: pt.length });
  const ct = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
  key.fill(0);
  const sig = sender.sign(Buffer.concat([DOMAIN, header, ct]));
  return { bytes: Buffer.concat([header, ct, sig]), msgId: msgId.toString('hex') };
}

/** Both sides derive the key from the DH secret with salt = ephemeral key ‖ recipient key. */
function kdf(priv: KeyObject, peerPub: Buffer, ephPub: Buffer, recipientPub: Buffer, reason: 'decrypt' | 'malformed'): Buffer {
  let shared: Buffer;
  try {
    shared = x25519(priv, peerPub);
  } catch (e) {
    throw new SignalError(reason, 'bad X25519 key', { cause: e });
  }
  if (shared.every((x) => x === 0)) throw new SignalError(reason, 'low-order X25519 key');
  const k = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephPub, recipientPub]), INFO, 32));
  shared.fill(0);
  return k;
}

function senderKey(eph: X25519KeyPair, recipientPub: Buffer): Buffer {
  return kdf(eph.privateKey, recipientPub, eph.publicKey, recipientPub, 'malformed');
}

/**
 * Remembers message ids until they expire; bounded.
 *
 * Two budgets: the general one (`max` ids, `maxPerSender` per sender) for anyone, and a reserved
 * one (`reserved` ids) for senders the node is waiting to hear from (peers it sent a request
 * to; see `Signalling`). A flood of valid messages from throw-away identities can fill the
 * general budget for one TTL, but not the reserved one: the answers to the node's own requests
 * still get in. Replay detection spans both budgets.
 */
export class ReplayCache {
  private readonly seen = new Map<string, { exp: number; sender: string; reserved: boolean }>();
  private readonly perSender = new Map<string, number>();
  private general = 0;
  private reservedUsed = 0;
  /** The earliest expiry held (a lower bound): before it, a prune would free nothing. */
  private nextExpiry = Infinity;
  /**
   * @param max ids held at most in the general budget (live ones are never forgotten: a replay
   *   must stay detectable)
   * @param maxPerSender ids one sender may hold at once (both budgets together), so one key
   *   cannot fill the cache and stall everyone else's signalling. @default max / 64 (1024); all
   *   of `max` below 1024
   * @param reserved ids held at most for expected senders, on top of `max`. @default max / 4 (16 384)
   */
  constructor(
    private readonly max = 65_536,
    private readonly maxPerSender = max >= 1024 ? Math.floor(max / 64) : max,
    private readonly reserved = Math.floor(max / 4),
  ) {}

  /**
   * Records `id` from `sender` (valid until `expires`); false if it was already there (a
   * replay), or the budget it goes to (the reserved one when `expected`) or this sender's
   * share is full of live ids.
   */
  add(id: string, expires: number, now = Date.now(), sender = '', expected = false): boolean {
    if (this.seen.has(id)) return false;
    const full = (): boolean => (expected ? this.reservedUsed >= this.reserved : this.general >= this.max) || (this.perSender.get(sender) ?? 0) >= this.maxPerSender;
    if (full()) {
      // Scanning is only worth it once an id may have expired: a sender refused again and
      // again must not cost a scan of the whole cache each time.
      if (now > this.nextExpiry) this.prune(now);
      // Still full of live ids: refuse rather than forget one (which would allow its replay).
      if (full()) return false;
    }
    this.seen.set(id, { exp: expires, sender, reserved: expected });
    if (expires < this.nextExpiry) this.nextExpiry = expires;
    if (expected) this.reservedUsed++;
    else this.general++;
    this.perSender.set(sender, (this.perSender.get(sender) ?? 0) + 1);
    return true;
  }

  /** Drops expired entries. */
  prune(now = Date.now()): void {
    let next = Infinity;
    for (const [k, e] of this.seen) {
      if (e.exp >= now) {
        if (e.exp < next) next = e.exp;
        continue;
      }
      this.seen.delete(k);
      if (e.reserved) this.reservedUsed--;
      else this.general--;
      const n = (this.perSender.get(e.sender) ?? 1) - 1;
      if (n <= 0) this.perSender.delete(e.sender);
      else this.perSender.set(e.sender, n);
    }
    this.nextExpiry = next;
  }

  /** Number of ids held (both budgets). */
  get size(): number {
    return this.seen.size;
  }
}

/** Options of {@link openEnvelope}. */
export interface OpenEnvelopeOptions {
  /** Our identity (the recipient id must be ours). */
  identity: Identity;
  /** Our signalling key pair. */
  signalKey: X25519KeyPair;
  /** Replay cache; ids are added once the signature checks out. */
  replay: ReplayCache;
  /**
   * Whether a sender (node id, hex) is one we are waiting to hear from: its ids go to the
   * replay cache's reserved budget. @default nobody
   */
  expected?: (senderIdHex: string) => boolean;
  /** Clock skew tolerated between sender and us (ms). @default 5000 */
  clockSkew?: number;
  /** Now, Unix ms (tests). */
  now?: number;
}

/**
 * Verifies and decrypts an envelope.
 * @throws SignalError with `reason` `'malformed'`, `'not-for-us'`, `'expired'`, `'ttl'`,
 *   `'signature'`, `'replay'` or `'decrypt'`.
 */
export function openEnvelope(bytes: Uint8Array, opts: OpenEnvelopeOptions): OpenedEnvelope {
  const now = opts.now ?? Date.now();
  const skew = opts.clockSkew ?? 5_000;
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER + TAG + SIG || bytes.length > MAX_ENVELOPE) {
    throw new SignalError('malformed', 'bad envelope size');
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf[0] !== ENVELOPE_VERSION) throw new SignalError('malformed', `unknown envelope version ${buf[0] as number}`);
  const header = buf.subarray(0, HEADER);
  const ct = buf.subarray(HEADER, buf.length - SIG);
  const sig = buf.subarray(buf.length - SIG);
  if (!header.subarray(33, 65).equals(opts.identity.id)) throw new SignalError('not-for-us', 'envelope addressed to another node');
  const expiresBig = header.readBigUInt64BE(81);
  if (expiresBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new SignalError('ttl', 'expiry out of range');
  const expires = Number(expiresBig);
  if (expires + skew < now) throw new SignalError('expired', `envelope expired ${now - expires} ms ago`);
  if (expires > now + MAX_SIGNAL_TTL + skew) throw new SignalError('ttl', 'envelope expiry too far in the future');
  const senderKey = Buffer.from(header.subarray(1, 33));
  if (!Identity.verify(senderKey, Buffer.concat([DOMAIN, header, ct]), sig)) throw new SignalError('signature', 'bad envelope signature');
  const msgId = header.subarray(65, 81).toString('hex');
  const senderId = idFromPublicKey(senderKey);
  const senderIdHex = senderId.toString('hex');
  if (!opts.replay.add(msgId, expires + skew, now, senderIdHex, opts.expected?.(senderIdHex) ?? false)) throw new SignalError('replay', `replayed envelope ${msgId} (or its sender holds its whole share of the replay cache)`);
  const ephPub = Buffer.from(header.subarray(89, 121));
  const k2 = deriveRecipientKey(opts.signalKey, ephPub);
  let pt: Buffer;
  try {
    const d = createDecipheriv('chacha20-poly1305', k2, NONCE, { authTagLength: TAG });
    d.setAAD(header, { plaintextLength: ct.length - TAG });
    d.setAuthTag(ct.subarray(ct.length - TAG));
    pt = Buffer.concat([d.update(ct.subarray(0, ct.length - TAG)), d.final()]);
  } catch (e) {
    throw new SignalError('decrypt', 'envelope does not decrypt', { cause: e });
  } finally {
    k2.fill(0);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(pt.toString('utf8'));
  } catch (e) {
    throw new SignalError('malformed', 'payload is not JSON', { cause: e });
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) throw new SignalError('malformed', 'payload is not an object');
  return { senderKey, senderId, senderIdHex, msgId, expires, payload: payload as Record<string, unknown> };
}

function deriveRecipientKey(ours: X25519KeyPair, ephPub: Buffer): Buffer {
  return kdf(ours.privateKey, ephPub, ephPub, ours.publicKey, 'decrypt');
}
