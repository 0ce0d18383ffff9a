/**
 * `TcpServer`: a listening TCP pipe. Each accepted connection is its own `TcpPipe`; the
 * server's callbacks and subscriptions also see every client's messages (`msg.pipe` is the client).
 * @module
 */
import type { Server, Socket } from 'node:net';
import { InvalidArgumentError, PipeClosedError } from '../errors.js';
import { formatEndpoint, sameEndpoint, toEndpoint, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { isUnspecified } from '../interfaces/scope.js';
import { closeWithin, type AbortOptions } from '../util/abort.js';
import { AcceptQueue } from './accept-queue.js';
import { handled, Pipe, type SendData } from './pipe.js';
import { TcpPipe } from './tcp.js';
import { DEFAULT_MAX_SERVER_CONNECTIONS, type Framing, type Message, type MessageCallback, type QueueLimits } from './types.js';

/** Options for a TCP server pipe. */
export interface TcpServerInit extends QueueLimits {
  /** Framing of accepted pipes. */
  framing: Framing;
  /** Max message size of accepted pipes. */
  maxMessageSize: number;
  /** Disable Nagle on accepted sockets. */
  noDelay: boolean;
  /** Initial server-level callback. */
  onMessage?: MessageCallback | undefined;
  /** Flush timeout of accepted pipes' `close()` (ms). */
  flushTimeout?: number | undefined;
  /** Max pipes waiting for `accept()`. */
  maxAcceptQueue?: number | undefined;
  maxConnections?: number | undefined;
}

/** Callback for each accepted connection. */
export type ConnectionCallback = (pipe: TcpPipe) => void;

/** A listening TCP socket as a Pipe. */
export class TcpServer extends Pipe {
  readonly proto = 'tcp' as const;
  readonly isServer = true;
  readonly dropOldest = false;
  readonly remote = undefined;
  readonly framing: Framing;
  readonly local: Endpoint;
  /** `local` is one address, not a wildcard: accepted sockets report it as their local end. */
  private readonly specificLocal: boolean;
  /** Live accepted connections. */
  readonly connections = new Set<TcpPipe>();
  /** The underlying `net.Server`. */
  readonly server: Server;
  private readonly init: TcpServerInit;
  /**
   * Accepted pipes awaiting `accept()`. One dropped beyond the limit keeps working if callbacks
   * took it on arrival (they still see it); one that nothing took is reset, since no one could
   * ever reach it (nor time it out), and a flood would otherwise keep it open indefinitely.
   */
  private readonly acceptQueue: AcceptQueue<TcpPipe>;
  /**
   * Accepted pipes that callbacks took when they arrived (`onConnection` callbacks, or server
   * message callbacks / subscriptions that see their messages): one that closes before
   * `accept()` took it leaves the accept queue, so a server used in callback mode (a `Daemon`,
   * the STUN server, a DHT transport) does not keep up to `maxAcceptQueue` closed connections.
   */
  private readonly claimed = new WeakSet<TcpPipe>();
  private connCbs: ConnectionCallback[] = [];
  /** Server queues over their limits; while > 0 every connection is paused. */
  private paused = 0;
  private closing: Promise<void> | undefined;
  /** Connections dropped from the accept queue because nobody called `accept()` (reset unless callbacks took them). */
  acceptOverflow = 0;
  /** Connections closed on arrival because `maxConnections` were already open. */
  refusedConnections = 0;

  constructor(server: Server, local: Endpoint, init: TcpServerInit) {
    super(init);
    this.server = server;
    this.local = local;
    // Bound to one address (not a wildcard, no zone): every accepted socket's local end is it.
    this.specificLocal = local.scopeId === undefined && !isUnspecified(local.host) && !local.host.startsWith('::ffff:');
    this.framing = init.framing;
    this.init = init;
    this.acceptQueue = new AcceptQueue<TcpPipe>({
      ...(init.maxAcceptQueue !== undefined ? { limit: init.maxAcceptQueue } : {}),
      onDrop: (p) => {
        this.acceptOverflow++;
        if (!this.claimed.has(p)) p.reset();
      },
    });
    if (init.onMessage) this.onMessage(init.onMessage);
    server.on('connection', (s: Socket) => this.handleSocket(s));
    server.on('error', (e) => this.reportError(e));
  }

  private handleSocket(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= (this.init.maxConnections ?? DEFAULT_MAX_SERVER_CONNECTIONS)) {
      this.refusedConnections++;
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const serverConsumes = this.callbacks.length > 0 || this.queues.length > 0;
    const pipe = new TcpPipe(socket, {
      framing: this.framing,
      maxMessageSize: this.init.maxMessageSize,
      maxQueue: this.init.maxQueue,
      maxQueueBytes: this.init.maxQueueBytes,
      copyPayloads: this.init.copyPayloads,
      defaultSub: !serverConsumes,
      flushTimeout: this.init.flushTimeout,
      holdBurstTails: this.init.noDelay,
      deferNoDelay: this.init.noDelay,
      parent: this,
      knownLocal: this.specificLocal ? { host: this.local.host, port: this.local.port, family: this.local.family } : undefined,
    });
    this.connections.add(pipe);
    if (serverConsumes || this.connCbs.length > 0) this.claimed.add(pipe);
    if (this.paused) pipe.pauseReading();
    for (const cb of this.connCbs) {
      try {
        cb(pipe);
      } catch (e) {
        this.reportError(e);
      }
    }
    this.acceptQueue.push(pipe);
  }

  /** Registers a callback for each new connection; returns a remover. */
  onConnection(cb: ConnectionCallback): () => void {
    if (typeof cb !== 'function') throw new InvalidArgumentError('onConnection expects a function');
    this.connCbs.push(cb);
    return () => {
      this.connCbs = this.connCbs.filter((c) => c !== cb);
    };
  }

  /**
   * Resolves with the next accepted connection (queued ones first); `PipeClosedError` once
   * closed. A connection that callbacks took on arrival (`onConnection`, server message
   * callbacks or subscriptions) and that closed while still queued is not returned.
   */
  accept(opts?: AbortOptions): Promise<TcpPipe> {
    return this.acceptQueue.take(opts);
  }

  /** Async iterator of accepted connections; ends when the server closes. `timeout` bounds the wait for each next one. */
  clients(opts: AbortOptions = {}): AsyncGenerator<TcpPipe, void, undefined> {
    return this.acceptQueue.items(opts);
  }

  /** Sends to the connected client whose remote endpoint is `dest`. */
  send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void> {
    try {
      if (dest === undefined) throw new InvalidArgumentError('a TCP server needs dest (the client endpoint) to send');
      const ep = toEndpoint(dest);
      for (const c of this.connections) if (sameEndpoint(c.remote, ep)) return c.send(data, undefined, opts);
      throw new PipeClosedError(`no connection from ${formatEndpoint(ep)}`);
    } catch (e) {
      return handled(Promise.reject(e));
    }
  }

  /** @internal A client's message, offered to the server's callbacks and subscriptions. */
  deliverShared(m: Message): boolean {
    if (this.callbacks.length === 0 && this.queues.length === 0) return false;
    this.delivering = m.pipe as TcpPipe;
    try {
      return this.dispatch(m);
    } finally {
      this.delivering = undefined;
    }
  }
  private delivering: TcpPipe | undefined;

  /** Async server callbacks count against the in-flight limit of the client pipe whose message they handle. */
  protected override trackAsync(p: Promise<void>): void {
    if (this.delivering) this.delivering.trackShared(p, this);
    else super.trackAsync(p);
  }

  /** @internal */
  pipeClosed(p: TcpPipe): void {
    this.connections.delete(p);
    if (this.claimed.has(p)) this.acceptQueue.remove(p);
  }

  override queueFull(): void {
    if (this.paused++ > 0) return;
    for (const c of this.connections) c.pauseReading();
  }

  override queueDrained(): void {
    if (this.paused === 0 || --this.paused > 0) return;
    for (const c of this.connections) c.resumeReading();
  }

  /**
   * Stops listening and closes every accepted connection (each as `TcpPipe.close`). With
   * `opts`, a signal that aborts or a timeout that passes first resets the connections still
   * open and rejects with `AbortError` / `TimeoutError` once everything is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.closeGracefully(), opts, () => {
      for (const c of this.connections) c.reset();
    }, 'TCP server close');
  }

  private closeGracefully(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.acceptQueue.close();
    this.acceptQueue.clear(); // they are in `connections`, closed below: accept() must not hand them out
    this.closing = (async () => {
      const listening = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.all([...this.connections].map((c) => c.close()));
      await listening;
      this.finish();
    })();
    return this.closing;
  }
}
