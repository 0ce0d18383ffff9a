/**
 * Permissions and channels of one TURN allocation (RFC 8656 §9, §11, §12): which peer IPs
 * may send to the relay (CreatePermission, refreshed before their 5 min lifetime ends), and
 * which peers have a channel (ChannelBind, refreshed before their 10 min lifetime ends) so
 * that data travels as 4-byte-header ChannelData instead of Send/Data indications.
 * @module
 */
import type { Endpoint } from '../../interfaces/endpoint.js';
import type { StunAttribute } from '../stun/attributes.js';
import { CHANNEL_MAX, CHANNEL_MIN } from '../stun/channel-data.js';
import { ATTR, METHOD } from '../stun/constants.js';

/** What the table needs from the allocation that owns it. */
export interface PeerTableHost {
  /** Runs an authenticated request (with the allocation's request timeout); rejects on failure. */
  request(method: number, attributes: StunAttribute[]): Promise<unknown>;
  /** Receives failures of background work (refreshes, channel binds). */
  report(err: unknown): void;
}

/** Timings and switches of a {@link PeerTable}. */
export interface PeerTableOptions {
  /** Interval between permission refreshes (ms). */
  permissionRefresh: number;
  /** Interval between channel refreshes (ms). */
  channelRefresh: number;
  /** Bind channels at all; when false every send is a Send indication. */
  channels: boolean;
  /** Wait before retrying a failed ChannelBind for the same peer (ms). */
  channelRetry: number;
}

/** One permission (keyed by peer IP). */
interface Permission {
  host: string;
  family: 4 | 6;
  installed: boolean;
  pending: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** One peer transport address that has (or is getting) a channel. */
interface PeerChannel {
  peer: Endpoint;
  /** Channel number reserved for this peer for the allocation's life (never given to another peer). */
  channel: number;
  /** True while the server has confirmed the binding and it has not failed a refresh. */
  bound: boolean;
  /** A ChannelBind is in flight. */
  binding: boolean;
  /** Earliest time (ms) a failed bind may be retried. */
  retryAt: number;
  timer: NodeJS.Timeout | undefined;
}

/** Map key of a peer transport address. */
export function peerKey(e: Endpoint): string {
  return `${e.host}|${e.port}`;
}

/**
 * The permission and channel state of one allocation. All timers are unref'd and cleared by
 * {@link PeerTable.close}. Channel numbers are handed out sequentially from 0x4000 and never
 * reused for another peer, so a late ChannelData on an old channel cannot be misattributed.
 */
export class PeerTable {
  readonly #host: PeerTableHost;
  readonly #opts: PeerTableOptions;
  readonly #perms = new Map<string, Permission>();
  readonly #peers = new Map<string, PeerChannel>();
  readonly #byChannel = new Map<number, PeerChannel>();
  #nextChannel = CHANNEL_MIN;
  #closed = false;

  constructor(host: PeerTableHost, opts: PeerTableOptions) {
    this.#host = host;
    this.#opts = opts;
  }

