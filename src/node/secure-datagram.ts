/**
 * A secure pipe over a datagram path (a punched UDP socket or a TURN relay): the reliable
 * stream of `src/node/punch/` runs over the datagram pipe, then the secure handshake of the
 * crypto layer runs over the stream (the same wire format as over TCP).
 * @module
 */
import { ConnectError } from '../errors.js';
import { secure, type SecurePipe } from '../crypto/secure-pipe.js';
import type { Endpoint } from '../interfaces/endpoint.js';
import type { Pipe } from '../pipes/pipe.js';
import { TcpPipe } from '../pipes/tcp.js';
import type { PeerAddress } from './address.js';
import { KEEPALIVE_MS, type NodeContext } from './context.js';
import { encodeHello, type Hello } from './hello.js';
import type { PunchModule } from './punch-api.js';

/** Options of {@link secureDatagram}. */
export interface SecureDatagramOptions {
  /** True on the side that starts the stream and the handshake. */
  initiator: boolean;
  /** The peer (its id pins the handshake). */
  peer: PeerAddress;
  /** Our hello (initiator only). */
  hello?: Hello;
  /** Cancels the stream set-up and the handshake. */
  signal: AbortSignal;
  /** Round-trip estimate from the punch (ms), to start the stream's retransmission timer. */
  rtt?: number;
}

/**
 * Runs a reliable stream over `dgram` to `remote`, then the secure handshake over it. The
 * returned pipe owns the stream and the datagram pipe: closing it closes both.
 * @throws HandshakeError / PeerIdMismatchError / TimeoutError / AbortError; the stream is closed then.
 */
export async function secureDatagram(ctx: NodeContext, mod: PunchModule, dgram: Pipe, remote: Endpoint, o: SecureDatagramOptions): Promise<SecurePipe> {
  const stream = await mod.openReliable(dgram, remote, {
    initiator: o.initiator,
    signal: o.signal,
    timeout: ctx.timeouts.handshake,
    keepAlive: ctx.opts.keepAlive ?? KEEPALIVE_MS,
    ...(o.rtt !== undefined ? { rtt: Math.max(1, Math.round(o.rtt)) } : {}),
  });
  if (!(stream instanceof TcpPipe)) {
    await (stream as Pipe).close();
    throw new ConnectError('the reliable stream is not a TcpPipe: secure() cannot run over it');
  }
  const sp = await secureStream(ctx, stream, o);
  // The datagram pipe goes when the stream has finished its own close (FIN exchange).
  stream.onClose(() => void dgram.close());
  sp.onClose(() => {
    if (!stream.closed) void stream.close();
  });
  return sp;
}

/**
 * The secure handshake straight over a TCP pipe (a punched TCP connection). The returned pipe
 * owns it.
 * @throws HandshakeError / PeerIdMismatchError / TimeoutError / AbortError; the TCP pipe is closed then.
 */
export async function secureStream(ctx: NodeContext, stream: TcpPipe, o: Omit<SecureDatagramOptions, 'rtt'>): Promise<SecurePipe> {
  try {
    return await secure(stream, {
      identity: ctx.identity,
      initiator: o.initiator,
      remoteId: o.peer.id,
      signal: o.signal,
      timeout: ctx.timeouts.handshake,
      onMessage: ctx.dispatch,
      ...(o.hello ? { extensions: encodeHello(o.hello) } : {}),
    });
  } catch (e) {
    await stream.close();
    throw e;
  }
}
