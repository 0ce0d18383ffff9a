/**
 * Timing rules of NAT-PMP and PCP as pure functions: retransmission schedules, epoch
 * (gateway reboot) validation, and renewal times. No timers here — clients drive these.
 *
 * A retransmission schedule is a sequence of *waits*: send the request, wait `w[0]` ms for
 * a response, send again, wait `w[1]` ms, … and give up when the sequence ends.
 * @module
 */
import { InvalidArgumentError } from '../../errors.js';
import { MAX_TIMER_MS } from '../../util/abort.js';

/** NAT-PMP initial retransmission interval, ms (RFC 6886 §3.1). */
export const NATPMP_INITIAL_RT_MS = 250;
/** NAT-PMP transmissions before giving up (RFC 6886 §3.1). */
export const NATPMP_MAX_ATTEMPTS = 9;
/** PCP Initial Retransmission Time, ms (RFC 6887 §8.1.1). */
export const PCP_IRT_MS = 3_000;
/** PCP Maximum Retransmission Time, ms. */
export const PCP_MRT_MS = 1_024_000;
/** PCP Maximum Retransmission Count (0 = unlimited). */
export const PCP_MRC = 0;
/** PCP Maximum Retransmission Duration, ms (0 = unlimited). */
export const PCP_MRD_MS = 0;
export { MAX_TIMER_MS }; // the longest delay setTimeout honours (util/abort.ts)

/** Caps applicable to any schedule. */
export interface ScheduleCap {
  /** Stop after this many transmissions (0/undefined = no cap of its own). */
  maxAttempts?: number;
  /**
   * Total time budget, ms, from the first transmission (0/undefined = none). The last wait
   * is shortened so the waits add up to exactly this, and nothing is sent after it.
   */
  totalTimeoutMs?: number;
}

function checkNonNeg(v: unknown, what: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new InvalidArgumentError(`invalid ${what}: ${String(v)}`);
  return v;
}

/** Applies {@link ScheduleCap} to a (possibly infinite) sequence of waits. */
export function* capSchedule(waits: Iterable<number>, cap?: ScheduleCap): Generator<number, void, undefined> {
  const maxAttempts = Math.floor(checkNonNeg(cap?.maxAttempts, 'maxAttempts'));
  const total = checkNonNeg(cap?.totalTimeoutMs, 'totalTimeoutMs');
  let elapsed = 0;
  let n = 0;
  for (const w of waits) {
    if (maxAttempts > 0 && n >= maxAttempts) return;
    n++;
    if (total > 0 && elapsed + w >= total) {
      yield total - elapsed;
      return;
    }
    yield w;
    elapsed += w;
  }
}

/** Options of {@link natPmpRetransmitSchedule}. */
export interface NatPmpScheduleOptions extends ScheduleCap {
  /** First wait, ms. @default 250 */
  initialMs?: number;
}

/**
 * NAT-PMP retransmission waits (RFC 6886 §3.1): 250 ms after the first request, doubling
 * each time, 9 transmissions — [250, 500, 1000, …, 64000], 127.75 s in total — then the
 * gateway is deemed not to support NAT-PMP. `maxAttempts` (default 9) changes the number of
 * transmissions; `totalTimeoutMs` cuts the schedule shorter.
 */
export function natPmpRetransmitSchedule(opts?: NatPmpScheduleOptions): number[] {
  const initial = opts?.initialMs === undefined ? NATPMP_INITIAL_RT_MS : checkNonNeg(opts.initialMs, 'initialMs');
  if (initial <= 0) throw new InvalidArgumentError('initialMs must be > 0');
  const attempts = opts?.maxAttempts ? Math.floor(checkNonNeg(opts.maxAttempts, 'maxAttempts')) : NATPMP_MAX_ATTEMPTS;
  const base: number[] = [];
  for (let i = 0; i < attempts; i++) base.push(initial * 2 ** i);
  return [...capSchedule(base, { totalTimeoutMs: opts?.totalTimeoutMs })];
}

/** Options of {@link pcpRetransmitSchedule}. */
export interface PcpScheduleOptions extends ScheduleCap {
  /** Initial retransmission time, ms. @default {@link PCP_IRT_MS} */
  irtMs?: number;
  /** Maximum retransmission time, ms. @default {@link PCP_MRT_MS} */
  mrtMs?: number;
  /** Maximum retransmission count; same as `maxAttempts`, the smaller wins. @default 0 = unlimited */
  mrc?: number;
  /** Maximum retransmission duration, ms; same as `totalTimeoutMs`, the smaller wins. @default 0 = unlimited */
  mrdMs?: number;
  /** Uniform random source in [0, 1); inject for determinism. @default `Math.random` */
  random?: () => number;
}

