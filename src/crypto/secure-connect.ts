/**
 * The secure handshake runner: `secure(tcpPipe, opts)` runs the p2pd Noise XX handshake
 * (`handshake.ts`) over a raw TCP pipe and turns it into a {@link SecurePipe};
 * `connectSecure(dest, opts)` connects first. `SecureServer` (`secure-server.ts`) runs it for
 * every accepted connection.
 *
 * The runner is callback-driven (no promise per message): handshake frames are parsed as bytes
 * arrive, our answer is written from the same `'data'` callback, the initiator's last message
 * leaves corked together with whatever the caller sends (or its close) in the same turn, and
 * transport bytes that came with the last handshake message go straight to the new pipe.
 * Work that does not need the peer's answer is done while waiting for it: ephemeral keys come
 * pre-generated (`ephemeral.ts`), and after sending message 1 a pinned initiator precomputes
 * its DH with the static key the peer used last time (`SecureHandshake.prepare`).
 * @module
 */
import type { Socket } from 'node:net';
import { FrameError, HandshakeError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../errors.js';
import { formatEndpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { badSignal, cancellable, throwIfAborted, toAbortError, type AbortOptions } from '../util/abort.js';
import { connectTcpWith } from '../pipes/open.js';
import { handled } from '../pipes/pipe.js';
import { TcpPipe } from '../pipes/tcp.js';
import { SUB_ALL, type Message, type MessageCallback, type PipeOptions, type QueueLimits } from '../pipes/types.js';
import { SecureHandshake } from './handshake.js';
import { Identity, parseNodeId } from './identity.js';
import { MAX_PAYLOAD_EXTENSIONS } from './handshake-payload.js';
import { SecurePipe } from './secure-pipe-core.js';
import { decodeHandshakeFrame, encodeHandshakeFrame, FRAME_HEADER_SIZE, FrameDecoder, MAX_SECURE_MESSAGE } from './frames.js';
import { SecureChannel } from './secure-channel.js';
import { holdEphemeralRefill, releaseEphemeralRefill } from './ephemeral.js';
import { noteStaticKey, staticKeyHint } from './static-key-hints.js';

/** Default bound of the whole handshake (ms). */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

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

// ------------------------------------------------------------------------------ secure() --

function uncork(sock: Socket): void {
  sock.uncork();
}

function isAccepted(pipe: TcpPipe): boolean {
  const s = pipe.socket as Socket & { server?: unknown; _server?: unknown };
  return (s.server ?? s._server) != null;
}

/** @internal Validates `maxMessageSize`; returns it or the default. */
export function checkMax(v: number | undefined): number {
  if (v === undefined) return MAX_SECURE_MESSAGE;
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError('maxMessageSize must be a non-negative integer');
  return v;
}

/** @internal Validates a handshake `timeout`; returns it or the default. */
export function checkTimeout(v: number | undefined): number {
  if (v === undefined) return DEFAULT_HANDSHAKE_TIMEOUT;
  if (typeof v !== 'number' || !(v >= 0)) throw new InvalidArgumentError('timeout must be a non-negative number of milliseconds');
  return v;
}

/**
 * @internal Checks the options of a handshake that do not depend on the pipe, so that a bad
 * one rejects before a connection is made (`connectSecure`), a socket is bound (`listenSecure`)
 * or a server takes connections it could never secure (`SecureServer`).
 * @throws {@link InvalidArgumentError}
 */
export function checkSecureOptions(opts: Omit<SecureOptions, 'signal' | 'initiator'> & { signal?: unknown; initiator?: unknown }): void {
  if (!opts || typeof opts !== 'object' || !(opts.identity instanceof Identity)) throw new InvalidArgumentError('opts.identity must be an Identity');
  if (opts.initiator !== undefined && typeof opts.initiator !== 'boolean') throw new InvalidArgumentError('initiator must be a boolean');
  if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw new InvalidArgumentError('onMessage must be a function');
  for (const k of ['maxQueue', 'maxQueueBytes'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
  }
  if (opts.copyPayloads !== undefined && typeof opts.copyPayloads !== 'boolean') throw new InvalidArgumentError('copyPayloads must be a boolean');
  if (opts.remoteId !== undefined) parseNodeId(opts.remoteId);
  if (opts.prologue !== undefined && !(opts.prologue instanceof Uint8Array)) throw new InvalidArgumentError('prologue must be a Uint8Array');
  if (opts.extensions !== undefined && (!(opts.extensions instanceof Uint8Array) || opts.extensions.length > MAX_PAYLOAD_EXTENSIONS)) {
    throw new InvalidArgumentError(`extensions must be a Uint8Array of at most ${MAX_PAYLOAD_EXTENSIONS} bytes`);
  }
  checkMax(opts.maxMessageSize);
  checkTimeout(opts.timeout);
  const bad = badSignal(opts.signal);
  if (bad) throw bad;
}

function newHandshake(opts: SecureOptions, initiator: boolean): SecureHandshake {
  return new SecureHandshake({
    identity: opts.identity,
    initiator,
    ...(opts.remoteId !== undefined ? { remoteId: opts.remoteId } : {}),
    ...(opts.prologue !== undefined ? { prologue: opts.prologue } : {}),
    ...(opts.extensions !== undefined ? { extensions: opts.extensions } : {}),
  });
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
 * `opts.onMessage` when given. A `SecureServer` hands pipes to `onPipe` before that.
 *
 * Rejects with `HandshakeError` (malformed or unauthenticated handshake, the connection
 * closed during it), `PeerIdMismatchError` (`remoteId` pin), `TimeoutError`, `AbortError`;
 * the TCP connection is then reset. Argument errors (`InvalidArgumentError`, a closed pipe:
 * `PipeClosedError`) reject without touching the pipe.
 */
export function secure(pipe: TcpPipe, opts: SecureOptions): Promise<SecurePipe> {
  return runSecure(pipe, opts, undefined);
}

/**
 * @internal {@link secure}, with `onReady` called with the new pipe before any message is
 * dispatched on it. `started`: an initiator's handshake whose message 1 (`sent` bytes on the
 * wire) already went out with the connection (see {@link connectSecure}).
 */
export function runSecure(
  pipe: TcpPipe,
  opts: SecureOptions,
  onReady: ((p: SecurePipe) => void) | undefined,
  started?: { hs: SecureHandshake; sent: number; onSent?: () => void },
): Promise<SecurePipe> {
  let hs: SecureHandshake;
  let initiator: boolean;
  let maxMessageSize: number;
  let timeout: number;
  try {
    if (!(pipe instanceof TcpPipe)) throw new InvalidArgumentError('secure() needs a connected TCP pipe (a TcpPipe)');
    if (pipe.framing !== 'raw') throw new InvalidArgumentError(`secure() needs a TCP pipe with 'raw' framing, not '${pipe.framing}'`);
    // A bad signal too: cancellable() would reject it only after the pipe was taken over.
    checkSecureOptions(opts);
    maxMessageSize = checkMax(opts.maxMessageSize);
    timeout = checkTimeout(opts.timeout);
    initiator = started !== undefined ? true : (opts.initiator ?? !isAccepted(pipe));
    hs = started?.hs ?? newHandshake(opts, initiator);
    if (pipe.closed || pipe.socket.destroyed) throw new PipeClosedError('the TCP pipe is closed');
  } catch (e) {
    return handled(Promise.reject(e));
  }
  const inner = pipe;
  if (opts.signal?.aborted) {
    inner.reset();
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
  inner.ensureNoDelay(); // this pipe writes to the socket itself from now on
  if (started !== undefined) inner.stats.bytesOut += started.sent;
  // The responder's guess of the initiator's static key (see static-key-hints.ts).
  const host = initiator ? undefined : inner.remote?.host;
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
    if (!initiator) noteStaticKey(host, peer.remoteStaticKey, hs.speculation);
    const channel = new SecureChannel({ send: peer.send, recv: peer.recv }, { maxMessageSize });
    const p = new SecurePipe({ inner, channel, peer, initiator, onMessage: opts.onMessage, maxQueue: opts.maxQueue, maxQueueBytes: opts.maxQueueBytes, copyPayloads: opts.copyPayloads });
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
        if (hs.isMyTurn) {
          write(hs.writeMessage());
          hs.prepare(staticKeyHint(host)); // work ahead while the peer answers (never throws)
        } else {
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
    if (started !== undefined) {
      // Message 1 left with the connection: now the wait for message 2 begins.
      hs.prepare();
      started.onSent?.();
    }
    step(); // the initiator writes message 1; bytes already received are processed
    return () => {
      if (state === 'done') return;
      state = 'failed';
      // Reset, not a graceful close: nothing of a failed handshake is worth delivering, and a
      // peer that stopped answering would hold the socket open for the close's flush timeout.
      inner.reset();
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
  // Every secure option is checked before the connection is made (the TCP ones by pipeOpen, before its socket).
  checkSecureOptions(opts);
  throwIfAborted(opts.signal);
  const timeout = checkTimeout(opts.timeout);
  const t0 = performance.now();
  const { identity, remoteId, initiator, maxMessageSize, prologue, extensions, onMessage, maxQueue, maxQueueBytes, copyPayloads, ...tcp } = opts;
  // The initiator's message 1 depends on nothing from the peer: it leaves with the connection.
  // The key pool's refill waits until it is out (see holdEphemeralRefill).
  let started: { hs: SecureHandshake; sent: number; onSent: () => void } | undefined;
  let early: Buffer | undefined;
  let pipe: TcpPipe;
  let held = false;
  const release = (): void => {
    if (held) (held = false), releaseEphemeralRefill();
  };
  try {
    if (initiator ?? true) {
      holdEphemeralRefill();
      held = true;
      const hs = newHandshake(opts, true);
      early = encodeHandshakeFrame(hs.writeMessage());
      started = { hs, sent: early.length, onSent: release };
    }
    pipe = await connectTcpWith(dest, { ...tcp, framing: 'raw', timeout }, early);
  } catch (e) {
    release();
    throw e;
  }
  const left = timeout === 0 ? 0 : Math.max(1, Math.ceil(timeout - (performance.now() - t0)));
  const secOpts: SecureOptions = {
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
    ...(copyPayloads !== undefined ? { copyPayloads } : {}),
  };
  const run = runSecure(pipe, secOpts, undefined, started);
  release(); // normally done already, once message 1 was out
  // Argument errors reject without touching the pipe: it is ours here, so close it.
  run.catch(() => (pipe.closed ? undefined : pipe.close())).catch(() => undefined);
  // The handshake ran on what the connect left of `timeout`: say the caller's figure.
  return run.catch((e: unknown) => {
    throw e instanceof TimeoutError && timeout > 0
      ? new TimeoutError(`secure connect to ${pipe.remote ? formatEndpoint(pipe.remote) : 'the peer'} timed out after ${timeout} ms (in the handshake)`, { cause: e })
      : e;
  });
}
