import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecryptError, FrameError, HandshakeError, MessageTooBigError } from '../src/errors.js';
import {
  CipherState,
  decodeHandshakeFrame,
  decodeHandshakePayload,
  decryptFrame,
  encodeHandshakePayload,
  FrameDecoder,
  generateX25519KeyPair,
  Identity,
  noiseStaticCredential,
  SecureChannel,
  SecureHandshake,
  verifyHandshakePayload,
  type X25519KeyPair,
  MAX_FRAME_BODY,
} from '../src/crypto/index.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);

/** Runs `f`; any exception must be one of `allowed`. */
function onlyTyped(f: () => unknown, ...allowed: (new (...args: never[]) => Error)[]): void {
  try {
    f();
  } catch (e) {
    if (!allowed.some((c) => e instanceof c)) {
      throw new Error(`unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    }
  }
}

/** Flips/overwrites/truncates/extends `base` according to fast-check-chosen edits. */
const mutation = (len: number) =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), pos: fc.nat({ max: len - 1 }), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('set' as const), pos: fc.nat({ max: len - 1 }), val: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat({ max: len }) }),
    fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  );

type Mutation =
  | { kind: 'flip'; pos: number; bit: number }
  | { kind: 'set'; pos: number; val: number }
  | { kind: 'truncate'; pos: number }
  | { kind: 'append'; extra: Uint8Array };

function mutate(base: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(base);
  for (const m of muts) {
    if (m.kind === 'flip') {
      if (b.length > 0) b[m.pos % b.length] ^= 1 << m.bit;
    } else if (m.kind === 'set') {
      if (b.length > 0) b[m.pos % b.length] = m.val;
    } else if (m.kind === 'truncate') {
      b = b.subarray(0, Math.min(m.pos, b.length));
    } else {
      b = Buffer.concat([b, m.extra]);
    }
  }
  return b;
}

describe('fuzz: handshake payload decoding', () => {
  const id = Identity.generate();
  const cred = noiseStaticCredential(id);
  const valid = encodeHandshakePayload({ identityKey: id.publicKey, signature: cred.signature, extensions: Buffer.from('ext') });

  it('arbitrary bytes only ever raise HandshakeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        onlyTyped(() => verifyHandshakePayload(bytes, cred.keyPair.publicKey), HandshakeError);
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated valid payloads decode strictly and never verify unless unchanged in the signed parts', () => {
    fc.assert(
      fc.property(fc.array(mutation(valid.length), { minLength: 1, maxLength: 4 }), (muts) => {
        const m = mutate(valid, muts as Mutation[]);
        onlyTyped(() => {
          const d = decodeHandshakePayload(m);
          expect(m.length).toBe(99 + d.extensions.length);
          const peer = verifyHandshakePayload(d, cred.keyPair.publicKey);
          // If it verified, the signed parts must be intact.
          expect(peer.identityKey.equals(id.publicKey)).toBe(true);
          expect(d.signature.equals(cred.signature)).toBe(true);
        }, HandshakeError);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: handshake messages', () => {
  const ia = Identity.generate();
  const ib = Identity.generate();
  // Fixed ephemerals make every run reproduce the same valid conversation.
  const ea: X25519KeyPair = generateX25519KeyPair();
  const eb: X25519KeyPair = generateX25519KeyPair();
  const initiator = (): SecureHandshake => new SecureHandshake({ identity: ia, initiator: true, ephemeralKeyPair: ea });
  const responder = (): SecureHandshake => new SecureHandshake({ identity: ib, initiator: false, ephemeralKeyPair: eb });
  const a0 = initiator();
  const b0 = responder();
  const m1 = a0.writeMessage();
  b0.readMessage(m1);
  const m2 = b0.writeMessage();
  a0.readMessage(m2);
  const m3 = a0.writeMessage();
  b0.readMessage(m3);
  expect(b0.isComplete).toBe(true);

  it('arbitrary bytes at every step only raise HandshakeError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.uint8Array({ maxLength: 400 }), (step, bytes) => {
        onlyTyped(() => {
          if (step === 0) {
            responder().readMessage(bytes);
          } else if (step === 1) {
            const a = initiator();
            a.writeMessage();
            a.readMessage(bytes);
          } else {
            const b = responder();
            b.readMessage(m1);
            b.writeMessage();
            b.readMessage(bytes);
          }
        }, HandshakeError);
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated messages 2 and 3 are always rejected with HandshakeError', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(mutation(m2.length), { minLength: 1, maxLength: 3 }),
        (second, muts) => {
          const target = second ? m2 : m3;
          const m = mutate(target, muts as Mutation[]);
          fc.pre(!m.equals(target));
          let threw = false;
          try {
            if (second) {
              const a = initiator();
              a.writeMessage();
              a.readMessage(m);
            } else {
              const b = responder();
              b.readMessage(m1);
              b.writeMessage();
              b.readMessage(m);
            }
          } catch (e) {
            if (!(e instanceof HandshakeError)) throw e;
            threw = true;
          }
          expect(threw).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: transport frames', () => {
  const key = Buffer.alloc(32, 0x42);
  const fresh = (max?: number): [SecureChannel, SecureChannel] => [
    new SecureChannel({ send: new CipherState(key), recv: new CipherState(key) }),
    new SecureChannel({ send: new CipherState(key), recv: new CipherState(key) }, max ? { maxMessageSize: max } : {}),
  ];
  const [tx0] = fresh();
  const wire = Buffer.concat([
    tx0.encrypt(Buffer.from('first message')),
    tx0.encrypt(Buffer.alloc(70_000, 7)),
    tx0.encrypt(Buffer.alloc(0)),
    tx0.encryptClose(),
  ]);

  it('arbitrary byte streams only raise FrameError/DecryptError/MessageTooBigError', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 5 }), (chunks) => {
        const [, rx] = fresh();
        onlyTyped(() => {
          for (const c of chunks) rx.decrypt(c);
        }, FrameError, DecryptError, MessageTooBigError);
        // The standalone helpers too.
        const cs = new CipherState(key);
        const dec = new FrameDecoder();
        for (const c of chunks) {
          onlyTyped(() => decryptFrame(cs, c), FrameError, DecryptError);
          onlyTyped(() => decodeHandshakeFrame(c), FrameError);
          onlyTyped(() => {
            dec.push(c);
            for (let f = dec.next(); f; f = dec.next()) decodeHandshakeFrame(f);
          }, FrameError);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated encrypted streams are rejected, never mis-decoded; chunking does not matter', () => {
    fc.assert(
      fc.property(
        fc.array(mutation(wire.length), { minLength: 0, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 80_000 }), { minLength: 1, maxLength: 6 }),
        (muts, cuts) => {
          const m = mutate(wire, muts as Mutation[]);
          const [, rx] = fresh();
          const got: Buffer[] = [];
          let off = 0;
          let i = 0;
          try {
            while (off < m.length) {
              const n = cuts[i++ % cuts.length] as number;
              got.push(...rx.decrypt(m.subarray(off, off + n)));
              off += n;
            }
          } catch (e) {
            if (!(e instanceof FrameError || e instanceof DecryptError || e instanceof MessageTooBigError)) throw e;
          }
          // Whatever was delivered is a prefix of what was sent.
          const sent = [Buffer.from('first message'), Buffer.alloc(70_000, 7), Buffer.alloc(0)];
          expect(got.length).toBeLessThanOrEqual(sent.length);
          got.forEach((g, j) => expect(g.equals(sent[j] as Buffer)).toBe(true));
          if (m.equals(wire)) {
            expect(got.length).toBe(3);
            expect(rx.remoteClosed).toBe(true);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('FrameDecoder yields the same frames whatever the chunking', () => {
    const frames = (() => {
      const d = new FrameDecoder(MAX_FRAME_BODY);
      d.push(wire);
      const out: Buffer[] = [];
      for (let f = d.next(); f; f = d.next()) out.push(Buffer.from(f));
      return out;
    })();
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }), (cuts) => {
        const d = new FrameDecoder(MAX_FRAME_BODY);
        const out: Buffer[] = [];
        let off = 0;
        let i = 0;
        while (off < wire.length) {
          const n = cuts[i++ % cuts.length] as number;
          d.push(wire.subarray(off, off + n));
          off += n;
          for (let f = d.next(); f; f = d.next()) out.push(Buffer.from(f));
        }
        expect(out.length).toBe(frames.length);
        out.forEach((f, j) => expect(f.equals(frames[j] as Buffer)).toBe(true));
        expect(d.bufferedBytes).toBe(0);
      }),
      { numRuns: RUNS },
    );
  });
});
