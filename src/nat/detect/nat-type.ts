/**
 * NAT type detection: RFC 5780 behaviour discovery (OTHER-ADDRESS + CHANGE-REQUEST) when the
 * server supports it, RFC 3489 classic tests (CHANGED-ADDRESS, classic messages) otherwise,
 * run concurrently, mapped onto P2PD's seven NAT types and the RFC 4787 mapping/filtering
 * behaviours. Optionally the port allocation delta ({@link detectDelta}) and hairpinning.
 *
 * How it runs (two sockets so that no test opens the filter another one measures):
 * 1. Concurrently: socket A sends test I (plain Binding) to the server, socket B a plain
 *    Binding to the server (base of the mapping tests). No answer to test I from any server →
 *    `BLOCKED`. Once a server answered, the delta test starts on its own sockets.
 * 2. Concurrently, once test I told the server's other address O (server primary P):
 *    - filtering on A (which has only ever sent to P): CHANGE-REQUEST ip+port (answer from
 *      O.ip:O.port gets in → endpoint-independent), CHANGE-REQUEST port (answer from
 *      P.ip:O.port gets in → address-dependent), neither → address-and-port-dependent;
 *    - mapping on B: Binding to O.ip:P.port and to O.ip:O.port, compared with B's first
 *      mapping (same → endpoint-independent; the two alternates equal → address-dependent;
 *      else address-and-port-dependent);
 *    - hairpin (opt-in): a Binding request from a third socket to A's mapped address.
 *
 * A filtering test that gets no answer waits `filterTimeout` (by default derived from test
 * I's round trip: 250 ms in a LAN, longer over the internet), so the detection takes about one
 * filter wait when the NAT filters and a few round trips otherwise.
 * @module
 */
