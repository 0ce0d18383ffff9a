/**
 * Found by using the package the way README.md describes it (a user-level audit): names the
 * README gives must be exports, `{ signal }` must be checked like `{ timeout }` (a typed
 * `InvalidArgumentError`, never a bare `TypeError`), `initP2pd` checks its options, and the
 * default `SUB_ALL` subscription and `ipv6Only` behave as the README / TSDoc now say.
 * Loopback only.
 */
import { readFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as p2pd from '../src/index.js';
import { InvalidArgumentError, SUB_ALL, initP2pd, pipeOpen, sleep } from '../src/index.js';
import { whenAborted } from '../src/util/abort.js';
import { useCleanup } from './helpers/pipes.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

const cleanup = useCleanup();

describe('README names', () => {
  it('every constant the README names in backticks is exported by the package', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const named = new Set([...readme.matchAll(/`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`/g)].map((m) => m[1]!));
    // Error codes and environment variables are not exports.
    const notExports = (n: string): boolean => n.startsWith('ERR_') || n === 'ABORT_ERR' || n === 'MATRIX_NODE_FLAGS';
    const missing = [...named].filter((n) => !notExports(n) && !(n in p2pd));
    expect(missing).toEqual([]);
    expect(named.has('BURST_TAIL_HOLD_MS')).toBe(true);
    expect(p2pd.BURST_TAIL_HOLD_MS).toBe(1);
  });
});

