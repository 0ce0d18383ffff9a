import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../src/errors.js';
import {
  ATTR, CHANNEL_MAX, CHANNEL_MIN, CLASS, MAGIC_COOKIE, MAX_STUN_ATTRIBUTES, StunStreamSplitter, bytesToIp,
  decodeChannelData, decodeStun, encodeChannelData, encodeStun, ipToBytes, isKnownAttribute, isStun, splitStunStream,
  verifyFingerprint, verifyIntegrity, type EncodeStunOptions, type StreamFrame, type StunAttribute, type StunClass,
  type StunMessage,
} from '../src/nat/stun/index.js';

/** Runs per property; raise with STUN_FUZZ_RUNS=200000 for a deeper soak. */
const RUNS = Math.max(10_000, Number(process.env.STUN_FUZZ_RUNS) || 0);

/** Runs `f`; passes if it returns or throws a DecodeError, fails on anything else. */
function onlyDecodeError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
  }
}

// ---------- generators ----------

const endpoint = fc.oneof(
  fc.uint8Array({ minLength: 4, maxLength: 4 }),
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
).chain((ip) => fc.integer({ min: 0, max: 0xffff }).map((port) => ({ host: bytesToIp(ip), port, family: ip.length === 4 ? 4 : 6 }) as const));
const text = (maxChars: number) => fc.string({ unit: 'binary', maxLength: maxChars });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

const PROTECTION = new Set<number>([ATTR.MESSAGE_INTEGRITY, ATTR.MESSAGE_INTEGRITY_SHA256, ATTR.FINGERPRINT]);
const rawType = fc.integer({ min: 0, max: 0xffff }).filter((t) => !isKnownAttribute(t) && !PROTECTION.has(t));

const attribute: fc.Arbitrary<StunAttribute> = fc.oneof(
  ...[ATTR.MAPPED_ADDRESS, ATTR.XOR_MAPPED_ADDRESS, ATTR.XOR_PEER_ADDRESS, ATTR.XOR_RELAYED_ADDRESS, ATTR.OTHER_ADDRESS,
    ATTR.RESPONSE_ORIGIN, ATTR.CHANGED_ADDRESS, ATTR.SOURCE_ADDRESS, ATTR.ALTERNATE_SERVER].map((type) =>
    endpoint.map((value) => ({ type, value }) as StunAttribute)),
  text(127).map((value) => ({ type: ATTR.USERNAME, value })),
  ...[ATTR.REALM, ATTR.NONCE, ATTR.SOFTWARE].map((type) => text(127).map((value) => ({ type, value }) as StunAttribute)),
  ...[ATTR.LIFETIME, ATTR.PRIORITY, ATTR.CONNECTION_ID, ATTR.CACHE_TIMEOUT].map((type) => u32.map((value) => ({ type, value }) as StunAttribute)),
  fc.record({ code: fc.integer({ min: 300, max: 699 }), reason: text(127) }).map((value) => ({ type: ATTR.ERROR_CODE, value })),
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 20 }).map((value) => ({ type: ATTR.UNKNOWN_ATTRIBUTES, value })),
  fc.record({ changeIp: fc.boolean(), changePort: fc.boolean() }).map((value) => ({ type: ATTR.CHANGE_REQUEST, value })),
  fc.integer({ min: 0, max: 0xffff }).map((value) => ({ type: ATTR.CHANNEL_NUMBER, value })),
  fc.integer({ min: 0, max: 0xffff }).map((value) => ({ type: ATTR.RESPONSE_PORT, value })),
  fc.integer({ min: 0, max: 0xff }).map((value) => ({ type: ATTR.REQUESTED_TRANSPORT, value })),
  fc.constantFrom(4 as const, 6 as const).map((value) => ({ type: ATTR.REQUESTED_ADDRESS_FAMILY, value })),
  fc.boolean().map((reserve) => ({ type: ATTR.EVEN_PORT, value: { reserve } })),
  fc.constantFrom(ATTR.DONT_FRAGMENT, ATTR.USE_CANDIDATE).map((type) => ({ type, value: true }) as StunAttribute),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((value) => ({ type: ATTR.ICE_CONTROLLING, value })),
  bytes(0, 300).map((value) => ({ type: ATTR.DATA, value })),
  bytes(8, 8).map((value) => ({ type: ATTR.RESERVATION_TOKEN, value })),
  bytes(32, 32).map((value) => ({ type: ATTR.USERHASH, value })),
  fc.record({ type: rawType, value: bytes(0, 40) }).map(({ type, value }) => ({ type, value, raw: true as const })),
);

const stunClass = fc.constantFrom<StunClass>(CLASS.REQUEST, CLASS.INDICATION, CLASS.SUCCESS, CLASS.ERROR);

