import { describe, expect, it } from 'vitest';
import { DecryptError, FrameError, HandshakeError, MessageTooBigError, PeerIdMismatchError } from '../src/errors.js';
import {
  CipherState,
  decodeHandshakeFrame,
  decodeHandshakePayload,
  decryptFrame,
  DEFAULT_PROLOGUE,
  encodeHandshakeFrame,
  encodeHandshakePayload,
  encryptFrame,
  encryptMessage,
  FRAME_FLAG_MORE,
  FrameDecoder,
  generateX25519KeyPair,
  Identity,
  MAX_SECURE_MESSAGE,
  MessageReassembler,
  MAX_FRAME_BODY,
  MAX_FRAME_PLAINTEXT,
  NOISE_MAX_MESSAGE,
  NOISE_MAX_PLAINTEXT,
  noiseStaticCredential,
  performHandshake,
  SecureChannel,
  SecureHandshake,
  staticKeySignedData,
  verifyHandshakePayload,
  x25519KeyPairFromPrivate,
  XXHandshakeState,
  type HandshakeTransport,
} from '../src/crypto/index.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

interface Vector {
  source: string;
  prologue: string;
  initStatic: string;
  initEphemeral: string;
  respStatic: string;
  respEphemeral: string;
  handshakeHash?: string;
  messages: { payload: string; ciphertext: string }[];
}

// Published Noise test vectors for Noise_XX_25519_ChaChaPoly_SHA256 (data only).
const VECTORS: Vector[] = [
  {
    // cacophony (haskell-cryptography/cacophony, vectors/cacophony.txt)
    source: 'cacophony',
    prologue: '4a6f686e2047616c74',
    initStatic: 'e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1',
    initEphemeral: '893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a',
    respStatic: '4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893',
    respEphemeral: 'bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b',
    handshakeHash: 'c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e',
    messages: [
      {
        payload: '4c756477696720766f6e204d69736573',
        ciphertext: 'ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573',
      },
      {
        payload: '4d757272617920526f746862617264',
        ciphertext:
          '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad',
      },
      {
        payload: '462e20412e20486179656b',
        ciphertext:
          'c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030',
      },
      { payload: '4361726c204d656e676572', ciphertext: '96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df' },
      {
        payload: '4a65616e2d426170746973746520536179',
        ciphertext: '3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5',
      },
      {
        payload: '457567656e2042f6686d20766f6e2042617765726b',
        ciphertext: 'eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f',
      },
    ],
  },
  {
    // snow (mcginty/snow, tests/vectors/snow.txt)
    source: 'snow',
    prologue:
      '5468657265206973206e6f20726967687420616e642077726f6e672e2054686572652773206f6e6c792066756e20616e6420626f72696e672e',
    initStatic: '7dec208517a3b81a2861d7a71266d5d6dc944c5a8816634a86fe63198a0148ee',
    initEphemeral: 'a32daf21e93c0131495ce1d903181fde81cc46937daaeb990bae7c992709421e',
    respStatic: '4d0aed5098e3b4ef20357e9f686ce66204c792b358da2e475017d6c485304881',
    respEphemeral: '4eece0f195d026db035ff987597c429d3ad3bcc2944df37d649528951b2a27c5',
    messages: [
      {
        payload: 'd03c489139e645d0711a3c9e810d776b46a84912463fafa87b884eebf242dc34',
        ciphertext:
          'f9fa868ba97ab8a2686deccfaad5a484ee10a5bb85e3d1dce015a84797f92818d03c489139e645d0711a3c9e810d776b46a84912463fafa87b884eebf242dc34',
      },
      {
        payload: 'd8190a92f7dc0c93dbea9118ba8055751fb7c6590c416ffbd419964132b99a85',
        ciphertext:
          '8c4e6fdb7d09d501a86f7eca5c234522751706ed409182c05cdf5f827d4dae47b81c6c5f43b025692c24391eefee725c17d8cb0fbe3e4abb8aedf42c4fd2592d4ea48ac08989d6ae8b4adae08b2c34087c808c7aa55a63c02b0fab9e930612336bd43eaea04d3c670a0a146691aa9cc9d357872320dc735dbc48580cffb553db',
      },
      {
        payload: '77891b19dcb92ef7c055b672c4a5aa7fdf1c84146b8b303459022729473ce254',
        ciphertext:
          '933ca6b5ed60df3df66121f0ab49a09e49efa45c613a86a3cecbf4c535cef2f83f72b42837b18e3572f2fdc2b74c331e2368a545cef54bdca081678ab0e9dd5348122459e0c034c851984d88ce610963d43cde6cfe73a67fbd5a63e8bfca96d0',
      },
      {
        payload: 'd7efdf988072881941db045a42882433817555128fbf5663e56081712ec7d212',
        ciphertext: '54ef0ff0629e1aaa7685a2806ab111cba76b52331f2642276736f415868eacb69ab2577f3bda0cbf72f879685f6ed25f',
      },
      {
        payload: 'dd7bf01a588bafb52c6cfba952e5d8fe35cc2b3f92b4730ae2474615157345ce',
        ciphertext: '356be70f110306d5c699bb834bb9d58d909e325924dfbec972e406e6f294dc63e1daebefe8a62a334facc8048ab4ad66',
      },
    ],
  },
];

