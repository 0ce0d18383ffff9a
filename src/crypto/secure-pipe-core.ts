/**
 * {@link SecurePipe}: the encrypted pipe that a finished secure handshake yields. It owns a
 * raw TCP pipe, encrypts what is sent with the handshake's transport keys and decrypts what
 * arrives (`secure-channel.ts` does the framing), and closes with an authenticated CLOSE frame.
 * Built by `secure()` / `connectSecure()` (`secure-connect.ts`) and `SecureServer`
 * (`secure-server.ts`); import all of them from `secure-pipe.ts`.
 * @module
 */
import type { Socket } from 'node:net';
import { FrameError, InvalidArgumentError, MessageTooBigError, PipeClosedError } from '../errors.js';
import { sameEndpoint, toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { checkAbortOptions, closeWithin, type AbortOptions } from '../util/abort.js';
import { boundSend, handled, Pipe, type SendData } from '../pipes/pipe.js';
import { streamError } from '../pipes/socket-errors.js';
import { toBuffer, type TcpPipe } from '../pipes/tcp.js';
import { MAX_INFLIGHT_CALLBACKS, type MessageCallback, type QueueLimits } from '../pipes/types.js';
import type { SecureHandshakeResult } from './handshake.js';
import type { SecureChannel } from './secure-channel.js';

/** Messages at least this large are encrypted into pieces and written with one vectored write (no copy). */
const VECTORED_MIN = 16 * 1024;

/** What {@link SecurePipe} is built from. @internal */
export interface SecurePipeInit extends QueueLimits {
  inner: TcpPipe;
  channel: SecureChannel;
  peer: SecureHandshakeResult;
  initiator: boolean;
  onMessage?: MessageCallback | undefined;
}

/**
 * An encrypted pipe over a TCP pipe. `proto` is `'tcp'`, `framing` `'length'` (each `send`
 * is one received message, up to {@link maxMessageSize} bytes), `local`/`remote` are the TCP
 * endpoints. Receiving works as on any pipe (`onMessage`, `recv`, subscriptions, `for await`,
 * `duplex`), with the same bounded queues: a full queue pauses the TCP connection.
 *
 * Errors close the pipe with a typed `closeError`: `DecryptError` (a message failed
 * authentication), `FrameError` (malformed frame), `MessageTooBigError` (the peer exceeded
 * our limit), `ConnectionResetError`, or `PipeClosedError` when the connection ended without
 * the peer's authenticated close.
 */
export class SecurePipe extends Pipe {
  readonly proto = 'tcp' as const;
  readonly framing = 'length' as const;
  readonly isServer = false;
  readonly dropOldest = false;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** The TCP pipe carrying the ciphertext. Owned by this pipe: do not read from or write to it. */
  readonly inner: TcpPipe;
  /** Whether we started the handshake. */
  readonly initiator: boolean;
  /** The peer's authenticated node id (32 bytes). */
  readonly remoteId: Buffer;
  /** {@link remoteId} in hex. */
  readonly remoteIdHex: string;
  /** The peer's Ed25519 identity public key (raw, 32 bytes); `sha256` of it is {@link remoteId}. */
  readonly remoteIdentityKey: Buffer;
  /** The peer's Noise static key. */
  readonly remoteStaticKey: Buffer;
  /** Extension bytes the peer sent in its identity payload (empty if none). */
  readonly remoteExtensions: Buffer;
  /** Noise handshake hash: identical on both ends, unique per connection (channel binding). */
  readonly handshakeHash: Buffer;
  /** Largest message sent or accepted. */
  readonly maxMessageSize: number;
  private readonly channel: SecureChannel;
  private readonly socket: Socket;
  private closing: Promise<void> | undefined;
  private localEnd = false;
  private done = false;
  private inflight = 0;
  private inflightPaused = false;

  /** @internal Use `secure()`, `connectSecure()` or a `SecureServer`. */
  constructor(init: SecurePipeInit) {
    super(init);
    this.inner = init.inner;
    this.socket = init.inner.socket;
    this.local = init.inner.local;
    this.remote = init.inner.remote;
    this.channel = init.channel;
    this.maxMessageSize = init.channel.maxMessageSize;
    this.initiator = init.initiator;
    const p = init.peer;
    this.remoteId = p.remoteId;
    this.remoteIdHex = p.remoteIdHex;
    this.remoteIdentityKey = p.remoteIdentityKey;
    this.remoteStaticKey = p.remoteStaticKey;
    this.remoteExtensions = p.remoteExtensions;
    this.handshakeHash = p.handshakeHash;
    if (init.onMessage) this.onMessage(init.onMessage);
    else this.subscribeDefault();
  }

  /** @internal Ciphertext from the inner pipe. Hot path. */
  onCipher(data: Buffer): void {
    if (this.done) return;
    let msgs: Buffer[];
    try {
      msgs = this.channel.decrypt(data);
    } catch (e) {
      this.fail(e instanceof Error ? e : new FrameError('bad frame', { cause: e }));
      return;
    }
    for (let i = 0; i < msgs.length; i++) this.receive(msgs[i] as Buffer, this.remote);
    if (this.channel.remoteClosed && !this.done) {
      // The peer's authenticated end of stream: a clean close. The peer closed its side, so no
      // CLOSE frame of ours is needed: just end the TCP connection.
      this.done = true;
      void this.end(false);
      this.finish();
    }
  }

  /** @internal The inner pipe closed. */
  onInnerClose(err: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    if (err) this.finish(err);
    else if (this.channel.remoteClosed || this.localEnd) this.finish();
    else if (this.channel.receiving) this.finish(new FrameError('connection closed by the peer in the middle of an encrypted message'));
    else this.finish(new PipeClosedError('connection closed by the peer without a secure close (truncated stream)'));
  }

  /** A decrypt or protocol failure: the connection is reset, the pipe closes with `err`. */
  private fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.closed = true;
    this.finish(err);
    this.inner.reset();
  }

  /**
   * Encrypts and sends one message (≤ {@link maxMessageSize} bytes; `MessageTooBigError`
   * otherwise). Resolves once handed to the kernel, like a TCP pipe's `send`.
   */
  send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void> {
    try {
      if (dest !== undefined && dest !== this.remote && !sameEndpoint(toEndpoint(dest), this.remote)) {
        throw new InvalidArgumentError('a secure pipe sends only to its remote end; omit dest or pass msg.from');
      }
      const sock = this.socket;
      if (this.closed || sock.destroyed || !sock.writable) throw this.closedErr();
      if (opts !== undefined) checkAbortOptions(opts); // a bad timeout or signal: nothing is sent
      const buf = toBuffer(data);
      if (buf.length > this.maxMessageSize) throw new MessageTooBigError(`message too large (${buf.length} > ${this.maxMessageSize} bytes)`);
      const st = this.stats;
      st.messagesOut++;
      st.bytesOut += buf.length;
      if (buf.length < VECTORED_MIN) {
        const frame = this.channel.encrypt(buf);
        this.inner.stats.bytesOut += frame.length;
        return boundSend(handled(new Promise<void>((resolve, reject) => sock.write(frame, (err) => (err ? reject(streamError(err)) : resolve())))), opts);
      }
      const parts = this.channel.encryptv(buf);
      const n = parts.length;
      let wire = 0;
      for (let i = 0; i < n; i++) wire += (parts[i] as Buffer).length;
      this.inner.stats.bytesOut += wire;
      return boundSend(
        handled(
          new Promise<void>((resolve, reject) => {
            sock.cork();
            for (let i = 0; i < n - 1; i++) sock.write(parts[i] as Buffer);
            sock.write(parts[n - 1] as Buffer, (err) => (err ? reject(streamError(err)) : resolve()));
            sock.uncork();
          }),
        ),
        opts,
      );
    } catch (e) {
      return handled(Promise.reject(e));
    }
  }

  private closedErr(): Error {
    return new PipeClosedError(this.closeError ? `pipe is closed: ${this.closeError.message}` : 'pipe is closed', this.closeError ? { cause: this.closeError } : undefined);
  }

  /**
   * Sends the authenticated CLOSE frame after everything already sent, then closes the TCP
   * connection gracefully (see `TcpPipe.close`). The peer's pipe closes without an error.
   * Queued messages stay readable. Idempotent. With `opts`, a signal that aborts or a timeout
   * that passes first resets the connection and rejects with `AbortError` / `TimeoutError`
   * once it is closed (see `Pipe.close`).
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.end(true), opts, () => this.inner.reset(), 'secure pipe close');
  }

  private end(sendClose: boolean): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.localEnd = true;
    const sock = this.socket;
    let corked = false;
    if (sendClose && !sock.destroyed && sock.writable) {
      try {
        const frame = this.channel.encryptClose();
        this.inner.stats.bytesOut += frame.length;
        // Corked, so the frame leaves with the FIN (end() uncorks) in one write.
        sock.cork();
        corked = true;
        sock.write(frame);
      } catch {
        /* already closed for sending */
      }
    }
    this.closing = this.inner.close().then(() => this.onInnerClose(undefined));
    if (corked) sock.uncork(); // no-op if end() already flushed
    return this.closing;
  }

  /** Closes at once with a TCP reset, without the secure close (the peer sees a `ConnectionResetError`). */
  reset(): void {
    this.closed = true;
    this.localEnd = true;
    this.inner.reset();
  }

  override queueFull(): void {
    this.inner.pauseReading();
  }

  override queueDrained(): void {
    this.inner.resumeReading();
  }

  protected override trackAsync(p: Promise<void>): void {
    if (++this.inflight >= MAX_INFLIGHT_CALLBACKS && !this.inflightPaused) {
      this.inflightPaused = true;
      this.inner.pauseReading();
    }
    p.then(
      () => this.settled(),
      (e: unknown) => {
        this.settled();
        this.reportError(e);
      },
    );
  }

  private settled(): void {
    this.inflight--;
    if (this.inflightPaused && this.inflight <= MAX_INFLIGHT_CALLBACKS >> 1) {
      this.inflightPaused = false;
      this.inner.resumeReading();
    }
  }
}
