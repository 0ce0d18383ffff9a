/**
 * Fuzzing of the node's network-facing decoders that have no fuzz suite of their own: signalling
 * envelopes (whatever a broker delivers), the hello in a peer's handshake payload, and TCP
 * hole-punching frames. Each one either decodes or rejects with its typed result/error; nothing
 * else escapes, and no change to a valid input is accepted as something else. FUZZ_RUNS
 * overrides the number of runs.
 */
import { createCipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { generateX25519KeyPair, x25519 } from '../src/crypto/x25519.js';
import { deriveSignalKey, ENVELOPE_VERSION, MAX_ENVELOPE, openEnvelope, ReplayCache, sealEnvelope } from '../src/node/envelope.js';
import { SignalError } from '../src/node/errors.js';
import { CONN_ID, decodeHello, encodeHello, MAX_HELLO } from '../src/node/hello.js';
import { decodeTcpPunch, encodeTcpPunch, TcpPunchKey, TCP_PUNCH_FRAME_SIZE, TCP_PUNCH_HELLO, TCP_PUNCH_SELECT } from '../src/node/punch/tcp-punch-wire.js';
import { STRATEGIES } from '../src/node/types.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2_000);
/** Header size of an envelope (see envelope.ts): version, sender key, recipient id, message id, expiry, ephemeral key. */
const HEADER = 1 + 32 + 32 + 16 + 8 + 32;
const SIG = 64;
const TAG = 16;

const alice = Identity.generate();
const bob = Identity.generate();
const bobSignal = deriveSignalKey(bob);
const toBob = { id: bob.id, signalKey: bobSignal.publicKey };

/** Opens `bytes` as bob with a fresh replay cache; returns the SignalError, fails on anything else. */
function openAsBob(bytes: Uint8Array, now?: number): SignalError | undefined {
  try {
    openEnvelope(bytes, { identity: bob, signalKey: bobSignal, replay: new ReplayCache(), ...(now !== undefined ? { now } : {}) });
    return undefined;
  } catch (e) {
    if (e instanceof SignalError) return e;
    throw new Error(`unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
  }
}

/**
 * An envelope built by hand and signed by `signer` (a peer with a valid identity but hostile
 * content): header fields and ephemeral key chosen by the caller; `ct` is the ciphertext, or
 * makes it from the finished header (its associated data).
 */
function forge(signer: Identity, o: { ephPub?: Buffer; ct?: Buffer | ((header: Buffer) => Buffer); expires?: bigint; version?: number }): Buffer {
  const header = Buffer.alloc(HEADER);
  header[0] = o.version ?? ENVELOPE_VERSION;
  signer.publicKey.copy(header, 1);
  bob.id.copy(header, 33);
  randomBytes(16).copy(header, 65);
  header.writeBigUInt64BE(o.expires ?? BigInt(Date.now() + 10_000), 81);
  (o.ephPub ?? randomBytes(32)).copy(header, 89);
  const ct = typeof o.ct === 'function' ? o.ct(header) : (o.ct ?? randomBytes(40));
  const sig = signer.sign(Buffer.concat([Buffer.from('p2pd-signal-v1\0', 'latin1'), header, ct]));
  return Buffer.concat([header, ct, sig]);
}

/** Encrypts `plaintext` to bob the way a sender does (so that only the payload is hostile). */
function forgePayload(signer: Identity, plaintext: Buffer): Buffer {
  const eph = generateX25519KeyPair();
  const shared = x25519(eph.privateKey, bobSignal.publicKey);
  const key = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([eph.publicKey, bobSignal.publicKey]), Buffer.from('p2pd-signal-v1', 'latin1'), 32));
  return forge(signer, {
    ephPub: eph.publicKey,
    ct: (header) => {
      const c = createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: TAG });
      c.setAAD(header, { plaintextLength: plaintext.length });
      return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
    },
  });
}

describe('signalling envelopes (openEnvelope)', () => {
  it('the helpers build envelopes that open (so the properties below test the checks, not the helpers)', () => {
    const sealed = sealEnvelope(alice, toBob, { t: 'x', b: { n: 1 } }, 5_000).bytes;
    expect(openAsBob(sealed)).toBeUndefined();
    expect(openAsBob(forgePayload(alice, Buffer.from('{"t":"y"}')))).toBeUndefined();
  });

  it('random bytes of any length are rejected with a SignalError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: HEADER + SIG + TAG + 200 }), (bytes) => {
        expect(openAsBob(bytes)).toBeInstanceOf(SignalError);
      }),
      { numRuns: RUNS },
    );
    expect(openAsBob(Buffer.alloc(MAX_ENVELOPE + 1))?.reason).toBe('malformed');
  });

  it('random bytes behind a valid version byte and our id are rejected with a SignalError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: HEADER + SIG + TAG, maxLength: HEADER + SIG + TAG + 300 }), (bytes) => {
        const b = Buffer.from(bytes);
        b[0] = ENVELOPE_VERSION;
        bob.id.copy(b, 33);
        b.writeBigUInt64BE(BigInt(Date.now() + 1_000), 81);
        expect(openAsBob(b)).toBeInstanceOf(SignalError);
      }),
      { numRuns: RUNS },
    );
  });

  it('any change to a sealed envelope (a flipped bit, truncation, extension) is rejected', () => {
    const sealed = sealEnvelope(alice, toBob, { t: 'x', b: { c: 'candidate 10.0.0.1:4000' } }, 5_000).bytes;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: sealed.length - 1 }), bit: fc.integer({ min: 0, max: 7 }) }),
          fc.record({ kind: fc.constant('cut' as const), at: fc.nat({ max: sealed.length - 1 }), bit: fc.constant(0) }),
          fc.record({ kind: fc.constant('extend' as const), at: fc.integer({ min: 1, max: 64 }), bit: fc.constant(0) }),
        ),
        (m) => {
          const b = Buffer.from(sealed);
          let bad: Buffer;
          if (m.kind === 'flip') {
            b[m.at] = (b[m.at] as number) ^ (1 << m.bit);
            bad = b;
          } else if (m.kind === 'cut') bad = b.subarray(0, m.at);
          else bad = Buffer.concat([b, randomBytes(m.at)]);
          expect(openAsBob(bad)).toBeInstanceOf(SignalError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a validly signed envelope with a hostile ephemeral key or ciphertext gives a SignalError, never another error', () => {
    const lowOrder = [Buffer.alloc(32), Buffer.from([1, ...new Array<number>(31).fill(0)]), Buffer.alloc(32, 0xff)];
    const mallory = Identity.generate();
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(...lowOrder), fc.uint8Array({ minLength: 32, maxLength: 32 }).map((u) => Buffer.from(u))),
        fc.uint8Array({ minLength: TAG, maxLength: 300 }).map((u) => Buffer.from(u)),
        (ephPub, ct) => {
          const err = openAsBob(forge(mallory, { ephPub, ct }));
          expect(err).toBeInstanceOf(SignalError);
          expect(['decrypt', 'malformed']).toContain(err?.reason);
        },
      ),
      { numRuns: Math.min(RUNS, 500) },
    );
    for (const ephPub of lowOrder) expect(openAsBob(forge(mallory, { ephPub }))?.reason).toMatch(/decrypt|malformed/);
  });

  it('a validly signed and encrypted envelope whose payload is not a JSON object is rejected as malformed', () => {
    const mallory = Identity.generate();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
          fc.jsonValue().filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
        ),
        (pt) => {
          const err = openAsBob(forgePayload(mallory, pt));
          if (err === undefined) {
            // Only a JSON object may open; random bytes rarely are one.
            const v = JSON.parse(pt.toString('utf8')) as unknown;
            expect(v !== null && typeof v === 'object' && !Array.isArray(v)).toBe(true);
          } else expect(err.reason).toBe('malformed');
        },
      ),
      { numRuns: Math.min(RUNS, 500) },
    );
  });

  it('expiry values anywhere in the u64 range give a typed verdict', () => {
    const now = Date.now();
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (expires) => {
        const err = openAsBob(forge(alice, { expires }), now);
        expect(err).toBeInstanceOf(SignalError);
        // A random expiry is almost never inside the window; when it is, the random ciphertext fails.
        expect(['expired', 'ttl', 'decrypt', 'malformed']).toContain(err?.reason);
      }),
      { numRuns: Math.min(RUNS, 500) },
    );
  });
});

describe('node hello (decodeHello)', () => {
  it('random bytes decode to undefined or a well-formed hello, never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: MAX_HELLO + 20 }), (bytes) => {
        const h = decodeHello(Buffer.from(bytes));
        if (h !== undefined) {
          expect(h.v).toBe(1);
          expect(STRATEGIES).toContain(h.s);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('random JSON decodes only when every field is valid, and then to exactly the known fields', () => {
    const field = fc.oneof(fc.jsonValue(), fc.constantFrom<unknown>(...STRATEGIES), fc.constant(randomBytes(16).toString('hex')));
    fc.assert(
      fc.property(fc.record({ v: fc.oneof(fc.constant(1), fc.jsonValue()), s: field, c: fc.option(field, { nil: undefined }), x: fc.option(fc.jsonValue(), { nil: undefined }) }), (o) => {
        const h = decodeHello(Buffer.from(JSON.stringify(o)));
        const valid = o.v === 1 && typeof o.s === 'string' && (STRATEGIES as readonly string[]).includes(o.s) && (o.c === undefined || (typeof o.c === 'string' && CONN_ID.test(o.c)));
        if (Buffer.byteLength(JSON.stringify(o)) > MAX_HELLO) expect(h).toBeUndefined();
        else if (!valid) expect(h).toBeUndefined();
        else expect(h).toEqual({ v: 1, s: o.s, ...(o.c !== undefined ? { c: o.c } : {}) });
      }),
      { numRuns: RUNS },
    );
  });

  it('encodeHello round-trips', () => {
    for (const s of STRATEGIES) {
      const c = randomBytes(16).toString('hex');
      expect(decodeHello(encodeHello({ v: 1, s, c }))).toEqual({ v: 1, s, c });
    }
  });
});

describe('TCP hole-punching frames (decodeTcpPunch)', () => {
  const key = new TcpPunchKey(createHash('sha256').update('fuzz').digest());

  it('random bytes are classified, never thrown on, and never authenticate', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: TCP_PUNCH_FRAME_SIZE * 2 }), (bytes) => {
        const f = decodeTcpPunch(key, bytes);
        expect(['malformed', 'unauthenticated']).toContain(f.kind);
      }),
      { numRuns: RUNS },
    );
  });

  it('a valid frame with any bit flipped is not accepted as a frame', () => {
    const frames = [encodeTcpPunch(key, TCP_PUNCH_HELLO, randomBytes(8)), encodeTcpPunch(key, TCP_PUNCH_SELECT, randomBytes(8))];
    for (const f of frames) expect(decodeTcpPunch(key, f).kind).toBe('frame');
    fc.assert(
      fc.property(fc.nat({ max: 1 }), fc.nat({ max: TCP_PUNCH_FRAME_SIZE - 1 }), fc.integer({ min: 0, max: 7 }), (which, at, bit) => {
        const b = Buffer.from(frames[which] as Buffer);
        b[at] = (b[at] as number) ^ (1 << bit);
        expect(decodeTcpPunch(key, b).kind).not.toBe('frame');
      }),
      { numRuns: RUNS },
    );
  });
});