function vectorStates(v: Vector): [XXHandshakeState, XXHandshakeState] {
  const init = new XXHandshakeState({
    initiator: true,
    prologue: hex(v.prologue),
    staticKeyPair: x25519KeyPairFromPrivate(hex(v.initStatic)),
    ephemeralKeyPair: x25519KeyPairFromPrivate(hex(v.initEphemeral)),
  });
  const resp = new XXHandshakeState({
    initiator: false,
    prologue: hex(v.prologue),
    staticKeyPair: x25519KeyPairFromPrivate(hex(v.respStatic)),
    ephemeralKeyPair: x25519KeyPairFromPrivate(hex(v.respEphemeral)),
  });
  return [init, resp];
}

describe('Noise_XX_25519_ChaChaPoly_SHA256 test vectors', () => {
  for (const v of VECTORS) {
    it(`matches the ${v.source} vector (handshake, hash, transport)`, () => {
      const [init, resp] = vectorStates(v);
      // Handshake: messages 0..2, initiator writes the even ones.
      for (let i = 0; i < 3; i++) {
        const m = v.messages[i]!;
        const [w, r] = i % 2 === 0 ? [init, resp] : [resp, init];
        expect(w.isMyTurn).toBe(true);
        expect(r.isMyTurn).toBe(false);
        const ct = w.writeMessage(hex(m.payload));
        expect(ct.toString('hex')).toBe(m.ciphertext);
        expect(r.readMessage(ct).toString('hex')).toBe(m.payload);
      }
      expect(init.isComplete).toBe(true);
      expect(resp.isComplete).toBe(true);
      expect(init.remoteStaticKey).toEqual(x25519KeyPairFromPrivate(hex(v.respStatic)).publicKey);
      expect(resp.remoteStaticKey).toEqual(x25519KeyPairFromPrivate(hex(v.initStatic)).publicKey);
      const hi = init.split();
      const hr = resp.split();
      expect(hi.handshakeHash).toEqual(hr.handshakeHash);
      if (v.handshakeHash) expect(hi.handshakeHash.toString('hex')).toBe(v.handshakeHash);
      // Transport: keep alternating directions (message 3 is the responder's).
      for (let i = 3; i < v.messages.length; i++) {
        const m = v.messages[i]!;
        const [w, r] = i % 2 === 0 ? [hi.send, hr.recv] : [hr.send, hi.recv];
        const ct = w.encryptWithAd(null, hex(m.payload));
        expect(ct.toString('hex')).toBe(m.ciphertext);
        expect(r.decryptWithAd(null, ct).toString('hex')).toBe(m.payload);
      }
    });
  }

  it('rejects a tampered handshake message from the vector with a typed error', () => {
    const v = VECTORS[0]!;
    for (let msgIdx = 1; msgIdx < 3; msgIdx++) {
      const [init, resp] = vectorStates(v);
      const msgs: Buffer[] = [];
      for (let i = 0; i < msgIdx; i++) {
        const [w, r] = i % 2 === 0 ? [init, resp] : [resp, init];
        const m = w.writeMessage(hex(v.messages[i]!.payload));
        r.readMessage(m);
        msgs.push(m);
      }
      const [w, r] = msgIdx % 2 === 0 ? [init, resp] : [resp, init];
      const m = w.writeMessage(hex(v.messages[msgIdx]!.payload));
      m[40] ^= 1;
      expect(() => r.readMessage(m)).toThrow(HandshakeError);
      // The state is dead afterwards.
      expect(() => r.readMessage(m)).toThrow(HandshakeError);
      expect(r.isMyTurn).toBe(false);
    }
  });

  it('a different prologue breaks the handshake', () => {
    const a = new XXHandshakeState({ initiator: true, staticKeyPair: generateX25519KeyPair(), prologue: Buffer.from('a') });
    const b = new XXHandshakeState({ initiator: false, staticKeyPair: generateX25519KeyPair(), prologue: Buffer.from('b') });
    b.readMessage(a.writeMessage());
    expect(() => a.readMessage(b.writeMessage())).toThrow(HandshakeError);
  });

  it('enforces turn order and message lengths', () => {
    const a = new XXHandshakeState({ initiator: true, staticKeyPair: generateX25519KeyPair() });
    const b = new XXHandshakeState({ initiator: false, staticKeyPair: generateX25519KeyPair() });
    expect(() => b.writeMessage()).toThrow(HandshakeError);
    expect(() => a.readMessage(Buffer.alloc(32))).toThrow(HandshakeError);
    expect(() => a.split()).toThrow(HandshakeError);
    const b2 = new XXHandshakeState({ initiator: false, staticKeyPair: generateX25519KeyPair() });
    expect(() => b2.readMessage(Buffer.alloc(31))).toThrow(HandshakeError);
    const b3 = new XXHandshakeState({ initiator: false, staticKeyPair: generateX25519KeyPair() });
    expect(() => b3.readMessage(Buffer.alloc(65536))).toThrow(HandshakeError);
    // A low-order (all-zero) ephemeral key fails the DH with a typed error.
    b.readMessage(a.writeMessage());
    const m2 = b.writeMessage();
    const a2 = new XXHandshakeState({ initiator: true, staticKeyPair: generateX25519KeyPair() });
    a2.writeMessage();
    const zero = Buffer.from(m2);
    zero.fill(0, 0, 32);
    expect(() => a2.readMessage(zero)).toThrow(HandshakeError);
    expect(() => a.writeMessage(Buffer.alloc(70000))).toThrow(HandshakeError); // not our turn
    a.readMessage(m2);
    expect(() => a.writeMessage(Buffer.alloc(65535))).toThrow(MessageTooBigError);
  });
});

