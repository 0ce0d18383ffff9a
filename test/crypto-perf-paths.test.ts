/**
 * The fast paths of the crypto layer keep the protocol unchanged: even chunking on the wire
 * (and receivers still accepting any valid chunking), pre-generated ephemeral keys used exactly
 * once, the speculative DH with a remembered static key (right or wrong guess; initiator by
 * peer id, responder by remote host), message 1 sent with the connection, the cached prologue
 * hash and imported static keys.
 */
import { describe, expect, it } from 'vitest';
import {
  CipherState,
  encryptFrame,
  ephemeralPoolStats,
  FRAME_FLAG_MORE,
  FRAME_HEADER_SIZE,
  Identity,
  messageChunkCount,
  messageChunkSizes,
  NOISE_MAX_PLAINTEXT,
  NOISE_TAG_SIZE,
  parseFrameHeader,
  resetEphemeralPool,
  SecureChannel,
  SecureHandshake,
  takeEphemeralKeyPair,
  XXHandshakeState,
  generateX25519KeyPair,
  connectSecure,
  listenSecure,
  MAX_FRAME_PLAINTEXT,
  clearStaticKeyHints,
  clearVerifiedPayloadCache,
  holdEphemeralRefill,
  releaseEphemeralRefill,
  staticKeyHintStats,
  STATIC_KEY_HINT_HOSTS,
} from '../src/crypto/index.js';
import { noteStaticKey, staticKeyHint } from '../src/crypto/static-key-hints.js';

const key = Buffer.alloc(32, 9);
const pair = (): [SecureChannel, SecureChannel] => [
  new SecureChannel({ send: new CipherState(key), recv: new CipherState(key) }),
  new SecureChannel({ send: new CipherState(key), recv: new CipherState(key) }),
];

/** The frames of one encrypted message: flags and plaintext sizes, from the headers. */
function frames(wire: Buffer): { flags: number; pt: number }[] {
  const out: { flags: number; pt: number }[] = [];
  for (let off = 0; off < wire.length; ) {
    const { flags, length } = parseFrameHeader(wire, off);
    out.push({ flags, pt: length - NOISE_TAG_SIZE });
    off += FRAME_HEADER_SIZE + length;
  }
  return out;
}

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits (up to 5 s) until the pool has generated at least `n` pairs in the thread pool. */
async function pooledAtLeast(n: number): Promise<void> {
  for (let t = 0; ephemeralPoolStats.async < n; t += 5) {
    if (t > 5000) throw new Error('the ephemeral key pool did not refill');
    await tick();
  }
}

