/**
 * The HELLO/SELECT exchange on the connections a TCP hole punch produces (wire format in
 * `tcp-punch-wire.ts`): each connection is verified by the peer's HELLO, the side with the
 * larger tie-breaker selects the first connection it verified, and the other side takes the
 * one a SELECT arrives on. Connections without a valid HELLO within
 * {@link TCP_PUNCH_HELLO_TIMEOUT} are closed. The winner leaves with its socket paused and
 * any bytes that followed the exchange pushed back into it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { decodeTcpPunch, encodeTcpPunch, TcpPunchKey, TCP_PUNCH_FRAME_SIZE, TCP_PUNCH_HELLO, TCP_PUNCH_SELECT, TCP_PUNCH_TIEBREAKER_SIZE } from './tcp-punch-wire.js';

/** How long a connection may take to send its HELLO (ms) before it is closed. */
export const TCP_PUNCH_HELLO_TIMEOUT = 2_000;

/** One connection in the exchange; `tag` is the caller's (which attempt it came from). */
export interface ExchangeConn<T> {
  readonly sock: Socket;
  readonly via: 'connect' | 'accept';
  readonly tag: T;
  /** The peer's tie-breaker once its HELLO was verified. */
  peerTb: Buffer | undefined;
  buf: Buffer;
  timer: NodeJS.Timeout | undefined;
  onData: (d: Buffer) => void;
  onClose: () => void;
}

/** What the exchange reports. */
export interface ExchangeEvents<T> {
  /** The connection both sides keep. Its socket is paused; the exchange no longer owns it. */
  win(c: ExchangeConn<T>, controlling: boolean): void;
  /** A connection left the exchange (closed by the peer, rejected, or destroyed by {@link TcpPunchExchange.close}). */
  gone(c: ExchangeConn<T>, rejected: boolean): void;
}

/** The exchange of one punch. */
export class TcpPunchExchange<T> {
  private readonly conns = new Set<ExchangeConn<T>>();
  private readonly tb = randomBytes(TCP_PUNCH_TIEBREAKER_SIZE);
  private closed = false;

  constructor(private readonly key: TcpPunchKey, private readonly events: ExchangeEvents<T>) {}

  /** Connections waiting for their HELLO. */
  get unverified(): number {
    let n = 0;
    for (const c of this.conns) if (!c.peerTb) n++;
    return n;
  }

  /** Whether some connection is verified (then no further connection is needed). */
  get verified(): boolean {
    for (const c of this.conns) if (c.peerTb) return true;
    return false;
  }

  /** Number of connections in the exchange. */
  get size(): number {
    return this.conns.size;
  }

  /** Takes a fresh connection: sends our HELLO and waits for the peer's. */
  add(sock: Socket, via: ExchangeConn<T>['via'], tag: T): ExchangeConn<T> | undefined {
    if (this.closed) {
      sock.destroy();
      return undefined;
    }
    sock.setNoDelay(true);
    const c: ExchangeConn<T> = {
      sock, via, tag, peerTb: undefined, buf: Buffer.alloc(0), timer: undefined,
      onData: (d) => this.onData(c, d),
      onClose: () => this.drop(c, false, false),
    };
    this.conns.add(c);
    c.timer = setTimeout(() => this.drop(c, true, true), TCP_PUNCH_HELLO_TIMEOUT);
    sock.on('data', c.onData);
    sock.on('error', () => undefined); // reported through 'close'
    sock.on('close', c.onClose);
    sock.write(encodeTcpPunch(this.key, TCP_PUNCH_HELLO, this.tb));
    return c;
  }

  /** Destroys every connection still in the exchange. Idempotent. */
  close(): void {
    this.closed = true;
    for (const c of [...this.conns]) this.drop(c, true, false);
  }

  private onData(c: ExchangeConn<T>, d: Buffer): void {
    c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
    while (this.conns.has(c) && c.buf.length >= TCP_PUNCH_FRAME_SIZE) {
      const f = decodeTcpPunch(this.key, c.buf.subarray(0, TCP_PUNCH_FRAME_SIZE));
      c.buf = c.buf.subarray(TCP_PUNCH_FRAME_SIZE);
      if (f.kind !== 'frame') return this.drop(c, true, true);
      const cmp = Buffer.compare(this.tb, f.tiebreaker);
      if (!c.peerTb) {
        // Not a HELLO, or our own (a socket connected to itself).
        if (f.type !== TCP_PUNCH_HELLO || cmp === 0) return this.drop(c, true, true);
        c.peerTb = f.tiebreaker;
        if (c.timer) clearTimeout(c.timer);
        c.timer = undefined;
        if (cmp > 0) {
          // Controlling: the first verified connection wins; the peer has it too (it sent the HELLO).
          c.sock.write(encodeTcpPunch(this.key, TCP_PUNCH_SELECT, this.tb));
          return this.win(c, true);
        }
        continue;
      }
      // Controlled: only a SELECT from the same peer may follow its HELLO.
      if (f.type !== TCP_PUNCH_SELECT || !f.tiebreaker.equals(c.peerTb) || cmp > 0) return this.drop(c, true, true);
      return this.win(c, false);
    }
  }

  private detach(c: ExchangeConn<T>): boolean {
    if (!this.conns.delete(c)) return false;
    if (c.timer) clearTimeout(c.timer);
    c.timer = undefined;
    c.sock.off('data', c.onData);
    c.sock.off('close', c.onClose);
    return true;
  }

  private drop(c: ExchangeConn<T>, destroy: boolean, rejected: boolean): void {
    if (!this.detach(c)) return;
    if (destroy) c.sock.destroy();
    this.events.gone(c, rejected);
  }

  private win(c: ExchangeConn<T>, controlling: boolean): void {
    this.detach(c);
    c.sock.pause();
    if (c.buf.length > 0) c.sock.unshift(c.buf);
    c.buf = Buffer.alloc(0);
    this.close();
    this.events.win(c, controlling);
  }
}
