/**
 * `PortMapping`: a live mapping on a gateway, whatever the protocol. Renews itself before it
 * expires (RFC 6886 §3.3 / RFC 6887 §11.2.1 times: 1/2, 3/4, 7/8 … of the lifetime, jittered
 * for PCP), re-maps at once when the gateway is seen to have lost its state (epoch check),
 * reports renewal failures and expiry through callbacks, and deletes the mapping on
 * `close()` / `await using`. Timers are unref'd: a mapping never keeps the process alive.
 * @module
 */
import { AbortError, InvalidArgumentError, type PortMappingMethod } from '../../errors.js';
import type { Family } from '../../interfaces/endpoint.js';
import { bounded, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import { checkTimeoutAndSignal } from '../deadline.js';
import { MAX_TIMER_MS, pcpAnnounceRenewDelayMs, pcpRenewalSchedule } from './retransmit.js';

/** Default bound of an explicit {@link PortMapping.renew} (ms). */
export const RENEW_TIMEOUT = 10_000;

/** What a gateway granted (on creation or renewal). */
export interface MappingGrant {
  /** External address, when the gateway told it. */
  externalAddress: string | undefined;
  externalPort: number;
  /** Lifetime granted, seconds (0 with `permanent`). */
  lifetime: number;
  /** The gateway only grants leases without expiry (UPnP error 725): nothing to renew. */
  permanent?: boolean;
}

/** Protocol-specific operations behind a {@link PortMapping}. @internal */
export interface MappingDriver {
  readonly method: PortMappingMethod;
  /** Renews (or re-creates) the mapping with the same identity. */
  refresh(opts: { signal: AbortSignal; timeout: number }): Promise<MappingGrant>;
  /** Deletes the mapping. */
  remove(opts: { signal?: AbortSignal | undefined; timeout: number }): Promise<void>;
  /** Subscribes to "the gateway lost its state" (epoch checks); returns the remover. */
  onLostState?(cb: (reason: string) => void): () => void;
  /** Jitter renewal times and delay re-mapping after a reboot (PCP, RFC 6887 §11.2.1 / §14.1.1). */
  readonly jitter?: boolean;
}

/** Callbacks of a {@link PortMapping}. Exceptions they throw are reported as process warnings. */
export interface PortMappingCallbacks {
  /** After each successful renewal (also after a re-map following a gateway reboot). */
  onRenew?: (m: PortMapping) => void;
  /** A renewal attempt failed; more follow until the mapping expires. */
  onRenewFailed?: (err: Error, m: PortMapping) => void;
  /** The mapping reached its expiry without a successful renewal; no more renewals are tried. */
  onExpire?: (m: PortMapping) => void;
  /** The external address or port changed on a renewal (e.g. after a gateway reboot). */
  onChange?: (m: PortMapping) => void;
}

/** Everything a {@link PortMapping} is built from. @internal */
export interface PortMappingInit extends PortMappingCallbacks {
  driver: MappingDriver;
  protocol: 'udp' | 'tcp';
  family: Family;
  gateway: string;
  internalAddress: string;
  internalPort: number;
  grant: MappingGrant;
  /** Renew automatically. @default true */
  autoRenew?: boolean;
  /** Minimum gap between renewal attempts, ms. @default 4000 (RFC 6887 §11.2.1) */
  minRenewGapMs?: number;
  /** Budget of the delete request in `close()`, ms. @default 5000 */
  closeTimeout?: number;
}

/** Lifecycle state of a {@link PortMapping}. */
export type PortMappingState = 'active' | 'expired' | 'closed';

function unrefTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
  t.unref();
  return t;
}

/** A port mapping on a gateway. Create it with `mapPort()`. */
export class PortMapping implements AsyncDisposable {
  /** The protocol that made it. */
  readonly method: PortMappingMethod;
  /** Transport protocol mapped. */
  readonly protocol: 'udp' | 'tcp';
  /** Address family of the mapping (6: a UPnP IPv6 pinhole or a PCP IPv6 mapping). */
  readonly family: Family;
  /** The gateway's address. */
  readonly gateway: string;
  /** This host's address the mapping forwards to. */
  readonly internalAddress: string;
  /** This host's port the mapping forwards to. */
  readonly internalPort: number;
  private grant: MappingGrant;
  private grantedAt = performance.now();
  private grantedWall = Date.now();
  private st: PortMappingState = 'active';
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private schedule: number[] = [];
  private next = 0;
  /** The renewal in flight (rejects as it does); joiners and timers add their own handling. */
  private inFlight: Promise<void> | undefined;
  private inFlightAbort: AbortController | undefined;
  private closing: Promise<void> | undefined;
  private readonly offLost: (() => void) | undefined;
  private readonly driver: MappingDriver;
  private readonly cbs: PortMappingCallbacks;
  private readonly autoRenew: boolean;
  private readonly minGap: number;
  private readonly closeTimeout: number;