describe('CipherState', () => {
  it('round-trips, advances nonces only on success, and rejects tampering', () => {
    const key = Buffer.alloc(32, 7);
    const a = new CipherState(key);
    const b = new CipherState(key);
    const ct = a.encryptWithAd(Buffer.from('ad'), Buffer.from('hello'));
    expect(a.nonce).toBe(1);
    const bad = Buffer.from(ct);
    bad[0] ^= 1;
    expect(() => b.decryptWithAd(Buffer.from('ad'), bad)).toThrow(DecryptError);
    expect(b.nonce).toBe(0);
    expect(() => b.decryptWithAd(Buffer.from('xx'), ct)).toThrow(DecryptError);
    expect(() => b.decryptWithAd(null, Buffer.alloc(15))).toThrow(DecryptError);
    expect(b.decryptWithAd(Buffer.from('ad'), ct).toString()).toBe('hello');
    expect(b.nonce).toBe(1);
    // Replay fails (nonce moved on).
    expect(() => b.decryptWithAd(Buffer.from('ad'), ct)).toThrow(DecryptError);
    // Empty plaintext.
    const e = a.encryptWithAd(null, Buffer.alloc(0));
    expect(e.length).toBe(16);
    b.setNonce(1);
    expect(b.decryptWithAd(null, e).length).toBe(0);
    // Unkeyed state passes data through.
    const u = new CipherState();
    expect(u.encryptWithAd(null, Buffer.from('x')).toString()).toBe('x');
  });

  it('uses 64-bit little-endian nonces beyond 2^32', () => {
    const key = Buffer.alloc(32, 9);
    const a = new CipherState(key);
    const b = new CipherState(key);
    a.setNonce(2 ** 32 + 5);
    b.setNonce(2 ** 32 + 5);
    expect(b.decryptWithAd(null, a.encryptWithAd(null, Buffer.from('z'))).toString()).toBe('z');
    b.setNonce(5);
    const c = new CipherState(key);
    c.setNonce(2 ** 32 + 5);
    expect(() => b.decryptWithAd(null, c.encryptWithAd(null, Buffer.from('z')))).toThrow(DecryptError);
  });
});