import { InvalidArgumentError, TimeoutError } from '../../errors.js';
import { formatEndpoint, sameEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import { pipeOpen } from '../../pipes/open.js';
import type { BindOptions } from '../../pipes/types.js';
import { throwIfAborted, toAbortError, type AbortOptions } from '../../util/abort.js';
import { CLASS, METHOD } from '../stun/constants.js';
import { encodeStun, newTransactionId } from '../stun/message.js';
import { parseStunServer, StunClient, type StunMapping } from '../stun/client.js';
import { detectDelta, type DeltaOptions, type DeltaResult } from './delta.js';

/** P2PD's seven NAT types. */
export type NatType =
  | 'OPEN'
  | 'SYMMETRIC_UDP_FIREWALL'
  | 'FULL_CONE'
  | 'RESTRICTED_CONE'
  | 'PORT_RESTRICTED_CONE'
  | 'SYMMETRIC'
  | 'BLOCKED';

/** Every {@link NatType}, in P2PD's order. */
export const NAT_TYPES: readonly NatType[] = [
  'OPEN', 'SYMMETRIC_UDP_FIREWALL', 'FULL_CONE', 'RESTRICTED_CONE', 'PORT_RESTRICTED_CONE', 'SYMMETRIC', 'BLOCKED',
];

/** P2PD's numeric NAT type codes, as its peer addresses carry them. */
export const NAT_TYPE_CODE: Readonly<Record<NatType, number>> = {
  OPEN: 1, SYMMETRIC_UDP_FIREWALL: 2, FULL_CONE: 3, RESTRICTED_CONE: 4, PORT_RESTRICTED_CONE: 5, SYMMETRIC: 6, BLOCKED: 7,
};

/** RFC 4787 mapping / filtering behaviour; `'unknown'` when the tests could not tell. */
export type NatBehavior = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown';

/** Which discovery the result came from. */
export type NatMethod = 'rfc5780' | 'rfc3489' | 'basic' | 'none';

/** One test of the detection, for diagnostics. */
export interface NatTestRecord {
  /** `'I'`, `'filter-II'`, `'filter-III'`, `'map-base'`, `'map-II'`, `'map-III'`, `'hairpin'`. */
  name: string;
  /** Where the request went. */
  to: Endpoint;
  /** Whether an answer arrived. */
  ok: boolean;
  /** Where the answer came from. */
  from?: Endpoint;
  /** The mapped address it reported. */
  mapped?: Endpoint;
  /** Milliseconds from start of the detection to the answer (or the give-up). */
  at: number;
  /** Why it failed, when it did (`timeout`, an error message). */
  error?: string;
}

/** Progress of {@link detectNat}, for spinners and logs. */
export interface NatProgress {
  /** What is running or what finished. */
  step: 'binding' | 'filtering' | 'mapping' | 'delta' | 'hairpin' | 'done';
  /** Human-readable state. */
  message: string;
}

/** Options of {@link detectNat}. */
export interface DetectNatOptions extends AbortOptions {
  /**
   * STUN servers (IP literals, default port 3478), tried in order until one answers. One that
   * supports RFC 5780 (or RFC 3489 CHANGE-REQUEST) gives the full answer; with only plain
   * servers, mapping is measured across two of them and filtering stays `'unknown'`.
   */
  servers: (EndpointLike | { host: string; port?: number })[];
  /** Address family. @default the first server's */
  family?: Family;
  /** Local address or interface (`{ host }`, `{ iface }`); `port` fixes socket A's port. */
  bind?: BindOptions;
  /** Run the delta test too (`false` to skip; an object to tune it). @default true */
  delta?: boolean | Omit<DeltaOptions, 'servers' | 'family' | 'bind' | 'signal' | 'timeout'>;
  /** Test hairpinning (a request from a second socket to our own mapped address). @default false */
  hairpin?: boolean;
  /** Send RFC 3489 classic requests from the start. @default false (switches by itself for classic servers) */
  classic?: boolean;
  /** Time allowed for test I per server (ms); no answer → next server, or `BLOCKED`. @default 2000 */
  bindingTimeout?: number;
  /** Initial RTO of test I (ms). @default 200 */
  rto?: number;
  /** How long a filtering (CHANGE-REQUEST) test waits for its answer (ms). @default 250 ms + 4 × test I's RTT, at most 2000 */
  filterTimeout?: number;
  /** Progress callback. */
  onProgress?: (p: NatProgress) => void;
}

/** The result of {@link detectNat}. */
export interface NatDetection {
  /** P2PD's NAT type. */
  type: NatType;
  /** RFC 4787 mapping behaviour (`'endpoint-independent'` when there is no NAT). */
  mapping: NatBehavior;
  /** RFC 4787 filtering behaviour. */
  filtering: NatBehavior;
  /** Our external (reflexive) address as test I saw it; `undefined` when BLOCKED. */
  external: Endpoint | undefined;
  /** Socket A's local endpoint (routed source address in place of a wildcard). */
  local: Endpoint | undefined;
  /** Whether there is a NAT (`external` differs from `local`); `undefined` when BLOCKED. */
  nat: boolean | undefined;
  /** Port allocation delta, when the delta test ran and got answers. */
  delta: DeltaResult | undefined;
  /** Why the delta test gave nothing, if it was asked for and failed. */
  deltaError?: string;
  /** Hairpinning (only when asked for): did a packet to our own mapped address come back to us. */
  hairpin?: boolean;
  /** Which discovery was used. */
  method: NatMethod;
  /** The server that answered. */
  server: Endpoint | undefined;
  /** Its alternate address (OTHER-ADDRESS / CHANGED-ADDRESS). */
  otherAddress: Endpoint | undefined;
  /** Wall time in milliseconds. */
  ms: number;
  /** Every test and its outcome. */
  tests: NatTestRecord[];
}

/** P2PD's NAT type from the RFC 4787 behaviours (pure). */
export function natTypeOf(nat: boolean, mapping: NatBehavior, filtering: NatBehavior): NatType {
  if (!nat) return filtering === 'endpoint-independent' ? 'OPEN' : 'SYMMETRIC_UDP_FIREWALL';
  if (mapping !== 'endpoint-independent') return mapping === 'unknown' ? 'PORT_RESTRICTED_CONE' : 'SYMMETRIC';
  if (filtering === 'endpoint-independent') return 'FULL_CONE';
  if (filtering === 'address-dependent') return 'RESTRICTED_CONE';
  return 'PORT_RESTRICTED_CONE';
}

/** Mapping behaviour from the base mapping and those seen by O.ip:P.port and O.ip:O.port (pure). */
export function mappingBehaviorOf(base: Endpoint | undefined, altIp: Endpoint | undefined, altBoth: Endpoint | undefined): NatBehavior {
  if (!base || !altIp) return 'unknown';
  if (sameEndpoint(base, altIp)) return 'endpoint-independent';
  if (!altBoth) return 'unknown';
  return sameEndpoint(altIp, altBoth) ? 'address-dependent' : 'address-and-port-dependent';
}

interface Ctx {
  t0: number;
  tests: NatTestRecord[];
  signal: AbortSignal;
  progress: (step: NatProgress['step'], message: string) => void;
}

function errText(e: unknown): string {
  return e instanceof TimeoutError ? 'timeout' : e instanceof Error ? e.message : String(e);
}

async function run(ctx: Ctx, name: string, client: StunClient, to: Endpoint, opts: Parameters<StunClient['binding']>[0]): Promise<StunMapping | undefined> {
  try {
    const m = await client.binding({ ...opts, server: to, signal: ctx.signal });
    ctx.tests.push({ name, to, ok: true, from: m.from, mapped: m.mapped, at: performance.now() - ctx.t0 });
    return m;
  } catch (e) {
    if (ctx.signal.aborted) throw toAbortError(ctx.signal);
    ctx.tests.push({ name, to, ok: false, at: performance.now() - ctx.t0, error: errText(e) });
    return undefined;
  }
}

/**
 * Detects the NAT in front of this host: `{ type, mapping, filtering, external, delta,
 * hairpin?, … }`. A server that never answers gives `BLOCKED` after `bindingTimeout`; every
 * step is bounded by `signal` / `timeout` (then it rejects with `AbortError` / `TimeoutError`).
 *
 * @example
 * const r = await detectNat({ servers: ['203.0.113.10'] });
 * console.log(r.type, r.mapping, r.filtering, r.external, r.delta?.type);
 */
export async function detectNat(opts: DetectNatOptions): Promise<NatDetection> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('detectNat expects options');
  throwIfAborted(opts.signal);
  if (!Array.isArray(opts.servers) || opts.servers.length === 0) throw new InvalidArgumentError('detectNat needs at least one STUN server');
  const all = opts.servers.map((s) => parseStunServer(s));
  const family = opts.family ?? (all[0] as Endpoint).family;
  const servers = all.filter((s) => s.family === family);
  if (servers.length === 0) throw new InvalidArgumentError(`no IPv${family} STUN server given`);
  for (const [k, v] of [['bindingTimeout', opts.bindingTimeout], ['rto', opts.rto], ['filterTimeout', opts.filterTimeout], ['timeout', opts.timeout]] as const) {
    if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new InvalidArgumentError(`${k} must be a positive number`);
  }

  const life = new AbortController();
  const signals = [life.signal, ...(opts.signal ? [opts.signal] : [])];
  let timer: NodeJS.Timeout | undefined;
  if (opts.timeout) {
    const ms = opts.timeout;
    timer = setTimeout(() => life.abort(new TimeoutError(`NAT detection timed out after ${ms} ms`)), ms);
  }
  const signal = signals.length === 1 ? life.signal : AbortSignal.any(signals);
  const ctx: Ctx = {
    t0: performance.now(),
    tests: [],
    signal,
    progress: (step, message) => {
      try {
        opts.onProgress?.({ step, message });
      } catch {
        /* a throwing progress callback must not break the detection */
      }
    },
  };
  const clients: StunClient[] = [];
  const open = async (bind?: BindOptions): Promise<StunClient> => {
    const c = await StunClient.open({ server: servers[0] as Endpoint, family, bind, signal, classic: opts.classic });
    clients.push(c);
    return c;
  };
  const bindNoPort: BindOptions | undefined = opts.bind ? { ...opts.bind, port: 0 } : undefined;

  // The delta test runs on its own sockets, alongside everything else.
  let deltaP: Promise<DeltaResult | string> | undefined;
  const startDelta = (server: Endpoint): void => {
    if (opts.delta === false || deltaP) return;
    ctx.progress('delta', 'port allocation test');
    const extra = typeof opts.delta === 'object' ? opts.delta : {};
    const bind = opts.bind ? { host: opts.bind.host, iface: opts.bind.iface } : undefined;
    deltaP = detectDelta({ ...extra, servers: [server], family, bind, signal }).then(
      (d) => d,
      (e: unknown) => errText(e),
    );
  };

  try {
    const result = await detect();
    if (deltaP) {
      const d = await deltaP;
      throwIfAborted(signal);
      if (typeof d === 'string') result.deltaError = d;
      else result.delta = d;
    }
    result.ms = performance.now() - ctx.t0;
    ctx.progress('done', `${result.type} in ${result.ms.toFixed(0)} ms`);
    return result;
  } finally {
    if (timer) clearTimeout(timer);
    life.abort();
    await Promise.all(clients.map((c) => c.close()));
    if (deltaP) await deltaP;
  }

  async function detect(): Promise<NatDetection> {
    const base = (): NatDetection => ({
      type: 'BLOCKED', mapping: 'unknown', filtering: 'unknown', external: undefined, local: undefined, nat: undefined,
      delta: undefined, method: 'none', server: undefined, otherAddress: undefined, ms: 0, tests: ctx.tests,
    });
    const bindingTimeout = opts.bindingTimeout ?? 2000;
    const rto = opts.rto ?? 200;
    // Phase 1: test I on A, base mapping on B, per server until one answers.
    let a: StunClient | undefined;
    let b: StunClient | undefined;
    let t1: StunMapping | undefined;
    let mb: StunMapping | undefined;
    let server: Endpoint | undefined;
    const plain: StunMapping[] = [];
    for (const s of servers) {
      ctx.progress('binding', `test I: Binding to ${formatEndpoint(s)}`);
      const ca = await open(opts.bind);
      const cb = await open(bindNoPort);
      const [r1, r2] = await Promise.all([
        run(ctx, 'I', ca, s, { rto, timeout: bindingTimeout, maxTries: 100 }),
        run(ctx, 'map-base', cb, s, { rto, timeout: bindingTimeout, maxTries: 100 }),
      ]);
      // The delta test starts once a server answered (so it does not disturb test I's RTT).
      if (r1) startDelta(s);
      if (r1 && r1.otherAddress) {
        a = ca;
        b = cb;
        t1 = r1;
        mb = r2;
        server = s;
        break;
      }
      if (r1) plain.push(r1);
      // This server cannot do the change tests; A must only ever have talked to the server used for them.
      await Promise.all([ca.close(), cb.close()]);
    }
    throwIfAborted(signal);
    if (!a || !b || !t1 || !server) {
      const first = plain[0];
      if (!first) return base();
      // Plain servers only: mapping from two of them, filtering unknown.
      const r = base();
      r.method = 'basic';
      r.server = first.server;
      r.external = first.mapped;
      r.local = first.local;
      r.nat = !sameEndpoint(first.mapped, first.local);
      const second = plain.find((p) => !sameEndpoint(p.server, first.server));
      if (!r.nat) r.mapping = 'endpoint-independent';
      else if (second) {
        ctx.progress('mapping', 'comparing mappings of two servers');
        const c = await open(bindNoPort);
        const m1 = await run(ctx, 'map-base', c, first.server, { rto, timeout: bindingTimeout, maxTries: 100 });
        const m2 = await run(ctx, 'map-II', c, second.server, { rto, timeout: bindingTimeout, maxTries: 100 });
        r.mapping = m1 && m2 ? (sameEndpoint(m1.mapped, m2.mapped) ? 'endpoint-independent' : 'address-and-port-dependent') : 'unknown';
      }
      r.type = natTypeOf(r.nat, r.mapping, r.filtering);
      return r;
    }
    const other = t1.otherAddress as Endpoint;
    const method: NatMethod = t1.otherKind === 'rfc5780' ? 'rfc5780' : 'rfc3489';
    const classic = opts.classic === true || method === 'rfc3489';
    const nat = !sameEndpoint(t1.mapped, t1.local);
    const rtt = Math.min(t1.rtt, mb?.rtt ?? Infinity);
    const filterTimeout = opts.filterTimeout ?? Math.min(2000, 250 + 4 * rtt);
    const filterRto = Math.max(40, Math.min(500, 2 * rtt + 20));

    // Phase 2: filtering on A, mapping on B, hairpin on C, all at once.
    ctx.progress('filtering', `filtering and mapping tests (other address ${formatEndpoint(other)})`);
    const stop = new AbortController();
    const filterSignal = AbortSignal.any([signal, stop.signal]);
    const filterRun = async (name: string, changeIp: boolean, changePort: boolean, ok: (from: Endpoint) => boolean): Promise<boolean> => {
      try {
        const m = await (a as StunClient).binding({
          server, changeIp, changePort, classic, acceptFrom: 'any', rto: filterRto, maxTries: 100, timeout: filterTimeout, signal: filterSignal,
        });
        const good = ok(m.from);
        ctx.tests.push({ name, to: server as Endpoint, ok: good, from: m.from, mapped: m.mapped, at: performance.now() - ctx.t0, ...(good ? {} : { error: 'answer from an unexpected source' }) });
        return good;
      } catch (e) {
        if (signal.aborted) throw toAbortError(signal);
        ctx.tests.push({ name, to: server as Endpoint, ok: false, at: performance.now() - ctx.t0, error: stop.signal.aborted ? 'not needed' : errText(e) });
        return false;
      }
    };
    const srv = server;
    const fII = filterRun('filter-II', true, true, (f) => f.host !== srv.host && f.port !== srv.port);
    const fIII = filterRun('filter-III', false, true, (f) => f.host === srv.host && f.port !== srv.port);
    // An answer to II settles filtering: stop waiting for III.
    void fII.then((ok) => ok && stop.abort(), () => undefined);
    const altIp: Endpoint = { host: other.host, port: server.port, family };
    const mapTests = nat
      ? Promise.all([
        run(ctx, 'map-II', b, altIp, { rto, timeout: bindingTimeout, maxTries: 100, classic }),
        run(ctx, 'map-III', b, other, { rto, timeout: bindingTimeout, maxTries: 100, classic }),
      ])
      : Promise.resolve([undefined, undefined] as const);
    const hairpinP = opts.hairpin === true ? hairpinTest(ctx, a, t1.mapped, family, bindNoPort, filterTimeout, filterRto) : undefined;
    const [iiOk, iiiOk, [m2, m3]] = await Promise.all([fII, fIII, mapTests]);
    const r = base();
    r.method = method;
    r.server = server;
    r.otherAddress = other;
    r.external = t1.mapped;
    r.local = t1.local;
    r.nat = nat;
    r.filtering = iiOk ? 'endpoint-independent' : iiiOk ? 'address-dependent' : 'address-and-port-dependent';
    r.mapping = nat ? mappingBehaviorOf(mb?.mapped, m2?.mapped, m3?.mapped) : 'endpoint-independent';
    r.type = natTypeOf(nat, r.mapping, r.filtering);
    if (hairpinP) {
      ctx.progress('hairpin', 'hairpin test');
      r.hairpin = await hairpinP;
    }
    return r;
  }
}

