/**
 * Plumbing shared by the NAT-PMP and PCP clients: the source address the OS uses towards a
 * gateway, one request/response exchange over a short-lived UDP pipe driven by a
 * retransmission schedule (with the source-address check), and per-gateway epoch tracking
 * so that one mapping noticing a gateway reboot makes every live mapping re-map.
 * @module
 */
import { createSocket } from 'node:dgram';
import { PortMappingError, TimeoutError, UnreachableError, type PortMappingMethod } from '../../errors.js';
import { formatEndpoint, nodeHost, toEndpoint, type Endpoint, type Family } from '../../interfaces/endpoint.js';
import { ipFamily } from '../../interfaces/ip.js';
import { isUnspecified } from '../../interfaces/scope.js';
import { pipeOpen } from '../../pipes/open.js';
import { badSignal, badTimeout, cancellable, throwIfAborted, toAbortError } from '../../util/abort.js';
import type { EpochCheck, EpochObservation } from './retransmit.js';
import { isFromServer } from './wire.js';

/** Options of one gateway operation (map, unmap, address query). */
export interface PortMapCallOptions {
  /** Cancels the operation; it rejects with `AbortError`. */
  signal?: AbortSignal;
  /**
   * Total time budget, ms: the retransmission schedule is cut to it, and when it runs out
   * the operation rejects with a {@link PortMappingError} whose `cause` is a `TimeoutError`.
   * `0` or `Infinity` = none of its own, as `undefined`.
   * @default the protocol's own schedule (NAT-PMP: 127.75 s; PCP: 30 s, see the client)
   */
  timeout?: number;
}

/**
 * The checked `timeout` of a gateway operation: `undefined` for none (`0`, `Infinity`,
 * `undefined`); throws `InvalidArgumentError` for anything that is not a non-negative number.
 * @internal
 */
export function callTimeout(opts: PortMapCallOptions | undefined): number | undefined {
  const t = opts?.timeout;
  const bad = badTimeout(t) ?? badSignal(opts?.signal);
  if (bad) throw bad;
  return t !== undefined && t > 0 && Number.isFinite(t) ? t : undefined;
}

/**
 * One deadline for the steps of a multi-step gateway operation (a route lookup then an
 * exchange, two SOAP calls, ...): each call returns the next step's options, with the
 * caller's signal and what is left of `opts.timeout` (at least 1 ms, so a step started after
 * the deadline ends at once), so the whole operation takes `opts.timeout`, not that much per
 * step. Without a timeout of its own (`0`, `Infinity`, `undefined`) every step gets
 * `opts.timeout` as it is. Throws `InvalidArgumentError` for a bad `timeout` or `signal`.
 * @internal
 */
export function stepBudget(opts: { signal?: AbortSignal | undefined; timeout?: number | undefined } | undefined): () => PortMapCallOptions {
  const bad = badTimeout(opts?.timeout) ?? badSignal(opts?.signal);
  if (bad) throw bad;
  const signal = opts?.signal;
  const t = opts?.timeout;
  if (t === undefined || !(t > 0 && Number.isFinite(t))) {
    const same: PortMapCallOptions = { ...(signal ? { signal } : {}), ...(t !== undefined ? { timeout: t } : {}) };
    return () => same;
  }
  const end = performance.now() + t;
  return () => ({ ...(signal ? { signal } : {}), timeout: Math.max(1, Math.ceil(end - performance.now())) });
}

/** Parses a gateway address (`'192.168.1.1'`, `'fe80::1%eth0'`) and port into an {@link Endpoint}. */
export function gatewayEndpoint(host: string, port: number): Endpoint {
  return toEndpoint({ host, port });
}

/** Longest a route lookup ({@link routeSourceAddress}) may take, whatever budget the caller has left (ms). */
export const ROUTE_LOOKUP_TIMEOUT_MS = 5_000;

