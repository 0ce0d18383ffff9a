/**
 * Leak probes for test/leaks-*.test.ts: run an open → use → close cycle many times and check
 * that nothing accumulates. Installed per file with {@link useLeakProbe}; each check compares
 * the state after the cycles with a baseline taken after two warm-up cycles:
 *
 * - active resources (`process.getActiveResourcesInfo()`, by kind) are back to the baseline;
 * - the number of live timers and immediates, ref'd or not (async_hooks `init` / `destroy`),
 *   is back to the baseline: an unref'd interval left running does not show among the active
 *   resources;
 * - every TCP / UDP socket created during the cycles that is closed by now can be garbage
 *   collected (WeakRefs from the `net.*.socket` / `udp.socket` diagnostics channels, checked
 *   after forced GCs): a closed connection kept reachable by a long-lived object is a leak
 *   even when its handle is gone;
 * - no process warning was emitted (e.g. `MaxListenersExceededWarning`);
 * - the `'abort'` listener count of every AbortSignal that src/ created before the baseline
 *   and that is still alive and not aborted (a node's or server's life signal) is unchanged,
 *   as is that of the caller's signal passed to the operations and the listener counts of the
 *   long-lived emitters given;
 * - the heap after forced GCs grew by less than a generous bound.
 * @module
 */
import { createHook } from 'node:async_hooks';
import dc from 'node:diagnostics_channel';
import { getEventListeners, type EventEmitter } from 'node:events';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect } from 'vitest';

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Forced full GCs, with turns of the event loop between them (WeakRefs clear between jobs). */
export async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await sleep(20);
    gc();
  }
}

/** Active resources by kind. */
export function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Kinds whose count is above `base`, with the excess. */
function excess(base: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(resources())) if (n > (base[k] ?? 0)) out[k] = n - (base[k] ?? 0);
  return out;
}

/** Polls until `cond` holds or `ms` pass (no assertion on how long it took). */
async function settle(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(25);
}

/** Waits until no kind of resource is above `base`; fails with the excess otherwise. */
export async function expectResourcesBack(base: Record<string, number>): Promise<void> {
  await settle(() => Object.keys(excess(base)).length === 0);
  expect(excess(base), 'active resources above the baseline').toEqual({});
}

/** Options of {@link LeakProbe.cycles}. */
export interface CycleOptions {
  /** A signal the test passes to the operations: it must hold no 'abort' listener afterwards. */
  signal?: AbortSignal;
  /** Long-lived emitters whose listener counts (every event) must not grow. */
  emitters?: EventEmitter[];
  /** Heap growth allowed over the cycles, bytes. @default 8 MiB */
  heapBound?: number;
  /** Closed sockets that may stay reachable (a bounded number the test itself explains). @default 0 */
  retained?: number;
}

/** What {@link LeakProbe.cycles} measured. */
export interface CycleReport {
  /** TCP / UDP sockets created during the cycles (all closed ones were collected). */
  sockets: number;
  /** Long-lived signals of src/ whose listeners were compared. */
  signals: number;
  /** Heap growth over the cycles, bytes. */
  heapGrowth: number;
}

/** See the module doc. */
export interface LeakProbe {
  /** Two warm-up runs of `cycle`, the baseline, `n` runs, then every check; resolves with what was measured. */
  cycles(n: number, cycle: (i: number) => Promise<void>, opts?: CycleOptions): Promise<CycleReport>;
}

interface TrackedSignal {
  ref: WeakRef<AbortSignal>;
  born: number;
}

const SRC = new URL('../../src/', import.meta.url).pathname;

/** Whether the code creating a signal (the first frame outside this file) is in src/. */
function fromSrc(): boolean {
  const caller = (new Error().stack ?? '').split('\n').slice(1).find((l) => !l.includes('helpers/leaks'));
  return caller !== undefined && caller.includes(SRC);
}

function listenerCounts(emitters: EventEmitter[]): number[] {
  return emitters.map((e) => e.eventNames().reduce((n, ev) => n + e.listenerCount(ev), 0));
}

function closedSocket(s: object): boolean {
  if ('destroyed' in s) return (s as { destroyed: boolean }).destroyed;
  try {
    (s as { address(): unknown }).address(); // a dgram socket: throws once closed
    return false;
  } catch {
    return true;
  }
}

/**
 * Installs the probes for the calling test file (diagnostics channels, an async hook, an
 * `AbortController` / `AbortSignal.any` wrapper that records the signals src/ creates, a
 * warning listener); removed after the file.
 */
