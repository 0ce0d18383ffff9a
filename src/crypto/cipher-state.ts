/**
 * Noise `CipherState` for ChaChaPoly: ChaCha20-Poly1305 (IETF, 96-bit nonce) from
 * `node:crypto`, keyed by the handshake and then used for every transport message.
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { DecryptError, InvalidArgumentError } from '../errors.js';
import { asBuffer, EMPTY, isBytes } from './bytes.js';
import { NOISE_TAG_SIZE } from './noise-constants.js';

const CIPHER = 'chacha20-poly1305';
const AEAD_OPTS = { authTagLength: NOISE_TAG_SIZE } as const;
/** Nonces stop one short of 2^53 (JS safe integers); the spec's limit is 2^64 − 1. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;

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