function handshakePair(
  ia: Identity,
  ib: Identity,
  opts: { pinA?: string | Buffer; pinB?: string | Buffer; extA?: Buffer; extB?: Buffer } = {},
): [SecureHandshake, SecureHandshake] {
  const a = new SecureHandshake({
    identity: ia,
    initiator: true,
    ...(opts.pinA !== undefined ? { remoteId: opts.pinA } : {}),
    ...(opts.extA ? { extensions: opts.extA } : {}),
  });
  const b = new SecureHandshake({
    identity: ib,
    initiator: false,
    ...(opts.pinB !== undefined ? { remoteId: opts.pinB } : {}),
    ...(opts.extB ? { extensions: opts.extB } : {}),
  });
  return [a, b];
}

function run(a: SecureHandshake, b: SecureHandshake): void {
  b.readMessage(a.writeMessage());
  a.readMessage(b.writeMessage());
  b.readMessage(a.writeMessage());
}

describe('p2pd secure handshake (XX + identity payload)', () => {
  const ia = Identity.generate();
  const ib = Identity.generate();

  it('authenticates both identities and yields matching ciphers', () => {
    const [a, b] = handshakePair(ia, ib, { pinA: ib.idHex, pinB: ia.id, extA: Buffer.from('ext-a') });
    run(a, b);
    expect(a.isComplete && b.isComplete).toBe(true);
    const ra = a.result();
    const rb = b.result();
    expect(ra.remoteId).toEqual(ib.id);
    expect(rb.remoteId).toEqual(ia.id);
    expect(ra.remoteIdHex).toBe(ib.idHex);
    expect(rb.remoteIdentityKey).toEqual(ia.publicKey);
    expect(rb.remoteExtensions.toString()).toBe('ext-a');
    expect(ra.remoteExtensions.length).toBe(0);
    expect(ra.handshakeHash).toEqual(rb.handshakeHash);
    expect(ra.remoteStaticKey).toEqual(noiseStaticCredential(ib).keyPair.publicKey);
    const ca = new SecureChannel(ra);
    const cb = new SecureChannel(rb);
    expect(cb.decrypt(ca.encrypt(Buffer.from('ping')))).toEqual([Buffer.from('ping')]);
    expect(ca.decrypt(cb.encrypt(Buffer.from('pong')))).toEqual([Buffer.from('pong')]);
  });

  it('fails with PeerIdMismatchError on the initiator before it reveals itself', () => {
    const other = Identity.generate();
    const [a, b] = handshakePair(ia, ib, { pinA: other.idHex });
    b.readMessage(a.writeMessage());
    const m2 = b.writeMessage();
    let err: unknown;
    try {
      a.readMessage(m2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PeerIdMismatchError);
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as PeerIdMismatchError).code).toBe('ERR_PEER_ID_MISMATCH');
    expect((err as PeerIdMismatchError).expected).toBe(other.idHex);
    expect((err as PeerIdMismatchError).actual).toBe(ib.idHex);
    expect(() => a.writeMessage()).toThrow(HandshakeError);
    expect(() => a.result()).toThrow(HandshakeError);
  });

  it('fails with PeerIdMismatchError on the responder', () => {
    const other = Identity.generate();
    const [a, b] = handshakePair(ia, ib, { pinB: other.id });
    b.readMessage(a.writeMessage());
    a.readMessage(b.writeMessage());
    expect(() => b.readMessage(a.writeMessage())).toThrow(PeerIdMismatchError);
  });

  it('rejects a tampered message 2 / 3 with HandshakeError', () => {
    for (const target of [1, 2]) {
      for (const pos of [0, 33, 60, 100, -1]) {
        const [a, b] = handshakePair(ia, ib);
        b.readMessage(a.writeMessage());
        let m2 = b.writeMessage();
        if (target === 1) {
          m2 = Buffer.from(m2);
          m2[(pos + m2.length) % m2.length] ^= 0x80;
          expect(() => a.readMessage(m2)).toThrow(HandshakeError);
          continue;
        }
        a.readMessage(m2);
        const m3 = Buffer.from(a.writeMessage());
        m3[(pos + m3.length) % m3.length] ^= 0x80;
        expect(() => b.readMessage(m3)).toThrow(HandshakeError);
      }
    }
  });

  it('rejects a non-empty message 1 payload and a truncated message', () => {
    const st = new XXHandshakeState({ initiator: true, staticKeyPair: generateX25519KeyPair(), prologue: DEFAULT_PROLOGUE });
    const m1 = st.writeMessage(Buffer.from('hi'));
    const [, b] = handshakePair(ia, ib);
    expect(() => b.readMessage(m1)).toThrow(HandshakeError);
    const [a2, b2] = handshakePair(ia, ib);
    b2.readMessage(a2.writeMessage());
    const m2 = b2.writeMessage();
    expect(() => a2.readMessage(m2.subarray(0, m2.length - 1))).toThrow(HandshakeError);
  });

  it('rejects a payload whose signature does not cover the Noise static key', () => {
    // A peer that replays ib's identity proof but uses its own static key.
    const forged = new XXHandshakeState({ initiator: false, staticKeyPair: generateX25519KeyPair(), prologue: DEFAULT_PROLOGUE });
    const [a] = handshakePair(ia, ib);
    forged.readMessage(a.writeMessage());
    const proof = encodeHandshakePayload({ identityKey: ib.publicKey, signature: noiseStaticCredential(ib).signature });
    expect(() => a.readMessage(forged.writeMessage(proof))).toThrow(/signature/);
  });

  it('payload encode/decode/verify', () => {
    const cred = noiseStaticCredential(ia);
    const p = encodeHandshakePayload({ identityKey: ia.publicKey, signature: cred.signature, extensions: Buffer.from([1, 2, 3]) });
    const d = decodeHandshakePayload(p);
    expect(d.version).toBe(1);
    expect(d.extensions).toEqual(Buffer.from([1, 2, 3]));
    expect(verifyHandshakePayload(p, cred.keyPair.publicKey).id).toEqual(ia.id);
    expect(() => verifyHandshakePayload(p, generateX25519KeyPair().publicKey)).toThrow(HandshakeError);
    expect(() => decodeHandshakePayload(p.subarray(0, p.length - 1))).toThrow(HandshakeError);
    expect(() => decodeHandshakePayload(Buffer.concat([p, Buffer.alloc(1)]))).toThrow(HandshakeError);
    const v2 = Buffer.from(p);
    v2[0] = 2;
    expect(() => decodeHandshakePayload(v2)).toThrow(HandshakeError);
    expect(ia.verify(staticKeySignedData(cred.keyPair.publicKey), cred.signature)).toBe(true);
  });

  it('performHandshake over an in-memory message transport, with abort', async () => {
    const queueAB: Uint8Array[] = [];
    const queueBA: Uint8Array[] = [];
    const waiters = new Map<Uint8Array[], () => void>();
    const mk = (out: Uint8Array[], inq: Uint8Array[]): HandshakeTransport => ({
      write(m) {
        out.push(m);
        waiters.get(out)?.();
      },
      async read(signal) {
        while (inq.length === 0) {
          await new Promise<void>((resolve, reject) => {
            waiters.set(inq, resolve);
            signal.addEventListener('abort', () => reject(signal.reason), { once: true });
          });
        }
        return inq.shift()!;
      },
    });
    const [ra, rb] = await Promise.all([
      performHandshake(mk(queueAB, queueBA), { identity: ia, initiator: true, remoteId: ib.id }),
      performHandshake(mk(queueBA, queueAB), { identity: ib, initiator: false }),
    ]);
    expect(ra.remoteId).toEqual(ib.id);
    expect(rb.remoteId).toEqual(ia.id);
    // Nobody answers: timeout is typed.
    const silent: HandshakeTransport = { write() {}, read: (signal) => new Promise((_, rej) => signal.addEventListener('abort', () => rej(new Error('aborted')))) };
    await expect(performHandshake(silent, { identity: ia, initiator: true, timeout: 50 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    const ac = new AbortController();
    const p = performHandshake(silent, { identity: ia, initiator: true, signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'ABORT_ERR' });
  });
});

describe('transport framing', () => {
  function channels(): [SecureChannel, SecureChannel] {
    const [a, b] = handshakePair(Identity.generate(), Identity.generate());
    run(a, b);
    return [new SecureChannel(a.result()), new SecureChannel(b.result())];
  }

  it('carries messages of every size class with boundaries intact, split arbitrarily', () => {
    const [a, b] = channels();
    const sizes = [0, 1, 100, NOISE_MAX_PLAINTEXT - 1, NOISE_MAX_PLAINTEXT, NOISE_MAX_PLAINTEXT + 1, 65536, 3 * NOISE_MAX_PLAINTEXT + 7, MAX_FRAME_PLAINTEXT, MAX_FRAME_PLAINTEXT + 1, 1 << 20];
    const msgs = sizes.map((n, i) => Buffer.alloc(n, i + 1));
    const wire = Buffer.concat(msgs.map((m) => a.encrypt(m)));
    // Feed in odd-sized pieces.
    const got: Buffer[] = [];
    let off = 0;
    let step = 1;
    while (off < wire.length) {
      const n = Math.min(step, wire.length - off);
      got.push(...b.decrypt(wire.subarray(off, off + n)));
      off += n;
      step = (step * 7 + 3) % 100_003;
    }
    expect(got.length).toBe(msgs.length);
    got.forEach((g, i) => expect(g.equals(msgs[i]!)).toBe(true));
    expect(b.receiving).toBe(false);
    // Close frame.
    expect(b.decrypt(a.encryptClose())).toEqual([]);
    expect(b.remoteClosed).toBe(true);
    expect(() => a.encrypt(Buffer.alloc(1))).toThrow();
  });

  it('encryptv produces the same wire bytes as encrypt', () => {
    const [a, b] = channels();
    const [c, d] = [new SecureChannel(channelsRaw()), new SecureChannel(channelsRaw())];
    for (const n of [0, 5, NOISE_MAX_PLAINTEXT, 200_000]) {
      const m = Buffer.alloc(n, n & 0xff);
      const v = Buffer.concat(c.encryptv(m));
      expect(d.decrypt(v)).toEqual([m]);
      expect(b.decrypt(Buffer.concat(a.encryptv(m)))[0]!.equals(m)).toBe(true);
    }
    const e = new SecureChannel(channelsRaw());
    expect(Buffer.concat(e.encryptv(Buffer.from('xyz')))).toEqual(new SecureChannel(channelsRaw()).encrypt(Buffer.from('xyz')));
  });

  it('rejects tampering, reordering, oversize, and bad headers with typed errors', () => {
    const [a, b] = channels();
    const f1 = a.encrypt(Buffer.from('one'));
    const f2 = a.encrypt(Buffer.from('two'));
    expect(() => b.decrypt(f2)).toThrow(DecryptError); // out of order
    expect(() => b.decrypt(f1)).toThrow(DecryptError); // channel is dead after an error

    const [c, d] = channels();
    const f = c.encrypt(Buffer.from('hello'));
    f[0] = FRAME_FLAG_MORE; // flip the authenticated flag
    expect(() => d.decrypt(f)).toThrow(DecryptError);

    const [, e] = channels();
    expect(() => e.decrypt(Buffer.from([0x80, 0, 0, 20]))).toThrow(FrameError);
    const [, g] = channels();
    // Byte 1 is the high byte of the 24-bit length: 0x010014 is a valid length, pending its body …
    expect(g.decrypt(Buffer.from([0, 1, 0, 20]))).toEqual([]);
    expect(g.receiving).toBe(true);
    // … and a body over MAX_FRAME_BODY is refused at its header, before any of it is buffered.
    const [, g2] = channels();
    const over = Buffer.alloc(4);
    over.writeUInt32BE(MAX_FRAME_BODY + 1);
    expect(() => g2.decrypt(over)).toThrow(/exceeds/);
    const [, g3] = channels();
    over.writeUInt32BE(MAX_FRAME_BODY);
    expect(g3.decrypt(over)).toEqual([]);
    const [, h] = channels();
    expect(() => h.decrypt(Buffer.from([0, 0, 0, 5, 1, 2, 3, 4, 5]))).toThrow(FrameError);

    const [i] = channels();
    expect(() => i.encrypt(Buffer.alloc(MAX_SECURE_MESSAGE + 1))).toThrow(MessageTooBigError);
  });

  it('enforces the reassembly limit', () => {
    const key = Buffer.alloc(32, 3);
    const tx = new CipherState(key);
    const rx = new CipherState(key);
    const r = new MessageReassembler(300_000);
    const big = encryptMessage(tx, Buffer.alloc(600_000), MAX_SECURE_MESSAGE); // 3 frames of 200 000
    const dec = new FrameDecoder(MAX_FRAME_BODY);
    dec.push(big);
    expect(() => {
      for (let f = dec.next(); f; f = dec.next()) {
        const { flags, plaintext } = decryptFrame(rx, f);
        r.push(plaintext, (flags & FRAME_FLAG_MORE) !== 0);
      }
    }).toThrow(MessageTooBigError);
    expect(() => r.push(Buffer.alloc(0), true)).toThrow(FrameError);
  });

  it('frame helpers', () => {
    const key = Buffer.alloc(32, 4);
    const tx = new CipherState(key);
    const rx = new CipherState(key);
    expect(() => encryptFrame(tx, Buffer.alloc(MAX_FRAME_PLAINTEXT + 1))).toThrow(MessageTooBigError);
    const fr = encryptFrame(tx, Buffer.from('abc'), FRAME_FLAG_MORE);
    expect(fr.readUInt32BE(0)).toBe(0x01000000 | 19);
    expect(decryptFrame(rx, fr)).toEqual({ flags: FRAME_FLAG_MORE, plaintext: Buffer.from('abc') });
    const hf = encodeHandshakeFrame(Buffer.from('hs'));
    expect(decodeHandshakeFrame(hf).toString()).toBe('hs');
    const dec = new FrameDecoder();
    dec.push(hf.subarray(0, 2));
    expect(dec.next()).toBeUndefined();
    dec.push(hf.subarray(2, 5));
    expect(dec.next()).toBeUndefined();
    dec.push(Buffer.concat([hf.subarray(5), Buffer.from([9])]));
    expect(dec.next()).toEqual(hf);
    expect(dec.next()).toBeUndefined();
    expect(dec.drain()).toEqual(Buffer.from([9]));
    // A handshake frame is one Noise message: the decoder refuses a longer one at its header.
    const hs = new FrameDecoder();
    expect(hs.maxBody).toBe(NOISE_MAX_MESSAGE);
    hs.push(Buffer.from([0, 1, 0, 0]));
    expect(() => hs.next()).toThrow(FrameError);
    expect(() => decodeHandshakeFrame(Buffer.concat([Buffer.from([0, 1, 0, 0]), Buffer.alloc(65536)]))).toThrow(FrameError);
    expect(() => new FrameDecoder(MAX_FRAME_BODY + 1)).toThrow();
    // The largest frame: 256 KiB of plaintext round-trips in one frame, a byte more is two.
    const one = encryptMessage(tx, Buffer.alloc(MAX_FRAME_PLAINTEXT, 1));
    expect(one.readUInt32BE(0)).toBe(MAX_FRAME_BODY);
    expect(one.length).toBe(MAX_FRAME_BODY + 4);
    expect(decryptFrame(rx, one).plaintext.equals(Buffer.alloc(MAX_FRAME_PLAINTEXT, 1))).toBe(true);
    expect(encryptMessage(tx, Buffer.alloc(MAX_FRAME_PLAINTEXT + 1)).length).toBe(MAX_FRAME_PLAINTEXT + 1 + 2 * 20);
  });
});

function channelsRaw(): { send: CipherState; recv: CipherState } {
  return { send: new CipherState(Buffer.alloc(32, 1)), recv: new CipherState(Buffer.alloc(32, 1)) };
}

describe('SecureChannel limits', () => {
  it('rejects messages over its maxMessageSize on both ends', () => {
    const tx = new SecureChannel(channelsRaw(), { maxMessageSize: 100_000 });
    const rx = new SecureChannel(channelsRaw(), { maxMessageSize: 70_000 });
    expect(() => tx.encrypt(Buffer.alloc(100_001))).toThrow(MessageTooBigError);
    expect(() => rx.decrypt(tx.encrypt(Buffer.alloc(100_000)))).toThrow(MessageTooBigError);
  });
});
