/**
 * The p2pd secure handshake: Noise XX plus identity proof, independent of the transport.
 *
 * ```
 * initiator                                   responder
 *   -> e                                        (payload: empty)
 *   <- e, ee, s, es                             (payload: responder's identity proof)
 *   -> s, se                                    (payload: initiator's identity proof)
 * ```
 * The initiator checks the responder's identity (and its `remoteId` pin) before it sends
 * message 3, so it never reveals its own identity to an unexpected peer.
 *
 * {@link SecureHandshake} is the synchronous state machine; {@link performHandshake} drives
 * it over any message transport with cancellation.
 * @module
 */
import { HandshakeError, InvalidArgumentError, PeerIdMismatchError } from '../errors.js';
import { cancellable, type AbortOptions } from '../util/abort.js';
import type { CipherState } from './cipher-state.js';
import { MAX_PAYLOAD_EXTENSIONS, noiseStaticCredential, sharedHandshakePayload, verifyHandshakePayload } from './handshake-payload.js';
import { Identity, parseNodeId } from './identity.js';
import { XXHandshakeState } from './noise.js';
import type { X25519KeyPair } from './x25519.js';

/** Prologue used unless another is given: binds the handshake to this protocol. */
export const DEFAULT_PROLOGUE: Buffer = Buffer.from('p2pd/noise-xx/2', 'latin1');

/**
 * The Noise static key each recently authenticated peer used, by node id: a reconnecting
 * initiator that pins the peer's id computes its `es` DH with that key while waiting for
 * message 2 ({@link SecureHandshake.prepare}). Only a hint: the key received is what counts.
 */
const LAST_STATIC_KEYS = 256;
const lastStaticKey = new Map<string, Buffer>();

function rememberStaticKey(id: Buffer, staticKey: Buffer): void {
  const k = id.toString('latin1');
  lastStaticKey.delete(k);
  lastStaticKey.set(k, staticKey);
  if (lastStaticKey.size > LAST_STATIC_KEYS) {
    const oldest = lastStaticKey.keys().next().value;
    if (oldest !== undefined) lastStaticKey.delete(oldest);
  }
}

/** Options of {@link SecureHandshake}. */
export interface SecureHandshakeOptions {
  /** Our node identity. */
  identity: Identity;
  /** `true` on the side that opened the connection (it writes first). */
  initiator: boolean;
  /** Expected peer node id (32 bytes or 64 hex chars); another peer fails with {@link PeerIdMismatchError}. */
  remoteId?: Uint8Array | string;
  /** Noise prologue; both sides must agree. @default {@link DEFAULT_PROLOGUE} (`"p2pd/noise-xx/2"`) */
  prologue?: Uint8Array;
  /** Extension bytes to send in our identity payload (≤ 1024 bytes). */
  extensions?: Uint8Array;
  /** Ephemeral key pair to use. Testing only: leave unset. */
  ephemeralKeyPair?: X25519KeyPair;
}

/** What a completed handshake yields. */
export interface SecureHandshakeResult {
  /** Encrypts what we send. */
  send: CipherState;
  /** Decrypts what we receive. */
  recv: CipherState;
  /** The peer's authenticated node id (32 bytes). */
  remoteId: Buffer;
  /** {@link remoteId} in hex. */
  remoteIdHex: string;
  /** The peer's raw Ed25519 identity key. */
  remoteIdentityKey: Buffer;
  /** The peer's Noise static key. */
  remoteStaticKey: Buffer;
  /** The peer's extension bytes (empty if none). */
  remoteExtensions: Buffer;
  /** Final Noise handshake hash, a channel-binding value identical on both sides. */
  handshakeHash: Buffer;
}

/**
 * Synchronous p2pd handshake state machine. While {@link isMyTurn}, call {@link writeMessage}
 * and send the result; otherwise pass the next received message to {@link readMessage}.
 * When {@link isComplete}, {@link result} gives the transport ciphers and the peer's id.
 * Every failure throws a {@link HandshakeError} (or {@link PeerIdMismatchError}) and leaves
 * the state failed.
 */
export class SecureHandshake {
  readonly initiator: boolean;
  readonly #hs: XXHandshakeState;
  readonly #payload: Buffer;
  readonly #expected: Buffer | undefined;
  #peer: { id: Buffer; identityKey: Buffer; extensions: Buffer } | undefined;
  #failed: HandshakeError | undefined;

