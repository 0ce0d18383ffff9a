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
import { InvalidArgumentError } from '../../errors.js';
import { formatEndpoint, sameEndpoint, type Endpoint } from '../../interfaces/endpoint.js';
import type { BindOptions } from '../../pipes/types.js';
import { throwIfAborted, toAbortError } from '../../util/abort.js';
import { abortAfter, checkTimeoutAndSignal } from '../deadline.js';
import { parseStunServer, StunClient, type StunMapping } from '../stun/client.js';
import { detectDelta, type DeltaResult } from './delta.js';
import { mappingBehaviorOf, natTypeOf, type DetectNatOptions, type NatDetection, type NatMethod } from './nat-model.js';
import { errText, hairpinTest, run, type Ctx } from './nat-probes.js';

export {
  mappingBehaviorOf, NAT_TYPE_CODE, NAT_TYPES, natTypeOf,
  type DetectNatOptions, type NatBehavior, type NatDetection, type NatMethod, type NatProgress, type NatTestRecord, type NatType,
} from './nat-model.js';

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
  for (const [k, v] of [['bindingTimeout', opts.bindingTimeout], ['rto', opts.rto], ['filterTimeout', opts.filterTimeout]] as const) {
    if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new InvalidArgumentError(`${k} must be a positive number`);
  }
  checkTimeoutAndSignal(opts); // 0 / Infinity = no overall timeout, as everywhere

  const life = new AbortController();
  const signals = [life.signal, ...(opts.signal ? [opts.signal] : [])];
  // Chained past 2^31 − 1 ms: a plain setTimeout would fire a longer timeout after 1 ms.
  const stopTimer = abortAfter(life, opts.timeout, 'NAT detection');
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
    stopTimer();
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
