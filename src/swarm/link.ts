/**
 * Links: one authenticated connection to a neighbour, carrying whole frames. A link runs over a
 * {@link SecurePipe} (encrypted mode) or over a raw TCP pipe with u32 length framing
 * (plaintext mode, both ends opted in). Sending never blocks the swarm: a frame is dropped
 * (and counted) when the socket already buffers more than {@link MAX_LINK_BUFFER} bytes.
 * @module
 */
import { FrameError } from '../errors.js';
import type { SecurePipe } from '../crypto/secure-pipe.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import { encodeFrame, LengthDecoder } from '../pipes/framing.js';
import type { TcpPipe } from '../pipes/tcp.js';
import { SUB_ALL } from '../pipes/types.js';
import { MAX_FRAME_SIZE } from './constants.js';
import type { Member } from './member.js';

/**
 * Resets a pipe's TCP connection — unless a graceful close already began, then destroys it.
 * (On Node 20, `resetAndDestroy()` after `end()` fails inside libuv and leaks the handle: the
 * socket never emits 'close' and its server never finishes closing.)
 */
export function resetPipe(p: TcpPipe | SecurePipe): void {
  const tcp: TcpPipe = 'inner' in p ? p.inner : p;
  const s = tcp.socket;
  if (s.destroyed) return;
  if (s.writableEnded) s.destroy();
  else p.reset();
}

/** Bytes a link's socket may buffer before further frames are dropped. */
export const MAX_LINK_BUFFER = 16 * 1024 * 1024;
/** Frames kept while nobody handles them yet (during link setup). */
const MAX_EARLY_FRAMES = 1024;

/** Frame transport of a link. */
export class FrameIO {
  #handler: ((frame: Buffer) => void) | undefined;
  #first: ((frame: Buffer) => void) | undefined;
  #early: Buffer[] = [];
  #closeCbs: ((err?: Error) => void)[] = [];
  #closed = false;
  #closeErr: Error | undefined;
  /** Frames dropped because the socket buffer was full. */
  dropped = 0;

  private constructor(
    private readonly pipe: TcpPipe | SecurePipe,
    private readonly plain: boolean,
    private readonly socketOf: () => { writableLength: number; destroyed: boolean },
  ) {}

  /** The remote TCP endpoint. */
  get remote(): Endpoint {
    return this.pipe.remote;
  }

  /** The underlying pipe. */
  get raw(): TcpPipe | SecurePipe {
    return this.pipe;
  }

  /** True once the pipe closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Wraps a secure pipe. Call before `secure()` resolves: pass {@link FrameIO.push} as its
   * `onMessage` through `forSecure`.
   */
  static forSecure(): { io: (sp: SecurePipe) => FrameIO; onMessage: (m: { data: Buffer }) => void } {
    let target: FrameIO | undefined;
    const pending: Buffer[] = [];
    return {
      onMessage: (m) => {
        if (target) target.push(m.data);
        else if (pending.length < MAX_EARLY_FRAMES) pending.push(m.data);
      },
      io: (sp) => {
        const io = new FrameIO(sp, false, () => sp.inner.socket);
        for (const f of pending.splice(0)) io.push(f);
        target = io;
        sp.onClose((err) => io.onPipeClose(err));
        sp.onError(() => undefined);
        return io;
      },
    };
  }