describe('even chunking', () => {
  it('messageChunkSizes splits into ceil(len / 256 KiB) chunks differing by at most one byte', () => {
    expect(messageChunkSizes(0)).toEqual([0]);
    expect(messageChunkSizes(1)).toEqual([1]);
    expect(messageChunkSizes(65536)).toEqual([65536]);
    expect(messageChunkSizes(MAX_FRAME_PLAINTEXT)).toEqual([MAX_FRAME_PLAINTEXT]);
    expect(messageChunkSizes(MAX_FRAME_PLAINTEXT + 1)).toEqual([131073, 131072]);
    for (const n of [MAX_FRAME_PLAINTEXT + 2, 3 * MAX_FRAME_PLAINTEXT + 1, 1_000_003, 16 * 1024 * 1024]) {
      const s = messageChunkSizes(n);
      expect(s.length).toBe(Math.ceil(n / MAX_FRAME_PLAINTEXT));
      expect(messageChunkCount(n)).toBe(s.length);
      expect(s.reduce((a, b) => a + b, 0)).toBe(n);
      expect(Math.max(...s) - Math.min(...s)).toBeLessThanOrEqual(1);
      expect(Math.max(...s)).toBeLessThanOrEqual(MAX_FRAME_PLAINTEXT);
    }
  });

  it('a 64 KiB message is one frame; a 400 KiB message is two 200 KiB frames (MORE then last), from encrypt and encryptv alike', () => {
    const [a0, b0] = pair();
    expect(frames(a0.encrypt(Buffer.alloc(65536, 7)))).toEqual([{ flags: 0, pt: 65536 }]);
    expect(b0.encryptv(Buffer.alloc(65536, 7)).length).toBe(3); // header, ciphertext, tag
    const [a, b] = pair();
    const m = Buffer.alloc(400 * 1024, 7);
    const wire = a.encrypt(m);
    expect(frames(wire)).toEqual([
      { flags: FRAME_FLAG_MORE, pt: 200 * 1024 },
      { flags: 0, pt: 200 * 1024 },
    ]);
    const parts = b.encryptv(m);
    expect(parts.length).toBe(5); // header, ciphertext, tag+header, ciphertext, tag
    expect(Buffer.concat(parts).equals(wire)).toBe(true);
    for (const n of [0, 3, NOISE_MAX_PLAINTEXT, NOISE_MAX_PLAINTEXT + 1, 200_001, MAX_FRAME_PLAINTEXT + 1, 1_000_000]) {
      const [c, d] = pair();
      const x = Buffer.alloc(n, n & 0xff);
      const v = c.encryptv(x);
      const w = d.encrypt(x);
      expect(Buffer.concat(v).equals(w)).toBe(true);
      expect(frames(w).map((f) => f.pt)).toEqual(messageChunkSizes(n));
    }
  });

  it('the receiver still accepts uneven chunking (65519 + 17, as older senders do)', () => {
    const tx = new CipherState(key);
    const [, rx] = pair();
    const m = Buffer.alloc(65536);
    for (let i = 0; i < m.length; i++) m[i] = i * 31;
    const wire = Buffer.concat([encryptFrame(tx, m.subarray(0, NOISE_MAX_PLAINTEXT), FRAME_FLAG_MORE), encryptFrame(tx, m.subarray(NOISE_MAX_PLAINTEXT))]);
    const got: Buffer[] = [];
    for (let off = 0; off < wire.length; off += 4096) got.push(...rx.decrypt(wire.subarray(off, off + 4096)));
    expect(got.length).toBe(1);
    expect(got[0]!.equals(m)).toBe(true);
  });

  it('frames split across reads (gathered in a reused scratch buffer) never alias earlier messages', () => {
    const [tx, rx] = pair();
    const sent = [70_000, 100, 65_536, 40_000, 1, 131_100].map((n, k) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (i * 7 + k * 13) & 0xff;
      return b;
    });
    const wire = Buffer.concat(sent.map((m) => tx.encrypt(m)));
    for (const cut of [1, 3, 1000, 32_771, 65_536]) {
      const [, fresh] = cut === 1 ? [tx, rx] : pair();
      const got: Buffer[] = [];
      // each read is a new buffer that the caller then overwrites, as a socket's could be
      for (let off = 0; off < wire.length; off += cut) {
        const read = Buffer.from(wire.subarray(off, off + cut));
        got.push(...fresh.decrypt(read));
        read.fill(0xee);
      }
      expect(got.length).toBe(sent.length);
      got.forEach((g, i) => expect(g.equals(sent[i]!), `cut ${cut}, message ${i}`).toBe(true));
      expect(fresh.receiving).toBe(false);
    }
  });
});