export function useLeakProbe(): LeakProbe {
  let phase = 0; // bumped at each baseline: signals born before it are the long-lived ones
  let recording = false;
  let watchWarnings = false; // longer than `recording`: warnings are emitted on a later tick
  let sockets: WeakRef<object>[] = [];
  /** Every live timer / immediate created since the probe was installed: where, and in which phase. */
  const timers = new Map<number, { where: string; born: number }>();
  const warnings: string[] = [];
  let signals: TrackedSignal[] = [];
  const onSocket = (m: unknown): void => {
    if (recording) sockets.push(new WeakRef((m as { socket: object }).socket));
  };
  const onWarning = (w: Error): void => {
    if (watchWarnings) warnings.push(`${w.name}: ${w.message}`);
  };
  const hook = createHook({
    init(id, type) {
      if (type === 'Timeout' || type === 'Immediate') timers.set(id, { where: `${type}${(new Error().stack ?? '').split('\n').slice(3, 8).join(' <')}`, born: phase });
    },
    destroy(id) {
      timers.delete(id);
    },
  });
  const Original = globalThis.AbortController;
  const originalAny = AbortSignal.any;
  const remember = (s: AbortSignal): void => {
    if (fromSrc()) signals.push({ ref: new WeakRef(s), born: phase });
  };
  class TrackedController extends Original {
    constructor() {
      super();
      remember(this.signal);
    }
  }
  beforeAll(() => {
    for (const ch of ['net.client.socket', 'net.server.socket', 'udp.socket']) dc.subscribe(ch, onSocket);
    process.on('warning', onWarning);
    hook.enable();
    globalThis.AbortController = TrackedController;
    AbortSignal.any = (list: AbortSignal[]): AbortSignal => {
      const s = originalAny.call(AbortSignal, list);
      remember(s);
      return s;
    };
  });
  afterAll(() => {
    for (const ch of ['net.client.socket', 'net.server.socket', 'udp.socket']) dc.unsubscribe(ch, onSocket);
    process.off('warning', onWarning);
    hook.disable();
    globalThis.AbortController = Original;
    AbortSignal.any = originalAny;
  });

  /** Listener counts of the long-lived signals src/ created before the current phase. */
  const longLived = (): Map<TrackedSignal, number> => {
    const out = new Map<TrackedSignal, number>();
    signals = signals.filter((t) => t.ref.deref()?.aborted === false);
    for (const t of signals) {
      const s = t.ref.deref();
      if (s && !s.aborted && t.born < phase) out.set(t, getEventListeners(s, 'abort').length);
    }
    return out;
  };

  return {
    async cycles(n, cycle, opts = {}) {
      await cycle(-2);
      await cycle(-1);
      await sleep(50);
      await collectGarbage();
      phase++;
      const base = resources();
      const signalsBefore = longLived();
      const emittersBefore = listenerCounts(opts.emitters ?? []);
      const heapBefore = process.memoryUsage().heapUsed;
      const timersBefore = timers.size;
      sockets = [];
      warnings.length = 0;
      recording = watchWarnings = true;
      try {
        for (let i = 0; i < n; i++) await cycle(i);
      } finally {
        recording = false;
      }
      await expectResourcesBack(base);
      // A long-lived object may replace a timer of its own (a keep-alive re-armed per packet):
      // what must not grow is the number of live timers.
      await settle(() => timers.size <= timersBefore);
      watchWarnings = false;
      const pending = [...timers.values()].filter((t) => t.born === phase).map((t) => t.where);
      expect(timers.size, `live timers and immediates above the baseline; those created during the cycles:\n${pending.join('\n')}`).toBeLessThanOrEqual(timersBefore);
      expect(warnings, 'process warnings during the cycles').toEqual([]);
      const retained = async (): Promise<number> => {
        await collectGarbage();
        return sockets.filter((r) => {
          const s = r.deref();
          return s !== undefined && closedSocket(s);
        }).length;
      };
      const allowed = opts.retained ?? 0;
      let kept = await retained();
      for (let i = 0; i < 5 && kept > allowed; i++) kept = await retained();
      expect(kept, `closed sockets (of ${sockets.length} created) still reachable after GC`).toBeLessThanOrEqual(allowed);
      const grown: string[] = [];
      for (const [t, before] of signalsBefore) {
        const s = t.ref.deref();
        const now = s && !s.aborted ? getEventListeners(s, 'abort').length : 0;
        if (now > before) grown.push(`${before} → ${now}`);
      }
      expect(grown, "'abort' listeners added to long-lived signals of src/").toEqual([]);
      if (opts.signal) expect(getEventListeners(opts.signal, 'abort'), "'abort' listeners left on the caller's signal").toHaveLength(0);
      expect(listenerCounts(opts.emitters ?? []), 'listeners on the long-lived emitters').toEqual(emittersBefore);
      await collectGarbage();
      const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
      expect(heapGrowth, 'heap growth over the cycles (bytes)').toBeLessThan(opts.heapBound ?? 8 * 1024 * 1024);
      return { sockets: sockets.length, signals: signalsBefore.size, heapGrowth };
    },
  };
}