/** PCP's RAND factor (RFC 6887 §8.1.1, from RFC 3315 §14): uniform in [-0.1, +0.1]. */
export function pcpRand(random: () => number = Math.random): number {
  const r = random();
  const u = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0.5;
  return (u * 2 - 1) * 0.1;
}

/**
 * One step of RFC 6887 §8.1.1: `RT = (1 + RAND) * IRT` for the first transmission,
 * `RT = (1 + RAND) * MIN(2 * RTprev, MRT)` afterwards.
 */
export function pcpNextRetransmitTime(prevRtMs: number | undefined, rand: number, irtMs = PCP_IRT_MS, mrtMs = PCP_MRT_MS): number {
  const base = prevRtMs === undefined ? irtMs : Math.min(2 * prevRtMs, mrtMs);
  return (1 + rand) * base;
}

function smallestPositive(a: number, b: number): number {
  if (a > 0 && b > 0) return Math.min(a, b);
  return a > 0 ? a : b;
}

/**
 * PCP retransmission waits (RFC 6887 §8.1.1): IRT 3 s, doubling with ±10 % jitter up to
 * MRT 1024 s. With the RFC's defaults (MRC 0, MRD 0) the sequence is infinite — a client
 * that keeps a mapping retries forever — so cap it with `maxAttempts`/`mrc` and/or
 * `totalTimeoutMs`/`mrdMs` for one-shot operations. Waits are in ms (not rounded).
 */
export function* pcpRetransmitSchedule(opts?: PcpScheduleOptions): Generator<number, void, undefined> {
  const irt = opts?.irtMs === undefined ? PCP_IRT_MS : checkNonNeg(opts.irtMs, 'irtMs');
  const mrt = opts?.mrtMs === undefined ? PCP_MRT_MS : checkNonNeg(opts.mrtMs, 'mrtMs');
  if (irt <= 0 || mrt <= 0) throw new InvalidArgumentError('irtMs and mrtMs must be > 0');
  const random = opts?.random ?? Math.random;
  const maxAttempts = smallestPositive(checkNonNeg(opts?.mrc, 'mrc'), checkNonNeg(opts?.maxAttempts, 'maxAttempts'));
  const total = smallestPositive(checkNonNeg(opts?.mrdMs, 'mrdMs'), checkNonNeg(opts?.totalTimeoutMs, 'totalTimeoutMs'));
  function* raw(): Generator<number, void, undefined> {
    let rt: number | undefined;
    for (;;) {
      rt = pcpNextRetransmitTime(rt, pcpRand(random), irt, mrt);
      yield rt;
    }
  }
  yield* capSchedule(raw(), { maxAttempts, totalTimeoutMs: total });
}

/**
 * Gateway-side schedule of NAT-PMP address-change announcements (RFC 6886 §3.2.1): up to
 * 10 transmissions, 250 ms between the first two, doubling. Returns the 9 gaps, ms.
 */
export function natPmpAnnouncementSchedule(): number[] {
  return Array.from({ length: 9 }, (_, i) => NATPMP_INITIAL_RT_MS * 2 ** i);
}

// ---------------------------------------------------------------------------------------
// Epoch validation.

/** What the client remembers of the last response from a gateway. */
export interface EpochObservation {
  /** The gateway's epoch (seconds since its mapping state started) in that response. */
  serverEpoch: number;
  /** Client clock when it arrived, ms — use a monotonic clock (`performance.now()`). */
  clientTimeMs: number;
}

/** Result of an epoch check. */
export interface EpochCheck {
  /** True when the gateway evidently lost its mapping state (rebooted): renew every mapping now. */
  lostState: boolean;
  /** Why `lostState` is true. */
  reason?: string;
  /** The observation to remember for the next check (always the current one). */
  next: EpochObservation;
}

function checkEpochArgs(epoch: number, now: number): void {
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) throw new InvalidArgumentError(`invalid epoch ${String(epoch)}`);
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new InvalidArgumentError(`invalid client time ${String(now)}`);
}

/**
 * NAT-PMP epoch check (RFC 6886 §3.6): the expected epoch is the previous one plus 7/8 of the
 * client time elapsed since; an epoch more than 2 s below that means the gateway rebooted or
 * lost its mappings. The first observation (`prev` undefined) is never a loss.
 */
export function checkNatPmpEpoch(prev: EpochObservation | undefined, serverEpoch: number, clientTimeMs: number): EpochCheck {
  checkEpochArgs(serverEpoch, clientTimeMs);
  const next = { serverEpoch, clientTimeMs };
  if (!prev) return { lostState: false, next };
  const elapsedS = Math.max(0, clientTimeMs - prev.clientTimeMs) / 1000;
  const expected = prev.serverEpoch + (elapsedS * 7) / 8;
  if (serverEpoch < expected - 2) {
    return { lostState: true, reason: `gateway epoch ${serverEpoch} s is below the expected ${Math.floor(expected)} s`, next };
  }
  return { lostState: false, next };
}