describe('ephemeral keys', () => {
  it('takeEphemeralKeyPair never hands out the same pair twice, pooled or not', async () => {
    resetEphemeralPool();
    const seen = new Set<string>();
    const objs = new Set<unknown>();
    for (let i = 0; i < 60; i++) {
      const kp = takeEphemeralKeyPair();
      expect(kp.publicKey.length).toBe(32);
      seen.add(kp.publicKey.toString('hex'));
      objs.add(kp.privateKey);
      if (i % 3 === 0) await tick(); // let the pool refill sometimes
    }
    await pooledAtLeast(1);
    const kp = takeEphemeralKeyPair(); // from the pool now
    seen.add(kp.publicKey.toString('hex'));
    objs.add(kp.privateKey);
    expect(seen.size).toBe(61);
    expect(objs.size).toBe(61);
    expect(ephemeralPoolStats.pooled).toBeGreaterThan(0); // the pool is used
    expect(ephemeralPoolStats.pooled + ephemeralPoolStats.sync).toBe(61);
    resetEphemeralPool({ enabled: false });
    for (let i = 0; i < 3; i++) takeEphemeralKeyPair();
    await tick(20);
    expect(ephemeralPoolStats).toEqual({ pooled: 0, sync: 3, async: 0 });
    resetEphemeralPool();
  });

  it('every handshake uses a fresh ephemeral key on both sides', async () => {
    resetEphemeralPool();
    const ia = Identity.generate();
    const ib = Identity.generate();
    takeEphemeralKeyPair(); // starts the refill
    await pooledAtLeast(1);
    const keys = new Set<string>();
    const N = 40;
    for (let i = 0; i < N; i++) {
      const a = new SecureHandshake({ identity: ia, initiator: true, remoteId: ib.id });
      const b = new SecureHandshake({ identity: ib, initiator: false });
      const m1 = a.writeMessage();
      keys.add(m1.subarray(0, 32).toString('hex')); // -> e
      b.readMessage(m1);
      const m2 = b.writeMessage();
      keys.add(m2.subarray(0, 32).toString('hex')); // <- e
      a.readMessage(m2);
      b.readMessage(a.writeMessage());
      expect(a.result().handshakeHash.equals(b.result().handshakeHash)).toBe(true);
      if (i % 4 === 0) await tick();
    }
    expect(keys.size).toBe(2 * N);
    expect(ephemeralPoolStats.pooled).toBeGreaterThan(0);
  });

  it('secure pipes over TCP take their ephemeral keys from the pool', async () => {
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate(), onPipe: (p) => p.onMessage((m) => void p.send(m.data)), onMessage: () => undefined });
    try {
      resetEphemeralPool();
      takeEphemeralKeyPair(); // starts the refill
      await pooledAtLeast(1);
      const me = Identity.generate();
      for (let i = 0; i < 6; i++) {
        const p = await connectSecure(server.local, { identity: me });
        await p.send('x');
        await p.close();
      }
      expect(ephemeralPoolStats.pooled).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});

describe('speculative DH with the peer static key seen last time', () => {
  function run(a: SecureHandshake, b: SecureHandshake): void {
    b.readMessage(a.writeMessage());
    a.prepare();
    a.readMessage(b.writeMessage());
    b.readMessage(a.writeMessage());
  }

  it('a reconnecting pinned initiator gets the same result with a right or a wrong guess', () => {
    const ia = Identity.generate();
    const seed = Buffer.alloc(32, 0x5a);
    const ib1 = Identity.fromPrivateKey(seed);
    // Same identity key, another Identity object: another Noise static key (the guess is then wrong).
    const ib2 = Identity.fromPrivateKey(seed);
    expect(ib2.idHex).toBe(ib1.idHex);
    for (const ib of [ib1, ib1, ib2, ib2, ib1]) {
      const a = new SecureHandshake({ identity: ia, initiator: true, remoteId: ib.id });
      const b = new SecureHandshake({ identity: ib, initiator: false });
      run(a, b);
      const ra = a.result();
      const rb = b.result();
      expect(ra.handshakeHash.equals(rb.handshakeHash)).toBe(true);
      expect(ra.remoteIdHex).toBe(ib.idHex);
      // The transport keys agree.
      const ct = new SecureChannel({ send: ra.send, recv: ra.recv }).encrypt(Buffer.from('hello'));
      expect(new SecureChannel({ send: rb.send, recv: rb.recv }).decrypt(ct)).toEqual([Buffer.from('hello')]);
    }
  });

  it('XXHandshakeState.precomputeRemoteStatic: a right guess, a wrong guess and no guess give identical transcripts', () => {
    const s1 = generateX25519KeyPair();
    const s2 = generateX25519KeyPair();
    const e1 = generateX25519KeyPair();
    const e2 = generateX25519KeyPair();
    const transcript = (guess: Buffer | undefined): Buffer[] => {
      const a = new XXHandshakeState({ initiator: true, staticKeyPair: s1, ephemeralKeyPair: e1 });
      const b = new XXHandshakeState({ initiator: false, staticKeyPair: s2, ephemeralKeyPair: e2 });
      const m1 = a.writeMessage();
      if (guess) a.precomputeRemoteStatic(guess);
      b.readMessage(m1);
      const m2 = b.writeMessage(Buffer.from('p2'));
      a.readMessage(m2);
      const m3 = a.writeMessage(Buffer.from('p3'));
      b.readMessage(m3);
      return [m1, m2, m3, a.handshakeHash, b.handshakeHash];
    };
    const plain = transcript(undefined);
    expect(transcript(s2.publicKey)).toEqual(plain);
    expect(transcript(generateX25519KeyPair().publicKey)).toEqual(plain);
    expect(plain[3]).toEqual(plain[4]);
  });
});

describe('cached handshake setup', () => {
  it('handshakes with different prologues alternate correctly (prologue hash cache)', () => {
    const ia = Identity.generate();
    const ib = Identity.generate();
    for (const prologue of [Buffer.from('one'), Buffer.from('two'), Buffer.from('one'), undefined, Buffer.from('two')]) {
      const a = new SecureHandshake({ identity: ia, initiator: true, ...(prologue ? { prologue } : {}) });
      const b = new SecureHandshake({ identity: ib, initiator: false, ...(prologue ? { prologue } : {}) });
      b.readMessage(a.writeMessage());
      a.readMessage(b.writeMessage());
      b.readMessage(a.writeMessage());
      expect(a.result().handshakeHash.equals(b.result().handshakeHash)).toBe(true);
    }
    // A mismatch still fails.
    const a = new SecureHandshake({ identity: ia, initiator: true, prologue: Buffer.from('one') });
    const b = new SecureHandshake({ identity: ib, initiator: false, prologue: Buffer.from('two') });
    b.readMessage(a.writeMessage());
    expect(() => a.readMessage(b.writeMessage())).toThrow();
  });
});

describe("the initiator's message 1 leaves with the connection", () => {
  it('message 1 goes out as the connection opens: a silent server gets exactly its 36-byte frame; abort still rejects', async () => {
    // A plain TCP server records when bytes arrive relative to the connection.
    const net = await import('node:net');
    const got: Buffer[] = [];
    const srv = net.createServer((s) => {
      s.on('data', (d: Buffer) => got.push(d));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      const ac = new AbortController();
      const p = connectSecure({ host: '127.0.0.1', port }, { identity: Identity.generate(), signal: ac.signal, timeout: 5000 });
      p.catch(() => undefined);
      // The server never answers: the 36 bytes of message 1 (4-byte header + 32-byte key) still arrive.
      for (let t = 0; got.reduce((n, b) => n + b.length, 0) < 36; t += 5) {
        if (t > 3000) throw new Error('message 1 never arrived');
        await tick();
      }
      const wire = Buffer.concat(got);
      expect(wire.length).toBe(36);
      expect(parseFrameHeader(wire)).toEqual({ flags: 0, length: 32 });
      ac.abort();
      await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      srv.close();
    }
  });

  it('a refused connection still rejects with ConnectionRefusedError, and releases its hold on the key pool refill', async () => {
    const net = await import('node:net');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    resetEphemeralPool();
    await expect(connectSecure({ host: '127.0.0.1', port }, { identity: Identity.generate() })).rejects.toMatchObject({ name: 'ConnectionRefusedError' });
    // The initiator held the refill back until message 1 was out; the failure released it:
    // the pool refills (in the thread pool) after the key taken for message 1.
    await pooledAtLeast(1);
    expect(ephemeralPoolStats.async).toBeGreaterThanOrEqual(1);
  });

  it('holds on the refill nest; the refill starts when the last is released', async () => {
    resetEphemeralPool();
    holdEphemeralRefill();
    holdEphemeralRefill();
    takeEphemeralKeyPair();
    releaseEphemeralRefill();
    await tick(30);
    expect(ephemeralPoolStats.async).toBe(0); // still held
    releaseEphemeralRefill();
    await pooledAtLeast(1);
    releaseEphemeralRefill(); // an extra release is harmless
  });

  it('an argument error of the secure options rejects before connecting (no connection is opened)', async () => {
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate() });
    try {
      let connections = 0;
      server.server.onConnection(() => connections++);
      await expect(connectSecure(server.local, { identity: Identity.generate(), maxQueue: 0 })).rejects.toMatchObject({ name: 'InvalidArgumentError' });
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('initiator: false (simultaneous open) still answers instead of starting', async () => {
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate(), onPipe: (p) => void p.send('hi') });
    try {
      // A responder-side connectSecure against a responder: neither writes, so the handshake times out.
      await expect(connectSecure(server.local, { identity: Identity.generate(), initiator: false, timeout: 300 })).rejects.toMatchObject({ name: 'TimeoutError' });
      await expect(connectSecure(server.local, { identity: Identity.generate(), initiator: 'yes' as unknown as boolean })).rejects.toMatchObject({ name: 'InvalidArgumentError' });
    } finally {
      await server.close();
    }
  });
});

describe("the responder's guess of a reconnecting peer's static key", () => {
  it('the hint policy: guess after a first contact, stop after a miss, resume when the key is seen again', () => {
    clearStaticKeyHints();
    const k1 = Buffer.alloc(32, 1);
    const k2 = Buffer.alloc(32, 2);
    expect(staticKeyHint('10.0.0.1')).toBeUndefined();
    noteStaticKey('10.0.0.1', k1, 'none');
    expect(staticKeyHint('10.0.0.1')).toEqual(k1);
    noteStaticKey('10.0.0.1', k1, 'hit');
    expect(staticKeyHint('10.0.0.1')).toEqual(k1);
    noteStaticKey('10.0.0.1', k2, 'miss'); // another peer behind the same address
    expect(staticKeyHint('10.0.0.1')).toBeUndefined();
    noteStaticKey('10.0.0.1', k1, 'none'); // and another again: still no guess
    expect(staticKeyHint('10.0.0.1')).toBeUndefined();
    noteStaticKey('10.0.0.1', k1, 'none'); // the same key twice in a row: guess again
    expect(staticKeyHint('10.0.0.1')).toEqual(k1);
    expect(staticKeyHint(undefined)).toBeUndefined();
    expect(staticKeyHintStats).toEqual({ hits: 1, misses: 1 });
    for (let i = 0; i < STATIC_KEY_HINT_HOSTS + 10; i++) noteStaticKey(`h${i}`, k1, 'none');
    expect(staticKeyHint('10.0.0.1')).toBeUndefined(); // evicted (least recently used)
    expect(staticKeyHint(`h${STATIC_KEY_HINT_HOSTS + 9}`)).toEqual(k1);
    clearStaticKeyHints();
  });

  it('a reconnecting client hits; clients alternating behind one host all authenticate correctly', async () => {
    clearStaticKeyHints();
    clearVerifiedPayloadCache();
    const seen: string[] = [];
    const server = await listenSecure('127.0.0.1:0', { identity: Identity.generate(), onPipe: (p) => void seen.push(p.remoteIdHex) });
    try {
      const a = Identity.generate();
      const b = Identity.generate();
      const hello = async (id: Identity): Promise<void> => {
        const p = await connectSecure(server.local, { identity: id });
        const got = new Promise<string>((r) => p.onMessage((m) => r(m.data.toString())));
        await p.send('ping');
        void got;
        await p.close();
      };
      for (let i = 0; i < 4; i++) await hello(a);
      const afterA = { ...staticKeyHintStats };
      expect(afterA.hits).toBeGreaterThanOrEqual(2); // the 2nd, 3rd and 4th connections, give or take a race with the 1st's close
      expect(afterA.misses).toBe(0);
      for (const id of [b, a, b, a, b]) await hello(id);
      expect(staticKeyHintStats.misses).toBeGreaterThanOrEqual(1); // a wrong guess happened…
      expect(staticKeyHintStats.misses).toBeLessThanOrEqual(2); // …and then guessing stopped
      // …and every connection authenticated the right peer regardless.
      for (let t = 0; seen.length < 9 && t < 2000; t += 5) await tick();
      expect(seen).toEqual([a, a, a, a, b, a, b, a, b].map((x) => x.idHex));
    } finally {
      await server.close();
      clearStaticKeyHints();
    }
  });
});