  /** Number of channels bound (confirmed by the server) right now. */
  get boundChannels(): number {
    let n = 0;
    for (const p of this.#peers.values()) if (p.bound) n++;
    return n;
  }

  /** Peer IPs with an installed permission. */
  permittedHosts(): string[] {
    return [...this.#perms.values()].filter((p) => p.installed).map((p) => p.host);
  }

  /** True when a permission for `host` is installed. */
  hasPermission(host: string): boolean {
    return this.#perms.get(host)?.installed === true;
  }

  /**
   * The bound channel to `peer`, or `undefined` (then the caller sends a Send indication).
   * When channels are enabled and none is bound or being bound, starts a ChannelBind in the
   * background (unless a recent one failed). Hot path: one map lookup once bound.
   */
  channelFor(peer: Endpoint, key: string = peerKey(peer)): number | undefined {
    const p = this.#peers.get(key);
    if (p !== undefined && p.bound) return p.channel;
    if (!this.#opts.channels || this.#closed) return undefined;
    if (p === undefined) {
      if (this.#nextChannel > CHANNEL_MAX) return undefined; // all 4096 numbers used: indications only
      const entry: PeerChannel = { peer: { host: peer.host, port: peer.port, family: peer.family }, channel: this.#nextChannel++, bound: false, binding: false, retryAt: 0, timer: undefined };
      this.#peers.set(key, entry);
      this.#byChannel.set(entry.channel, entry);
      this.#bind(entry);
    } else if (!p.binding && Date.now() >= p.retryAt) {
      this.#bind(p);
    }
    return undefined;
  }

  /** The peer that channel number `channel` belongs to (bound or being bound), for incoming ChannelData. */
  peerOf(channel: number): Endpoint | undefined {
    return this.#byChannel.get(channel)?.peer;
  }

  /**
   * Ensures a permission for `host` (an IP): resolves at once when installed, joins a pending
   * CreatePermission, or sends one. Rejects with the request's error (the entry is dropped,
   * so a later call tries again).
   */
  permit(host: string, family: 4 | 6): Promise<void> {
    const existing = this.#perms.get(host);
    if (existing?.installed) return Promise.resolve();
    if (existing?.pending) return existing.pending;
    const perm: Permission = existing ?? { host, family, installed: false, pending: undefined, timer: undefined };
    this.#perms.set(host, perm);
    const pending = this.#createPermission(perm).then(
      () => {
        perm.pending = undefined;
        if (this.#closed || this.#perms.get(host) !== perm) return;
        perm.installed = true;
        this.#armPermission(perm);
      },
      (e: unknown) => {
        perm.pending = undefined;
        if (this.#perms.get(host) === perm && !perm.installed) this.#perms.delete(host);
        throw e;
      },
    );
    perm.pending = pending;
    return pending;
  }

  #createPermission(perm: Permission): Promise<unknown> {
    // The port of XOR-PEER-ADDRESS is ignored by the server for permissions (RFC 8656 §9).
    const attrs: StunAttribute[] = [{ type: ATTR.XOR_PEER_ADDRESS, value: { host: perm.host, port: 0, family: perm.family } }];
    return this.#host.request(METHOD.CREATE_PERMISSION, attrs);
  }

  #armPermission(perm: Permission): void {
    if (perm.timer) clearTimeout(perm.timer);
    perm.timer = setTimeout(() => this.#refreshPermission(perm), this.#opts.permissionRefresh);
    perm.timer.unref();
  }

  #refreshPermission(perm: Permission): void {
    perm.timer = undefined;
    if (this.#closed || this.#perms.get(perm.host) !== perm) return;
    this.#createPermission(perm).then(
      () => {
        if (!this.#closed && this.#perms.get(perm.host) === perm) this.#armPermission(perm);
      },
      (e: unknown) => {
        if (this.#closed) return;
        // The permission will lapse on the server; forget it so the next send recreates it.
        if (this.#perms.get(perm.host) === perm) this.#perms.delete(perm.host);
        this.#host.report(e);
      },
    );
  }

  #bind(p: PeerChannel): void {
    p.binding = true;
    const attrs: StunAttribute[] = [
      { type: ATTR.CHANNEL_NUMBER, value: p.channel },
      { type: ATTR.XOR_PEER_ADDRESS, value: p.peer },
    ];
    this.#host.request(METHOD.CHANNEL_BIND, attrs).then(
      () => {
        p.binding = false;
        if (this.#closed) return;
        p.bound = true;
        if (p.timer) clearTimeout(p.timer);
        p.timer = setTimeout(() => {
          p.timer = undefined;
          if (!this.#closed) this.#bind(p);
        }, this.#opts.channelRefresh);
        p.timer.unref();
      },
      (e: unknown) => {
        p.binding = false;
        if (this.#closed) return;
        // Send indications meanwhile; the number stays reserved for this peer (the server may
        // still deliver on it until its binding expires) and a later send retries the bind.
        p.bound = false;
        p.retryAt = Date.now() + this.#opts.channelRetry;
        this.#host.report(e);
      },
    );
  }

  /** Stops every timer; pending requests finish but change nothing. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const p of this.#perms.values()) if (p.timer) clearTimeout(p.timer);
    for (const p of this.#peers.values()) if (p.timer) clearTimeout(p.timer);
    for (const p of this.#perms.values()) p.timer = undefined;
    for (const p of this.#peers.values()) p.timer = undefined;
  }
}