/**
 * PCP epoch check (RFC 6887 §8.5): the epoch going back by more than 1 s is invalid; so is a
 * server delta and client delta that disagree by more than 2 s + 1/16 (either way). The
 * first observation (`prev` undefined) is never a loss.
 */
export function checkPcpEpoch(prev: EpochObservation | undefined, serverEpoch: number, clientTimeMs: number): EpochCheck {
  checkEpochArgs(serverEpoch, clientTimeMs);
  const next = { serverEpoch, clientTimeMs };
  if (!prev) return { lostState: false, next };
  if (serverEpoch < prev.serverEpoch - 1) {
    return { lostState: true, reason: `server epoch went back from ${prev.serverEpoch} s to ${serverEpoch} s`, next };
  }
  const clientDelta = (clientTimeMs - prev.clientTimeMs) / 1000;
  const serverDelta = serverEpoch - prev.serverEpoch;
  if (clientDelta + 2 < serverDelta - serverDelta / 16 || serverDelta + 2 < clientDelta - clientDelta / 16) {
    return {
      lostState: true,
      reason: `server epoch advanced ${serverDelta} s while ${clientDelta.toFixed(3)} s passed on the client`,
      next,
    };
  }
  return { lostState: false, next };
}

// ---------------------------------------------------------------------------------------
// Renewal.

function checkLifetime(lifetimeS: number): number {
  if (typeof lifetimeS !== 'number' || !Number.isInteger(lifetimeS) || lifetimeS < 0 || lifetimeS > 0xffffffff) {
    throw new InvalidArgumentError(`invalid lifetime ${String(lifetimeS)} s`);
  }
  return lifetimeS;
}

/**
 * When to renew a mapping granted for `lifetimeS` seconds: half-way to expiry (RFC 6886 §3.3,
 * "like DHCP"), in ms from the grant, clamped to {@link MAX_TIMER_MS} (renewing early is
 * harmless). `undefined` for lifetime 0 (the mapping is gone).
 */
export function renewDelayMs(lifetimeS: number): number | undefined {
  if (checkLifetime(lifetimeS) === 0) return undefined;
  return Math.min((lifetimeS * 1000) / 2, MAX_TIMER_MS);
}

/** Options of {@link pcpRenewalSchedule}. */
export interface PcpRenewalOptions {
  /** Uniform random source in [0, 1). @default `Math.random` */
  random?: () => number;
  /** Minimum gap between renewal requests, ms (RFC 6887: at least 4 s). @default {@link PCP_MIN_RENEW_GAP_MS} */
  minGapMs?: number;
}

/** Minimum gap between PCP renewal requests, ms (RFC 6887 §11.2.1). */
export const PCP_MIN_RENEW_GAP_MS = 4_000;

/**
 * PCP renewal times (RFC 6887 §11.2.1), ms from the grant: the first uniformly in
 * [1/2, 5/8] of the lifetime, then (while no success arrives) [3/4, 3/4 + 1/16],
 * [7/8, 7/8 + 1/32], … — never less than `minGapMs` apart and all before expiry. Empty for
 * lifetime 0 or a lifetime too short for even one. Times are not clamped to
 * {@link MAX_TIMER_MS}; schedule long ones in steps.
 */
export function pcpRenewalSchedule(lifetimeS: number, opts?: PcpRenewalOptions): number[] {
  const life = checkLifetime(lifetimeS) * 1000;
  const random = opts?.random ?? Math.random;
  const minGap = opts?.minGapMs === undefined ? PCP_MIN_RENEW_GAP_MS : checkNonNeg(opts.minGapMs, 'minGapMs');
  const out: number[] = [];
  for (let k = 0; k < 64; k++) {
    const start = life * (1 - 2 ** -(k + 1));
    const width = life * 2 ** -(k + 3);
    let r = random();
    if (!Number.isFinite(r)) r = 0.5;
    r = Math.min(Math.max(r, 0), 1);
    let t = start + r * width;
    const last = out[out.length - 1];
    if (last !== undefined && t < last + minGap) t = last + minGap;
    if (t >= life) break;
    out.push(t);
  }
  return out;
}

/**
 * Delay before renewing after an unsolicited PCP ANNOUNCE, ms: uniform in [0, 5 s]
 * (RFC 6887 §14.1.1), so clients do not all answer a rebooted server at once.
 */
export function pcpAnnounceRenewDelayMs(random: () => number = Math.random): number {
  const r = random();
  return (Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0.5) * 5_000;
}
