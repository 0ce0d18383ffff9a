/**
 * The single tests `detectNat` runs (see `nat-type.ts`): one recorded Binding transaction, and
 * the hairpin test.
 * @module
 */
import { TimeoutError } from '../../errors.js';
import type { Endpoint, Family } from '../../interfaces/endpoint.js';
import { pipeOpen } from '../../pipes/open.js';
import type { BindOptions } from '../../pipes/types.js';
import { toAbortError } from '../../util/abort.js';
import { CLASS, METHOD } from '../stun/constants.js';
import { encodeStun, newTransactionId } from '../stun/message.js';
import type { StunClient, StunMapping } from '../stun/client.js';
import type { NatProgress, NatTestRecord } from './nat-model.js';

/** State shared by the tests of one detection. */
export interface Ctx {
  /** Start of the detection (`performance.now()`). */
  t0: number;
  /** Every test so far, in order. */
  tests: NatTestRecord[];
  /** Ends the detection. */
  signal: AbortSignal;
  /** Reports progress (never throws). */
  progress: (step: NatProgress['step'], message: string) => void;
}

/** A test's failure, for its record: `'timeout'` or the error message. */
export function errText(e: unknown): string {
  return e instanceof TimeoutError ? 'timeout' : e instanceof Error ? e.message : String(e);
}

/** One Binding from `client` to `to`, recorded as test `name`; `undefined` when it got no answer. */
export async function run(ctx: Ctx, name: string, client: StunClient, to: Endpoint, opts: Parameters<StunClient['binding']>[0]): Promise<StunMapping | undefined> {
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

/** Sends a Binding request from a fresh socket to `mapped` (A's external address) and waits for it to arrive on A. */
export async function hairpinTest(ctx: Ctx, a: StunClient, mapped: Endpoint, family: Family, bind: BindOptions | undefined, wait: number, rto: number): Promise<boolean> {
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
