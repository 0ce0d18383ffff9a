/**
 * Swarm and sync decoders on random and mutated input: they either decode or throw
 * `DecodeError` — never anything else, never hang.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { DecodeError } from '../src/errors.js';
import { Reader } from '../src/swarm/codec.js';
import { FRAME_BCAST, FRAME_DATA, buildEnvelope, decodeEnvelope, decodeMembers, encodeMembers, signAnnouncement } from '../src/swarm/index.js';
import { decodeHello, encodeHello } from '../src/swarm/frames.js';
import { decodePreamble, encodePreamble, resolveProtocol } from '../src/swarm/protocol.js';
import { decodeRecord, signRecord } from '../src/sync/index.js';
import { decodeRecordList } from '../src/sync/record.js';

const id = Identity.generate();
const proto = resolveProtocol({ name: 'fuzz' });
const ann = signAnnouncement(id, proto.hash, { host: '127.0.0.1', port: 4000, family: 4 }, Date.now());
const transcript = Buffer.alloc(32, 7);
const valid: Record<string, Buffer> = {
  data: buildEnvelope(id, proto.hash, { type: FRAME_DATA, kind: 0, target: Buffer.alloc(32, 1), payload: Buffer.from('hello'), timestamp: Date.now() }).raw,
  bcast: buildEnvelope(id, proto.hash, { type: FRAME_BCAST, kind: 0, exclude: [Buffer.alloc(32, 2)], payload: Buffer.from('all'), timestamp: Date.now() }).raw,
  members: encodeMembers([ann, ann])[0] as Buffer,
  hello: encodeHello(id, proto.hash, transcript, false, ann),
  preamble: encodePreamble(proto),
  record: signRecord(id, proto.hash, { namespace: Buffer.alloc(32), since: 1, ts: 2, tombstone: false, key: Buffer.from('k'), value: Buffer.from('v') }).raw,
};
const decoders: Record<string, (b: Buffer) => unknown> = {
  data: decodeEnvelope,
  bcast: decodeEnvelope,
  members: decodeMembers,
  hello: (b) => decodeHello(b, proto.hash, transcript, true),
  preamble: decodePreamble,
  record: decodeRecord,
};

function onlyDecodeErrors(decode: (b: Buffer) => unknown, b: Buffer): void {
  try {
    decode(b);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
  }
}

describe('swarm decoders', () => {
  it('valid frames decode', () => {
    for (const [k, f] of Object.entries(valid)) expect(() => decoders[k]!(f)).not.toThrow();
  });

  for (const k of Object.keys(valid)) {
    it(`${k}: random bytes, truncations and byte flips only ever raise DecodeError`, () => {
      const base = valid[k]!;
      const decode = decoders[k]!;
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => onlyDecodeErrors(decode, Buffer.from(bytes))),
        { numRuns: 300 },
      );
      fc.assert(
        fc.property(fc.nat(base.length), fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 }), (cut, at, x) => {
          onlyDecodeErrors(decode, base.subarray(0, cut));
          const m = Buffer.from(base);
          m[at] = (m[at] as number) ^ x;
          onlyDecodeErrors(decode, m);
        }),
        { numRuns: 400 },
      );
    });
  }

  it('record lists with lying counts and lengths', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeRecordList(new Reader(Buffer.from(bytes), 'fuzz'), 10);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
  });
});
