/**
 * Link setup: preamble exchange (protocol identity), Noise XX handshake (encrypted mode),
 * then HELLO both ways (signed member announcement bound to this connection).
 *
 * ```
 * initiator                                responder
 *   preamble ─────────────────────────────▶  (checks protocol; answers even on mismatch)
 *            ◀───────────────────────────── preamble
 *   [Noise XX, prologue = transcript hash]   (encrypted mode only)
 *   HELLO ◀──────────────────────────────▶ HELLO
 * ```
 * A protocol mismatch rejects with {@link ProtocolMismatchError} on both ends; anything else
 * that goes wrong closes the TCP connection and rejects with the typed cause.
 * @module
 */
import { DecodeError, HandshakeError, P2pdError, PipeClosedError, ProtocolMismatchError, TimeoutError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { secure } from '../crypto/secure-pipe.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import { pipeOpen } from '../pipes/open.js';
import type { TcpPipe } from '../pipes/tcp.js';
import { whenAborted, throwIfAborted, type AbortOptions } from '../util/abort.js';
import { MAX_FRAME_SIZE } from './constants.js';
import { decodeHello, encodeHello } from './frames.js';
import { FrameIO, resetPipe } from './link.js';
import type { RawAnnouncement } from './member.js';
import {
  decodePreamble, describeProtocol, encodePreamble, nodeIdOf, preambleLength, sameProtocol, transcriptHash,
  type Preamble, type ResolvedProtocol,
} from './protocol.js';

/** What link setup needs from the node. */
export interface SetupContext {
  readonly identity: Identity;
  readonly protocol: ResolvedProtocol;
  /** Our current signed announcement. */
  announcement(): Buffer;
  /** Clock (ms). */
  now(): number;
}

/** A link that completed setup (not yet registered with the node). */
export interface SetupResult {
  readonly io: FrameIO;
  readonly hello: RawAnnouncement;
  readonly initiator: boolean;
}

/** Runs `fn` with one signal that aborts on `opts.signal` or after `opts.timeout` (TimeoutError). */
async function withDeadline<T>(opts: AbortOptions, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  throwIfAborted(opts.signal);
  const ac = new AbortController();
  const onAbort = (): void => ac.abort(opts.signal?.reason);
  const offUser = opts.signal ? whenAborted(opts.signal, onAbort) : undefined;
  const timer = opts.timeout && opts.timeout > 0 ? setTimeout(() => ac.abort(new TimeoutError(`${what} timed out after ${opts.timeout} ms`)), opts.timeout) : undefined;
  timer?.unref();
  try {
    return await fn(ac.signal);
  } catch (e) {
    if (ac.signal.aborted && ac.signal.reason instanceof TimeoutError) throw ac.signal.reason;
    throw e;
  } finally {
    if (timer) clearTimeout(timer);
    offUser?.();
  }
}

/** Reads the peer's preamble from a raw pipe's `SUB_ALL` queue; returns it and any bytes after it. */
async function readPreamble(pipe: TcpPipe, signal: AbortSignal): Promise<{ preamble: Preamble; rest: Buffer }> {
  let buf: Buffer = Buffer.alloc(0);
  let need = 4;
  for (;;) {
    while (buf.length < need) {
      let m;
      try {
        m = await pipe.recv({ signal });
      } catch (e) {
        if (e instanceof PipeClosedError) throw new ProtocolMismatchError('connection closed before the peer sent a swarm preamble', undefined, undefined, { cause: e });
        throw e;
      }
      buf = buf.length === 0 ? m.data : Buffer.concat([buf, m.data]);
    }
    if (need === 4) {
      try {
        need = preambleLength(buf);
      } catch (e) {
        throw new ProtocolMismatchError('the peer is not a p2pd swarm node (bad preamble)', undefined, undefined, { cause: e });
      }
      continue;
    }
    let preamble: Preamble;
    try {
      preamble = decodePreamble(buf.subarray(0, need));
    } catch (e) {
      throw new ProtocolMismatchError(`the peer is not a compatible p2pd swarm node: ${(e as Error).message}`, undefined, undefined, { cause: e });
    }
    return { preamble, rest: buf.subarray(need) };
  }
}

function mismatch(local: ResolvedProtocol, remote: Preamble['protocol']): ProtocolMismatchError {
  const l = { name: local.name, version: local.version, encrypted: local.encrypted };
  return new ProtocolMismatchError(`protocol mismatch: we speak ${describeProtocol(l)}, the peer ${describeProtocol(remote)}`, l, remote);
}

/** Reads the first frame (HELLO) from `io`. */
function firstFrame(io: FrameIO, signal: AbortSignal): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new HandshakeError('link setup aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    let got = false;
    io.onClose((err) => {
      if (!got) reject(new HandshakeError(`connection closed during link setup${err ? `: ${err.message}` : ''}`, err ? { cause: err } : undefined));
    });
    io.onFirstFrame((f) => {
      got = true;
      signal.removeEventListener('abort', onAbort);
      resolve(f);
    });
  });
}