/**
 * The local address the kernel picks to reach `dest` (a connected UDP socket's name; nothing
 * is sent). Rejects with `UnreachableError` when there is no route, `AbortError` when
 * `opts.signal` aborts, `TimeoutError` when `opts.timeout` (the caller's budget left, capped
 * at {@link ROUTE_LOOKUP_TIMEOUT_MS}) passes first, and `InvalidArgumentError` for a bad
 * `timeout` or `signal`. Pass the operation's budget left as `timeout` (`0`, `Infinity` or
 * `undefined` = none of its own: {@link ROUTE_LOOKUP_TIMEOUT_MS} then applies).
 */
export function routeSourceAddress(dest: Endpoint, opts?: PortMapCallOptions): Promise<string> {
  let t: number | undefined;
  try {
    t = callTimeout(opts);
  } catch (e) {
    return Promise.reject(e);
  }
  const timeout = Math.min(t ?? ROUTE_LOOKUP_TIMEOUT_MS, ROUTE_LOOKUP_TIMEOUT_MS);
  return cancellable<string>({ signal: opts?.signal, timeout }, `route lookup towards ${formatEndpoint(dest)}`, (resolve, reject) => {
    const sock = createSocket(dest.family === 6 ? 'udp6' : 'udp4');
    sock.on('error', (e) => reject(new UnreachableError(`no route to ${formatEndpoint(dest)}: ${e.message}`, { cause: e })));
    const host = dest.family === 6 ? nodeHost(dest) : dest.host; // a zone on IPv4 would send Node to DNS
    sock.connect(dest.port || 9, host, () => {
      try {
        const a = sock.address().address.split('%')[0] ?? '';
        if (ipFamily(a) === undefined || isUnspecified(a)) throw new Error(`kernel chose no source address (${a})`);
        resolve(a);
      } catch (e) {
        reject(new UnreachableError(`no route to ${formatEndpoint(dest)}`, { cause: e }));
      }
    });
    return () => {
      try {
        sock.close();
      } catch {
        /* already closed */
      }
    };
  });
}

/** What an exchange's `accept` callback returns for a datagram that does not answer the request. */
export interface Ignored {
  /** Why the datagram was ignored (collected for the final error message). */
  ignore: string;
}

/** Arguments of {@link udpExchange}. */
export interface UdpExchange<T> {
  method: PortMappingMethod;
  /** Short description for errors, e.g. `'NAT-PMP map udp 7777'`. */
  what: string;
  /** The gateway; only datagrams from exactly this address and port are looked at. */
  server: Endpoint;
  /** Local address to bind (so the source address is known); `undefined` = the wildcard. */
  localAddress: string | undefined;
  request: Uint8Array;
  /** Waits between transmissions, ms (see retransmit.ts). */
  waits: Iterable<number>;
  /**
   * Looks at a datagram from the server: returns the result, an {@link Ignored} for one that
   * does not answer this request (malformed, other id), or throws to fail the exchange.
   */
  accept: (data: Buffer) => T | Ignored;
  signal?: AbortSignal | undefined;
}

function isIgnored(x: unknown): x is Ignored {
  return typeof x === 'object' && x !== null && typeof (x as Ignored).ignore === 'string' && Object.keys(x).length === 1;
}

/**
 * Sends `request` to `server` following `waits`, and resolves with the first datagram from
 * `server` that `accept` takes. Datagrams from any other address/port are dropped unseen;
 * malformed ones are ignored. When the schedule ends: {@link PortMappingError} (cause:
 * `TimeoutError`). The UDP pipe is closed however it ends.
 */
