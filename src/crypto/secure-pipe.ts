/**
 * Encrypted, authenticated pipes: `secure(tcpPipe, { identity })` runs the p2pd Noise XX
 * handshake (`Noise_XX_25519_ChaChaPoly_SHA256`, static keys vouched for by the node
 * {@link Identity}) over a raw TCP pipe and returns a {@link SecurePipe}: a `Pipe` with the
 * same API whose messages travel encrypted, length-delimited (boundaries preserved) and
 * bounded by `maxMessageSize`.
 *
 * ```ts
 * const server = await listenSecure('127.0.0.1:0', { identity: serverId, onPipe: (p) => p.onMessage((m) => p.send(m.data)) });
 * const pipe = await connectSecure(server.local, { identity: clientId, remoteId: serverId.id });
 * await pipe.send('hello'); (await pipe.recv()).data; // 'hello'
 * await pipe.close();
 * ```
 *
 * Wire format: the handshake frames and then the encrypted frames of `transport.ts`. `close()`
 * sends an authenticated CLOSE frame before the TCP FIN; a connection that ends without one
 * (the peer crashed, or someone in the middle cut it) closes the pipe with a
 * `PipeClosedError`, never silently.
 * @module
 */
import type { KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import { FrameError, HandshakeError, InvalidArgumentError, MessageTooBigError, PipeClosedError } from '../errors.js';
import { sameEndpoint, toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { cancellable, throwIfAborted, toAbortError, type AbortOptions } from '../util/abort.js';
import { pipeOpen } from '../pipes/open.js';
import { handled, Pipe, type SendData } from '../pipes/pipe.js';
import { streamError } from '../pipes/socket-errors.js';
import { TcpPipe, toBuffer } from '../pipes/tcp.js';
import { TcpServer } from '../pipes/tcp-server.js';
import {
  DEFAULT_MAX_ACCEPT_QUEUE,
  MAX_INFLIGHT_CALLBACKS,
  SUB_ALL,
  type Message,
  type MessageCallback,
  type PipeOptions,
  type QueueLimits,
} from '../pipes/types.js';
import { SecureHandshake, type SecureHandshakeResult } from './handshake.js';
import { Identity } from './identity.js';
import { generateX25519KeyPair, type X25519KeyPair } from './noise.js';
import { decodeHandshakeFrame, encodeHandshakeFrame, FRAME_HEADER_SIZE, FrameDecoder, MAX_SECURE_MESSAGE, SecureChannel } from './transport.js';

/** Default bound of the whole handshake (ms). */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
/** Default number of handshakes a {@link SecureServer} runs at once; further connections are reset. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 256;
/** Messages at least this large are encrypted into pieces and written with one vectored write (no copy). */
const VECTORED_MIN = 16 * 1024;

/** Options of {@link secure}. */
export interface SecureOptions extends AbortOptions, QueueLimits {
  /** Our node identity (its key signs our Noise static key). */
  identity: Identity;
  /**
   * The peer we expect (node id: 32 bytes or 64 hex characters). Another peer fails the
   * handshake with `PeerIdMismatchError`. The initiator checks it before revealing its own
   * identity. @default any peer
   */
  remoteId?: Uint8Array | string;
  /**
   * Which side starts the handshake. Both sides must disagree. @default `false` for a
   * connection accepted by a listening socket (a `TcpServer`'s pipe), `true` otherwise
   * (a pipe from `pipeOpen('tcp', dest)`). Set it explicitly when both ends are clients
   * (TCP simultaneous open, hole punching).
   */
  initiator?: boolean;
  /** Bound of the handshake (ms); it fails with `TimeoutError`. `0` = none. @default DEFAULT_HANDSHAKE_TIMEOUT (10 s) */
  timeout?: number;
  /** Largest message sent or accepted (bytes). @default MAX_SECURE_MESSAGE (16 MiB) */
  maxMessageSize?: number;
  /** Noise prologue; both sides must use the same. @default DEFAULT_PROLOGUE */
  prologue?: Uint8Array;
  /** Extension bytes sent (authenticated) in our identity payload, ≤ 1024; the peer's are `remoteExtensions`. */
  extensions?: Uint8Array;
  /** Message callback of the secure pipe, registered before any message can arrive (no default `SUB_ALL` subscription then). */
  onMessage?: MessageCallback;
}

/** What {@link SecurePipe} is built from. @internal */
interface SecurePipeInit extends QueueLimits {
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

  /** @internal Use {@link secure}, {@link connectSecure} or a {@link SecureServer}. */
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
    else this.subscribe(SUB_ALL);
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
    const st = this.stats;
    for (let i = 0; i < msgs.length; i++) {
      const pt = msgs[i] as Buffer;
      st.messagesIn++;
      st.bytesIn += pt.length;
      if (!this.dispatch({ data: pt, from: this.remote, pipe: this })) st.unmatched++;
    }
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
      if (opts?.signal?.aborted) throw toAbortError(opts.signal);
      const buf = toBuffer(data);
      if (buf.length > this.maxMessageSize) throw new MessageTooBigError(`message too large (${buf.length} > ${this.maxMessageSize} bytes)`);
      const st = this.stats;
      st.messagesOut++;
      st.bytesOut += buf.length;
      if (buf.length < VECTORED_MIN) {
        const frame = this.channel.encrypt(buf);
        this.inner.stats.bytesOut += frame.length;
        return handled(new Promise<void>((resolve, reject) => sock.write(frame, (err) => (err ? reject(streamError(err)) : resolve()))));
      }
      const parts = this.channel.encryptv(buf);
      const n = parts.length;
      let wire = 0;
      for (let i = 0; i < n; i++) wire += (parts[i] as Buffer).length;
      this.inner.stats.bytesOut += wire;
      return handled(
        new Promise<void>((resolve, reject) => {
          sock.cork();
          for (let i = 0; i < n - 1; i++) sock.write(parts[i] as Buffer);
          sock.write(parts[n - 1] as Buffer, (err) => (err ? reject(streamError(err)) : resolve()));
          sock.uncork();
        }),
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
   * Queued messages stay readable. Idempotent.
   */
  close(): Promise<void> {
    return this.end(true);
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

// ------------------------------------------------------------------------------ secure() --

/** A fresh X25519 key pair for one handshake (see `generateX25519KeyPair` for the Node 20 deadlock it avoids). */
const ephemeralKeyPair = (): X25519KeyPair => generateX25519KeyPair();

function uncork(sock: Socket): void {
  sock.uncork();
}

function isAccepted(pipe: TcpPipe): boolean {
  const s = pipe.socket as Socket & { server?: unknown; _server?: unknown };
  return (s.server ?? s._server) != null;
}

function checkMax(v: number | undefined): number {
  if (v === undefined) return MAX_SECURE_MESSAGE;
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError('maxMessageSize must be a non-negative integer');
  return v;
}

function checkTimeout(v: number | undefined): number {
  if (v === undefined) return DEFAULT_HANDSHAKE_TIMEOUT;
  if (typeof v !== 'number' || !(v >= 0)) throw new InvalidArgumentError('timeout must be a non-negative number of milliseconds');
  return v;
}

function asHandshakeError(e: unknown): Error {
  if (e instanceof HandshakeError) return e;
  if (e instanceof FrameError) return new HandshakeError(`malformed handshake frame: ${e.message}`, { cause: e });
  return new HandshakeError('handshake failed', { cause: e });
}

/**
 * Runs the secure handshake over a connected TCP pipe and returns the encrypted pipe.
 *
 * `pipe` must use `'raw'` framing (else `InvalidArgumentError`) and from now on belongs to the
 * secure pipe: its default `SUB_ALL` subscription is removed (bytes already queued there are
 * consumed first, so nothing the peer sent early is lost); nothing else may read from or write
 * to it (an accepted pipe's `TcpServer` must have no message callbacks or subscriptions of its
 * own, or they would see ciphertext).
 *
 * The initiator usually sends right after the handshake, so the responder's first messages may
 * arrive before `secure()` resolves: they wait in the `SUB_ALL` queue (`recv()`), or go to
 * `opts.onMessage` when given. A {@link SecureServer} hands pipes to `onPipe` before that.
 *
 * Rejects with `HandshakeError` (malformed or unauthenticated handshake, the connection
 * closed during it), `PeerIdMismatchError` (`remoteId` pin), `TimeoutError`, `AbortError`;
 * the TCP pipe is then closed. Argument errors (`InvalidArgumentError`, a closed pipe:
 * `PipeClosedError`) reject without touching the pipe.
 */
export function secure(pipe: TcpPipe, opts: SecureOptions): Promise<SecurePipe> {
  return runSecure(pipe, opts, undefined);
}

/** {@link secure}, with `onReady` called with the new pipe before any message is dispatched on it. */
function runSecure(pipe: TcpPipe, opts: SecureOptions, onReady: ((p: SecurePipe) => void) | undefined): Promise<SecurePipe> {
  let hs: SecureHandshake;
  let initiator: boolean;
  let maxMessageSize: number;
  let timeout: number;
  try {
    if (!(pipe instanceof TcpPipe)) throw new InvalidArgumentError('secure() needs a connected TCP pipe (a TcpPipe)');
    if (pipe.framing !== 'raw') throw new InvalidArgumentError(`secure() needs a TCP pipe with 'raw' framing, not '${pipe.framing}'`);
    if (!opts || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('opts.identity must be an Identity');
    if (opts.initiator !== undefined && typeof opts.initiator !== 'boolean') throw new InvalidArgumentError('initiator must be a boolean');
    if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw new InvalidArgumentError('onMessage must be a function');
    for (const k of ['maxQueue', 'maxQueueBytes'] as const) {
      const v = opts[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
    }
    maxMessageSize = checkMax(opts.maxMessageSize);
    timeout = checkTimeout(opts.timeout);
    initiator = opts.initiator ?? !isAccepted(pipe);
    hs = new SecureHandshake({
      identity: opts.identity,
      initiator,
      ...(opts.remoteId !== undefined ? { remoteId: opts.remoteId } : {}),
      ...(opts.prologue !== undefined ? { prologue: opts.prologue } : {}),
      ...(opts.extensions !== undefined ? { extensions: opts.extensions } : {}),
      ephemeralKeyPair: ephemeralKeyPair(),
    });
    if (pipe.closed || pipe.socket.destroyed) throw new PipeClosedError('the TCP pipe is closed');
  } catch (e) {
    return handled(Promise.reject(e));
  }
  const inner = pipe;
  if (opts.signal?.aborted) {
    void inner.close();
    return handled(Promise.reject(toAbortError(opts.signal)));
  }

  // Take the inner pipe over: bytes that already reached its default queue come first.
  const decoder = new FrameDecoder();
  if (inner.isSubscribed(SUB_ALL)) {
    for (let m = inner.tryRecv(SUB_ALL); m; m = inner.tryRecv(SUB_ALL)) decoder.push(m.data);
    inner.unsubscribe(SUB_ALL);
  }
  let sp: SecurePipe | undefined;
  let state: 'handshake' | 'done' | 'failed' = 'handshake';
  let settleOk: ((p: SecurePipe) => void) | undefined;
  let settleErr: ((e: unknown) => void) | undefined;
  const sock = inner.socket;
  const write = (msg: Buffer): void => {
    // Write errors surface as the inner pipe's close.
    if (sock.destroyed || !sock.writable) return;
    inner.stats.bytesOut += msg.length + FRAME_HEADER_SIZE;
    if (hs.isComplete) {
      // Our last handshake message (initiator's message 3): hold it until the end of this turn
      // of the event loop, so what the caller sends (or its close) right after the handshake
      // leaves in the same segment.
      sock.cork();
      sock.write(encodeHandshakeFrame(msg));
      setImmediate(uncork, sock);
    } else sock.write(encodeHandshakeFrame(msg));
  };
  const fail = (e: unknown): void => {
    if (state !== 'handshake') return;
    state = 'failed';
    settleErr?.(asHandshakeError(e));
  };
  const complete = (): void => {
    const peer = hs.result();
    const channel = new SecureChannel({ send: peer.send, recv: peer.recv }, { maxMessageSize });
    const p = new SecurePipe({ inner, channel, peer, initiator, onMessage: opts.onMessage, maxQueue: opts.maxQueue, maxQueueBytes: opts.maxQueueBytes });
    state = 'done';
    sp = p;
    if (onReady) {
      try {
        onReady(p);
      } catch (e) {
        p.reportError(e);
      }
    }
    // Transport bytes that came with the last handshake message.
    const rest = decoder.drain();
    if (rest.length > 0) p.onCipher(rest);
    settleOk?.(p);
  };
  const step = (): void => {
    try {
      while (state === 'handshake') {
        if (hs.isMyTurn) write(hs.writeMessage());
        else {
          const f = decoder.next();
          if (f === undefined) return;
          hs.readMessage(decodeHandshakeFrame(f));
        }
        if (hs.isComplete) {
          complete();
          return;
        }
      }
    } catch (e) {
      fail(e);
    }
  };
  inner.onMessage((m: Message) => {
    if (sp !== undefined) sp.onCipher(m.data);
    else if (state === 'handshake') {
      decoder.push(m.data);
      step();
    }
  });
  inner.onClose((err) => {
    if (sp !== undefined) sp.onInnerClose(err);
    else fail(new HandshakeError(err ? `connection failed during the secure handshake: ${err.message}` : 'connection closed during the secure handshake', err ? { cause: err } : undefined));
  });

  return cancellable<SecurePipe>({ signal: opts.signal, timeout }, 'secure handshake', (resolve, reject) => {
    settleOk = resolve;
    settleErr = reject;
    step(); // the initiator writes message 1; bytes already received are processed
    return () => {
      if (state === 'done') return;
      state = 'failed';
      void inner.close();
    };
  });
}

// ------------------------------------------------------------------------- connectSecure --

/** Options of {@link connectSecure}: TCP options (`pipeOpen`) plus {@link SecureOptions}. */
export interface ConnectSecureOptions extends Omit<PipeOptions, 'framing' | 'onMessage' | 'maxMessageSize' | 'timeout'>, Omit<SecureOptions, 'initiator'> {
  /** Bound of connect + handshake together (ms). @default DEFAULT_HANDSHAKE_TIMEOUT (10 s) */
  timeout?: number;
  /** Start the handshake (default) or answer it (simultaneous open, both ends connecting). @default true */
  initiator?: boolean;
}

/**
 * Connects to `dest` over TCP and runs the secure handshake as the initiator. Pass
 * `remoteId` to pin the peer. Rejects with the typed errors of `pipeOpen` and {@link secure}.
 */
export async function connectSecure(dest: EndpointLike, opts: ConnectSecureOptions): Promise<SecurePipe> {
  if (!opts || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('opts.identity must be an Identity');
  throwIfAborted(opts.signal);
  const timeout = checkTimeout(opts.timeout);
  const t0 = performance.now();
  const { identity, remoteId, initiator, maxMessageSize, prologue, extensions, onMessage, maxQueue, maxQueueBytes, ...tcp } = opts;
  const pipe = await pipeOpen('tcp', dest, { ...tcp, framing: 'raw', timeout });
  const left = timeout === 0 ? 0 : Math.max(1, Math.ceil(timeout - (performance.now() - t0)));
  return secure(pipe, {
    identity,
    initiator: initiator ?? true,
    timeout: left,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(remoteId !== undefined ? { remoteId } : {}),
    ...(maxMessageSize !== undefined ? { maxMessageSize } : {}),
    ...(prologue !== undefined ? { prologue } : {}),
    ...(extensions !== undefined ? { extensions } : {}),
    ...(onMessage !== undefined ? { onMessage } : {}),
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    ...(maxQueueBytes !== undefined ? { maxQueueBytes } : {}),
  });
}

// -------------------------------------------------------------------------- SecureServer --

/** Options of {@link secureServer} / {@link listenSecure}. */
export interface SecureServerOptions extends Omit<SecureOptions, 'initiator' | 'remoteId' | 'signal'> {
  /**
   * Called with each secured pipe before any message is dispatched on it, so callbacks it
   * registers see every message. While at least one is registered, pipes go to callbacks
   * instead of `accept()`. Like every pipe, a secured pipe has the default `SUB_ALL`
   * subscription unless `onMessage` is given here: with callbacks only, pass `onMessage` (or
   * `unsubscribe(SUB_ALL)`), or the unread queue fills and pauses the connection.
   */
  onPipe?: (pipe: SecurePipe) => void;
  /** Called when an incoming handshake fails (with the error and the TCP pipe, already closing). */
  onHandshakeError?: (err: Error, pipe: TcpPipe) => void;
  /** Handshakes in progress at once; connections beyond it are reset. @default DEFAULT_MAX_PENDING_HANDSHAKES (256) */
  maxPendingHandshakes?: number;
  /** Secured pipes waiting for `accept()`; beyond it the oldest is closed. @default 1024 */
  maxAcceptQueue?: number;
}

/** Counters of a {@link SecureServer}. */
export interface SecureServerStats {
  /** Handshakes completed. */
  handshakes: number;
  /** Handshakes that failed (including timeouts). */
  failures: number;
  /** Connections reset because `maxPendingHandshakes` were running. */
  rejected: number;
  /** Secured pipes closed because nobody accepted them (`maxAcceptQueue`). */
  acceptOverflow: number;
}

/**
 * A listening TCP server whose connections are secured as the responder, several handshakes
 * running concurrently. Take the pipes with `onPipe` callbacks, `await accept()` or
 * `for await (const pipe of server)`.
 */
export class SecureServer implements AsyncDisposable {
  /** The TCP server (owned: `close()` closes it). */
  readonly server: TcpServer;
  /** Live secured pipes. */
  readonly connections = new Set<SecurePipe>();
  /** Counters. */
  readonly stats: SecureServerStats = { handshakes: 0, failures: 0, rejected: 0, acceptOverflow: 0 };
  /** True once closed. */
  closed = false;
  private readonly secureOpts: SecureOptions;
  private readonly maxPending: number;
  private readonly maxAcceptQueue: number;
  private pending = 0;
  private pipeCbs: ((p: SecurePipe) => void)[] = [];
  private errorCbs: ((e: Error, p: TcpPipe) => void)[] = [];
  private queue: SecurePipe[] = [];
  private waiters: { resolve: (p: SecurePipe) => void; reject: (e: unknown) => void }[] = [];
  private closing: Promise<void> | undefined;

  constructor(server: TcpServer, opts: SecureServerOptions) {
    if (!(server instanceof TcpServer)) throw new InvalidArgumentError('secureServer() needs a TcpServer');
    if (server.framing !== 'raw') throw new InvalidArgumentError(`secureServer() needs a TCP server with 'raw' framing, not '${server.framing}'`);
    if (!opts || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('opts.identity must be an Identity');
    for (const k of ['maxPendingHandshakes', 'maxAcceptQueue'] as const) {
      const v = opts[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
    }
    checkMax(opts.maxMessageSize);
    checkTimeout(opts.timeout);
    this.server = server;
    const { onPipe: _a, onHandshakeError: _b, maxPendingHandshakes: _c, maxAcceptQueue: _d, ...secOpts } = opts;
    this.secureOpts = { ...secOpts, initiator: false };
    this.maxPending = opts.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES;
    this.maxAcceptQueue = opts.maxAcceptQueue ?? DEFAULT_MAX_ACCEPT_QUEUE;
    if (opts.onPipe) this.onPipe(opts.onPipe);
    if (opts.onHandshakeError) this.onHandshakeError(opts.onHandshakeError);
    void this.acceptLoop();
  }

  /** The listening endpoint. */
  get local(): Endpoint {
    return this.server.local;
  }

  /** Handshakes in progress. */
  get pendingHandshakes(): number {
    return this.pending;
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let p: TcpPipe;
      try {
        p = await this.server.accept();
      } catch {
        return; // server closed
      }
      this.handle(p);
    }
  }

  private handle(p: TcpPipe): void {
    if (this.closed) {
      p.reset();
      return;
    }
    if (this.pending >= this.maxPending) {
      this.stats.rejected++;
      p.reset();
      return;
    }
    this.pending++;
    // The pipe is delivered before the bytes that came with the last handshake message are
    // decrypted, so callbacks registered in `onPipe` see every message.
    runSecure(p, this.secureOpts, (sp) => {
      this.pending--;
      this.stats.handshakes++;
      this.deliver(sp);
    }).then(
      undefined,
      (e: unknown) => {
        this.pending--;
        this.stats.failures++;
        const err = e instanceof Error ? e : new HandshakeError(String(e));
        for (const cb of this.errorCbs) {
          try {
            cb(err, p);
          } catch (x) {
            process.emitWarning(`p2pd: error in an onHandshakeError callback: ${String(x)}`, { code: 'P2PD_CALLBACK_ERROR' });
          }
        }
      },
    );
  }

  private deliver(sp: SecurePipe): void {
    if (this.closed) {
      void sp.close();
      return;
    }
    this.connections.add(sp);
    sp.onClose(() => this.connections.delete(sp));
    if (this.pipeCbs.length > 0) {
      for (const cb of this.pipeCbs) {
        try {
          cb(sp);
        } catch (e) {
          sp.reportError(e);
        }
      }
      return;
    }
    const w = this.waiters.shift();
    if (w) {
      w.resolve(sp);
      return;
    }
    this.queue.push(sp);
    if (this.queue.length > this.maxAcceptQueue) {
      this.stats.acceptOverflow++;
      void (this.queue.shift() as SecurePipe).close();
    }
  }

  /** Registers a callback for each secured pipe; returns a remover. */
  onPipe(cb: (pipe: SecurePipe) => void): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onPipe expects a function');
    this.pipeCbs = [...this.pipeCbs, cb];
    return () => {
      this.pipeCbs = this.pipeCbs.filter((c) => c !== cb);
    };
  }

  /** Registers a callback for failed incoming handshakes; returns a remover. */
  onHandshakeError(cb: (err: Error, pipe: TcpPipe) => void): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onHandshakeError expects a function');
    this.errorCbs = [...this.errorCbs, cb];
    return () => {
      this.errorCbs = this.errorCbs.filter((c) => c !== cb);
    };
  }

  /** Resolves with the next secured pipe (queued ones first); `PipeClosedError` once closed. */
  accept(opts?: AbortOptions): Promise<SecurePipe> {
    const p = this.queue.shift();
    if (p) return Promise.resolve(p);
    if (this.closed) return Promise.reject(new PipeClosedError('server is closed'));
    return cancellable<SecurePipe>(opts, 'accept', (resolve, reject) => {
      const w = { resolve, reject };
      this.waiters.push(w);
      return () => {
        this.waiters = this.waiters.filter((x) => x !== w);
      };
    });
  }

  /** Async iterator of secured pipes; ends when the server closes. */
  async *pipes(opts: AbortOptions = {}): AsyncGenerator<SecurePipe, void, undefined> {
    for (;;) {
      let p: SecurePipe;
      try {
        p = await this.accept({ signal: opts.signal });
      } catch (e) {
        if (e instanceof PipeClosedError) return;
        throw e;
      }
      yield p;
    }
  }

  /** `for await (const pipe of server)`. */
  [Symbol.asyncIterator](): AsyncGenerator<SecurePipe, void, undefined> {
    return this.pipes();
  }

  /** Stops listening, closes every secured pipe (with the secure close) and every connection still in its handshake. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(new PipeClosedError('server is closed'));
    const queued = this.queue;
    this.queue = [];
    this.closing = (async () => {
      const all = [...queued, ...this.connections].map((c) => c.close());
      await this.server.close();
      await Promise.all(all);
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Secures every connection of `server` (as the responder). The server is taken over: do not
 * call its `accept()` or register message callbacks on it; `close()` the returned
 * {@link SecureServer} to close it.
 */
export function secureServer(server: TcpServer, opts: SecureServerOptions): SecureServer {
  return new SecureServer(server, opts);
}

/** Options of {@link listenSecure}: TCP listening options plus {@link SecureServerOptions}. */
export interface ListenSecureOptions extends Omit<PipeOptions, 'framing' | 'onMessage' | 'maxMessageSize' | 'timeout' | 'bind'>, SecureServerOptions {}

/**
 * Listens on `bind` (e.g. `'127.0.0.1:0'`, `{ port: 4000 }`) and secures every connection.
 * @example
 * const server = await listenSecure('0.0.0.0:4000', { identity, onPipe: (p) => p.onMessage((m) => p.send(m.data)) });
 */
export async function listenSecure(bind: PipeOptions['bind'], opts: ListenSecureOptions): Promise<SecureServer> {
  if (!opts || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('opts.identity must be an Identity');
  const { identity, onPipe, onHandshakeError, onMessage, maxPendingHandshakes, maxAcceptQueue, maxMessageSize, prologue, extensions, timeout, maxQueue, maxQueueBytes, ...tcp } = opts;
  const server = await pipeOpen('tcp', undefined, { ...tcp, ...(bind !== undefined ? { bind } : {}), framing: 'raw' });
  try {
    return new SecureServer(server, {
      identity,
      ...(onPipe ? { onPipe } : {}),
      ...(onHandshakeError ? { onHandshakeError } : {}),
      ...(onMessage ? { onMessage } : {}),
      ...(maxPendingHandshakes !== undefined ? { maxPendingHandshakes } : {}),
      ...(maxAcceptQueue !== undefined ? { maxAcceptQueue } : {}),
      ...(maxMessageSize !== undefined ? { maxMessageSize } : {}),
      ...(prologue !== undefined ? { prologue } : {}),
      ...(extensions !== undefined ? { extensions } : {}),
      ...(timeout !== undefined ? { timeout } : {}),
      ...(maxQueue !== undefined ? { maxQueue } : {}),
      ...(maxQueueBytes !== undefined ? { maxQueueBytes } : {}),
    });
  } catch (e) {
    await server.close();
    throw e;
  }
}