const message: fc.Arbitrary<StunMessage> = fc.boolean().chain((classic) =>
  fc.record({
    method: fc.integer({ min: 0, max: 0xfff }),
    cls: stunClass,
    transactionId: bytes(classic ? 16 : 12, classic ? 16 : 12).filter((t) => !classic || Buffer.from(t).readUInt32BE(0) !== MAGIC_COOKIE),
    attributes: fc.array(attribute, { maxLength: 16 }),
    cookie: fc.constant(!classic),
  }),
);

const options: fc.Arbitrary<EncodeStunOptions> = fc.record({
  integrity: fc.option(fc.record({ key: fc.oneof(bytes(0, 32), fc.string({ maxLength: 20 })), sha256: fc.constantFrom(false, true, 'both' as const) }), { nil: undefined }),
  fingerprint: fc.boolean(),
});

const messageWithOptions = fc.tuple(message, options).map(([m, o]): [StunMessage, EncodeStunOptions] => (m.cookie ? [m, o] : [m, { fingerprint: o.fingerprint }]));

/** Comparable form of an attribute list (bytes as hex, bigints as strings, protection attributes dropped). */
function norm(attrs: readonly StunAttribute[]): unknown[] {
  const plain = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`;
    if (typeof v === 'bigint') return `${v}n`;
    if (Array.isArray(v)) return v.map(plain);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  return attrs.filter((a) => !PROTECTION.has(a.type)).map(plain);
}

// ---------- properties ----------

describe('decodeStun robustness', () => {
  it('arbitrary bytes only ever throw DecodeError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 160 }), (b) => onlyDecodeError(() => decodeStun(b))), { numRuns: RUNS });
  });

  it('bytes behind a plausible header only ever throw DecodeError', () => {
    const body = fc.array(
      fc.record({
        type: fc.oneof(fc.constantFrom(...Object.values(ATTR)), fc.integer({ min: 0, max: 0xffff })),
        length: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 0xffff })),
        value: bytes(0, 40),
      }),
      { maxLength: 8 },
    ).map((attrs) => Buffer.concat(attrs.flatMap((a) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(a.type, 0);
      h.writeUInt16BE(a.length, 2);
      return [h, a.value];
    })));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x3fff }), fc.boolean(), bytes(12, 12), body, fc.boolean(), (type, cookie, tid, b, fixLen) => {
        const h = Buffer.alloc(20);
        h.writeUInt16BE(type, 0);
        const padded = Buffer.concat([b, Buffer.alloc(fixLen ? (4 - (b.length % 4)) % 4 : 0)]);
        h.writeUInt16BE(padded.length & 0xffff, 2);
        h.writeUInt32BE(cookie ? MAGIC_COOKIE : 0x01020304, 4);
        h.set(tid, 8);
        const buf = Buffer.concat([h, padded]);
        onlyDecodeError(() => decodeStun(buf));
        expect(typeof verifyIntegrity(buf, 'k')).toBe('boolean');
        expect(typeof verifyFingerprint(buf)).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated valid messages (bit flips, truncation, extension) only ever throw DecodeError', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }), count: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
      fc.record({ kind: fc.constant('extend' as const), extra: bytes(1, 24) }),
      fc.record({ kind: fc.constant('byte' as const), pos: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    );
    fc.assert(
      fc.property(messageWithOptions, fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), ([m, o], muts, fixLen) => {
        let buf = Buffer.from(encodeStun(m, o));
        for (const mu of muts) {
          if (mu.kind === 'flip') for (let i = 0; i < mu.count; i++) buf[(mu.pos + i * 7) % buf.length] ^= 1 << mu.bit;
          else if (mu.kind === 'truncate') buf = buf.subarray(0, mu.pos % (buf.length + 1));
          else if (mu.kind === 'extend') buf = Buffer.concat([buf, mu.extra]);
          else buf[mu.pos % buf.length] = mu.value;
        }
        // Optionally repair the length field so the mutation reaches the attribute parser.
        if (fixLen && buf.length >= 20) buf.writeUInt16BE((buf.length - 20) & 0xffff, 2);
        onlyDecodeError(() => decodeStun(buf));
        expect(typeof verifyIntegrity(buf, 'k')).toBe('boolean');
        expect(typeof verifyFingerprint(buf)).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  });
});

describe('encode/decode round trip', () => {
  it('decode(encode(m)) returns m, and integrity/fingerprint verify', () => {
    fc.assert(
      fc.property(messageWithOptions, ([m, o]) => {
        const buf = encodeStun(m, o);
        expect(isStun(buf, { classic: !m.cookie })).toBe(true);
        const d = decodeStun(buf);
        expect(d.method).toBe(m.method);
        expect(d.cls).toBe(m.cls);
        expect(d.cookie).toBe(m.cookie);
        expect(Buffer.from(d.transactionId).equals(Buffer.from(m.transactionId))).toBe(true);
        expect(norm(d.attributes)).toEqual(norm(m.attributes));
        expect(d.unknownRequired).toEqual([...new Set(m.attributes.filter((a) => a.raw === true && a.type < 0x8000).map((a) => a.type))]);
        expect(d.attributes.length).toBeLessThanOrEqual(MAX_STUN_ATTRIBUTES);
        if (o.integrity) {
          expect(verifyIntegrity(d, o.integrity.key)).toBe(true);
          if (o.integrity.sha256 === 'both') expect(verifyIntegrity(d, o.integrity.key, { algorithm: 'sha1' })).toBe(true);
        } else {
          expect(verifyIntegrity(d, 'k')).toBe(false);
        }
        expect(verifyFingerprint(d)).toBe(o.fingerprint === true);
        // Re-encoding the decoded message is byte-identical.
        expect(encodeStun(d, o).equals(buf)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('addresses survive text -> bytes -> text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const b = ipToBytes(ip);
        expect(ipToBytes(bytesToIp(b))).toEqual(b);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('ChannelData and stream splitter', () => {
  const channel = fc.integer({ min: CHANNEL_MIN, max: CHANNEL_MAX });

  it('ChannelData round trip (padded and unpadded)', () => {
    fc.assert(
      fc.property(channel, bytes(0, 600), fc.boolean(), (ch, data, pad) => {
        const d = decodeChannelData(encodeChannelData(ch, data, { pad }));
        expect(d.channel).toBe(ch);
        expect(Buffer.from(d.data).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('decodeChannelData on arbitrary bytes only ever throws DecodeError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => onlyDecodeError(() => decodeChannelData(b))), { numRuns: RUNS });
    fc.assert(
      fc.property(channel, fc.integer({ min: 0, max: 0xffff }), bytes(0, 64), (ch, len, rest) => {
        const h = Buffer.alloc(4);
        h.writeUInt16BE(ch, 0);
        h.writeUInt16BE(len, 2);
        onlyDecodeError(() => decodeChannelData(Buffer.concat([h, rest])));
      }),
      { numRuns: RUNS },
    );
  });

  type Frame = { kind: 'stun'; m: StunMessage } | { kind: 'channel-data'; channel: number; data: Uint8Array };
  const frame: fc.Arbitrary<Frame> = fc.oneof(
    fc.record({ kind: fc.constant('stun' as const), m: message.filter((m) => m.attributes.length < 6) }),
    fc.record({ kind: fc.constant('channel-data' as const), channel, data: bytes(0, 200) }),
  );
  const wire = (f: Frame): Buffer => (f.kind === 'stun' ? encodeStun(f.m) : encodeChannelData(f.channel, f.data, { pad: true }));

  it('splitter returns exactly the frames written, however the stream is chunked', () => {
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map(wire));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const s = new StunStreamSplitter();
        const got: StreamFrame[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          got.push(...s.push(stream.subarray(prev, p)));
          prev = p;
        }
        expect(s.buffered).toBe(0);
        expect(got.length).toBe(frames.length);
        got.forEach((g, i) => {
          const f = frames[i] as Frame;
          expect(g.kind).toBe(f.kind);
          if (f.kind === 'stun') expect(g.data.equals(encodeStun(f.m))).toBe(true);
          else expect(g.kind === 'channel-data' && g.channel === f.channel && g.data.equals(Buffer.from(f.data))).toBe(true);
        });
        const { frames: all, rest } = splitStunStream(stream);
        expect(all.length).toBe(frames.length);
        expect(rest.length).toBe(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('splitter on arbitrary chunks only ever throws DecodeError and never buffers past the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.integer({ min: 24, max: 200 }), (chunks, max) => {
        const s = new StunStreamSplitter({ maxFrameSize: max });
        onlyDecodeError(() => {
          for (const c of chunks) {
            for (const f of s.push(c)) expect(f.data.length).toBeLessThanOrEqual(max);
            expect(s.buffered).toBeLessThan(max);
          }
        });
      }),
      { numRuns: RUNS },
    );
  });
});

describe('the 28-byte bad datagram', () => {
  it.each([
    ['attribute length 0xffff', '0001 0008 2112a442 000102030405060708090a0b 0020ffff 00010000'],
    ['attribute length 5 (padding overruns)', '0001 0008 2112a442 000102030405060708090a0b 80220005 41414141'],
    ['attribute length 8 (no room after its header)', '0001 0008 2112a442 000102030405060708090a0b 00010008 00010000'],
    ['header claims 8, datagram has 4', '0001 0008 2112a442 000102030405060708090a0b 00000000'],
    ['classic, attribute length 0x0100', '0101 0008 000102030405060708090a0b0c0d0e0f 00010100 00010000'],
  ])('%s -> DecodeError', (_n, h) => {
    const buf = Buffer.from(h.replace(/\s+/g, ''), 'hex');
    expect(() => decodeStun(buf)).toThrow(DecodeError);
    expect(verifyIntegrity(buf, 'k')).toBe(false);
    expect(verifyFingerprint(buf)).toBe(false);
  });
});
