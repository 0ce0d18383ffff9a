/**
 * linkSignals (src/util/abort.ts): one signal following long-lived parents without leaving
 * anything on them once done. On Node 20, `AbortSignal.any()` leaves an entry on each source
 * that is never removed; a node's life signal outlives every connect and served request, so
 * the node links to it with linkSignals instead.
 */
import { describe, expect, it } from 'vitest';
import { AbortError, TimeoutError } from '../src/errors.js';
import { StunClient } from '../src/nat/stun/client.js';
import { startStunServer } from '../src/nat/stun/server.js';
import { startP2pNode, type P2pNode } from '../src/node/index.js';
import { linkSignals } from '../src/util/abort.js';
import { useCleanup } from './helpers/pipes.js';

const cleanup = useCleanup();

/** Entries `AbortSignal.any()` left on `s` (Node's internal set of dependant signals). */
function dependants(s: AbortSignal): number {
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'kDependantSignals');
  const set = sym === undefined ? undefined : (s as unknown as Record<symbol, Set<unknown> | undefined>)[sym];
  return set?.size ?? 0;
}

describe('linkSignals', () => {
  it("aborts with a parent's reason, or the caller's, or a TimeoutError; done() stops following", async () => {
    const p = new AbortController();
    const a = linkSignals(undefined, [p.signal], 'x');
    const why = new AbortError('parent gone');
    p.abort(why);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBe(why);

    const q = new AbortController();
    const caller = new AbortController();
    const b = linkSignals({ signal: caller.signal }, [q.signal], 'y');
    caller.abort(new Error('caller'));
    expect((b.signal.reason as Error).message).toBe('caller');
    b.done();

    const c = linkSignals({ timeout: 20 }, [q.signal], 'the op');
    await new Promise((r) => setTimeout(r, 60));
    expect(c.signal.reason).toBeInstanceOf(TimeoutError);
    expect((c.signal.reason as Error).message).toMatch(/the op timed out after 20 ms/);

    const d = linkSignals({ timeout: 20 }, [q.signal], 'z');
    d.done();
    d.done(); // idempotent
    q.abort();
    await new Promise((r) => setTimeout(r, 40));
    expect(d.signal.aborted).toBe(false);
  });

  it('an already aborted parent aborts the link at once', () => {
    const l = linkSignals(undefined, [AbortSignal.abort(new AbortError('early'))], 'x');
    expect(l.signal.aborted).toBe(true);
    expect((l.signal.reason as Error).message).toBe('early');
    l.done();
  });

  it("a node's connects leave nothing on its life signal (AbortSignal.any would leave one entry each)", async () => {
    const opts = { listen: 'loopback', portMapping: false, signalling: false } as const;
    const a = await startP2pNode(opts);
    const b = await startP2pNode(opts);
    cleanup.add(() => a.close());
    cleanup.add(() => b.close());
    const life = (n: P2pNode): AbortSignal => (n as unknown as { lc: { signal: AbortSignal } }).lc.signal;
    // The control: what AbortSignal.any() leaves on a long-lived signal.
    const control = new AbortController();
    for (let i = 0; i < 20; i++) AbortSignal.any([control.signal, new AbortController().signal]);
    const leaves = dependants(control.signal) > 0;
    for (let i = 0; i < 20; i++) {
      const p = await a.connect(b.addr, { timeout: 5000 });
      await p.close();
    }
    expect(dependants(life(a))).toBe(0);
    // Where AbortSignal.any() leaves entries (Node 20), the check above can fail.
    if (leaves) expect(dependants(control.signal)).toBeGreaterThanOrEqual(20);
  });

  it("a STUN client's bindings leave nothing on the caller's long-lived signals", async () => {
    const server = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], protos: ['udp'], rateLimit: false });
    cleanup.add(() => server.close());
    const app = new AbortController();
    const perCall = new AbortController();
    for (let c = 0; c < 3; c++) {
      const client = await StunClient.open({ server: server.primary, timeout: 2000, signal: app.signal });
      for (let i = 0; i < 10; i++) await client.binding({ signal: perCall.signal });
      await client.close();
    }
    expect(dependants(app.signal)).toBe(0);
    expect(dependants(perCall.signal)).toBe(0);
  });
});
