/**
 * `StunTransport`: request/response transactions over one pipe (UDP or TCP), with RFC 8489
 * retransmission over UDP, transaction-id and source checks, and demultiplexing of everything
 * else (indications, ChannelData, application data) to listeners.
 * @module
 */
import { P2pdError, TimeoutError } from '../../errors.js';
import { formatEndpoint, sameEndpoint, type Endpoint } from '../../interfaces/endpoint.js';
import type { Pipe } from '../../pipes/pipe.js';
import type { Message } from '../../pipes/types.js';
import { cancellable, MAX_TIMER_MS, type AbortOptions } from '../../util/abort.js';
import { CLASS } from './constants.js';
import { decodeStun, type DecodedStunMessage } from './message.js';
import { StunStreamSplitter } from './stream.js';
import { decodeChannelData } from './channel-data.js';

/** RFC 8489 initial retransmission timeout (ms). */
export const STUN_RTO = 500;
/** RFC 8489 Rc: requests sent over UDP before giving up. */
export const STUN_MAX_TRIES = 7;
/** RFC 8489 Rm: the last request waits Rm × RTO. */
export const STUN_RM = 16;
/** RFC 8489 Ti: how long a TCP transaction waits (ms). */
export const STUN_TCP_TIMEOUT = 39_500;
/** Most transactions in flight on one transport. */
export const MAX_PENDING_TRANSACTIONS = 256;

/** A STUN message with where it came from. */
export interface StunReceived {
  /** The decoded message. */
  msg: DecodedStunMessage;
  /** Its source. */
  from: Endpoint;
}

/** Options of one transaction. */
export interface TransactionOptions extends AbortOptions {
  /** Where to send the request. */
  server: Endpoint;
  /** Accept the response from another source too (RFC 3489/5780 CHANGE-REQUEST tests). @default only `server` */
  acceptFrom?: (from: Endpoint) => boolean;
  /** Initial RTO (ms), doubled on each retransmission. @default STUN_RTO (500) */
  rto?: number;
  /** Requests sent before giving up (UDP). @default STUN_MAX_TRIES (7) */
  maxTries?: number;
}

interface Pending {
  server: Endpoint;
  acceptFrom: ((from: Endpoint) => boolean) | undefined;
  resolve: (r: StunReceived) => void;
}

/** A packet that is not a response to one of our transactions. */
export interface StunPacket {
  /** `'stun'` (request/indication/unmatched response), `'channel-data'` (TURN) or `'other'` (application data). */
  kind: 'stun' | 'channel-data' | 'other';
  /** The payload: the whole STUN message, the ChannelData payload (header removed), or the datagram. */
  data: Buffer;
  /** Channel number of a ChannelData packet. */
  channel?: number;
  /** Decoded STUN message when `kind` is `'stun'`. */
  stun?: DecodedStunMessage;
  /** Source. */
  from: Endpoint;
  /** The pipe message it arrived in. */
  message: Message;
}

/** Listener for packets that are not responses to our transactions. */
export type PacketListener = (packet: StunPacket) => void;

/**
 * Runs STUN transactions over `pipe` (which it does not own unless `owns` is set).
 * Responses with an unknown transaction id or from an unexpected source are ignored.
 */
export class StunTransport {
  /** The pipe carrying the transactions. */
  readonly pipe: Pipe;
  private readonly pending = new Map<string, Pending>();
  private listeners: PacketListener[] = [];
  private readonly splitter: StunStreamSplitter | undefined;
  private readonly remove: () => void;
  /** Packets ignored: undecodable, unknown transaction, wrong source. */
  ignored = 0;

  constructor(pipe: Pipe, private readonly owns = false) {
    this.pipe = pipe;
    this.splitter = pipe.proto === 'tcp' ? new StunStreamSplitter() : undefined;
    this.remove = pipe.onMessage((m) => this.onMessage(m));
  }

