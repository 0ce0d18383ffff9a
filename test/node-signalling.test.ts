/** Signalling: envelopes (signature, encryption, TTL, replay) and MQTT transport through aedes and mosquitto. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Server, createServer } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { encodeAddress, parseAddress, type PeerAddress } from '../src/node/address.js';
import { inboxTopic, startBroker, type Broker } from '../src/node/broker.js';
import { deriveSignalKey, MAX_SIGNAL_TTL, openEnvelope, ReplayCache, sealEnvelope } from '../src/node/envelope.js';
import { SignalError } from '../src/node/errors.js';
import { Signalling, type SignalMessage } from '../src/node/signalling.js';
import { brokerUrlsFor, isLoopbackHost } from '../src/node/signalling-broker.js';

function party(brokers: string[], replayCacheSize?: number): { id: Identity; sk: ReturnType<typeof deriveSignalKey>; addr: PeerAddress; sig: Signalling; inbox: SignalMessage[] } {
  const id = Identity.generate();
  const sk = deriveSignalKey(id);
  const addr = parseAddress(encodeAddress(id, { signalKey: sk.publicKey, interfaces: [], signal: brokers.map((url) => ({ type: 'mqtt' as const, url })) }));
  const inbox: SignalMessage[] = [];
  const sig = new Signalling({ identity: id, signalKey: sk, brokers, connectTimeout: 1500, onMessage: (m) => inbox.push(m), ...(replayCacheSize !== undefined ? { replayCacheSize } : {}) });
  return { id, sk, addr, sig, inbox };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('signalling envelopes', () => {
  const a = Identity.generate();
  const b = Identity.generate();
  const bk = deriveSignalKey(b);
  const to = { id: b.id, signalKey: bk.publicKey };

  it('the signalling key is derived from the identity: stable, distinct per identity', () => {
    expect(deriveSignalKey(b).publicKey.equals(bk.publicKey)).toBe(true);
    expect(deriveSignalKey(a).publicKey.equals(bk.publicKey)).toBe(false);
  });

  it('seals and opens; the payload is not visible on the wire', () => {
    const { bytes, msgId } = sealEnvelope(a, to, { t: 'hello', b: { secret: 'candidate 10.1.2.3' } }, 5000);
    expect(bytes.includes(Buffer.from('candidate'))).toBe(false);
    const o = openEnvelope(bytes, { identity: b, signalKey: bk, replay: new ReplayCache() });
    expect(o.senderIdHex).toBe(a.idHex);
    expect(o.msgId).toBe(msgId);
    expect(o.payload).toEqual({ t: 'hello', b: { secret: 'candidate 10.1.2.3' } });
  });

  const reason = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(SignalError);
      return (e as SignalError).reason;
    }
    return 'accepted';
  };

  it('rejects: bad signature, other recipient, expired, far-future TTL, replay, wrong key, garbage', () => {
    const open = (bytes: Uint8Array, replay = new ReplayCache(), who = b, key = bk): unknown => openEnvelope(bytes, { identity: who, signalKey: key, replay });
    const { bytes } = sealEnvelope(a, to, { t: 'x', b: {} }, 5000);
    // Any flipped bit in header, ciphertext or signature.
    for (const i of [0, 5, 40, 70, 85, 100, 130, bytes.length - 20, bytes.length - 1]) {
      const t = Buffer.from(bytes);
      t[i] = (t[i] as number) ^ 0x40;
      expect(['signature', 'not-for-us', 'expired', 'ttl', 'malformed']).toContain(reason(() => open(t)));
    }
    // Signed by someone else but claiming to be a.
    const forged = Buffer.from(bytes);
    Identity.generate().sign(forged.subarray(0, forged.length - 64)).copy(forged, forged.length - 64);
    expect(reason(() => open(forged))).toBe('signature');
    // For c, not b.
    const c = Identity.generate();
    expect(reason(() => open(bytes, new ReplayCache(), c, deriveSignalKey(c)))).toBe('not-for-us');
    // Expired (clock in the past), or expiring too far ahead.
    expect(reason(() => open(sealEnvelope(a, to, { t: 'x', b: {} }, 1000, Date.now() - 20_000).bytes))).toBe('expired');
    expect(reason(() => open(sealEnvelope(a, to, { t: 'x', b: {} }, MAX_SIGNAL_TTL + 60_000).bytes))).toBe('ttl');
    // Replay.
    const cache = new ReplayCache();
    expect(reason(() => open(bytes, cache))).toBe('accepted');
    expect(reason(() => open(bytes, cache))).toBe('replay');
    // Encrypted to a stale signal key (b's address had another key): signed fine, does not decrypt.
    const stale = sealEnvelope(a, { id: b.id, signalKey: deriveSignalKey(Identity.generate()).publicKey }, { t: 'x', b: {} }, 5000).bytes;
    expect(reason(() => open(stale))).toBe('decrypt');
    expect(reason(() => open(Buffer.alloc(10)))).toBe('malformed');
    expect(reason(() => open(Buffer.alloc(300)))).toBe('malformed');
  });

  it('the replay cache refuses new ids rather than forgetting live ones when full', () => {
    const c = new ReplayCache(2);
    const now = Date.now();
    expect(c.add('a', now + 1000, now)).toBe(true);
    expect(c.add('b', now + 1000, now)).toBe(true);
    expect(c.add('c', now + 1000, now)).toBe(false);
    expect(c.add('c', now + 1000, now + 2000)).toBe(true); // a and b expired
  });

  it('one sender cannot fill the replay cache: past its share only its own new ids are refused', () => {
    const c = new ReplayCache(8, 2);
    const now = Date.now();
    expect(c.add('m1', now + 1000, now, 'mallory')).toBe(true);
    expect(c.add('m2', now + 1000, now, 'mallory')).toBe(true);
    expect(c.add('m3', now + 1000, now, 'mallory')).toBe(false);
    expect(c.add('a1', now + 10_000, now, 'alice')).toBe(true);
    expect(c.add('b1', now + 10_000, now, 'bob')).toBe(true);
    expect(c.add('m1', now + 1000, now, 'alice')).toBe(false); // a replay is a replay, whoever sends it
    expect(c.add('m3', now + 5000, now + 2000, 'mallory')).toBe(true); // its old ids expired
    expect(c.size).toBe(3);
  });
});

describe('replay cache budgets', () => {
  it('a flood fills the general budget, not the reserved one: expected senders still get in', () => {
    const c = new ReplayCache(4, 2, 2);
    const now = Date.now();
    for (const [id, who] of [['m1', 'mal1'], ['m2', 'mal1'], ['m3', 'mal2'], ['m4', 'mal2']] as const) expect(c.add(id, now + 1000, now, who)).toBe(true);
    expect(c.add('c1', now + 1000, now, 'carol')).toBe(false); // general budget full: a newcomer waits
    expect(c.add('a1', now + 1000, now, 'alice', true)).toBe(true); // an answer we wait for gets in
    expect(c.add('a1', now + 1000, now, 'alice', true)).toBe(false); // and is still a replay the second time
    expect(c.add('m1', now + 1000, now, 'alice', true)).toBe(false); // replay detection spans both budgets
    expect(c.add('b1', now + 1000, now, 'bob', true)).toBe(true);
    expect(c.add('b2', now + 1000, now, 'bob', true)).toBe(false); // the reserved budget is bounded too
    expect(c.add('m5', now + 1000, now, 'mal1', true)).toBe(false); // and the per-sender share spans both
    expect(c.size).toBe(6);
    expect(c.add('c1', now + 5000, now + 2000, 'carol')).toBe(true); // the flood expired
  });
});

/** Transport tests, run against each broker. */
/** `restart`: stop the broker (resolves once it is gone), then start it again on the same port. */
function transportSuite(name: string, brokerUrl: () => string, restart?: { stop(): Promise<void>; start(): Promise<void> }): void {
  describe(`signalling over MQTT: ${name}`, () => {
    it('request → reply between two nodes, sender authenticated', async () => {
      const A = party([brokerUrl()]);
      const B = party([brokerUrl()]);
      try {
        await Promise.all([A.sig.start(), B.sig.start()]);
        expect(A.sig.connected).toEqual([brokerUrl()]);
        B.sig.onMessage((m) => {
          if (m.type === 'ping') void B.sig.reply(m, A.addr, 'pong', { n: (m.body.n as number) + 1 }).catch(() => undefined);
        });
        const t0 = performance.now();
        const r = await A.sig.request(B.addr, 'ping', { n: 41 }, { timeout: 3000 });
        const ms = performance.now() - t0;
        expect(r.type).toBe('pong');
        expect(r.body).toEqual({ n: 42 });
        expect(r.from).toBe(B.id.idHex);
        expect(ms).toBeLessThan(500);
        expect(B.inbox.map((m) => m.from)).toEqual([A.id.idHex]);
      } finally {
        await Promise.all([A.sig.close(), B.sig.close()]);
      }
    });

    it('drops forged, replayed and expired messages injected on the broker; the real one still arrives', async () => {
      const A = party([brokerUrl()]);
      const B = party([brokerUrl()]);
      const raw = await mqtt.connectAsync(brokerUrl(), { protocolVersion: 4 });
      try {
        await Promise.all([A.sig.start(), B.sig.start()]);
        const topic = inboxTopic(B.id.idHex);
        const good = sealEnvelope(A.id, B.addr, { t: 'hi', b: {} }, 5000).bytes;
        const forged = Buffer.from(good);
        forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
        const expired = sealEnvelope(A.id, B.addr, { t: 'old', b: {} }, 100, Date.now() - 60_000).bytes;
        const wrongShape = sealEnvelope(A.id, B.addr, { t: 5, b: [] }, 5000).bytes;
        for (const p of [forged, expired, Buffer.from('not an envelope'), wrongShape, good, good]) await raw.publishAsync(topic, p, { qos: 1 });
        await until(() => B.inbox.length >= 1 && (B.sig.stats.rejected.replay ?? 0) >= 1);
        expect(B.inbox.map((m) => m.type)).toEqual(['hi']);
        expect(B.sig.stats.rejected).toMatchObject({ signature: 1, expired: 1, malformed: 2, replay: 1 });
      } finally {
        await raw.endAsync(true);
        await Promise.all([A.sig.close(), B.sig.close()]);
      }
    });

    it('a flood of valid messages from throw-away identities does not shut out the answer to our request', async () => {
      const A = party([brokerUrl()], 64);
      const B = party([brokerUrl()]);
      const raw = await mqtt.connectAsync(brokerUrl(), { protocolVersion: 4 });
      try {
        await Promise.all([A.sig.start(), B.sig.start()]);
        B.sig.onMessage((m) => {
          if (m.type === 'ping') void B.sig.reply(m, A.addr, 'pong', {}).catch(() => undefined);
        });
        // 64 valid envelopes (8 throw-away identities × 8) fill A's general budget of 64 ids.
        const topic = inboxTopic(A.id.idHex);
        for (let k = 0; k < 8; k++) {
          const mal = Identity.generate();
          for (let i = 0; i < 8; i++) await raw.publishAsync(topic, sealEnvelope(mal, A.addr, { t: 'spam', b: {} }, 60_000).bytes, { qos: 1 });
        }
        await until(() => A.inbox.length === 64);
        // A newcomer is refused for now (the documented limit)…
        const C = Identity.generate();
        await raw.publishAsync(topic, sealEnvelope(C, A.addr, { t: 'hello', b: {} }, 60_000).bytes, { qos: 1 });
        await until(() => (A.sig.stats.rejected.replay ?? 0) === 1);
        // …but the peer A asked answers through the reserved budget.
        const r = await A.sig.request(B.addr, 'ping', {}, { timeout: 3000 });
        expect(r.type).toBe('pong');
        expect(r.from).toBe(B.id.idHex);
        expect(A.inbox.filter((m) => m.type !== 'spam')).toEqual([]);
      } finally {
        await raw.endAsync(true);
        await Promise.all([A.sig.close(), B.sig.close()]);
      }
    });

    it('a reply from another node than the one asked is ignored; the request times out with a typed error', async () => {
      const A = party([brokerUrl()]);
      const B = party([brokerUrl()]);
      const M = party([brokerUrl()]);
      try {
        await Promise.all([A.sig.start(), B.sig.start(), M.sig.start()]);
        // M sees nothing of A's request, but guesses nothing either: it answers with a made-up id.
        B.sig.onMessage((m) => void M.sig.send(A.addr, 'pong', {}, { re: m.msgId }).catch(() => undefined));
        const t0 = performance.now();
        const err = await A.sig.request(B.addr, 'ping', {}, { timeout: 400 }).catch((e: unknown) => e);
        expect((err as Error).name).toBe('TimeoutError');
        expect(performance.now() - t0).toBeLessThan(1000);
        await until(() => (A.sig.stats.rejected['unexpected-sender'] ?? 0) === 1);
      } finally {
        await Promise.all([A.sig.close(), B.sig.close(), M.sig.close()]);
      }
    });

    it('connects on demand to a broker named only in the peer address', async () => {
      const A = party([]);
      const B = party([brokerUrl()]);
      try {
        await Promise.all([A.sig.start(), B.sig.start()]);
        B.sig.onMessage((m) => void B.sig.reply(m, parseAddress(m.body.addr as string), 'ok', {}).catch(() => undefined));
        const r = await A.sig.request(B.addr, 'hello', { addr: A.addr.text }, { timeout: 3000 });
        expect(r.type).toBe('ok');
        expect(A.sig.connected).toEqual([brokerUrl()]);
      } finally {
        await Promise.all([A.sig.close(), B.sig.close()]);
      }
    });

    if (restart) {
      it('a broker that disappears gives a typed error, and the node reconnects when it is back', async () => {
        const A = party([brokerUrl()]);
        const B = party([brokerUrl()]);
        try {
          await Promise.all([A.sig.start(), B.sig.start()]);
          B.sig.onMessage((m) => void B.sig.reply(m, A.addr, 'pong', {}).catch(() => undefined));
          await restart.stop(); // gone before the request (stopping while it is in flight races with its delivery)
          const t0 = performance.now();
          const err = await A.sig.request(B.addr, 'ping', {}, { timeout: 2000 }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(Error);
          expect(['SignalError', 'TimeoutError']).toContain((err as Error).name);
          expect(performance.now() - t0).toBeLessThan(2500);
          await restart.start();
          await until(() => A.sig.connected.length === 1 && B.sig.connected.length === 1, 6000);
          const r = await A.sig.request(B.addr, 'ping', {}, { timeout: 2000 });
          expect(r.type).toBe('pong');
        } finally {
          await Promise.all([A.sig.close(), B.sig.close()]);
        }
      });
    }
  });
}

let aedes: Broker | undefined;
let aedesPort = 0;
beforeAll(async () => {
  aedes = await startBroker({ host: '127.0.0.1' });
  aedesPort = aedes.port;
});
afterAll(async () => {
  await aedes?.close();
});
transportSuite('embedded aedes', () => `mqtt://127.0.0.1:${aedesPort}`, {
  stop: async () => void (await aedes?.close()),
  start: async () => {
    await new Promise((r) => setTimeout(r, 300));
    aedes = await startBroker({ host: '127.0.0.1', port: aedesPort });
  },
});

describe('embedded broker', () => {
  it('refuses wildcard subscriptions and foreign topics', async () => {
    const b = await startBroker({ host: '127.0.0.1' });
    const c = await mqtt.connectAsync(b.url, { protocolVersion: 4 });
    try {
      await expect(c.subscribeAsync('#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
      await expect(c.subscribeAsync('other/topic', { qos: 1 })).rejects.toThrow(/Subscribe error/);
      const ok = await c.subscribeAsync(inboxTopic('ab'.repeat(32)), { qos: 1 });
      expect(ok[0]?.qos).toBe(1);
    } finally {
      await c.endAsync(true);
      await b.close();
    }
    expect(b.clients).toBe(0);
  });

  it("errors of the running broker (a failed accept on its listening socket) go to onError, never crash the process", async () => {
    const errors: Error[] = [];
    const b = await startBroker({ host: '127.0.0.1', onError: (e) => errors.push(e) });
    try {
      const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
      const srv = handles.find((h): h is Server => h instanceof Server && (h.address() as { port?: number } | null)?.port === b.port);
      expect(srv).toBeDefined();
      expect(srv!.listenerCount('error')).toBeGreaterThan(0);
      srv!.emit('error', Object.assign(new Error('accept ENOBUFS'), { code: 'ENOBUFS', syscall: 'accept' }));
      expect(errors.map((e) => e.message)).toEqual(['accept ENOBUFS']);
      // Still serving.
      const c = await mqtt.connectAsync(b.url, { protocolVersion: 4 });
      await c.endAsync(true);
    } finally {
      await b.close();
    }
  });

  it('startBroker takes a signal: already aborted, nothing is opened', async () => {
    await expect(startBroker({ host: '127.0.0.1', signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
  });
});

// ---- mosquitto, the broker the lab runs. In CI a missing binary is a failure, never a skip. ----
const CI = !!process.env.CI && process.env.CI !== '0' && process.env.CI !== 'false';
const haveMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).status === 0;
let mosq: ChildProcess | undefined;
let mosqPort = 0;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function startMosquitto(port: number): Promise<ChildProcess> {
  const p = spawn('mosquitto', ['-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const t0 = Date.now();
  for (;;) {
    const ok = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 500 }).then(
      async (c) => (await c.endAsync(true), true),
      () => false,
    );
    if (ok) return p;
    if (p.exitCode !== null || Date.now() - t0 > 5000) {
      p.kill('SIGKILL');
      throw new Error(`mosquitto did not start on port ${port}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopMosquitto(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await gone;
}

describe.runIf(haveMosquitto || CI)('mosquitto', () => {
  beforeAll(async () => {
    if (!haveMosquitto) throw new Error('mosquitto is not installed (apt-get install mosquitto; test/lab/install-deps.sh installs it)');
    mosqPort = await freePort();
    mosq = await startMosquitto(mosqPort);
  });
  afterAll(() => stopMosquitto(mosq));
  transportSuite('mosquitto', () => `mqtt://127.0.0.1:${mosqPort}`, {
    stop: () => stopMosquitto(mosq),
    start: async () => {
      await new Promise((r) => setTimeout(r, 300));
      mosq = await startMosquitto(mosqPort);
    },
  });
});
if (!haveMosquitto && !CI) {
  describe('mosquitto', () => {
    it.skip('mosquitto is not installed: the real-broker signalling tests did not run', () => undefined);
  });
}

describe('which broker reaches a peer', () => {
  const peerWith = (signal: PeerAddress['signal'], hosts: string[]): PeerAddress =>
    ({
      signal,
      interfaces: [
        {
          nat: 'UNKNOWN',
          delta: { type: 'NA', value: 0 },
          endpoints: hosts.map((host) => ({ kind: host.startsWith('127.') ? 'loopback' : 'lan', proto: 'tcp', host, port: 4000, family: 4 })),
        },
      ],
    }) as unknown as PeerAddress;

  it('a peer on another host is never signalled through a loopback URL (that would be our own broker)', () => {
    const peer = peerWith(
      [
        { type: 'mqtt', url: 'mqtt://127.0.0.1:1883' },
        { type: 'mqtt', url: 'mqtt://localhost:1884' },
        { type: 'mqtt', url: 'mqtt://broker.example:1883' },
        { type: 'mqtt-self', port: 38883 },
      ],
      ['127.0.0.1', '192.0.2.5'],
    );
    expect(brokerUrlsFor(peer, false)).toEqual(['mqtt://broker.example:1883', 'mqtt://192.0.2.5:38883']);
    expect(brokerUrlsFor(peer, true)).toEqual(['mqtt://127.0.0.1:1883', 'mqtt://localhost:1884', 'mqtt://broker.example:1883', 'mqtt://127.0.0.1:38883', 'mqtt://192.0.2.5:38883']);
    expect(isLoopbackHost('[::1]')).toBe(true);
    expect(isLoopbackHost('127.9.9.9')).toBe(true);
    expect(isLoopbackHost('192.0.2.5')).toBe(false);
  });

  it('Signalling asks its sameHost option; without it only a loopback-only peer counts as local', () => {
    const remote = peerWith([{ type: 'mqtt-self', port: 38883 }], ['127.0.0.1', '192.0.2.5']);
    const local = peerWith([{ type: 'mqtt-self', port: 38883 }], ['127.0.0.1']);
    const id = Identity.generate();
    const key = deriveSignalKey(id);
    const plain = new Signalling({ identity: id, signalKey: key });
    expect(plain.brokersFor(remote)).toEqual(['mqtt://192.0.2.5:38883']);
    expect(plain.brokersFor(local)).toEqual(['mqtt://127.0.0.1:38883']);
    const told = new Signalling({ identity: id, signalKey: key, sameHost: () => true });
    expect(told.brokersFor(remote)).toEqual(['mqtt://127.0.0.1:38883', 'mqtt://192.0.2.5:38883']);
  });
});
