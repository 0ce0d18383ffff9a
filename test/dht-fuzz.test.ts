import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../src/errors.js';
import { bytesToIp } from '../src/interfaces/scope.js';
import {
  MAX_CONTACTS, MAX_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_RECORD_BYTES, MAX_VALUE_BYTES, createRecord, decodeMessage, decodeRecord,
  encodeMessage, encodeRecord, generateSigner, type Contact, type DhtMessage, type DhtRecord,
} from '../src/dht/index.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);

/** Runs `f`; the only exception allowed is DecodeError. */
function onlyDecodeError(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (!(e instanceof DecodeError)) throw new Error(`unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    return false;
  }
}

const id = fc.uint8Array({ minLength: 32, maxLength: 32 });
const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const contact: fc.Arbitrary<Contact> = fc
  .record(
    {
      id,
      v6: fc.boolean(),
      addr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      port: fc.integer({ min: 1, max: 0xffff }),
      publicKey: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    },
    { requiredKeys: ['id', 'v6', 'addr', 'port'] },
  )
  .map(({ id: cid, v6, addr, port, publicKey }) => {
    const c: Contact = { id: cid, host: bytesToIp(v6 ? addr : addr.subarray(0, 4)), port, family: v6 ? 6 : 4 };
    return publicKey ? { ...c, publicKey } : c;
  });

const record: fc.Arbitrary<DhtRecord> = fc
  .record({
    key: fc.uint8Array({ minLength: 1, maxLength: MAX_KEY_BYTES }),
    value: fc.uint8Array({ maxLength: 300 }),
    valueType: fc.constantFrom('bytes' as const, 'utf8' as const, 'json' as const),
    writer: id,
    seq: safeInt,
    timestamp: safeInt,
    deleted: fc.boolean(),
    signature: fc.uint8Array({ minLength: 64, maxLength: 64 }),
  })
  .map((r) => (r.deleted ? { ...r, value: new Uint8Array(0), valueType: 'bytes' as const } : r));

const sender = { sender: contact };
const opt = <T extends object>(base: fc.Arbitrary<T>, extra: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<T> =>
  fc.tuple(base, fc.record(extra, { requiredKeys: [] })).map(([b, e]) => ({ ...b, ...e }));
const contacts = fc.array(contact, { maxLength: MAX_CONTACTS });

const message: fc.Arbitrary<DhtMessage> = fc.oneof(
  opt(fc.constant({ type: 'PING' as const }), sender),
  opt(fc.record({ type: fc.constant('FIND_NODE' as const), target: id }), sender),
  opt(fc.record({ type: fc.constant('FIND_VALUE' as const), keyId: id }), sender),
  opt(fc.record({ type: fc.constant('STORE' as const), record }), sender),
  opt(fc.record({ type: fc.constant('DELETE' as const), record: record.map((r) => ({ ...r, deleted: true, value: new Uint8Array(0), valueType: 'bytes' as const })) }), sender),
  fc.record({ type: fc.constant('PONG' as const), responder: id }),
  fc.record({ type: fc.constant('NODES' as const), responder: id, contacts }),
  opt(fc.record({ type: fc.constant('VALUE' as const), responder: id, contacts }), { record }),
  fc.record({ type: fc.constant('STORED' as const), responder: id, status: fc.constantFrom('ok' as const, 'stale' as const, 'not-owner' as const, 'invalid' as const, 'full' as const) }),
  fc.record({
    type: fc.constant('ERROR' as const),
    responder: id,
    code: fc.constantFrom('bad-request' as const, 'internal' as const, 'overloaded' as const, 'closed' as const),
    message: fc.string({ maxLength: 60, unit: 'grapheme' }).filter((s) => Buffer.byteLength(s) <= 256),
  }),
);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), val: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
);
type Mutation = { kind: 'flip'; pos: number; bit: number } | { kind: 'set'; pos: number; val: number } | { kind: 'truncate'; pos: number } | { kind: 'append'; extra: Uint8Array };

function mutate(base: Uint8Array, muts: readonly Mutation[]): Uint8Array {
  let b = Buffer.from(base);
  for (const m of muts) {
    if (m.kind === 'flip' && b.length > 0) b[m.pos % b.length] ^= 1 << m.bit;
    else if (m.kind === 'set' && b.length > 0) b[m.pos % b.length] = m.val;
    else if (m.kind === 'truncate') b = b.subarray(0, m.pos % (b.length + 1));
    else if (m.kind === 'append') b = Buffer.concat([b, m.extra]);
  }
  return new Uint8Array(b);
}

describe('fuzz: DHT message codec', () => {
  it('encode → decode round-trips every message', () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 0xffffffff }), (m, txid) => {
        const frame = encodeMessage(m, txid);
        expect(frame.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
        const back = decodeMessage(frame);
        if (!isDeepStrictEqual(back, { txid, message: m })) expect(back).toEqual({ txid, message: m });
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('arbitrary bytes only ever raise DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        onlyDecodeError(() => decodeMessage(bytes));
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('bytes behind a valid header only ever raise DecodeError', () => {
    const types = [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x82, 0x83, 0x84, 0xff];
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.uint8Array({ maxLength: 600 }), (type, body) => {
        const frame = new Uint8Array([1, type, 0, 0, 0, 9, ...body]);
        onlyDecodeError(() => decodeMessage(frame));
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('mutated valid frames decode strictly: DecodeError, or a message that re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(message, fc.array(mutation, { minLength: 1, maxLength: 4 }), (m, muts) => {
        const bad = mutate(encodeMessage(m, 5), muts as Mutation[]);
        let decoded: ReturnType<typeof decodeMessage> | undefined;
        if (!onlyDecodeError(() => (decoded = decodeMessage(bad)))) return;
        if (decoded && decoded.message.type !== 'ERROR') {
          expect(Buffer.from(encodeMessage(decoded.message, decoded.txid)).equals(Buffer.from(bad))).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('rejects frames over MAX_MESSAGE_BYTES and too many contacts', () => {
    expect(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toThrow(DecodeError);
    const c: Contact = { id: new Uint8Array(32), host: '1.2.3.4', port: 1, family: 4 };
    const ok = encodeMessage({ type: 'NODES', responder: new Uint8Array(32), contacts: Array(MAX_CONTACTS).fill(c) });
    const tooMany = Buffer.from(ok);
    tooMany[6 + 32] = MAX_CONTACTS + 1;
    expect(() => decodeMessage(Buffer.concat([tooMany, ok.subarray(6 + 33, 6 + 33 + 40)]))).toThrow(DecodeError);
    expect(() => encodeMessage({ type: 'NODES', responder: new Uint8Array(32), contacts: Array(MAX_CONTACTS + 1).fill(c) })).toThrow();
  });
});

describe('fuzz: DHT record codec', () => {
  const signer = generateSigner();
  const valid = encodeRecord(createRecord(signer, { key: 'fuzz-key', value: { a: [1, 2, 3] }, seq: 7, timestamp: Date.now() }));

  it('encode → decode round-trips every record', () => {
    fc.assert(
      fc.property(record, (r) => {
        const back = decodeRecord(encodeRecord(r));
        if (!isDeepStrictEqual(back, r)) expect(back).toEqual(r);
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('arbitrary and mutated bytes only ever raise DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (bytes, muts) => {
        onlyDecodeError(() => decodeRecord(bytes));
        onlyDecodeError(() => decodeRecord(mutate(valid, muts as Mutation[])));
        onlyDecodeError(() => decodeRecord(new Uint8Array([1, ...bytes])));
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('rejects oversized values and keys in the encoding', () => {
    expect(() => decodeRecord(new Uint8Array(MAX_RECORD_BYTES + 1))).toThrow(DecodeError);
    const r = decodeRecord(valid);
    const bigValue = encodeRecord({ ...r, value: new Uint8Array(MAX_VALUE_BYTES + 1) });
    expect(() => decodeRecord(bigValue)).toThrow(DecodeError);
    const bigKey = encodeRecord({ ...r, key: new Uint8Array(MAX_KEY_BYTES + 1) });
    expect(() => decodeRecord(bigKey)).toThrow(DecodeError);
  });
});
