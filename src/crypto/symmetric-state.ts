/**
 * Noise `SymmetricState` with SHA-256: the chaining key and handshake hash of a handshake,
 * and the hash functions it needs (`HASH`, `HMAC-HASH`, `HKDF` with two outputs).
 * @module
 */
import { EMPTY } from './bytes.js';
import { CipherState } from './cipher-state.js';
import { HASH_LEN, NOISE_PROTOCOL_NAME } from './noise-constants.js';
import { hmacSha256 as hmac, sha256 } from './sha256.js';

const BYTE_1 = Buffer.from([1]);
const BYTE_2 = Buffer.from([2]);

/** Noise `HKDF(chaining_key, input_key_material, 2)` with HMAC-SHA256. */
export function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, BYTE_1);
  const out2 = hmac(tempKey, out1, BYTE_2);
  return [out1, out2];
}

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