  /** @internal Use `mapPort()`. */
  constructor(init: PortMappingInit) {
    this.driver = init.driver;
    this.method = init.driver.method;
    this.protocol = init.protocol;
    this.family = init.family;
    this.gateway = init.gateway;
    this.internalAddress = init.internalAddress;
    this.internalPort = init.internalPort;
    this.grant = { ...init.grant };
    this.cbs = { onRenew: init.onRenew, onRenewFailed: init.onRenewFailed, onExpire: init.onExpire, onChange: init.onChange };
    this.autoRenew = init.autoRenew ?? true;
    this.minGap = init.minRenewGapMs ?? 4_000;
    this.closeTimeout = init.closeTimeout ?? 5_000;
    if (!(this.minGap >= 0) || !(this.closeTimeout > 0)) throw new InvalidArgumentError('invalid minRenewGapMs / closeTimeout');
    this.offLost = init.driver.onLostState?.((reason) => this.onLostState(reason));
    this.arm();
  }

  /** External address others reach the mapping at; `undefined` when the gateway would not tell it. */
  get externalAddress(): string | undefined {
    return this.grant.externalAddress;
  }
  /** External port others reach the mapping at. */
  get externalPort(): number {
    return this.grant.externalPort;
  }
  /** Lifetime of the current grant, seconds (0 for a permanent mapping). */
  get lifetime(): number {
    return this.grant.lifetime;
  }
  /** When the current grant runs out; `undefined` for a permanent mapping. */
  get expiresAt(): Date | undefined {
    return this.grant.permanent ? undefined : new Date(this.grantedWall + this.grant.lifetime * 1000);
  }
  /** `'active'`, `'expired'` (renewals failed until expiry) or `'closed'`. */
  get state(): PortMappingState {
    return this.st;
  }

  private call<A extends unknown[]>(name: keyof PortMappingCallbacks, ...args: A): void {
    const cb = this.cbs[name] as ((...a: unknown[]) => void) | undefined;
    if (!cb) return;
    try {
      cb(...args);
    } catch (e) {
      process.emitWarning(`p2pd: error in PortMapping ${name} callback: ${String(e)}`, { code: 'P2PD_CALLBACK_ERROR' });
    }
  }

  private clearTimers(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.renewTimer = this.expiryTimer = undefined;
  }

  /** Schedules renewals and the expiry check for the current grant. */
  private arm(): void {
    this.clearTimers();
    if (this.st !== 'active' || this.grant.permanent) return;
    const life = this.grant.lifetime;
    this.schedule = this.autoRenew ? pcpRenewalSchedule(life, { minGapMs: this.minGap, ...(this.driver.jitter ? {} : { random: () => 0 }) }) : [];
    this.next = 0;
    this.armRenew();
    this.armAt(life * 1000, 'expiry', () => this.expire());
  }

  /** Arms a timer for `offsetMs` after the grant, in steps for delays past setTimeout's limit. */
  private armAt(offsetMs: number, which: 'renew' | 'expiry', fn: () => void): void {
    const step = (): void => {
      const left = this.grantedAt + offsetMs - performance.now();
      const t = left > MAX_TIMER_MS ? unrefTimer(step, MAX_TIMER_MS) : unrefTimer(fn, left);
      if (which === 'renew') this.renewTimer = t;
      else this.expiryTimer = t;
    };
    step();
  }

  private armRenew(): void {
    const at = this.schedule[this.next];
    if (at === undefined) return;
    this.armAt(at, 'renew', () => void this.attempt().catch(() => undefined));
  }

  private expire(): void {
    if (this.st !== 'active') return;
    this.st = 'expired';
    this.clearTimers();
    this.call('onExpire', this);
  }

