/**
 * The choice between the UDP and TCP legs of the punch strategy (src/node/punch-legs.ts), with
 * a scripted punch module: which leg wins, and that the losing leg is aborted and whatever it
 * produced (a punched TCP connection, the UDP socket) is closed, including a TCP connection
 * that punches after the choice was made. The handshakes that follow fail on purpose (the
 * legs' products are stand-ins); the real punches and handshakes are covered by
 * test/punch-tcp.test.ts, test/punch-udp.test.ts and the lab suites.
 */
import { describe, expect, it } from 'vitest';
import { ConnectError } from '../src/errors.js';
import { Identity } from '../src/crypto/index.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import type { TcpPipe } from '../src/pipes/tcp.js';
import type { UdpPipe } from '../src/pipes/udp.js';
import type { PeerAddress } from '../src/node/address.js';
import type { NodeContext } from '../src/node/context.js';
import type { PunchModule } from '../src/node/punch-api.js';
import { punchAsInitiator, punchAsResponder, TCP_PREFERENCE_GRACE, type PunchLegs } from '../src/node/punch-legs.js';

const REMOTE: Endpoint = { host: '127.0.0.1', port: 40_000, family: 4 };

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A stand-in for a pipe a leg produced: counts its closes. */
function closable(): { closes: number; close(): Promise<void>; closed: boolean } {
  const p = {
    closes: 0,
    closed: false,
    close(): Promise<void> {
      p.closes++;
      p.closed = true;
      return Promise.resolve();
    },
  };
  return p;
}

/** A punch module whose two legs resolve when the test says so; the reliable stream over UDP always fails. */
function scripted() {
  const udp = deferred<{ remote: Endpoint; rtt: number }>();
  const tcp = deferred<{ pipe: TcpPipe; remote: Endpoint }>();
  const signals: { udp?: AbortSignal; tcp?: AbortSignal } = {};
  const mod = {
    punch: (o: { signal: AbortSignal }) => ((signals.udp = o.signal), udp.promise),
    tcpPunch: (o: { signal: AbortSignal }) => ((signals.tcp = o.signal), tcp.promise),
    openReliable: () => Promise.reject(new ConnectError('scripted: no reliable stream')),
    keepAlive: () => undefined,
    tcpMapping: () => Promise.reject(new ConnectError('scripted')),
  } as unknown as PunchModule;
  return { mod, udp, tcp, signals };
}

function setup() {
  const s = scripted();
  const udpSock = closable();
  const legs: PunchLegs = {
    udp: Object.assign(udpSock, { local: { host: '127.0.0.1', port: 1, family: 4 } }) as unknown as UdpPipe,
    udpRemotes: [REMOTE],
    tcpPort: 40_001,
    tcpRemotes: [REMOTE],
    nonce: Buffer.alloc(16, 1),
  };
  const ctx = {
    identity: Identity.generate(),
    timeouts: { punch: 5_000, handshake: 500 },
    opts: {},
    dispatch: () => undefined,
  } as unknown as NodeContext;
  const peer = { id: Buffer.alloc(32, 2) } as unknown as PeerAddress;
  return { ...s, udpSock, legs, ctx, peer };
}

/** A TCP pipe stand-in whose handshake fails at once (it is not a real pipe). */
function fakeTcp(): ReturnType<typeof closable> & TcpPipe {
  return closable() as unknown as ReturnType<typeof closable> & TcpPipe;
}

