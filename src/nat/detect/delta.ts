/**
 * Port allocation ("delta") detection, with P2PD's classes: how a NAT picks the external port
 * of a new mapping. Several STUN bindings are made from separate sockets, first on consecutive
 * local ports, then on local ports with irregular gaps, all requests sent back to back (so
 * their order is the order the NAT allocates in), and the (local, mapped) port pairs are
 * classified:
 *
 * - `EQUAL`: the mapped port is the local port (port preservation, or no NAT).
 * - `PRESERVING`: distances between local ports are kept between mapped ports (mapped =
 *   local + a constant offset).
 * - `INDEPENDENT` (+n): each new mapping gets the previous mapped port + n, whatever the
 *   local port (seen on the irregular series).
 * - `DEPENDENT` (+n): the mapped port moves by n when the local port moves by 1 (seen on the
 *   consecutive series).
 * - `RANDOM`: none of these.
 *
 * A class wins when at least 60 % of the relevant samples (and at least 2) agree.
 * @module
 */
import { InvalidArgumentError, TimeoutError } from '../../errors.js';
import { formatEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import type { BindOptions } from '../../pipes/types.js';
import { throwIfAborted, toAbortError, type AbortOptions } from '../../util/abort.js';
import { abortAfter, checkTimeoutAndSignal, hasDeadline } from '../deadline.js';
import { parseStunServer, StunClient, type StunMapping } from '../stun/client.js';

/** P2PD's port allocation classes. */
export type DeltaType = 'EQUAL' | 'PRESERVING' | 'INDEPENDENT' | 'DEPENDENT' | 'RANDOM';
/** Every {@link DeltaType}. */
export const DELTA_TYPES: readonly DeltaType[] = ['EQUAL', 'PRESERVING', 'INDEPENDENT', 'DEPENDENT', 'RANDOM'];
/** P2PD's numeric delta codes (1 = not applicable / unknown), as its peer addresses carry them. */
export const DELTA_TYPE_CODE: Readonly<Record<DeltaType | 'NA', number>> = {
  NA: 1, EQUAL: 2, PRESERVING: 3, INDEPENDENT: 4, DEPENDENT: 5, RANDOM: 6,
};

/** One binding of the delta test. */
export interface PortSample {
  /** Which series: consecutive local ports, or irregular gaps. */
  series: 'consecutive' | 'spread';
  /** Position in the send order of its series. */
  index: number;
  /** Local port. */
  local: number;
  /** Mapped (external) port, `undefined` when the binding failed. */
  mapped: number | undefined;
  /** Mapped address, when there was an answer. */
  external?: Endpoint;
}

/** The result of {@link detectDelta} / {@link classifyDelta}. */
export interface DeltaResult {
  /** The class. */
  type: DeltaType;
  /**
   * `INDEPENDENT` / `DEPENDENT`: the step n (may be negative). `PRESERVING`: the offset mapped −
   * local seen most. `EQUAL` / `RANDOM`: 0.
   */
  value: number;
  /** The samples it was computed from. */
  samples: PortSample[];
  /** Milliseconds the test took (0 for {@link classifyDelta}). */
  ms: number;
}

/** Options of {@link detectDelta}. */
export interface DeltaOptions extends AbortOptions {
  /** STUN servers (IP literals); bindings go round-robin to them. One is enough. */
  servers: (EndpointLike | { host: string; port?: number })[];
  /** Address family. @default the first server's */
  family?: Family;
  /** Local address or interface to bind (the port is chosen by the test). */
  bind?: Omit<BindOptions, 'port'>;
  /** Bindings per series. @default 8 */
  count?: number;
  /** Initial RTO of each binding (ms). @default 200 */
  rto?: number;
  /** Per-binding time limit (ms). @default 2000 */
  bindingTimeout?: number;
  /** Lowest local port used. @default 20000 */
  minPort?: number;
  /** Highest local port used. @default 60999 */
  maxPort?: number;
  /** Source of randomness in [0, 1) (tests). @default Math.random */
  random?: () => number;
}

/** Signed difference b − a of two ports, wrapped into −32768…32767. */
export function portDiff(a: number, b: number): number {
  return ((((b - a) % 65536) + 65536 + 32768) % 65536) - 32768;
}

function need(n: number): number {
  return Math.max(2, Math.ceil(n * 0.6));
}

function mostCommon(xs: number[]): { value: number; count: number } | undefined {
  const counts = new Map<number, number>();
  let best: { value: number; count: number } | undefined;
  for (const x of xs) {
    const c = (counts.get(x) ?? 0) + 1;
    counts.set(x, c);
    if (!best || c > best.count) best = { value: x, count: c };
  }
  return best;
}

function pairs(samples: PortSample[], series: PortSample['series']): { dl: number; dm: number }[] {
  const s = samples.filter((x) => x.series === series).sort((a, b) => a.index - b.index);
  const out: { dl: number; dm: number }[] = [];
  for (let i = 1; i < s.length; i++) {
    const a = s[i - 1] as PortSample;
    const b = s[i] as PortSample;
    if (a.mapped === undefined || b.mapped === undefined || b.index !== a.index + 1) continue;
    out.push({ dl: portDiff(a.local, b.local), dm: portDiff(a.mapped, b.mapped) });
  }
  return out;
}

/**
 * Classifies samples (pure; see the module doc). Samples without a mapped port are skipped;
 * with fewer than 2 answered samples the result is `RANDOM` (nothing can be predicted).
 */
export function classifyDelta(samples: PortSample[]): DeltaResult {
  const ok = samples.filter((s) => s.mapped !== undefined);
  const result = (type: DeltaType, value = 0): DeltaResult => ({ type, value, samples, ms: 0 });
  if (ok.length < 2) return result('RANDOM');
  if (ok.filter((s) => s.mapped === s.local).length >= need(ok.length)) return result('EQUAL');
  const p1 = pairs(samples, 'consecutive');
  const p2 = pairs(samples, 'spread');
  const all = [...p1, ...p2];
  if (all.length > 0 && all.filter((p) => p.dm === p.dl).length >= need(all.length)) {
    const off = mostCommon(ok.map((s) => portDiff(s.local, s.mapped as number)));
    return result('PRESERVING', off?.value ?? 0);
  }
  // Independent: a constant step per new mapping even though the local ports jump irregularly.
  const ind = mostCommon(p2.filter((p) => p.dm !== p.dl).map((p) => p.dm));
  if (ind && p2.length > 0 && ind.count >= need(p2.length) && ind.value !== 0) return result('INDEPENDENT', ind.value);
  // Dependent: local port +1 moves the mapped port by a constant n.
  const dep = mostCommon(p1.filter((p) => p.dl === 1).map((p) => p.dm));
  if (dep && p1.length > 0 && dep.count >= need(p1.length) && dep.value !== 0) return result('DEPENDENT', dep.value);
  return result('RANDOM');
}

/**
 * Runs the delta test: `count` bindings from consecutive local ports and `count` from ports
 * with irregular gaps, sent back to back (their order is the allocation order), then
 * {@link classifyDelta}. `timeout` bounds the whole test (sockets opened, bindings answered).
 * Rejects with `TimeoutError` when no binding at all was answered or `timeout` passed,
 * `AbortError` on abort, `BindError` when no free port range was found.
 */
export async function detectDelta(opts: DeltaOptions): Promise<DeltaResult> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('detectDelta expects options');
  throwIfAborted(opts.signal);
  checkTimeoutAndSignal(opts);
  for (const [k, v] of [['bindingTimeout', opts.bindingTimeout], ['rto', opts.rto]] as const) {
    if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new InvalidArgumentError(`${k} must be a positive number`);
  }
  if (!Array.isArray(opts.servers) || opts.servers.length === 0) throw new InvalidArgumentError('detectDelta needs at least one STUN server');
  const servers = opts.servers.map((s) => parseStunServer(s));
  const family = opts.family ?? (servers[0] as Endpoint).family;
  const usable = servers.filter((s) => s.family === family);
  if (usable.length === 0) throw new InvalidArgumentError(`no IPv${family} STUN server given`);
  const count = opts.count ?? 8;
  if (!Number.isInteger(count) || count < 2 || count > 64) throw new InvalidArgumentError('count must be an integer 2-64');
  const rnd = opts.random ?? Math.random;
  const minPort = opts.minPort ?? 20000;
  const maxPort = opts.maxPort ?? 60999;
  if (!(Number.isInteger(minPort) && Number.isInteger(maxPort) && minPort >= 1024 && maxPort <= 65535 && maxPort - minPort >= 64 * count)) {
    throw new InvalidArgumentError('minPort/maxPort must leave room for the test (>= 64 ports per binding)');
  }
  const t0 = performance.now();
  const clients: StunClient[] = [];
  const samples: PortSample[] = [];
  // `timeout` bounds the whole test (opening the sockets included), whatever `bindingTimeout` is.
  const life = new AbortController();
  const stopTimer = abortAfter(life, opts.timeout, 'delta test');
  const signal = !hasDeadline(opts.timeout) ? (opts.signal ?? life.signal) : opts.signal ? AbortSignal.any([life.signal, opts.signal]) : life.signal;
  const sopts: DeltaOptions = { ...opts, signal };
  try {
    // Consecutive ports, then irregular gaps (2..33) starting elsewhere.
    const consecutive = await openSeries(sopts, usable, family, 'consecutive', count, rnd, minPort, maxPort, clients, samples);
    const spread = await openSeries(sopts, usable, family, 'spread', count, rnd, minPort, maxPort, clients, samples);
    // Send everything back to back (one synchronous loop): allocation order = this order.
    const all = [...consecutive, ...spread];
    const results = await Promise.allSettled(
      all.map(({ client, sample }, i) =>
        client.binding({
          server: usable[i % usable.length] as Endpoint,
          rto: opts.rto ?? 200,
          timeout: opts.bindingTimeout ?? 2000,
          signal,
        }).then((m: StunMapping) => {
          sample.mapped = m.mapped.port;
          sample.external = m.mapped;
        }),
      ),
    );
    throwIfAborted(signal);
    if (samples.every((s) => s.mapped === undefined)) {
      const first = results.find((r) => r.status === 'rejected');
      throw new TimeoutError(`delta test: no STUN server answered (${usable.map(formatEndpoint).join(', ')})`, {
        cause: first?.status === 'rejected' ? first.reason : undefined,
      });
    }
    const r = classifyDelta(samples);
    r.ms = performance.now() - t0;
    return r;
  } catch (e) {
    // A binding or an open cut short by our deadline or the caller's signal says so.
    if (signal.aborted) throw toAbortError(signal);
    throw e;
  } finally {
    stopTimer();
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function openSeries(
  opts: DeltaOptions, servers: Endpoint[], family: Family, series: PortSample['series'], count: number, rnd: () => number,
  minPort: number, maxPort: number, clients: StunClient[], samples: PortSample[],
): Promise<{ client: StunClient; sample: PortSample }[]> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 8; attempt++) {
    throwIfAborted(opts.signal);
    const span = series === 'consecutive' ? count : count * 34;
    const start = minPort + Math.floor(rnd() * (maxPort - minPort - span));
    const ports: number[] = [];
    let p = start;
    for (let i = 0; i < count; i++) {
      ports.push(p);
      p += series === 'consecutive' ? 1 : 2 + Math.floor(rnd() * 32);
    }
    const opened: { client: StunClient; sample: PortSample }[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const port = ports[i] as number;
        const client = await StunClient.open({
          server: servers[0] as Endpoint,
          family,
          bind: { ...opts.bind, port },
          signal: opts.signal,
        });
        opened.push({ client, sample: { series, index: i, local: client.local.port, mapped: undefined } });
      }
      for (const o of opened) {
        clients.push(o.client);
        samples.push(o.sample);
      }
      return opened;
    } catch (e) {
      await Promise.all(opened.map((o) => o.client.close()));
      if ((e as { code?: string }).code !== 'ERR_ADDRESS_IN_USE') throw e;
      lastError = e;
    }
  }
  throw lastError;
}
