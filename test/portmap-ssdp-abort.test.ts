/**
 * SSDP discovery under the caller's `timeout` / `signal`: the search must stop when the
 * caller's budget ends (TimeoutError / AbortError) and never re-send M-SEARCH in a tight
 * loop. A plain loopback UDP socket stands in for the SSDP group and counts what arrives;
 * it never answers, so discovery can only end by the caller's timeout.
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, TimeoutError } from '../src/errors.js';
import { getExternalAddress, mapPort, ssdpSearch } from '../src/nat/portmap/index.js';

let sink: Socket;
let port: number;
let received: number;

beforeEach(async () => {
  received = 0;
  sink = createSocket('udp4');
  sink.on('message', () => received++);
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  port = sink.address().port;
});
afterEach(async () => {
  await new Promise<void>((r) => sink.close(() => r()));
});

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));
const gateway = (): { host: string; ssdp: string } => ({ host: '127.0.0.1', ssdp: `127.0.0.1:${port}` });

/** Runs `op`, lets stray datagrams arrive, and checks it ended in TimeoutError after a few M-SEARCH, not the 3 s window. */
async function expectStoppedEarly(op: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  const err = await op().catch((e: unknown) => e);
  const took = performance.now() - t0;
  await settle();
  expect(err).toBeInstanceOf(TimeoutError);
  expect(received).toBeLessThanOrEqual(4);
  expect(took).toBeLessThan(2_000);
}

describe('SSDP search honours the caller timeout/signal (no M-SEARCH storm)', () => {
  it('mapPort({ timeout: 300 }) rejects with TimeoutError well before the 3 s search window, sending a few M-SEARCH', async () => {
    await expectStoppedEarly(() => mapPort({ internalPort: 7777, protocol: 'udp', gateway: gateway(), methods: ['upnp'], timeout: 300 }));
    // One round: 2 search targets (IGD:1 and IGD:2). The storm sent hundreds.
    expect(received).toBeGreaterThan(0);
  });

  it('getExternalAddress({ timeout: 300 }) rejects with TimeoutError early, sending a few M-SEARCH', async () => {
    await expectStoppedEarly(() => getExternalAddress({ gateway: gateway(), methods: ['upnp'], timeout: 300 }));
  });

  it('a user signal aborted with a p2pd TimeoutError reason stops the search (TimeoutError), no storm', async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new TimeoutError('user budget')), 300);
    await expectStoppedEarly(() => mapPort({ internalPort: 7777, protocol: 'udp', gateway: gateway(), methods: ['upnp'], signal: ac.signal }).finally(() => clearTimeout(timer)));
  });

  it('ssdpSearch directly: an abort mid-search rejects at once; rounds are spaced (about 1 per second)', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new TimeoutError('outer')), 300);
    const err = await ssdpSearch({ targets: [{ host: '127.0.0.1', port, family: 4 }], family: 4, timeout: 3_000, signal: ac.signal }).catch((e: unknown) => e);
    await settle();
    expect(err).toBeInstanceOf(TimeoutError);
    expect(received).toBe(2);

    received = 0;
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 300);
    const err2 = await ssdpSearch({ targets: [{ host: '127.0.0.1', port, family: 4 }], family: 4, timeout: 3_000, signal: ac2.signal }).catch((e: unknown) => e);
    await settle();
    expect(err2).toBeInstanceOf(AbortError);
    expect(received).toBe(2);

    // Without an abort, the search runs its window: one round (2 datagrams) per second.
    received = 0;
    const err3 = await ssdpSearch({ targets: [{ host: '127.0.0.1', port, family: 4 }], family: 4, timeout: 1_500 }).catch((e: unknown) => e);
    await settle();
    expect((err3 as Error).name).toBe('PortMappingError');
    expect(received).toBe(4);
  });
});
