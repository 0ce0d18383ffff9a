/**
 * `TurnPipe`: a TURN allocation as a {@link Pipe}. It presents the relayed transport address
 * as a UDP socket: `send(data, peer)` relays to a peer, messages arrive with `from` = the
 * peer. Underneath it talks to the TURN server over UDP or TCP (the control connection).
 * @module
 */
import { AbortError, InvalidArgumentError, MessageTooBigError, PipeClosedError } from '../../errors.js';
import { formatEndpoint, parseHost, sameEndpoint, toEndpoint, type Endpoint, type EndpointLike } from '../../interfaces/endpoint.js';
import { boundSend, destEndpoint, handled, Pipe, type SendData } from '../../pipes/pipe.js';
import { toBuffer } from '../../pipes/tcp.js';
import type { MessageCallback, QueueLimits } from '../../pipes/types.js';
import { bounded, checkAbortOptions, closeWithin, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { CHANNEL_DATA_HEADER_SIZE } from '../stun/channel-data.js';
import { ATTR, CLASS, METHOD } from '../stun/constants.js';
import { encodeStun, getAttr, newTransactionId } from '../stun/message.js';
import type { StunPacket, StunTransport } from '../stun/transport.js';
import { MAX_TURN_PAYLOAD } from './constants.js';
import { PeerTable, peerKey, type PeerTableOptions } from './peers.js';
import { AllocationRefresher } from './refresh.js';
import type { TurnSession } from './session.js';

/** Everything `turnAllocate` hands to a new {@link TurnPipe}. */
export interface TurnPipeInit extends QueueLimits, PeerTableOptions {
  /** The authenticated session with the server (its transport is owned by the pipe). */
  session: TurnSession;
  /** XOR-RELAYED-ADDRESS of the allocation. */
  relayed: Endpoint;
  /** XOR-MAPPED-ADDRESS (the client's server-reflexive address), when the server sent it. */
  mapped: Endpoint | undefined;
  /** Lifetime granted by the server, seconds. */
  lifetime: number;
  /** LIFETIME to ask for in refreshes; `undefined` = the server's default. */
  requestedLifetime: number | undefined;
  /** Timeout of background requests (ms). */
  requestTimeout: number;
  /** How long `close()` waits for the deallocation's answer (ms). */
  closeTimeout: number;
  /** Delay before retrying a timed-out allocation refresh (ms). */
  refreshRetry: number;
  /** Initial callback; when set no default `SUB_ALL` subscription is made. */
  onMessage?: MessageCallback | undefined;
}

/** Counters specific to a relay pipe (payload counters are in `stats`). */
export interface TurnStats {
  /** Messages sent as Send indications (no channel yet). */
  indicationsOut: number;
  /** Messages sent as ChannelData. */
  channelDataOut: number;
  /** Messages received in Data indications. */
  indicationsIn: number;
  /** Messages received as ChannelData. */
  channelDataIn: number;
  /** Packets from the server ignored: unknown channel, not from the server, malformed or unexpected. */
  ignored: number;
  /** Successful allocation refreshes. */
  refreshes: number;
}

/** A TURN relay as a Pipe: `send(data, peer)`, messages `from` the peer; see `turnAllocate`. */
export class TurnPipe extends Pipe {
  /** The relay presents UDP semantics: one message = one datagram to/from a peer. */
  readonly proto = 'udp' as const;
  readonly framing = 'raw' as const;
  readonly dropOldest = true;
  /** Like a UDP server: every send names its peer. */
  readonly isServer = true;
  /** `undefined`: a relay has no single remote end. */
  readonly remote = undefined;
  /** The relayed transport address (same as {@link TurnPipe.relayed}): where peers send to. */
  readonly local: Endpoint;
  /** The relayed transport address allocated on the server (give it to peers). */
  readonly relayed: Endpoint;
  /** This client's address as the server saw it (server-reflexive), when reported. */
  readonly mapped: Endpoint | undefined;
  /** The TURN server. */
  readonly server: Endpoint;
  /** Transport of the control connection to the server (`'udp'` or `'tcp'`). */
  readonly serverProto: 'udp' | 'tcp';
  /** The pipe to the server (owned: closed with this pipe). */
  readonly underlying: Pipe;
  /** Relay counters. */
  readonly turnStats: TurnStats = { indicationsOut: 0, channelDataOut: 0, indicationsIn: 0, channelDataIn: 0, ignored: 0, refreshes: 0 };
  /** Lifetime (seconds) granted by the last Allocate/Refresh. */
  lifetime: number;
  /** The authenticated session with the server (realm, nonce; for diagnostics and advanced requests). */
  readonly session: TurnSession;

  readonly #session: TurnSession;
  readonly #transport: StunTransport;
  /** Aborted by a forced close: the connection to the server is then reset, not closed gracefully. */
  readonly #force = new AbortController();
  readonly #peers: PeerTable;
  readonly #refresher: AllocationRefresher;
  readonly #init: TurnPipeInit;
  readonly #pad: boolean;
  readonly #offPacket: () => void;
  #closing: Promise<void> | undefined;

  constructor(init: TurnPipeInit) {
    super(init);
    this.#init = init;
    this.#session = init.session;
    this.session = init.session;
    this.#transport = init.session.transport;
    this.underlying = this.#transport.pipe;
    this.server = init.session.server;
    this.serverProto = this.underlying.proto;
    this.#pad = this.serverProto === 'tcp';
    this.relayed = init.relayed;
    this.local = init.relayed;
    this.mapped = init.mapped;
    this.lifetime = init.lifetime;
    if (init.onMessage) this.onMessage(init.onMessage);
    else this.subscribeDefault();
    this.#peers = new PeerTable(
      {
        request: (method, attrs) => this.#session.request(method, attrs, { timeout: init.requestTimeout }),
        report: (e) => this.reportError(e),
      },
      init,
    );
    this.#refresher = new AllocationRefresher({
      refresh: () => this.#refresh(init.requestedLifetime),
      refreshed: () => this.turnStats.refreshes++,
      lost: (e) => void this.#shutdown(e, false),
      retry: init.refreshRetry,
    });
    this.#offPacket = this.#transport.onPacket(this.#onPacket);
    this.underlying.onClose((err) => {
      if (this.#closing) return;
      const cause = err ?? this.#session.lastError;
      const msg = `connection to TURN server ${formatEndpoint(this.server)} closed${cause ? `: ${cause.message}` : ''}`;
      void this.#shutdown(new PipeClosedError(msg, cause ? { cause } : undefined), false);
    });
    this.#refresher.start(init.lifetime);
  }

  /** Time (ms since the epoch) at which the allocation expires unless refreshed. */
  get expiresAt(): number {
    return this.#refresher.expiresAt;
  }

  /** Peer IPs that currently have a permission. */
  get permissions(): string[] {
    return this.#peers.permittedHosts();
  }

  /** Number of channels currently bound. */
  get channels(): number {
    return this.#peers.boundChannels;
  }

  readonly #onPacket = (p: StunPacket): void => {
    if (this.closed || !sameEndpoint(p.from, this.server)) {
      this.turnStats.ignored++;
      return;
    }
    if (p.kind === 'channel-data') {
      const peer = p.channel === undefined ? undefined : this.#peers.peerOf(p.channel);
      if (peer === undefined) {
        this.turnStats.ignored++; // a channel we never asked for
        return;
      }
      this.turnStats.channelDataIn++;
      this.receive(p.data, peer);
      return;
    }
    const m = p.stun;
    if (p.kind === 'stun' && m !== undefined && m.cls === CLASS.INDICATION && m.method === METHOD.DATA) {
      const peer = getAttr(m, ATTR.XOR_PEER_ADDRESS);
      const data = getAttr(m, ATTR.DATA);
      if (peer !== undefined && data !== undefined) {
        this.turnStats.indicationsIn++;
        this.receive(Buffer.from(data.buffer, data.byteOffset, data.byteLength), peer);
        return;
      }
    }
    this.turnStats.ignored++;
  };

  /**
   * Relays `data` to the peer `dest` (required). The first send to a peer IP waits for its
   * permission (CreatePermission) and starts a ChannelBind; until the channel is bound the
   * data goes as Send indications, afterwards as ChannelData. Rejects with
   * `PipeClosedError`, `InvalidArgumentError` (no dest, peer family ≠ relay family),
   * `MessageTooBigError` (over {@link MAX_TURN_PAYLOAD}) or the permission's `StunError`
   * (e.g. 403 when the server refuses that peer).
   */
  send(data: SendData, dest?: EndpointLike, opts?: AbortOptions): Promise<void> {
    try {
      if (this.closed) throw new PipeClosedError('TURN relay pipe is closed');
      if (opts !== undefined) checkAbortOptions(opts); // a bad timeout or signal: nothing is sent
      if (dest === undefined) throw new InvalidArgumentError('a TURN relay pipe needs dest: the peer to relay to (e.g. msg.from)');
      const to = destEndpoint(dest);
      if (to.family !== this.relayed.family) {
        throw new InvalidArgumentError(`peer ${formatEndpoint(to)} is IPv${to.family} but the relayed address is IPv${this.relayed.family}`);
      }
      const buf = toBuffer(data);
      if (buf.length > MAX_TURN_PAYLOAD) throw new MessageTooBigError(`message of ${buf.length} bytes exceeds the TURN relay limit of ${MAX_TURN_PAYLOAD}`);
      const key = peerKey(to);
      this.stats.messagesOut++;
      this.stats.bytesOut += buf.length;
      const ch = this.#peers.channelFor(to, key);
      if (ch !== undefined) return this.#sendChannel(ch, buf, opts);
      if (this.#peers.hasPermission(to.host)) return this.#sendIndication(to, buf, opts);
      return boundSend(
        handled(
          this.#peers.permit(to.host, to.family).then(() => {
            if (this.closed) throw new PipeClosedError('TURN relay pipe is closed');
            const c = this.#peers.channelFor(to, key);
            return c !== undefined ? this.#sendChannel(c, buf, opts) : this.#sendIndication(to, buf, opts);
          }),
        ),
        opts,
      );
    } catch (e) {
      return handled(Promise.reject(e));
    }
  }

  #sendChannel(channel: number, buf: Buffer, opts: AbortOptions | undefined): Promise<void> {
    this.turnStats.channelDataOut++;
    // Hot path: the channel number is valid by construction, so encode inline (no zero-fill).
    const size = this.#pad ? CHANNEL_DATA_HEADER_SIZE + ((buf.length + 3) & ~3) : CHANNEL_DATA_HEADER_SIZE + buf.length;
    const frame = Buffer.allocUnsafe(size);
    frame.writeUInt16BE(channel, 0);
    frame.writeUInt16BE(buf.length, 2);
    buf.copy(frame, CHANNEL_DATA_HEADER_SIZE);
    if (size > CHANNEL_DATA_HEADER_SIZE + buf.length) frame.fill(0, CHANNEL_DATA_HEADER_SIZE + buf.length);
    return this.underlying.send(frame, undefined, opts);
  }

  #sendIndication(to: Endpoint, buf: Buffer, opts: AbortOptions | undefined): Promise<void> {
    this.turnStats.indicationsOut++;
    const msg = encodeStun({
      method: METHOD.SEND,
      cls: CLASS.INDICATION,
      transactionId: newTransactionId(),
      attributes: [
        { type: ATTR.XOR_PEER_ADDRESS, value: to },
        { type: ATTR.DATA, value: buf },
      ],
    });
    return this.underlying.send(msg, undefined, opts);
  }

  /**
   * Installs permissions for peers (IPs or endpoints; the port is ignored) so that they can
   * send to the relayed address before this side has sent them anything. Kept refreshed
   * until close. Rejects with the first failure (e.g. `StunError` 403). `opts` bounds the wait
   * (`AbortError` / `TimeoutError`; permissions the server already installed stay).
   */
  async permit(peer: EndpointLike | string | readonly (EndpointLike | string)[], opts: AbortOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    if (this.closed) throw new PipeClosedError('TURN relay pipe is closed');
    const list = Array.isArray(peer) ? (peer as readonly (EndpointLike | string)[]) : [peer as EndpointLike | string];
    const hosts = list.map((p) => {
      const e = peerHostOf(p);
      if (e.family !== this.relayed.family) throw new InvalidArgumentError(`peer ${e.host} is IPv${e.family} but the relayed address is IPv${this.relayed.family}`);
      return e;
    });
    await bounded(Promise.all(hosts.map((e) => this.#peers.permit(e.host, e.family))), opts, 'TURN permission');
  }

  /**
   * Refreshes the allocation now (it is also refreshed automatically before it expires).
   * `lifetime` (seconds) asks for a new lifetime; resolves with the one granted. `opts.timeout`
   * (default: the pipe's request timeout) and `opts.signal` bound the request (`TimeoutError`,
   * `AbortError`; the allocation is then unchanged or refreshed, as the server got it).
   */
  async refresh(lifetime?: number, opts: AbortOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    if (this.closed) throw new PipeClosedError('TURN relay pipe is closed');
    const granted = await this.#refresh(lifetime ?? this.#init.requestedLifetime, opts);
    this.turnStats.refreshes++;
    this.#refresher.start(granted);
    return granted;
  }

  async #refresh(lifetime: number | undefined, opts: AbortOptions = {}): Promise<number> {
    if (lifetime !== undefined && (!Number.isInteger(lifetime) || lifetime < 0 || lifetime > 0xffffffff)) {
      throw new InvalidArgumentError('lifetime must be a non-negative integer number of seconds');
    }
    const attrs = lifetime !== undefined ? [{ type: ATTR.LIFETIME, value: lifetime } as const] : [];
    const resp = await this.#session.request(METHOD.REFRESH, [...attrs], { timeout: opts.timeout ?? this.#init.requestTimeout, ...(opts.signal ? { signal: opts.signal } : {}) });
    const granted = getAttr(resp, ATTR.LIFETIME) ?? lifetime ?? this.lifetime;
    this.lifetime = granted;
    return granted;
  }

  /**
   * Deletes the allocation (Refresh with LIFETIME 0, waiting at most `closeTimeout` for the
   * answer), stops every timer and closes the connection to the server. Idempotent. With
   * `opts`, a signal that aborts or a timeout that passes first gives up on the deletion (the
   * allocation then expires on the server) and rejects with `AbortError` / `TimeoutError` once
   * the pipe is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    return closeWithin(() => this.#shutdown(undefined, true), opts, () => {
      this.#force.abort(new AbortError('TURN relay pipe closed'));
      this.#session.abort(new PipeClosedError('TURN relay pipe closed'));
    }, 'TURN pipe close');
  }

  /** Tears down once: `err` is the close reason (allocation lost, connection closed). */
  #shutdown(err: Error | undefined, deallocate: boolean): Promise<void> {
    if (this.#closing) return this.#closing;
    this.closed = true;
    const p = (async () => {
      this.#refresher.stop();
      this.#peers.close();
      if (deallocate && !this.#session.aborted) {
        const t = this.#init.closeTimeout;
        await this.#session
          .request(METHOD.REFRESH, [{ type: ATTR.LIFETIME, value: 0 }], { timeout: t, rto: Math.max(50, Math.floor(t / 4)) })
          .catch(() => undefined);
      }
      this.#session.abort(new PipeClosedError('TURN relay pipe closed'));
      this.#offPacket();
      await this.#transport.close({ signal: this.#force.signal }).catch(() => undefined);
      this.finish(err);
    })();
    this.#closing = p;
    return p;
  }
}

/** A peer given as an IP literal (`'1.2.3.4'`, `'::1'`, `'[::1]'`) or an endpoint; the port does not matter. */
function peerHostOf(p: EndpointLike | string): Endpoint {
  if (typeof p === 'string') {
    try {
      const h = parseHost(p);
      return { host: h.host, port: 0, family: h.family };
    } catch {
      return toEndpoint(p);
    }
  }
  return toEndpoint(p);
}