describe('a signal that is not an AbortSignal is an InvalidArgumentError', () => {
  const bads: unknown[] = [{}, 'nope', 42, null, { aborted: false }];

  it('recv, send, pipeOpen, sleep and initP2pd reject with it (no TypeError)', async () => {
    const srv = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const c = cleanup.track(await pipeOpen('udp', srv.local));
    for (const signal of bads) {
      const s = signal as AbortSignal;
      for (const op of [
        () => c.recv({ signal: s }),
        () => c.send('x', undefined, { signal: s }),
        () => pipeOpen('udp', srv.local, { signal: s }),
        () => sleep(10_000, { signal: s }),
        () => initP2pd({ signal: s }),
      ]) {
        const e = await op().catch((x: unknown) => x);
        expect(e, `signal ${String(signal)}`).toBeInstanceOf(InvalidArgumentError);
        expect((e as Error).message).toMatch(/signal must be an AbortSignal/);
      }
    }
  });

  it('a send with a bad timeout or signal sends nothing (UDP and TCP)', async () => {
    const srv = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    const c = cleanup.track(await pipeOpen('udp', srv.local));
    const ts = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line' }));
    const tc = cleanup.track(await pipeOpen('tcp', ts.local, { framing: 'line' }));
    const a = await ts.accept({ timeout: 2000 });
    for (const opts of [{ timeout: -1 }, { signal: {} as AbortSignal }]) {
      await expect(c.send('bad', undefined, opts)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(tc.send('bad', undefined, opts)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(c.stats.messagesOut).toBe(0);
    expect(tc.stats.messagesOut).toBe(0);
    await c.send('good');
    await tc.send('good');
    expect((await srv.recv({ timeout: 2000 })).data.toString()).toBe('good');
    expect((await a.recv({ timeout: 2000 })).data.toString()).toBe('good');
  });

  it('close({ signal }) still closes, then rejects with it', async () => {
    const srv = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    const e = await srv.close({ signal: 'nope' as unknown as AbortSignal }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(srv.closed).toBe(true);
  });

  it('whenAborted throws it; real signals (and lookalikes with aborted + addEventListener) still work', async () => {
    expect(() => whenAborted({} as AbortSignal, () => undefined)).toThrow(InvalidArgumentError);
    const ac = new AbortController();
    let fired = 0;
    whenAborted(ac.signal, () => fired++);
    ac.abort();
    expect(fired).toBe(1);
    await expect(sleep(5, { signal: new AbortController().signal })).resolves.toBeUndefined();
  });
});

describe('initP2pd options', () => {
  it('null, a non-object or a non-boolean loopback is an InvalidArgumentError', async () => {
    for (const bad of [null, 5, 'x', { loopback: 'no' }]) {
      await expect(initP2pd(bad as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    const all = await initP2pd({ loopback: true });
    const noLo = await initP2pd({ loopback: false });
    expect(noLo.list.every((i) => !i.loopback)).toBe(true);
    expect(all.length).toBeGreaterThanOrEqual(noLo.length);
  });
});

describe('the default SUB_ALL subscription, as the README describes it', () => {
  it('UDP servers and clients have it; a TCP server has not', async () => {
    const u = cleanup.track(await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' }));
    expect(u.isSubscribed(SUB_ALL)).toBe(true);
    const uc = cleanup.track(await pipeOpen('udp', u.local));
    expect(uc.isSubscribed(SUB_ALL)).toBe(true);
    const t = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    expect(t.isSubscribed(SUB_ALL)).toBe(false);
  });

  it("an accepted connection has it unless the server's own callbacks take its messages, and recv says why", async () => {
    const plain = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    cleanup.track(await pipeOpen('tcp', plain.local));
    const a = await plain.accept({ timeout: 2000 });
    expect(a.isSubscribed(SUB_ALL)).toBe(true);

    const withCb = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', onMessage: () => undefined }));
    cleanup.track(await pipeOpen('tcp', withCb.local));
    const b = await withCb.accept({ timeout: 2000 });
    expect(b.isSubscribed(SUB_ALL)).toBe(false);
    const e = await b.recv({ timeout: 100 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toMatch(/accepted by a TCP server whose own callbacks or subscriptions take its messages/);
  });
});

describe('ipv6Only defaults (PipeOptions.ipv6Only TSDoc)', () => {
  /** Sends one IPv4 datagram to 127.0.0.1:`port`. */
  async function sendV4(port: number): Promise<void> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.send('v4', port, '127.0.0.1', () => r()));
    s.close();
  }

  it("a UDP socket bound to an explicit '[::]:0' is dual-stack; one opened with family 6 alone is not", async () => {
    const dual = cleanup.track(await pipeOpen('udp', undefined, { bind: '[::]:0' }));
    await sendV4(dual.local.port);
    const m = await dual.recv({ timeout: 2000 });
    expect(m.from.host).toBe('::ffff:127.0.0.1');

    const v6 = cleanup.track(await pipeOpen('udp', undefined, { family: 6 }));
    await sendV4(v6.local.port);
    await expect(v6.recv({ timeout: 200 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  });

  it("a TCP server bound to '[::]:0' is IPv6-only: an IPv4 client is refused", async () => {
    const t = cleanup.track(await pipeOpen('tcp', undefined, { bind: '[::]:0' }));
    await expect(pipeOpen('tcp', `127.0.0.1:${t.local.port}`, { timeout: 2000 })).rejects.toMatchObject({ code: 'ERR_CONNECTION_REFUSED' });
  });
});

describe('defaults and option checks of the upper layers', () => {
  it('node timeouts are validated at start and their defaults exported', async () => {
    expect(p2pd.DEFAULT_TIMEOUTS.connect).toBe(15_000);
    expect(Object.isFrozen(p2pd.DEFAULT_TIMEOUTS)).toBe(true);
    for (const timeouts of [{ connect: -1 }, { direct: 'x' }, { punch: 0 }, { nope: 5 }, 7] as unknown[]) {
      const e = await p2pd.startP2pNode({ listen: 'loopback', portMapping: false, signalling: false, timeouts: timeouts as never }).catch((x: unknown) => x);
      expect(e, JSON.stringify(timeouts)).toBeInstanceOf(InvalidArgumentError);
      expect((e as Error).message).toMatch(/timeout/);
    }
    // A field given as undefined keeps its default (it used to erase it).
    const n = await p2pd.startP2pNode({ listen: 'loopback', portMapping: false, signalling: false, timeouts: { connect: undefined, direct: 1234 } });
    try {
      const t = (n as unknown as { timeouts: Record<string, number> }).timeouts;
      expect(t.connect).toBe(15_000);
      expect(t.direct).toBe(1234);
    } finally {
      await n.close();
    }
  });

  it('swarm limits are exported as swarmConstants, MAX_LOOKUP_QUERIES from the DHT', () => {
    expect(p2pd.swarmConstants.MAX_QUEUE_BYTES).toBeGreaterThan(0);
    expect(p2pd.swarmConstants.SNAPSHOT_TIMEOUT).toBeGreaterThan(0);
    expect(p2pd.swarmConstants.DEFAULT_MAX_LINKS).toBeGreaterThan(0);
    expect(p2pd.MAX_LOOKUP_QUERIES).toBe(512);
  });

  it('a testnet checks its close and waitConverged options, and a timed close resets what is left', async () => {
    const net = await p2pd.createTestnet(2);
    expect(await net.waitConverged({ timeout: 'x' as unknown as number }).catch((x: unknown) => x)).toBeInstanceOf(InvalidArgumentError);
    await net.waitConverged({ timeout: 0 }); // 0 = no limit, converged already
    const e = await net.close({ timeout: -1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError); // closed all the same
    expect(net.alive()).toEqual([]);
    await net.close({ timeout: 1000 }); // idempotent
  });
});

describe('connectSecure timeout', () => {
  it('a handshake that never completes fails with the caller\'s timeout in the message', async () => {
    const { silentTcpServer } = await import('./helpers/nodes.js');
    const srv = await silentTcpServer();
    try {
      const e = await p2pd.connectSecure(`127.0.0.1:${srv.port}`, { identity: p2pd.Identity.generate(), timeout: 300 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(p2pd.TimeoutError);
      expect((e as Error).message).toMatch(/secure connect to 127\.0\.0\.1:\d+ timed out after 300 ms/);
    } finally {
      srv.close();
    }
  });
});
