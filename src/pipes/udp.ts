/**
 * `UdpPipe`: one UDP socket as a Pipe. A client has a default destination (`remote`); a
 * server replies to `msg.from`. Full subscription queues drop their oldest message.
 * @module
 */
import type { RemoteInfo, Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { EndpointError, InvalidArgumentError, MessageTooBigError, P2pdError, PipeClosedError, UnreachableError } from '../errors.js';
import { endpointFromNode, formatEndpoint, nodeHost, type Endpoint, type EndpointLike } from '../interfaces/endpoint.js';
import { toAbortError, type AbortOptions } from '../util/abort.js';
import { boundSend, destEndpoint, handled, Pipe, type SendData } from './pipe.js';
import { toBuffer } from './tcp.js';
import { MAX_UDP_PAYLOAD, SUB_ALL, type MessageCallback, type QueueLimits } from './types.js';

/** Options for wrapping a bound UDP socket. */
export interface UdpPipeInit extends QueueLimits {
  /** Default destination (clients). */
  remote?: Endpoint | undefined;
  /** Initial callback; when set no default subscription is made. */
  onMessage?: MessageCallback | undefined;
}

/** A UDP socket as a Pipe. */
export class UdpPipe extends Pipe {
  readonly proto = 'udp' as const;
  readonly framing = 'raw' as const;
  readonly dropOldest = true;
  readonly isServer: boolean;
  readonly local: Endpoint;
  readonly remote: Endpoint | undefined;
  /** The underlying dgram socket. */
  readonly socket: Socket;
  /** Last error reported by the socket (e.g. ICMP errors surfaced by the OS). */
  lastError: Error | undefined;
  private closing: Promise<void> | undefined;
  private lastAddr = '';
  private lastPort = -1;
  private lastFrom: Endpoint | undefined;

  constructor(socket: Socket, init: UdpPipeInit) {
    super(init);
    this.socket = socket;
    this.remote = init.remote;
    this.isServer = init.remote === undefined;
    const a = socket.address();
    this.local = endpointFromNode(a.address, a.port);
    if (init.onMessage) this.onMessage(init.onMessage);
    else this.subscribe(SUB_ALL);
    socket.on('message', this.onDatagram);
    socket.on('error', (e) => {
      this.lastError = e;
    });
    socket.on('close', () => this.finish(this.lastError));
  }

  private readonly onDatagram = (data: Buffer, rinfo: RemoteInfo): void => {
    let from = this.lastFrom;
    if (from === undefined || rinfo.port !== this.lastPort || rinfo.address !== this.lastAddr) {
      // Shared by every message from this source until another one sends: frozen, so that a
      // consumer changing one message's `from` cannot change the others'.
      from = Object.freeze(endpointFromNode(rinfo.address, rinfo.port));
      this.lastFrom = from;
      this.lastAddr = rinfo.address;
      this.lastPort = rinfo.port;
    }
    this.receive(data, from);
  };

  send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void> {
    try {
      if (this.closed) throw new PipeClosedError('pipe is closed');
      if (opts?.signal?.aborted) throw toAbortError(opts.signal);
      const to = dest === undefined ? this.remote : destEndpoint(dest);
      if (to === undefined) throw new InvalidArgumentError('a UDP server needs dest to send (e.g. msg.from)');
      // Endpoint-shaped objects skip toEndpoint: check what dgram would otherwise reject raw (port) or resolve via DNS (host).
      if (!(to.port > 0 && to.port <= 65535) || (to === dest && to !== this.lastFrom && isIP(to.host) === 0)) {
        throw new EndpointError(`cannot send to ${formatEndpoint(to)}`);
      }
      const buf = toBuffer(data);
      if (buf.length > MAX_UDP_PAYLOAD) throw new MessageTooBigError(`datagram of ${buf.length} bytes exceeds ${MAX_UDP_PAYLOAD}`);
      this.stats.messagesOut++;
      this.stats.bytesOut += buf.length;
      return boundSend(
        handled(
          new Promise<void>((resolve, reject) => {
            this.socket.send(buf, to.port, nodeHost(to), (err) => (err ? reject(sendError(err)) : resolve()));
          }),
        ),
        opts,
      );
    } catch (e) {
      return handled(Promise.reject(e));
    }
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        this.finish(this.lastError);
        resolve();
      }
    });
    return this.closing;
  }
}

function sendError(err: Error): Error {
  const code = (err as { code?: string }).code;
  if (code === 'ERR_SOCKET_DGRAM_NOT_RUNNING') return new PipeClosedError('pipe is closed', { cause: err });
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return new UnreachableError(`send failed: ${err.message}`, { cause: err });
  if (code === 'EMSGSIZE') return new MessageTooBigError(`send failed: ${err.message}`, { cause: err });
  return new P2pdError('ERR_SEND', `send failed: ${err.message}`, { cause: err });
}