/** Common part after the preambles: secure (if encrypted), HELLO exchange, checks. */
async function finish(ctx: SetupContext, pipe: TcpPipe, initiator: boolean, mine: Buffer, theirs: Preamble, rest: Buffer, signal: AbortSignal): Promise<SetupResult> {
  const transcript = initiator ? transcriptHash(mine, theirs.raw) : transcriptHash(theirs.raw, mine);
  let io: FrameIO;
  let remoteKey: Buffer | undefined;
  if (ctx.protocol.encrypted) {
    if (rest.length > 0) throw new DecodeError('unexpected bytes after the preamble');
    const f = FrameIO.forSecure();
    const sp = await secure(pipe, { identity: ctx.identity, initiator, prologue: transcript, maxMessageSize: MAX_FRAME_SIZE, signal, timeout: 0, onMessage: f.onMessage });
    io = f.io(sp);
    remoteKey = sp.remoteIdentityKey;
  } else {
    io = FrameIO.forPlain(pipe, rest);
  }
  try {
    io.send(encodeHello(ctx.identity, ctx.protocol.hash, transcript, initiator, ctx.announcement()));
    const frame = await firstFrame(io, signal);
    const { announcement } = decodeHello(frame, ctx.protocol.hash, transcript, initiator);
    if (remoteKey && !remoteKey.equals(announcement.publicKey)) throw new HandshakeError('HELLO key differs from the Noise-authenticated identity');
    if (nodeIdOf(announcement.publicKey).equals(ctx.identity.id)) throw new HandshakeError('connected to ourselves');
    return { io, hello: announcement, initiator };
  } catch (e) {
    io.reset();
    throw e;
  }
}

/** Dials `dest` and sets up a link as the initiator. */
export async function dialLink(ctx: SetupContext, dest: Endpoint, opts: AbortOptions): Promise<SetupResult> {
  return withDeadline(opts, `swarm link to ${dest.host}:${dest.port}`, async (signal) => {
    const pipe = await pipeOpen('tcp', dest, { framing: 'raw', signal });
    pipe.onError(() => undefined);
    try {
      const mine = encodePreamble(ctx.protocol);
      void pipe.send(mine).catch(() => undefined);
      const { preamble, rest } = await readPreamble(pipe, signal);
      if (!sameProtocol(ctx.protocol, preamble.protocol)) throw mismatch(ctx.protocol, preamble.protocol);
      return await finish(ctx, pipe, true, mine, preamble, rest, signal);
    } catch (e) {
      resetPipe(pipe);
      throw e instanceof P2pdError ? e : new HandshakeError(`link setup failed: ${(e as Error).message}`, { cause: e });
    }
  });
}

/** Sets up a link as the responder on an accepted raw TCP pipe. */
export async function acceptLink(ctx: SetupContext, pipe: TcpPipe, opts: AbortOptions): Promise<SetupResult> {
  pipe.onError(() => undefined);
  try {
    return await withDeadline(opts, 'incoming swarm link', async (signal) => {
      const { preamble, rest } = await readPreamble(pipe, signal);
      if (rest.length > 0) throw new DecodeError('unexpected bytes after the preamble');
      const mine = encodePreamble(ctx.protocol);
      void pipe.send(mine).catch(() => undefined);
      if (!sameProtocol(ctx.protocol, preamble.protocol)) {
        void pipe.close(); // graceful: our preamble reaches the peer, which reports the mismatch too
        throw mismatch(ctx.protocol, preamble.protocol);
      }
      return await finish(ctx, pipe, false, mine, preamble, rest, signal);
    });
  } catch (e) {
    if (!(e instanceof ProtocolMismatchError && e.remote)) resetPipe(pipe);
    throw e instanceof P2pdError ? e : new HandshakeError(`link setup failed: ${(e as Error).message}`, { cause: e });
  }
}
