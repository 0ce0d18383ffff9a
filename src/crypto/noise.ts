/**
 * `Noise_XX_25519_ChaChaPoly_SHA256` (Noise Protocol Framework, revision 34), built on
 * `node:crypto` only: X25519 for DH, ChaCha20-Poly1305 (IETF, 96-bit nonce) for the AEAD,
 * SHA-256 for the hash / HMAC / HKDF.
 *
 * This module is the transport-independent core: {@link CipherState}, {@link SymmetricState}
 * and {@link XXHandshakeState} follow the spec's objects one to one. Every malformed input
 * raises a typed error ({@link HandshakeError} while handshaking, {@link DecryptError} for a
 * failed transport message), never a crash.
 *
 * Not implemented (not needed by p2pd): other patterns, PSKs, `Rekey()`, fallback.
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type DecipherChaCha20Poly1305,
  type KeyObject,
} from 'node:crypto';
import { DecryptError, HandshakeError, InvalidArgumentError, MessageTooBigError } from '../errors.js';
import { generateX25519Sync, takeEphemeralKeyPair, type X25519KeyPair } from './ephemeral.js';

/** The full Noise protocol name; 32 bytes, so it is used as the initial `h` directly. */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256';
/** Largest Noise message, handshake or transport, in bytes (Noise spec §3). */
export const NOISE_MAX_MESSAGE = 65535;
/** Size of the ChaCha20-Poly1305 authentication tag. */
export const NOISE_TAG_SIZE = 16;
/** Largest plaintext that fits one Noise transport message: 65535 − 16 = 65519. */
export const NOISE_MAX_PLAINTEXT = NOISE_MAX_MESSAGE - NOISE_TAG_SIZE;
/** X25519 public key / shared secret length (DHLEN). */
export const DH_LEN = 32;
/** SHA-256 output length (HASHLEN). */
export const HASH_LEN = 32;