  /**
   * Plaintext mode over a raw TCP pipe: takes the pipe over (drains and removes its `SUB_ALL`
   * subscription), feeding `rest` (bytes already read past the preamble) first.
   */
  static forPlain(pipe: TcpPipe, rest: Buffer, maxFrame = MAX_FRAME_SIZE): FrameIO {
    const io = new FrameIO(pipe, true, () => pipe.socket);
    const dec = new LengthDecoder(maxFrame);
    const emit = (f: Buffer): void => io.push(Buffer.from(f));
    const feed = (chunk: Buffer): void => {
      if (io.#closed) return;
      try {
        dec.push(chunk, emit);
      } catch (e) {
        io.#closeErr = e instanceof Error ? e : new FrameError(String(e));
        resetPipe(pipe);
      }
    };
    if (rest.length > 0) feed(rest);
    if (pipe.isSubscribed(SUB_ALL)) {
      for (let m = pipe.tryRecv(SUB_ALL); m; m = pipe.tryRecv(SUB_ALL)) feed(m.data);
      pipe.unsubscribe(SUB_ALL);
    }
    pipe.onMessage((m) => feed(m.data));
    pipe.onClose((err) => io.onPipeClose(io.#closeErr ?? err));
    pipe.onError(() => undefined);
    return io;
  }

  /** @internal A frame arrived. */
  push(frame: Buffer): void {
    if (this.#closed) return;
    if (this.#first) {
      const f = this.#first;
      this.#first = undefined;
      f(frame);
    } else if (this.#handler) this.#handler(frame);
    else if (this.#early.length < MAX_EARLY_FRAMES) this.#early.push(frame);
  }

  /** Hands the next frame (only that one) to `cb`; later frames stay buffered for {@link setHandler}. */
  onFirstFrame(cb: (frame: Buffer) => void): void {
    const f = this.#early.shift();
    if (f) cb(f);
    else this.#first = cb;
  }

  /** Sets the frame handler; frames that arrived before are delivered first, in order. */
  setHandler(h: (frame: Buffer) => void): void {
    this.#handler = h;
    const early = this.#early;
    this.#early = [];
    for (const f of early) {
      if (this.#closed) break;
      h(f);
    }
  }

  /** Sends one frame; `false` if it was dropped (closed, or the socket buffer is full). */
  send(frame: Buffer): boolean {
    if (this.#closed) return false;
    const s = this.socketOf();
    if (s.destroyed) return false;
    if (s.writableLength > MAX_LINK_BUFFER) {
      this.dropped++;
      return false;
    }
    let out = frame;
    if (this.plain) {
      const f = encodeFrame('length', frame, MAX_FRAME_SIZE);
      out = Array.isArray(f) ? Buffer.concat(f) : f;
    }
    const p = this.pipe.send(out);
    p.catch(() => undefined); // failures surface as the pipe's close
    return true;
  }

  /** Registers a close callback (runs once; immediately if already closed). */
  onClose(cb: (err?: Error) => void): void {
    if (this.#closed) queueMicrotask(() => cb(this.#closeErr));
    else this.#closeCbs.push(cb);
  }

  private onPipeClose(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeErr ??= err;
    this.#early = [];
    const cbs = this.#closeCbs;
    this.#closeCbs = [];
    for (const cb of cbs) {
      try {
        cb(this.#closeErr);
      } catch {
        /* a close callback must not break the others */
      }
    }
  }

  /** Graceful close. */
  close(): Promise<void> {
    return this.pipe.close();
  }

  /** Immediate reset. */
  reset(): void {
    resetPipe(this.pipe);
  }
}

/** An established link to a neighbour. */
export class Link {
  /** Malformed or invalid frames received on this link. */
  malformed = 0;
  /** Whether the remote's initial member snapshot was received. */
  snapshotDone = false;
  /** Set once the link is being replaced or closed on purpose. */
  retired = false;
  /** `performance.now()` of the last frame received. */
  lastRecv = performance.now();
  /** `performance.now()` of the last frame sent. */
  lastSent = performance.now();

  constructor(
    /** Frame transport. */
    readonly io: FrameIO,
    /** The neighbour (its announcement as it sent it in HELLO). */
    readonly member: Member,
    /** True if we dialed. */
    readonly initiator: boolean,
  ) {}

  /** Neighbour's node id. */
  get remoteId(): Buffer {
    return this.member.id;
  }

  /** Neighbour's node id in hex. */
  get remoteIdHex(): string {
    return this.member.idHex;
  }

  /** Sends a frame (see {@link FrameIO.send}). */
  send(frame: Buffer): boolean {
    this.lastSent = performance.now();
    return this.io.send(frame);
  }
}
