/**
 * `Noise_XX_25519_ChaChaPoly_SHA256` (Noise Protocol Framework, revision 34), built on
 * `node:crypto` only: X25519 for DH, ChaCha20-Poly1305 (IETF, 96-bit nonce) for the AEAD,
 * SHA-256 for the hash / HMAC / HKDF.
 *
 * This module holds {@link XXHandshakeState}, the spec's `HandshakeState` for the XX pattern.
 * The objects it drives each have their own module, following the spec one to one:
 * `CipherState` (`cipher-state.ts`), `SymmetricState` (`symmetric-state.ts`) and the X25519
 * DH functions (`x25519.ts`); the sizes are in `noise-constants.ts`. Every malformed input
 * raises a typed error ({@link HandshakeError} while handshaking, {@link DecryptError} for a
 * failed transport message), never a crash.
 *
 * Not implemented (not needed by p2pd): other patterns, PSKs, `Rekey()`, fallback.
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { DecryptError, HandshakeError, InvalidArgumentError, MessageTooBigError } from '../errors.js';
import { asBuffer, EMPTY, isBytes } from './bytes.js';
import type { CipherState } from './cipher-state.js';
import { takeEphemeralKeyPair, type X25519KeyPair } from './ephemeral.js';
import { DH_LEN, NOISE_MAX_MESSAGE, NOISE_PROTOCOL_NAME, NOISE_TAG_SIZE } from './noise-constants.js';
import { SymmetricState } from './symmetric-state.js';
import { importStaticPublic, importX25519Public, x25519 } from './x25519.js';

/** Options of {@link XXHandshakeState}. */
export interface XXHandshakeOptions {
  /** `true` for the side that sends the first message. */
  initiator: boolean;
  /** Our static X25519 key pair `s`. */
  staticKeyPair: X25519KeyPair;
  /** Our ephemeral key pair `e`. Only for test vectors: leave unset to generate a fresh one. */
  ephemeralKeyPair?: X25519KeyPair;
  /** Prologue mixed into `h`; both sides must use the same bytes. @default empty (zero bytes) */
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
  #speculation: 'none' | 'hit' | 'miss' = 'none';
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

  /**
   * What became of {@link precomputeRemoteStatic}: `'none'` (no guess was used), `'hit'` (the
   * peer sent the guessed key; its DH was reused) or `'miss'` (another key; DH computed anew).
   */
  get speculation(): 'none' | 'hit' | 'miss' {
    return this.#speculation;
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
        const hit = guess.rs.equals(this.#rs);
        this.#speculation = hit ? 'hit' : 'miss';
        if (hit) return guess.dh;
      }
      remote = this.#rsKey ??= importStaticPublic(this.#rs);
    }
    return x25519(local.privateKey, remote);
  }

  /**
   * Optional speculation, to call while waiting for the peer's static key: computes
   * `DH(e, guess)` now (our ephemeral key with the static key the peer is expected to send,
   * e.g. the one it used last time), so that the token mixing our `e` with its `s` (`es` for
   * the initiator after message 1, `se` for the responder after message 2) costs nothing when
   * the message arrives. The result
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