  /** Registers a listener for everything that is not a response to a pending transaction. */
  onPacket(cb: PacketListener): () => void {
    this.listeners = [...this.listeners, cb];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== cb);
    };
  }

  private onMessage(m: Message): void {
    if (!this.splitter) {
      this.onPacketData(m.data, m.from, m);
      return;
    }
    try {
      for (const f of this.splitter.push(m.data)) {
        if (f.kind === 'stun') this.onPacketData(f.data, m.from, m);
        else this.emit({ kind: 'channel-data', data: f.data, channel: f.channel, from: m.from, message: m });
      }
    } catch (e) {
      this.ignored++;
      this.pipe.reportError(e);
      void this.pipe.close();
    }
  }

  private onPacketData(data: Buffer, from: Endpoint, m: Message): void {
    const first = data[0];
    if (first !== undefined && first >= 0x40 && first <= 0x4f && data.length >= 4) {
      let cd: { channel: number; data: Uint8Array } | undefined;
      try {
        cd = decodeChannelData(data);
      } catch {
        cd = undefined;
      }
      if (cd) {
        this.emit({ kind: "channel-data", data: Buffer.from(cd.data.buffer, cd.data.byteOffset, cd.data.byteLength), channel: cd.channel, from, message: m });
        return;
      }
    }
    let msg: DecodedStunMessage | undefined;
    if (data.length >= 20 && first !== undefined && first < 2) {
      try {
        msg = decodeStun(data);
      } catch {
        msg = undefined;
      }
      if (msg && (msg.cls === CLASS.SUCCESS || msg.cls === CLASS.ERROR)) {
        const key = Buffer.from(msg.transactionId).toString('hex');
        const p = this.pending.get(key);
        if (p && (sameEndpoint(from, p.server) || p.acceptFrom?.(from) === true)) {
          this.pending.delete(key);
          p.resolve({ msg, from });
          return;
        }
        if (p || this.listeners.length === 0) {
          this.ignored++;
          return;
        }
      }
    }
    this.emit(msg ? { kind: 'stun', data, stun: msg, from, message: m } : { kind: 'other', data, from, message: m });
  }

  private emit(p: StunPacket): void {
    const ls = this.listeners;
    if (ls.length === 0) this.ignored++;
    for (const l of ls) {
      try {
        l(p);
      } catch (e) {
        this.pipe.reportError(e);
      }
    }
  }

  /**
   * Sends `request` (an encoded STUN request whose transaction id is `transactionId`) and
   * resolves with the first matching response. UDP retransmits per RFC 8489; TCP sends once.
   * Rejects with `TimeoutError` when no answer arrives, `AbortError` on abort.
   */
  request(request: Buffer, transactionId: Uint8Array, opts: TransactionOptions): Promise<StunReceived> {
    const key = Buffer.from(transactionId).toString('hex');
    const udp = this.pipe.proto === 'udp';
    const rto = opts.rto ?? STUN_RTO;
    const tries = Math.max(1, opts.maxTries ?? STUN_MAX_TRIES);
    const what = `STUN request to ${formatEndpoint(opts.server)}`;
    return cancellable<StunReceived>(opts, what, (resolve, reject) => {
      if (this.pending.size >= MAX_PENDING_TRANSACTIONS) throw new P2pdError('ERR_BUSY', 'too many STUN transactions in flight');
      if (this.pending.has(key)) throw new P2pdError('ERR_INVALID_ARG', 'transaction id already in use');
      this.pending.set(key, { server: opts.server, acceptFrom: opts.acceptFrom, resolve });
      let timer: NodeJS.Timeout | undefined;
      let sent = 0;
      let wait = rto;
      const send = (): void => {
        sent++;
        this.pipe.send(request, udp ? opts.server : undefined).catch((e: unknown) => reject(e));
        const last = !udp || sent >= tries;
        const ms = !udp ? STUN_TCP_TIMEOUT : last ? rto * STUN_RM : wait;
        wait *= 2;
        // Capped at Node's limit: a longer delay would fire after 1 ms (a burst of retransmissions).
        timer = setTimeout(last ? () => reject(new TimeoutError(`${what}: no response after ${sent} tries`)) : send, Math.min(ms, MAX_TIMER_MS));
      };
      send();
      return () => {
        if (timer) clearTimeout(timer);
        this.pending.delete(key);
      };
    });
  }

  /** Stops listening on the pipe (and closes it when owned, bounded by `opts` as `Pipe.close`). */
  async close(opts?: AbortOptions): Promise<void> {
    this.remove();
    if (this.owns) await this.pipe.close(opts);
  }
}