  /** One renewal attempt with the time left until the next attempt (or expiry) as budget. */
  private attempt(budgetMs?: number): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const nextAt = this.schedule[this.next + 1] ?? this.grant.lifetime * 1000;
    const budget = budgetMs ?? Math.max(1_000, this.grantedAt + nextAt - performance.now());
    const ac = new AbortController();
    this.inFlightAbort = ac;
    const run = async (): Promise<void> => {
      try {
        const g = await this.driver.refresh({ signal: ac.signal, timeout: budget });
        if (this.st === 'closed') return;
        const changed = g.externalPort !== this.grant.externalPort || (g.externalAddress !== undefined && g.externalAddress !== this.grant.externalAddress);
        this.grant = { ...g, externalAddress: g.externalAddress ?? this.grant.externalAddress };
        this.grantedAt = performance.now();
        this.grantedWall = Date.now();
        this.st = 'active';
        this.arm();
        if (changed) this.call('onChange', this);
        this.call('onRenew', this);
      } catch (e) {
        if (this.st === 'closed' || ac.signal.aborted) return;
        const err = e instanceof Error ? e : new Error(String(e));
        this.call('onRenewFailed', err, this);
        if (this.st === 'active') {
          this.next++;
          this.armRenew();
        }
        throw err;
      } finally {
        this.inFlight = undefined;
        this.inFlightAbort = undefined;
      }
    };
    const p = run();
    p.catch(() => undefined); // callers that join it later (renew) see the failure themselves
    this.inFlight = p;
    return p;
  }

  private onLostState(_reason: string): void {
    if (this.st !== 'active' || this.inFlight) return;
    // RFC 6886 §3.6: renew at once; RFC 6887 §14.1.1: after a random 0-5 s.
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = unrefTimer(() => void this.attempt(10_000).catch(() => undefined), this.driver.jitter ? pcpAnnounceRenewDelayMs() : 0);
  }

  /**
   * Renews now (also re-creates an expired mapping). Rejects with the protocol's
   * `PortMappingError` (the mapping keeps its schedule), or `AbortError` once closed.
   * `opts.timeout` bounds the gateway's answer (@default RENEW_TIMEOUT, 10 s); `opts.signal`
   * stops waiting (`AbortError`; a renewal already sent may still take effect). A renewal
   * already in flight (an automatic one) is joined: its outcome is this call's, but waited
   * for no longer than `opts.timeout` (`TimeoutError`; it goes on). A bad `timeout` or
   * `signal` (see `AbortOptions`) is an `InvalidArgumentError` before anything is sent to
   * the gateway.
   */
  async renew(opts: AbortOptions = {}): Promise<void> {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('renew options must be an object');
    checkTimeoutAndSignal(opts); // before the driver sends anything
    throwIfAborted(opts.signal);
    if (this.st === 'closed') throw new AbortError('port mapping is closed');
    const signal = opts.signal ? { signal: opts.signal } : {};
    if (this.inFlight) return bounded(this.inFlight, { ...signal, timeout: opts.timeout ?? RENEW_TIMEOUT }, 'port mapping renewal');
    return bounded(this.attempt(opts.timeout ?? RENEW_TIMEOUT), signal, 'port mapping renewal');
  }

  /**
   * Stops renewing and deletes the mapping on the gateway. Idempotent (later calls return the
   * first call's promise). Rejects with a `PortMappingError` when the gateway refuses or does
   * not answer the deletion within the close timeout; the mapping is then left to expire.
   *
   * `opts.timeout` bounds the deletion, ms (`0` or `Infinity`: the protocol's own schedule);
   * @default the mapping's `closeTimeout` (5000). `opts.signal` stops it (`AbortError`; the
   * mapping is closed here all the same, and left to expire on the gateway). Bad options (not
   * an object, a bad `timeout` or `signal`, see `AbortOptions`) reject with
   * `InvalidArgumentError` and change nothing: the mapping stays as it was (still renewing),
   * and a `close()` with good options works.
   */
  close(opts?: AbortOptions): Promise<void> {
    if (opts !== undefined && (opts === null || typeof opts !== 'object')) return Promise.reject(new InvalidArgumentError('close options must be an object'));
    try {
      checkTimeoutAndSignal(opts ?? {}); // before the mapping is touched
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.closing) return this.closing;
    this.st = 'closed';
    this.clearTimers();
    this.offLost?.();
    this.inFlightAbort?.abort(new AbortError('port mapping closed'));
    const pending = this.inFlight;
    const timeout = opts?.timeout ?? this.closeTimeout;
    const end = timeout > 0 && Number.isFinite(timeout) ? performance.now() + timeout : undefined;
    this.closing = (async () => {
      await pending?.catch(() => undefined); // aborted just now: settles at once
      // The deletion gets what is left of the close's budget.
      const left = end === undefined ? timeout : Math.max(1, Math.ceil(end - performance.now()));
      await this.driver.remove({ signal: opts?.signal, timeout: left });
    })();
    return this.closing;
  }

  /** `await using m = await mapPort(…)` deletes the mapping at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Plain-object form, for logging and JSON. */
  toJSON(): Record<string, unknown> {
    return {
      method: this.method,
      protocol: this.protocol,
      family: this.family,
      gateway: this.gateway,
      internalAddress: this.internalAddress,
      internalPort: this.internalPort,
      externalAddress: this.externalAddress,
      externalPort: this.externalPort,
      lifetime: this.lifetime,
      expiresAt: this.expiresAt?.toISOString(),
      state: this.st,
    };
  }
}