const CIPHER = 'chacha20-poly1305';
const AEAD_OPTS = { authTagLength: NOISE_TAG_SIZE } as const;
const EMPTY = Buffer.alloc(0);
/** Nonces stop one short of 2^53 (JS safe integers); the spec's limit is 2^64 − 1. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;
/** DER prefix of a PKCS#8 X25519 private key; followed by the 32 raw bytes. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

/** A Buffer view of `u` without copying (Buffers are returned as is). */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function isBytes(u: unknown): u is Uint8Array {
  return u instanceof Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// DH: X25519
// ---------------------------------------------------------------------------------------------

export type { X25519KeyPair } from './ephemeral.js';

function rawPublicFromKeyObject(key: KeyObject): Buffer {
  // JWK export is ~50x faster than DER export in Node 20 (no OpenSSL encoder lookup).
  const jwk = key.export({ format: 'jwk' });
  const x = Buffer.from(String(jwk.x), 'base64url');
  if (x.length !== DH_LEN) throw new HandshakeError('unexpected X25519 public key encoding');
  return x;
}

/**
 * Generates a fresh X25519 key pair (Noise `GENERATE_KEYPAIR()`), synchronously.
 *
 * `generateKeyPairSync` encodes the public key itself (JWK): on Node 20, exporting a freshly
 * generated public `KeyObject` with `export({ format: 'jwk' })` can deadlock the process when a
 * GC finalizes an earlier key-generation job at the same moment (seen within seconds in a loop
 * of handshakes). Asking for the encoding up front avoids that and is faster.
 * Handshakes take their ephemeral keys from a pool generated ahead of time instead
 * (`takeEphemeralKeyPair` in `ephemeral.ts`).
 */
export function generateX25519KeyPair(): X25519KeyPair {
  return generateX25519Sync();
}

/**
 * Builds an X25519 key pair from a raw 32-byte private key (for test vectors and stored keys;
 * slow-ish, ~0.3 ms, so not for the hot path).
 * @throws {@link InvalidArgumentError} if `raw` is not 32 bytes.
 */
export function x25519KeyPairFromPrivate(raw: Uint8Array): X25519KeyPair {
  if (!isBytes(raw) || raw.length !== DH_LEN) throw new InvalidArgumentError('X25519 private key must be 32 bytes');
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  return { publicKey: rawPublicFromKeyObject(createPublicKey(privateKey)), privateKey };
}

/** Imports a raw 32-byte X25519 public key. Throws {@link HandshakeError} on a bad key. */
function importX25519Public(raw: Buffer): KeyObject {
  if (raw.length !== DH_LEN) throw new HandshakeError('X25519 public key must be 32 bytes');
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch (e) {
    throw new HandshakeError('invalid X25519 public key', { cause: e });
  }
}

/** Imported remote static keys, by raw bytes: peers reconnect with the same static key. */
const STATIC_KEY_CACHE_SIZE = 256;
const staticKeyCache = new Map<string, KeyObject>();

/** {@link importX25519Public} for a long-lived (static) key, through a small LRU cache. */
function importStaticPublic(raw: Buffer): KeyObject {
  const id = raw.toString('latin1');
  let k = staticKeyCache.get(id);
  if (k !== undefined) {
    staticKeyCache.delete(id); // refresh its LRU position
  } else {
    k = importX25519Public(raw);
    if (staticKeyCache.size >= STATIC_KEY_CACHE_SIZE) {
      const oldest = staticKeyCache.keys().next().value;
      if (oldest !== undefined) staticKeyCache.delete(oldest);
    }
  }
  staticKeyCache.set(id, k);
  return k;
}

/**
 * Noise `DH(key_pair, public_key)`. A low-order remote key (all-zero shared secret) is
 * rejected with {@link HandshakeError}, as the spec allows.
 */
export function x25519(privateKey: KeyObject, remotePublic: Uint8Array | KeyObject): Buffer {
  const publicKey = isBytes(remotePublic) ? importX25519Public(asBuffer(remotePublic)) : remotePublic;
  try {
    return diffieHellman({ privateKey, publicKey });
  } catch (e) {
    throw new HandshakeError('X25519 failed (invalid or low-order public key)', { cause: e });
  }
}

// ---------------------------------------------------------------------------------------------
// Hash functions
// ---------------------------------------------------------------------------------------------

function sha256(a: Uint8Array, b?: Uint8Array): Buffer {
  const h = createHash('sha256').update(a);
  if (b) h.update(b);
  return h.digest();
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const m = createHmac('sha256', key);
  for (const p of parts) m.update(p);
  return m.digest();
}

const BYTE_1 = Buffer.from([1]);
const BYTE_2 = Buffer.from([2]);

/** Noise `HKDF(chaining_key, input_key_material, 2)` with HMAC-SHA256. */
export function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, BYTE_1);
  const out2 = hmac(tempKey, out1, BYTE_2);
  return [out1, out2];
}

// ---------------------------------------------------------------------------------------------
// CipherState
// ---------------------------------------------------------------------------------------------

/**
 * Noise `CipherState`: a ChaCha20-Poly1305 key `k` and a 64-bit counter nonce `n`
 * (encoded as 32 zero bits then 64-bit little-endian, per the spec's ChaChaPoly cipher).
 *
 * `encryptWithAd`/`decryptWithAd` pass data through unchanged while no key is set, as the
 * spec requires. The nonce only advances on success; a failed decryption leaves it alone.
 */
export class CipherState {
  #k: Buffer | null = null;
  #n = 0;
  /** Reused 12-byte IV; `createCipheriv` copies it, so mutating it afterwards is safe. */
  readonly #iv = Buffer.alloc(12);

  /** @param key - Optional 32-byte key (`InitializeKey`). */
  constructor(key?: Uint8Array) {
    if (key !== undefined) this.initializeKey(key);
  }

  /** Noise `InitializeKey(key)`: sets `k` and resets `n` to 0. */
  initializeKey(key: Uint8Array): void {
    if (!isBytes(key) || key.length !== 32) throw new InvalidArgumentError('cipher key must be 32 bytes');
    this.#k = Buffer.from(key); // own copy
    this.#n = 0;
  }

  /** Noise `HasKey()`. */
  hasKey(): boolean {
    return this.#k !== null;
  }

  /** The next nonce to be used. */
  get nonce(): number {
    return this.#n;
  }

