/**
 * The listener of a TCP hole punch, on the port its `connect()` attempts use.
 *
 * On Linux, `SO_REUSEADDR` (which libuv sets on every explicit TCP bind) lets any number of
 * non-listening sockets share a port, and a listener may join them; but while a socket
 * listens on the port, no new socket can bind it (`EADDRINUSE`). So before each round of new
 * attempts the listener {@link PunchListener.stepAside steps aside}: it is closed (the fd at
 * once), the attempts bind, and it is reopened right after them in the same event-loop turn.
 * @module
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Family } from '../../interfaces/endpoint.js';

/** The listener of one punch. */
export class PunchListener {
  /** Times it started listening. */
  listens = 0;
  /** Listen failures (the port is held by someone else's listener). */
  errors = 0;
  private server: Server | undefined;
  private reopening = false;
  private immediate: NodeJS.Immediate | undefined;
  /** Reopen a loop turn later (a bind once lost the race against the reopened listener). */
  private late = false;
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly family: Family,
    private readonly onConnection: (s: Socket) => void,
  ) {}

  /** Whether it listens right now. */
  get listening(): boolean {
    return this.server?.listening === true;
  }

  /** Starts listening (no-op when it is already open or opening, or closed for good). */
  open(): void {
    if (this.closed || this.server) return;
    const server = createServer({ noDelay: true });
    this.server = server;
    server.on('connection', (s: Socket) => {
      if (this.server !== server) s.destroy();
      else this.onConnection(s);
    });
    server.on('error', () => {
      // The port is held by someone else's listener: the punch goes on without one.
      this.errors++;
      if (this.server === server) this.server = undefined;
      server.close();
    });
    server.once('listening', () => {
      // Closed before the (asynchronous) bind completed: do not keep it.
      if (this.server !== server) server.close();
      else this.listens++;
    });
    server.listen({ host: this.host, port: this.port, ipv6Only: this.family === 6 });
  }

  /**
   * Closes the listener so that sockets can bind the port, and reopens it after them. Call it
   * right before `connect()`ing the new sockets, in the same synchronous run.
   */
  stepAside(): void {
    this.shut();
    if (this.closed || this.reopening) return;
    this.reopening = true;
    const reopen = (): void => {
      this.reopening = false;
      this.immediate = undefined;
      this.open();
    };
    // net.Socket#connect to an IP literal binds in a process.nextTick it queues: one queued
    // after it runs after the bind, so the port is free of a listener for microseconds only.
    if (this.late) this.immediate = setImmediate(reopen);
    else process.nextTick(reopen);
  }

  /**
   * A bind of the port failed with `EADDRINUSE`: true if our listener may have been the cause
   * (it then reopens a loop turn later from now on), false if the port is held elsewhere.
   */
  bindLost(): boolean {
    if (this.late || !this.listening) return false;
    this.late = true;
    return true;
  }

  /** Closes it for good. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    this.shut();
  }

  private shut(): void {
    const s = this.server;
    this.server = undefined;
    if (s?.listening) s.close(); // releases the port at once (the fd is closed synchronously)
  }
}