/** Sends a Binding request from a fresh socket to `mapped` (A's external address) and waits for it to arrive on A. */
async function hairpinTest(ctx: Ctx, a: StunClient, mapped: Endpoint, family: Family, bind: BindOptions | undefined, wait: number, rto: number): Promise<boolean> {
  const tid = newTransactionId();
  const req = encodeStun({ method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: tid, attributes: [] });
  const key = tid.toString('hex');
  const t = performance.now();
  let got = false;
  let wake: (() => void) | undefined;
  const off = a.transport.onPacket((p) => {
    if (p.kind === 'stun' && p.stun?.cls === CLASS.REQUEST && Buffer.from(p.stun.transactionId).toString('hex') === key) {
      got = true;
      wake?.();
    }
  });
  const c = await pipeOpen('udp', mapped, { family, bind, signal: ctx.signal, onMessage: () => undefined });
  try {
    let interval = rto;
    while (!got && performance.now() - t < wait && !ctx.signal.aborted) {
      await c.send(req).catch(() => undefined);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(interval, Math.max(1, wait - (performance.now() - t))));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      interval *= 2;
    }
  } finally {
    off();
    await c.close();
  }
  if (ctx.signal.aborted) throw toAbortError(ctx.signal);
  ctx.tests.push({ name: 'hairpin', to: mapped, ok: got, at: performance.now() - ctx.t0, ...(got ? {} : { error: 'timeout' }) });
  return got;
}