  /** Noise `SetNonce(nonce)`. */
  setNonce(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_NONCE) throw new InvalidArgumentError('invalid nonce');
    this.#n = n;
  }

  /** Prepares the IV for the current nonce; refuses to wrap. */
  #ivForNonce(): Buffer {
    const n = this.#n;
    if (n >= MAX_NONCE) throw new DecryptError('cipher nonce exhausted');
    const iv = this.#iv;
    iv.writeUInt32LE(n >>> 0, 4);
    iv.writeUInt32LE(Math.floor(n / 0x100000000), 8);
    return iv;
  }

  /**
   * Encrypts `plaintext` into `out` at `offset`, writing `ciphertext || tag`
   * (`plaintext.length + 16` bytes) and returning that length. Hot path of the transport:
   * the caller preallocates the whole frame. Requires a key.
   */
  encryptInto(ad: Uint8Array | null, plaintext: Uint8Array, out: Buffer, offset: number): number {
    const k = this.#k;
    if (k === null) throw new InvalidArgumentError('encryptInto needs a keyed CipherState');
    const len = plaintext.length;
    if (offset < 0 || offset + len + NOISE_TAG_SIZE > out.length) throw new InvalidArgumentError('output buffer too small');
    const c = createCipheriv(CIPHER, k, this.#ivForNonce(), AEAD_OPTS);
    if (ad !== null && ad.length > 0) c.setAAD(ad, { plaintextLength: len });
    let pos = offset;
    if (len > 0) {
      const ct = c.update(plaintext);
      ct.copy(out, pos);
      pos += ct.length;
    }
    const fin = c.final(); // always empty for a stream cipher, but keep it correct
    if (fin.length > 0) pos += fin.copy(out, pos);
    pos += c.getAuthTag().copy(out, pos);
    this.#n++;
    return pos - offset;
  }

  /**
   * Encrypts without copying: appends `ciphertext` and `tag` to `parts` (for a vectored
   * socket write). With `tagInto`, the tag is written into its first 16 bytes instead of
   * being appended (the caller places that buffer). Requires a key. Returns the number of
   * ciphertext and tag bytes produced.
   */
  encryptToParts(ad: Uint8Array | null, plaintext: Uint8Array, parts: Buffer[], tagInto?: Buffer): number {
    const k = this.#k;
    if (k === null) throw new InvalidArgumentError('encryptToParts needs a keyed CipherState');
    if (tagInto !== undefined && tagInto.length < NOISE_TAG_SIZE) throw new InvalidArgumentError('tag buffer too small');
    const len = plaintext.length;
    const c = createCipheriv(CIPHER, k, this.#ivForNonce(), AEAD_OPTS);
    if (ad !== null && ad.length > 0) c.setAAD(ad, { plaintextLength: len });
    let n = 0;
    if (len > 0) {
      const ct = c.update(plaintext);
      parts.push(ct);
      n += ct.length;
    }
    const fin = c.final();
    if (fin.length > 0) {
      parts.push(fin);
      n += fin.length;
    }
    const tag = c.getAuthTag();
    if (tagInto !== undefined) tag.copy(tagInto, 0);
    else parts.push(tag);
    this.#n++;
    return n + tag.length;
  }

  /**
   * Low-level streaming decryption of one message whose ciphertext arrives in pieces: returns
   * a decipher for the current nonce with `ad` applied. Feed it the ciphertext (without the
   * tag) with `update()`, then `setAuthTag(tag)` and `final()`; only if `final()` succeeds,
   * call {@link commitNonce}. Plaintext from `update()` is unauthenticated until then.
   */
  beginDecrypt(ad: Uint8Array | null, ciphertextLength: number): DecipherChaCha20Poly1305 {
    const k = this.#k;
    if (k === null) throw new InvalidArgumentError('beginDecrypt needs a keyed CipherState');
    const d = createDecipheriv(CIPHER, k, this.#ivForNonce(), AEAD_OPTS);
    if (ad !== null && ad.length > 0) d.setAAD(ad, { plaintextLength: ciphertextLength });
    return d;
  }

  /** Advances the nonce after a successful {@link beginDecrypt} decryption. */
  commitNonce(): void {
    this.#n++;
  }

  /** Noise `EncryptWithAd(ad, plaintext)`: returns `ciphertext || tag`, or `plaintext` itself if no key. */
  encryptWithAd(ad: Uint8Array | null, plaintext: Uint8Array): Buffer {
    if (this.#k === null) return asBuffer(plaintext);
    const out = Buffer.allocUnsafe(plaintext.length + NOISE_TAG_SIZE);
    this.encryptInto(ad, plaintext, out, 0);
    return out;
  }

  /**
   * Noise `DecryptWithAd(ad, ciphertext)`: `ciphertext` includes the 16-byte tag.
   * Returns the plaintext, or `ciphertext` itself if no key.
   * @throws {@link DecryptError} if the message is shorter than a tag or fails authentication.
   */
  decryptWithAd(ad: Uint8Array | null, ciphertext: Uint8Array): Buffer {
    const k = this.#k;
    if (k === null) return asBuffer(ciphertext);
    const len = ciphertext.length;
    if (len < NOISE_TAG_SIZE) throw new DecryptError('ciphertext shorter than the authentication tag');
    const buf = asBuffer(ciphertext);
    const body = len - NOISE_TAG_SIZE;
    const d = createDecipheriv(CIPHER, k, this.#ivForNonce(), AEAD_OPTS);
    if (ad !== null && ad.length > 0) d.setAAD(ad, { plaintextLength: body });
    d.setAuthTag(buf.subarray(body));
    let pt: Buffer;
    try {
      pt = body > 0 ? d.update(buf.subarray(0, body)) : EMPTY;
      const fin = d.final();
      if (fin.length > 0) pt = Buffer.concat([pt, fin]);
    } catch (e) {
      throw new DecryptError('message authentication failed', { cause: e });
    }
    this.#n++;
    return pt;
  }
}

// ---------------------------------------------------------------------------------------------
// SymmetricState
// ---------------------------------------------------------------------------------------------

/** The `h` after the prologue of the last handshake set up (see {@link SymmetricState.withPrologue}). */
let initialHashCache: { name: string; prologue: Buffer; h: Buffer } | undefined;

/** Noise `SymmetricState`: chaining key `ck`, handshake hash `h`, and a {@link CipherState}. */
export class SymmetricState {
  #ck: Buffer;
  #h: Buffer;
  readonly cipher = new CipherState();

  /** Noise `InitializeSymmetric(protocol_name)`. */
  constructor(protocolName: string = NOISE_PROTOCOL_NAME) {
    const name = Buffer.from(protocolName, 'latin1');
    if (name.length <= HASH_LEN) {
      this.#h = Buffer.alloc(HASH_LEN);
      name.copy(this.#h);
    } else {
      this.#h = sha256(name);
    }
    this.#ck = Buffer.from(this.#h);
  }

  /**
   * `InitializeSymmetric(protocol_name)` followed by `MixHash(prologue)`, with the resulting
   * `h` remembered for the last (name, prologue) pair: every handshake of a node starts the
   * same way. Same result as `new SymmetricState(name)` then `mixHash(prologue)`.
   */
  static withPrologue(protocolName: string, prologue: Uint8Array): SymmetricState {
    const c = initialHashCache;
    const ss = new SymmetricState(protocolName);
    if (c !== undefined && c.name === protocolName && c.prologue.equals(prologue)) {
      ss.#h = c.h; // never mutated in place (mixHash replaces it), so it can be shared
      return ss;
    }
    ss.mixHash(prologue);
    initialHashCache = { name: protocolName, prologue: Buffer.from(prologue), h: ss.#h };
    return ss;
  }

  /** The current handshake hash `h` (a copy). */
  get handshakeHash(): Buffer {
    return Buffer.from(this.#h);
  }

  /** Noise `MixKey(input_key_material)`. */
  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = hkdf2(this.#ck, ikm);
    this.#ck = ck;
    this.cipher.initializeKey(tempK);
  }

  /** Noise `MixHash(data)`. */
  mixHash(data: Uint8Array): void {
    this.#h = sha256(this.#h, data);
  }

  /** Noise `EncryptAndHash(plaintext)`. */
  encryptAndHash(plaintext: Uint8Array): Buffer {
    const ct = this.cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ct);
    return ct;
  }

  /** Noise `DecryptAndHash(ciphertext)`; throws {@link DecryptError}. */
  decryptAndHash(ciphertext: Uint8Array): Buffer {
    const pt = this.cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return pt;
  }

  /** Noise `Split()`: the two transport CipherStates (initiator→responder, responder→initiator). */
  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf2(this.#ck, EMPTY);
    return [new CipherState(k1), new CipherState(k2)];
  }

  /** Forgets the secrets (best effort: overwrites the buffers). */
  destroy(): void {
    this.#ck.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// HandshakeState (XX only)
// ---------------------------------------------------------------------------------------------

/** Options of {@link XXHandshakeState}. */
export interface XXHandshakeOptions {
  /** `true` for the side that sends the first message. */
  initiator: boolean;
  /** Our static X25519 key pair `s`. */
  staticKeyPair: X25519KeyPair;
  /** Our ephemeral key pair `e`. Only for test vectors: leave unset to generate a fresh one. */
  ephemeralKeyPair?: X25519KeyPair;
  /** Prologue mixed into `h`; both sides must use the same bytes. Default: empty. */
  prologue?: Uint8Array;
}

/** The transport CipherStates and final hash of a completed handshake. */
export interface HandshakeSplit {
  /** Encrypts what we send. */
  send: CipherState;
  /** Decrypts what we receive. */
  recv: CipherState;
  /** The final handshake hash `h` (channel binding value). */
  handshakeHash: Buffer;
}

type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss';
/** XX: `-> e`, `<- e, ee, s, es`, `-> s, se`. */
const XX_PATTERN: readonly (readonly Token[])[] = [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']];

/**
 * Noise `HandshakeState` for the XX pattern. Call {@link writeMessage}/{@link readMessage}
 * alternately (the initiator writes first); after the third message {@link isComplete} is
 * true and {@link split} returns the transport ciphers.
 *
 * Any failure (bad length, failed authentication, bad key, misuse) throws a
 * {@link HandshakeError} and leaves the state failed: further calls throw too.
 */
export class XXHandshakeState {
  readonly initiator: boolean;
  readonly #ss: SymmetricState;
  #s: X25519KeyPair | undefined;
  #e: X25519KeyPair | undefined;
  #rs: Buffer | undefined;
  #re: Buffer | undefined;
  #reKey: KeyObject | undefined;
  #rsKey: KeyObject | undefined;
  /** A precomputed `DH(e, rs)` for a guessed `rs` (see {@link precomputeRemoteStatic}). */
  #guess: { e: X25519KeyPair; rs: Buffer; dh: Buffer } | undefined;
  #index = 0;
  #failed: HandshakeError | undefined;
  #split: HandshakeSplit | undefined;

  constructor(opts: XXHandshakeOptions) {
    if (!opts || typeof opts.initiator !== 'boolean') throw new InvalidArgumentError('initiator must be a boolean');
    if (!opts.staticKeyPair || !isBytes(opts.staticKeyPair.publicKey) || opts.staticKeyPair.publicKey.length !== DH_LEN) {
      throw new InvalidArgumentError('staticKeyPair must be an X25519 key pair');
    }
    if (opts.prologue !== undefined && !isBytes(opts.prologue)) throw new InvalidArgumentError('prologue must be bytes');
    this.initiator = opts.initiator;
    this.#s = opts.staticKeyPair;
    this.#e = opts.ephemeralKeyPair;
    this.#ss = SymmetricState.withPrologue(NOISE_PROTOCOL_NAME, opts.prologue ?? EMPTY);
    // XX has no pre-messages.
  }

  /** Index of the next handshake message (0..3; 3 = complete). */
  get messageIndex(): number {
    return this.#index;
  }

  /** `true` once all three messages have been processed. */
  get isComplete(): boolean {
    return this.#index === XX_PATTERN.length && this.#split !== undefined;
  }

  /** `true` if the next step is ours to write (false when complete or failed). */
  get isMyTurn(): boolean {
    if (this.#failed || this.#index >= XX_PATTERN.length) return false;
    return (this.#index % 2 === 0) === this.initiator;
  }

  /** The remote static public key, once received (message 2 for the initiator, 3 for the responder). */
  get remoteStaticKey(): Buffer | undefined {
    return this.#rs;
  }

  /** Our static public key. */
  get localStaticKey(): Buffer {
    return (this.#s as X25519KeyPair).publicKey;
  }

  /** The current handshake hash `h`. */
  get handshakeHash(): Buffer {
    return this.#split ? Buffer.from(this.#split.handshakeHash) : this.#ss.handshakeHash;
  }

  #check(writing: boolean): void {
    if (this.#failed) throw new HandshakeError('handshake already failed', { cause: this.#failed });
    if (this.#index >= XX_PATTERN.length) throw new HandshakeError('handshake already complete');
    if (this.isMyTurn !== writing) {
      throw new HandshakeError(writing ? 'not our turn to write a handshake message' : 'not our turn to read a handshake message');
    }
  }

  #fail(e: unknown): HandshakeError {
    const err =
      e instanceof HandshakeError
        ? e
        : e instanceof DecryptError
          ? new HandshakeError('handshake message failed authentication', { cause: e })
          : new HandshakeError('handshake failed', { cause: e });
    this.#failed = err;
    this.#e = undefined;
    this.#s = undefined;
    this.#guess = undefined;
    this.#ss.destroy();
    return err;
  }

  #dh(token: 'ee' | 'es' | 'se' | 'ss'): Buffer {
    // es: initiator's e with responder's s; se: initiator's s with responder's e.
    const s = this.#s as X25519KeyPair;
    const e = this.#e;
    const localIsE = token === 'ee' || (token === 'es' ? this.initiator : token === 'se' ? !this.initiator : false);
    const remoteIsE = token === 'ee' || (token === 'es' ? !this.initiator : token === 'se' ? this.initiator : false);
    const local = localIsE ? e : s;
    if (!local) throw new HandshakeError(`missing local key for ${token}`);
    let remote: KeyObject;
    if (remoteIsE) {
      if (!this.#re) throw new HandshakeError(`missing remote ephemeral key for ${token}`);
      remote = this.#reKey ??= importX25519Public(this.#re);
    } else {
      if (!this.#rs) throw new HandshakeError(`missing remote static key for ${token}`);
      const guess = this.#guess;
      if (guess !== undefined && localIsE && guess.e === local) {
        this.#guess = undefined;
        if (guess.rs.equals(this.#rs)) return guess.dh;
      }
      remote = this.#rsKey ??= importStaticPublic(this.#rs);
    }
    return x25519(local.privateKey, remote);
  }

  /**
   * Optional speculation, to call while waiting for the peer's static key: computes
   * `DH(e, guess)` now (our ephemeral key with the static key the peer is expected to send,
   * e.g. the one it used last time), so that the token mixing our `e` with its `s` (`es` for
   * the initiator, `se` for the responder) costs nothing when the message arrives. The result
   * is used only if the static key received is exactly `guess`; otherwise it is discarded and
   * the DH computed as usual. Pure optimisation: the handshake is the same either way.
   * Does nothing unless our ephemeral key exists and the peer's static key is still to come.
   * @throws {@link HandshakeError} if `guess` is not a valid X25519 public key.
   */
  precomputeRemoteStatic(guess: Uint8Array): void {
    const e = this.#e;
    if (this.#failed || this.#rs !== undefined || e === undefined || !isBytes(guess) || guess.length !== DH_LEN) return;
    const rs = Buffer.from(guess);
    this.#guess = { e, rs, dh: x25519(e.privateKey, importStaticPublic(rs)) };
  }

  /**
   * Noise `WriteMessage(payload, message_buffer)`: returns the next handshake message.
   * @throws {@link MessageTooBigError} if the message would exceed 65535 bytes;
   *   {@link HandshakeError} on misuse.
   */
  writeMessage(payload: Uint8Array = EMPTY): Buffer {
    if (!isBytes(payload)) throw new InvalidArgumentError('payload must be bytes');
    this.#check(true);
    const tokens = XX_PATTERN[this.#index] as readonly Token[];
    const overhead = tokens.reduce((n, t) => n + (t === 'e' ? DH_LEN : t === 's' ? DH_LEN + NOISE_TAG_SIZE : 0), 0);
    // Only message 1 has an unkeyed payload (no tag); every later payload is encrypted.
    const payloadTag = this.#index === 0 ? 0 : NOISE_TAG_SIZE;
    if (overhead + payload.length + payloadTag > NOISE_MAX_MESSAGE) {
      throw new MessageTooBigError(`handshake payload too large (${payload.length} bytes)`);
    }
    try {
      const parts: Buffer[] = [];
      for (const t of tokens) {
        switch (t) {
          case 'e': {
            // A fresh pair, pre-generated off the critical path when possible; used once.
            this.#e ??= takeEphemeralKeyPair();
            parts.push(this.#e.publicKey);
            this.#ss.mixHash(this.#e.publicKey);
            break;
          }
          case 's':
            parts.push(this.#ss.encryptAndHash((this.#s as X25519KeyPair).publicKey));
            break;
          default:
            this.#ss.mixKey(this.#dh(t));
        }
      }
      parts.push(this.#ss.encryptAndHash(payload));
      const msg = parts.length === 1 ? Buffer.from(parts[0] as Buffer) : Buffer.concat(parts);
      this.#advance();
      return msg;
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * Noise `ReadMessage(message, payload_buffer)`: consumes the peer's next handshake
   * message and returns its (decrypted) payload.
   * @throws {@link HandshakeError} on a malformed or unauthenticated message, or misuse.
   */
  readMessage(message: Uint8Array): Buffer {
    this.#check(false);
    try {
      if (!isBytes(message)) throw new HandshakeError('handshake message must be bytes');
      const msg = asBuffer(message);
      if (msg.length > NOISE_MAX_MESSAGE) throw new HandshakeError(`handshake message too large (${msg.length} bytes)`);
      const tokens = XX_PATTERN[this.#index] as readonly Token[];
      let off = 0;
      for (const t of tokens) {
        switch (t) {
          case 'e': {
            if (msg.length - off < DH_LEN) throw new HandshakeError('handshake message too short (ephemeral key)');
            if (this.#re) throw new HandshakeError('remote ephemeral key already set');
            this.#re = Buffer.from(msg.subarray(off, off + DH_LEN));
            off += DH_LEN;
            this.#ss.mixHash(this.#re);
            break;
          }
          case 's': {
            const len = this.#ss.cipher.hasKey() ? DH_LEN + NOISE_TAG_SIZE : DH_LEN;
            if (msg.length - off < len) throw new HandshakeError('handshake message too short (static key)');
            if (this.#rs) throw new HandshakeError('remote static key already set');
            const rs = this.#ss.decryptAndHash(msg.subarray(off, off + len));
            off += len;
            this.#rs = Buffer.from(rs);
            break;
          }
          default:
            this.#ss.mixKey(this.#dh(t));
        }
      }
      const rest = msg.subarray(off);
      if (this.#ss.cipher.hasKey() && rest.length < NOISE_TAG_SIZE) {
        throw new HandshakeError('handshake message too short (payload tag)');
      }
      const payload = Buffer.from(this.#ss.decryptAndHash(rest));
      this.#advance();
      return payload;
    } catch (e) {
      throw this.#fail(e);
    }
  }

  #advance(): void {
    this.#index++;
    if (this.#index === XX_PATTERN.length) {
      const [c1, c2] = this.#ss.split();
      const handshakeHash = this.#ss.handshakeHash;
      this.#split = this.initiator ? { send: c1, recv: c2, handshakeHash } : { send: c2, recv: c1, handshakeHash };
      // Drop the handshake secrets.
      this.#ss.destroy();
      this.#e = undefined;
      this.#s = undefined;
      this.#reKey = undefined;
      this.#rsKey = undefined;
      this.#guess = undefined;
    }
  }

  /**
   * The transport ciphers after the third message: `send` encrypts our messages, `recv`
   * decrypts the peer's (initiator: c1/c2; responder: c2/c1).
   * @throws {@link HandshakeError} if the handshake is not complete.
   */
  split(): HandshakeSplit {
    if (!this.#split) throw new HandshakeError('handshake not complete');
    return this.#split;
  }
}
