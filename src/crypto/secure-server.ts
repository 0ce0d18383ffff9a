/**
 * `SecureServer`: a listening TCP server whose every connection is secured as the responder
 * (`runSecure` of `secure-connect.ts`), several handshakes running at once (bounded), the
 * secured pipes handed to `onPipe` callbacks or queued for `accept()` / `for await`
 * (an `AcceptQueue`). `listenSecure()` opens the TCP server too.
 * @module
 */
import { AbortError, HandshakeError, InvalidArgumentError } from '../errors.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import { closeWithin, forceSignal, type AbortOptions } from '../util/abort.js';
import { AcceptQueue } from '../pipes/accept-queue.js';
import { pipeOpen } from '../pipes/open.js';
import { SourceShare, sourceOf } from '../pipes/source-share.js';
import type { TcpPipe } from '../pipes/tcp.js';
import { TcpServer } from '../pipes/tcp-server.js';
import { DEFAULT_MAX_ACCEPT_QUEUE, type PipeOptions } from '../pipes/types.js';
import { checkSecureOptions, runSecure, type SecureOptions } from './secure-connect.js';
import type { SecurePipe } from './secure-pipe-core.js';

/** Default number of handshakes a {@link SecureServer} runs at once; further connections are reset. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 256;

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
  /**
   * Handshakes in progress at once. Beyond it a connection is reset, unless its source (IPv4
   * address, IPv6 /64) holds at least two slots fewer than the source holding the most: then
   * that source's oldest handshake is reset instead, so one source cannot lock others out.
   * @default DEFAULT_MAX_PENDING_HANDSHAKES (256)
   */
  maxPendingHandshakes?: number;
  /** Secured pipes waiting for `accept()`; beyond it the oldest is closed. @default 1024 */
  maxAcceptQueue?: number;
}

/** Checks a {@link SecureServer}'s options: every handshake would otherwise fail on a bad one. */
function checkServerOptions(opts: SecureServerOptions): void {
  checkSecureOptions(opts);
  for (const k of ['maxPendingHandshakes', 'maxAcceptQueue'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
  }
  for (const k of ['onPipe', 'onHandshakeError'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'function') throw new InvalidArgumentError(`${k} must be a function`);
  }
}

/** Counters of a {@link SecureServer}. */
export interface SecureServerStats {
  /** Handshakes completed. */
  handshakes: number;
  /** Handshakes that failed (including timeouts). */
  failures: number;
  /** Connections reset because `maxPendingHandshakes` were running. */
  rejected: number;
  /** Handshakes reset to make room for a connection from a source holding fewer slots (also counted in `failures`). */
  evicted: number;
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
  /** The pipes the close is closing (queued ones included), for a forced close. */
  private closingPipes: SecurePipe[] = [];
  /** Counters. */
  readonly stats: SecureServerStats = { handshakes: 0, failures: 0, rejected: 0, evicted: 0, acceptOverflow: 0 };
  /** True once closed. */
  closed = false;
  private readonly secureOpts: SecureOptions;
  private readonly maxPending: number;
  /** Handshakes in progress, by source (see `source-share.ts`). */
  private readonly inflight = new SourceShare<TcpPipe>();
  private pipeCbs: ((p: SecurePipe) => void)[] = [];
  private errorCbs: ((e: Error, p: TcpPipe) => void)[] = [];
  private readonly queue: AcceptQueue<SecurePipe>;
  private closing: Promise<void> | undefined;

  constructor(server: TcpServer, opts: SecureServerOptions) {
    if (!(server instanceof TcpServer)) throw new InvalidArgumentError('secureServer() needs a TcpServer');
    if (server.framing !== 'raw') throw new InvalidArgumentError(`secureServer() needs a TCP server with 'raw' framing, not '${server.framing}'`);
    checkServerOptions(opts);
    this.server = server;
    const { onPipe: _a, onHandshakeError: _b, maxPendingHandshakes: _c, maxAcceptQueue: _d, ...secOpts } = opts;
    this.secureOpts = { ...secOpts, initiator: false };
    this.maxPending = opts.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES;
    this.queue = new AcceptQueue<SecurePipe>({
      limit: opts.maxAcceptQueue ?? DEFAULT_MAX_ACCEPT_QUEUE,
      onDrop: (sp) => {
        this.stats.acceptOverflow++;
        void sp.close();
      },
    });
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
    return this.inflight.size;
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
    const source = sourceOf(p.remote?.host);
    if (this.inflight.size >= this.maxPending) {
      const victim = this.inflight.victimFor(source);
      if (victim === undefined) {
        this.stats.rejected++;
        p.reset();
        return;
      }
      this.stats.evicted++;
      victim.reset(); // its handshake fails (connection closed) and is counted in `failures`
    }
    this.inflight.add(source, p);
    const release = (): boolean => this.inflight.delete(source, p); // false once evicted
    // The pipe is delivered before the bytes that came with the last handshake message are
    // decrypted, so callbacks registered in `onPipe` see every message.
    runSecure(p, this.secureOpts, (sp) => {
      release();
      this.stats.handshakes++;
      this.deliver(sp);
    }).then(
      undefined,
      (e: unknown) => {
        release();
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
    this.queue.push(sp);
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
    return this.queue.take(opts);
  }

  /** Async iterator of secured pipes; ends when the server closes. */
  pipes(opts: AbortOptions = {}): AsyncGenerator<SecurePipe, void, undefined> {
    return this.queue.items(opts);
  }

  /** `for await (const pipe of server)`. */
  [Symbol.asyncIterator](): AsyncGenerator<SecurePipe, void, undefined> {
    return this.pipes();
  }

  /**
   * Stops listening, closes every secured pipe (with the secure close) and every connection
   * still in its handshake. With `opts`, a signal that aborts or a timeout that passes first
   * resets what is still open and rejects with `AbortError` / `TimeoutError` once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.closeGracefully(), opts, () => {
      const now = forceSignal(new AbortError('secure server closed'));
      for (const c of [...this.closingPipes, ...this.connections]) c.close({ signal: now }).catch(() => undefined);
      this.server.close({ signal: now }).catch(() => undefined);
    }, 'secure server close');
  }

  private closeGracefully(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.queue.close();
    const queued = this.queue.clear();
    this.closing = (async () => {
      this.closingPipes = [...queued, ...this.connections];
      const all = this.closingPipes.map((c) => c.close());
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
  // The secure options are checked before the socket is bound (the TCP ones by pipeOpen).
  checkServerOptions(opts);
  const { identity, onPipe, onHandshakeError, onMessage, maxPendingHandshakes, maxAcceptQueue, maxMessageSize, prologue, extensions, timeout, maxQueue, maxQueueBytes, copyPayloads, ...tcp } = opts;
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
      ...(copyPayloads !== undefined ? { copyPayloads } : {}),
    });
  } catch (e) {
    await server.close();
    throw e;
  }
}