describe('punch legs: the connecting side', () => {
  it('UDP first, TCP within the grace: TCP is chosen, the UDP leg aborted and its socket closed', async () => {
    const t = setup();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, t.legs, { v: 1, s: 'punch' }, new AbortController().signal);
    run.catch(() => undefined);
    t.udp.resolve({ remote: REMOTE, rtt: 1 });
    await sleep(10);
    const pipe = fakeTcp();
    t.tcp.resolve({ pipe, remote: REMOTE });
    await expect(run).rejects.toThrow(); // the stand-in cannot carry a handshake
    expect(t.signals.udp?.aborted).toBe(true);
    expect(t.signals.tcp?.aborted).toBe(false);
    expect(t.udpSock.closes).toBeGreaterThan(0);
    expect(pipe.closes).toBeGreaterThan(0); // the failed handshake closed the chosen TCP leg too
  });

  it('UDP first, TCP after the grace: UDP is chosen, the TCP leg aborted, and its late connection closed', async () => {
    const t = setup();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, t.legs, { v: 1, s: 'punch' }, new AbortController().signal);
    run.catch(() => undefined);
    t.udp.resolve({ remote: REMOTE, rtt: 1 });
    await sleep(TCP_PREFERENCE_GRACE + 50);
    expect(t.signals.tcp?.aborted).toBe(true);
    expect(t.signals.udp?.aborted).toBe(false);
    // The TCP punch completes anyway (it raced the abort): what it produced is closed.
    const late = fakeTcp();
    t.tcp.resolve({ pipe: late, remote: REMOTE });
    await expect(run).rejects.toThrow(/reliable stream/); // the UDP leg's scripted stream failure
    await sleep(10);
    expect(late.closes).toBe(1);
  });

  it('TCP first: the UDP leg is aborted at once and the UDP socket closed', async () => {
    const t = setup();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, t.legs, { v: 1, s: 'punch' }, new AbortController().signal);
    run.catch(() => undefined);
    const pipe = fakeTcp();
    t.tcp.resolve({ pipe, remote: REMOTE });
    await expect(run).rejects.toThrow();
    expect(t.signals.udp?.aborted).toBe(true);
    expect(t.udpSock.closes).toBeGreaterThan(0);
  });

  it('both legs fail: one ConnectError naming both, both legs aborted', async () => {
    const t = setup();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, t.legs, { v: 1, s: 'punch' }, new AbortController().signal);
    t.udp.reject(new Error('udp timed out'));
    t.tcp.reject(new Error('tcp refused'));
    const err = (await run.catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.message).toMatch(/udp timed out/);
    expect(err.message).toMatch(/tcp refused/);
    expect(t.signals.udp?.aborted).toBe(true);
    expect(t.signals.tcp?.aborted).toBe(true);
  });

  it("the caller's abort reaches both legs", async () => {
    const t = setup();
    const ac = new AbortController();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, t.legs, { v: 1, s: 'punch' }, ac.signal);
    run.catch(() => undefined);
    ac.abort();
    expect(t.signals.udp?.aborted).toBe(true);
    expect(t.signals.tcp?.aborted).toBe(true);
    t.udp.reject(new Error('aborted'));
    t.tcp.reject(new Error('aborted'));
    await expect(run).rejects.toThrow();
  });

  it('without TCP candidates there is no TCP leg', async () => {
    const t = setup();
    const run = punchAsInitiator(t.ctx, t.mod, t.peer, { ...t.legs, tcpRemotes: [] }, { v: 1, s: 'punch' }, new AbortController().signal);
    run.catch(() => undefined);
    t.udp.resolve({ remote: REMOTE, rtt: 1 });
    await expect(run).rejects.toThrow(/reliable stream/);
    expect(t.signals.tcp).toBeUndefined();
  });
});

describe('punch legs: the answering side', () => {
  it('when no leg completes a handshake, every leg is aborted and the error names them', async () => {
    const t = setup();
    const run = punchAsResponder(t.ctx, t.mod, t.peer, t.legs, 'a'.repeat(32), new AbortController().signal);
    run.catch(() => undefined);
    t.udp.resolve({ remote: REMOTE, rtt: 1 });
    const pipe = fakeTcp();
    t.tcp.resolve({ pipe, remote: REMOTE });
    const err = (await run.catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(ConnectError);
    expect(t.signals.udp?.aborted).toBe(true);
    expect(t.signals.tcp?.aborted).toBe(true);
    expect(pipe.closes).toBeGreaterThan(0);
  });
});