  constructor(opts: SecureHandshakeOptions) {
    if (!opts || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('identity must be an Identity');
    if (typeof opts.initiator !== 'boolean') throw new InvalidArgumentError('initiator must be a boolean');
    if (opts.extensions !== undefined && (!(opts.extensions instanceof Uint8Array) || opts.extensions.length > MAX_PAYLOAD_EXTENSIONS)) {
      throw new InvalidArgumentError(`extensions must be at most ${MAX_PAYLOAD_EXTENSIONS} bytes`);
    }
    this.initiator = opts.initiator;
    this.#expected = opts.remoteId === undefined ? undefined : parseNodeId(opts.remoteId);
    const cred = noiseStaticCredential(opts.identity);
    this.#payload = sharedHandshakePayload(opts.identity, opts.extensions);
    this.#hs = new XXHandshakeState({
      initiator: opts.initiator,
      staticKeyPair: cred.keyPair,
      prologue: opts.prologue ?? DEFAULT_PROLOGUE,
      ...(opts.ephemeralKeyPair ? { ephemeralKeyPair: opts.ephemeralKeyPair } : {}),
    });
  }

  /** `true` when it is our turn to {@link writeMessage}. */
  get isMyTurn(): boolean {
    return !this.#failed && this.#hs.isMyTurn;
  }

  /** `true` once the handshake completed successfully. */
  get isComplete(): boolean {
    return !this.#failed && this.#hs.isComplete;
  }

  /** The peer's authenticated id, as soon as known (after message 2 for the initiator, 3 for the responder). */
  get remoteId(): Buffer | undefined {
    return this.#peer?.id;
  }

  #fail(e: unknown): HandshakeError {
    const err = e instanceof HandshakeError ? e : new HandshakeError('handshake failed', { cause: e });
    this.#failed ??= err;
    return err;
  }

  /** Produces our next handshake message. */
  writeMessage(): Buffer {
    if (this.#failed) throw new HandshakeError('handshake already failed', { cause: this.#failed });
    try {
      // Message 1 carries nothing; messages 2 and 3 carry our identity proof.
      return this.#hs.writeMessage(this.#hs.messageIndex === 0 ? Buffer.alloc(0) : this.#payload);
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * Optional work ahead of the peer's next message, to call right after sending ours (off the
   * critical path: the peer is busy answering). When we can guess the Noise static key the
   * peer is about to send, the DH of our ephemeral key with it is computed now (see
   * `XXHandshakeState.precomputeRemoteStatic`):
   * - an initiator that pins the peer's id, after message 1: the static key that peer used
   *   last time (remembered here by node id);
   * - a responder, after message 2: `hint`, if the transport has one (a `SecureServer` passes
   *   the key last seen from the same remote host, see `static-key-hints.ts`).
   *
   * Never fails; a wrong guess only costs the DH it computed ({@link speculation} tells).
   */
  prepare(hint?: Uint8Array): void {
    if (this.#failed) return;
    let rs: Buffer | Uint8Array | undefined;
    if (this.initiator) {
      if (this.#expected === undefined || this.#hs.messageIndex !== 1) return;
      rs = lastStaticKey.get(this.#expected.toString('latin1'));
    } else {
      if (this.#hs.messageIndex !== 2) return;
      rs = hint;
    }
    if (rs === undefined) return;
    try {
      this.#hs.precomputeRemoteStatic(rs);
    } catch {
      /* a hint only */
    }
  }

  /** Whether a {@link prepare} guess was used: `'none'`, `'hit'` or `'miss'`. */
  get speculation(): 'none' | 'hit' | 'miss' {
    return this.#hs.speculation;
  }

  /** The peer's Noise static key, once received. */
  get remoteStaticKey(): Buffer | undefined {
    return this.#hs.remoteStaticKey;
  }

  /** Consumes the peer's next handshake message. */
  readMessage(message: Uint8Array): void {
    if (this.#failed) throw new HandshakeError('handshake already failed', { cause: this.#failed });
    try {
      const index = this.#hs.messageIndex;
      const payload = this.#hs.readMessage(message);
      if (index === 0) {
        if (payload.length !== 0) throw new HandshakeError('unexpected payload in handshake message 1');
        return;
      }
      const rs = this.#hs.remoteStaticKey;
      if (!rs) throw new HandshakeError('no remote static key');
      const peer = verifyHandshakePayload(payload, rs);
      if (this.#expected && !this.#expected.equals(peer.id)) {
        throw new PeerIdMismatchError(this.#expected.toString('hex'), peer.id.toString('hex'));
      }
      this.#peer = peer;
      rememberStaticKey(peer.id, rs);
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /** The outcome. @throws {@link HandshakeError} unless complete. */
  result(): SecureHandshakeResult {
    if (this.#failed) throw new HandshakeError('handshake failed', { cause: this.#failed });
    const peer = this.#peer;
    if (!this.#hs.isComplete || !peer) throw new HandshakeError('handshake not complete');
    const { send, recv, handshakeHash } = this.#hs.split();
    return {
      send,
      recv,
      remoteId: peer.id,
      remoteIdHex: peer.id.toString('hex'),
      remoteIdentityKey: peer.identityKey,
      remoteStaticKey: this.#hs.remoteStaticKey as Buffer,
      remoteExtensions: peer.extensions,
      handshakeHash,
    };
  }
}

/** A message transport for {@link performHandshake}: one call = one handshake message. */
export interface HandshakeTransport {
  /** Sends one handshake message. */
  write(message: Buffer): void | Promise<void>;
  /** Resolves with the peer's next handshake message; should reject when `signal` aborts. */
  read(signal: AbortSignal): Promise<Uint8Array>;
}

/**
 * Runs the whole handshake over `io`. Rejects with {@link HandshakeError} /
 * {@link PeerIdMismatchError} on failure, {@link AbortError} / {@link TimeoutError} on
 * cancellation (the pending `io.read` is then aborted through its signal).
 */
export function performHandshake(io: HandshakeTransport, opts: SecureHandshakeOptions & AbortOptions): Promise<SecureHandshakeResult> {
  let hs: SecureHandshake;
  try {
    hs = new SecureHandshake(opts);
  } catch (e) {
    return Promise.reject(e);
  }
  return cancellable<SecureHandshakeResult>(opts, 'secure handshake', (resolve, reject) => {
    const ac = new AbortController();
    (async () => {
      while (!hs.isComplete) {
        if (hs.isMyTurn) {
          await io.write(hs.writeMessage());
        } else {
          const msg = await io.read(ac.signal);
          if (ac.signal.aborted) return;
          hs.readMessage(msg);
        }
        if (ac.signal.aborted) return;
      }
      resolve(hs.result());
    })().catch(reject);
    return () => ac.abort();
  });
}