export async function udpExchange<T>(x: UdpExchange<T>): Promise<T> {
  throwIfAborted(x.signal ?? undefined);
  const family: Family = x.server.family;
  let foreign = 0;
  const pipe = await pipeOpen('udp', undefined, {
    bind: { host: x.localAddress ?? (family === 6 ? '::' : '0.0.0.0'), port: 0 },
    family,
    // No SUB_ALL queue: only the source-checked subscription keeps anything; others are counted.
    onMessage: (m) => {
      if (!isFromServer(m.from, x.server)) foreign++;
    },
    ...(x.signal ? { signal: x.signal } : {}),
  });
  const ignored: string[] = [];
  let attempts = 0;
  let elapsed = 0;
  try {
    const sub = pipe.subscribe({ pattern: (_d, from) => isFromServer(from, x.server) }, { maxQueue: 64, maxQueueBytes: 256 * 1024 });
    for (const wait of x.waits) {
      throwIfAborted(x.signal ?? undefined);
      attempts++;
      try {
        await pipe.send(x.request, x.server);
      } catch (e) {
        throw new PortMappingError(x.method, `${x.what}: cannot send to ${formatEndpoint(x.server)}: ${(e as Error).message}`, { cause: e });
      }
      const deadline = performance.now() + wait;
      for (;;) {
        const left = Math.ceil(deadline - performance.now());
        if (left <= 0) break;
        let data: Buffer;
        try {
          data = (await pipe.recv({ sub, timeout: left, ...(x.signal ? { signal: x.signal } : {}) })).data;
        } catch (e) {
          // The caller's abort may carry a TimeoutError reason: that is not this wait's end.
          if (x.signal?.aborted) throw toAbortError(x.signal);
          if (e instanceof TimeoutError) break;
          throw e;
        }
        const r = x.accept(data);
        if (isIgnored(r)) {
          if (ignored.length < 8) ignored.push(r.ignore);
          continue;
        }
        return r;
      }
      elapsed += wait;
    }
    const other = foreign;
    const notes = [
      ignored.length ? `ignored: ${ignored.join('; ')}` : '',
      other ? `${other} datagram(s) from other sources dropped` : '',
    ].filter(Boolean);
    const msg = `${x.what}: no valid answer from ${formatEndpoint(x.server)} after ${attempts} attempt(s) in ${Math.round(elapsed)} ms`;
    throw new PortMappingError(x.method, notes.length ? `${msg} (${notes.join('; ')})` : msg, {
      cause: new TimeoutError(`${x.what} timed out`),
    });
  } finally {
    await pipe.close();
  }
}

/** Listener told that a gateway lost its mapping state (rebooted). */
export type LostStateListener = (reason: string) => void;

/**
 * What the client knows of one gateway's epoch (RFC 6886 §3.6, RFC 6887 §8.5). Every
 * response is fed to {@link GatewayEpoch.observe}; an invalid epoch tells every listener
 * (the live mappings through this gateway) to re-map.
 */
export class GatewayEpoch {
  private last: EpochObservation | undefined;
  private readonly listeners = new Set<LostStateListener>();
  constructor(private readonly check: (prev: EpochObservation | undefined, epoch: number, nowMs: number) => EpochCheck) {}

  /** Records a response's epoch; returns the reason when it shows lost state (listeners are told asynchronously). */
  observe(epoch: number): string | undefined {
    let r: EpochCheck;
    try {
      r = this.check(this.last, epoch, performance.now());
    } catch {
      return undefined;
    }
    this.last = r.next;
    if (!r.lostState) return undefined;
    const reason = r.reason ?? 'gateway lost its mapping state';
    for (const l of [...this.listeners]) queueMicrotask(() => l(reason));
    return reason;
  }

  /** True when no mapping listens (the entry may be forgotten). */
  get idle(): boolean {
    return this.listeners.size === 0;
  }

  /** Registers a listener; returns its remover. */
  onLostState(l: LostStateListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

/**
 * Gateway epochs (one per method and gateway) tracked before adding another first forgets
 * every idle one. Entries with live mappings are kept, so the map may grow beyond it.
 */
const MAX_IDLE_EPOCHS = 256;
const epochs = new Map<string, GatewayEpoch>();

/** The shared {@link GatewayEpoch} of `method` at `server` (one per process). @internal */
export function gatewayEpoch(
  method: 'nat-pmp' | 'pcp',
  server: Endpoint,
  check: (prev: EpochObservation | undefined, epoch: number, nowMs: number) => EpochCheck,
): GatewayEpoch {
  const key = `${method}|${formatEndpoint(server)}`;
  let e = epochs.get(key);
  if (!e) {
    if (epochs.size >= MAX_IDLE_EPOCHS) for (const [k, v] of epochs) if (v.idle) epochs.delete(k); // bounded; live ones are kept
    e = new GatewayEpoch(check);
    epochs.set(key, e);
  }
  return e;
}
