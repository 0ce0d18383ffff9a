/**
 * Property-based fuzzing (fast-check) of the parsers the other fuzz suites do not cover:
 * arbitrary, truncated and oversized input gives a result or the parser's typed error, never
 * another exception, and never unbounded buffering. (STUN, TURN, port mapping, envelopes,
 * addresses, handshakes, swarm, DHT and sync frames have their own fuzz suites.)
 */
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../src/cli/args.js';
import { Identity, parseNodeId } from '../src/crypto/identity.js';
import { decodeValue, type DhtRecord } from '../src/dht/record.js';
import { parseContact } from '../src/dht/standalone.js';
import { DecodeError, FrameError, InvalidArgumentError, MessageTooBigError, P2pdError, RecordError } from '../src/errors.js';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { parseSsdpResponse, SSDP_MAX_RESPONSE } from '../src/nat/portmap/upnp-ssdp.js';
import { parseBindingResponse } from '../src/nat/stun/client-wire.js';
import { parseStunServer } from '../src/nat/stun/client-options.js';
import { decodeStun, encodeStun } from '../src/nat/stun/message.js';
import { isPlainBinding } from '../src/nat/stun/server-wire.js';
import { ATTR, CLASS, METHOD } from '../src/nat/stun/constants.js';
import { base58Decode } from '../src/node/base58.js';
import { endpointFrom, endpointsFrom } from '../src/node/hello.js';
import { nonceFrom } from '../src/node/strategy-punch.js';
import { LengthDecoder, LineDecoder } from '../src/pipes/framing.js';
import { decodePreamble, preambleLength } from '../src/swarm/protocol.js';
import { UsageError } from '../src/util/cli-args.js';

const RUNS = { numRuns: 400 };
const FROM: Endpoint = { host: '192.168.1.1', port: 1900, family: 4 };

/** Runs `f`; an exception must be one of `types`. */
function onlyTyped(f: () => unknown, ...types: (abstract new (...a: never[]) => Error)[]): void {
  try {
    f();
  } catch (e) {
    if (!types.some((t) => e instanceof t)) throw e;
  }
}

/** Cuts `data` into chunks at the given (sorted, deduplicated) offsets. */
function chunked(data: Uint8Array, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, data.length]) {
    if (c > prev) out.push(Buffer.from(data.subarray(prev, c)));
    prev = Math.max(prev, c);
  }
  return out;
}

describe('wire parsers: arbitrary bytes', () => {
  it('isPlainBinding (the STUN server fast path) answers a boolean for any datagram', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (b) => {
        expect(typeof isPlainBinding(Buffer.from(b))).toBe('boolean');
      }),
      RUNS,
    );
    // A real Binding request is plain; one with an attribute is not.
    const plain = encodeStun({ method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: Buffer.alloc(12, 7), attributes: [] });
    expect(isPlainBinding(Buffer.from(plain))).toBe(true);
  });

  it('parseSsdpResponse: any datagram (random, truncated, oversized) is a response or undefined', () => {
    const good = Buffer.from('HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://192.168.1.1:5000/rootDesc.xml\r\nUSN: uuid:x\r\n\r\n', 'latin1');
    expect(parseSsdpResponse(good, FROM)).toBeDefined();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 3000 }),
          fc.nat({ max: good.length }).map((n) => good.subarray(0, n)),
          fc.tuple(fc.nat({ max: good.length - 1 }), fc.uint8Array({ minLength: 1, maxLength: 40 })).map(([p, x]) => Buffer.concat([good.subarray(0, p), x, good.subarray(p)])),
          fc.constant(Buffer.alloc(SSDP_MAX_RESPONSE + 1, 0x41)),
        ),
        (b) => {
          const r = parseSsdpResponse(b, FROM);
          if (r !== undefined) expect(r.location).toBeInstanceOf(URL);
        },
      ),
      RUNS,
    );
  });

  it.each([
    { name: 'LengthDecoder', make: (max: number) => new LengthDecoder(max), slack: 4 },
    { name: 'LineDecoder', make: (max: number) => new LineDecoder(max), slack: 2 },
  ])('$name: random bytes in random chunks emit frames ≤ max or throw FrameError/MessageTooBigError; buffering stays bounded', ({ make, slack }) => {
    const max = 64;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 20 }), (b, cuts) => {
        const d = make(max);
        onlyTyped(() => {
          for (const c of chunked(b, cuts)) {
            d.push(c, (f) => expect(f.length).toBeLessThanOrEqual(max));
            expect(d.pending).toBeLessThanOrEqual(max + slack);
          }
        }, FrameError, MessageTooBigError);
      }),
      RUNS,
    );
  });

  it('swarm preamble: preambleLength and decodePreamble give a result or a DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 600 }), (b) => {
        const buf = Buffer.from(b);
        onlyTyped(() => preambleLength(buf), DecodeError);
        onlyTyped(() => decodePreamble(buf), DecodeError);
        // With a consistent length prefix the body parser is reached.
        const framed = Buffer.concat([Buffer.alloc(4), buf]);
        framed.writeUInt32BE(buf.length, 0);
        onlyTyped(() => decodePreamble(framed), DecodeError);
      }),
      RUNS,
    );
  });

  it('STUN Binding responses: any decodable message gives a mapping or a typed error', () => {
    const base = encodeStun({
      method: METHOD.BINDING,
      cls: CLASS.SUCCESS,
      transactionId: Buffer.alloc(12, 1),
      attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: '203.0.113.5', port: 4000, family: 4 } }],
    });
    fc.assert(
      fc.property(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 }), (pos, val, tail) => {
        const b = Buffer.concat([Buffer.from(base), tail]);
        b[pos] = val;
        if (tail.length % 4 === 0) b.writeUInt16BE(b.length - 20, 2);
        let msg;
        try {
          msg = decodeStun(b);
        } catch (e) {
          expect(e).toBeInstanceOf(P2pdError);
          return;
        }
        onlyTyped(() => parseBindingResponse(msg), P2pdError);
      }),
      RUNS,
    );
  });

  it('DHT decodeValue: any bytes under any value type give a value or a RecordError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom('bytes', 'utf8', 'json'), (value, valueType) => {
        const r = { key: Buffer.from('k'), value, valueType, writer: Buffer.alloc(32), seq: 1, timestamp: 1, deleted: false, signature: Buffer.alloc(64) } as unknown as DhtRecord;
        onlyTyped(() => decodeValue(r), RecordError);
      }),
      RUNS,
    );
  });
});

describe('text parsers: arbitrary strings and JSON values', () => {
  const anyText = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 100 }), fc.constant('x'.repeat(100_000)));

  it('signalling body fields (endpointFrom, endpointsFrom, nonceFrom) never throw on any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), (v) => {
        const e = endpointFrom(v);
        if (e !== undefined) expect(e.port).toBeGreaterThan(0);
        expect(Array.isArray(endpointsFrom(v))).toBe(true);
        expect(endpointsFrom(Array(50).fill(v)).length).toBeLessThanOrEqual(8);
        const n = nonceFrom(v);
        if (n !== undefined) expect(n.length).toBeGreaterThanOrEqual(16);
      }),
      RUNS,
    );
  });

  it('base58Decode, parseNodeId, parseContact, parseStunServer: a result or their typed error', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        onlyTyped(() => base58Decode(s), DecodeError);
        onlyTyped(() => parseNodeId(s), InvalidArgumentError);
        onlyTyped(() => parseContact(s), P2pdError);
        onlyTyped(() => parseStunServer(s), P2pdError);
      }),
      RUNS,
    );
  });

  it('command-line parsing: any argv gives options or a UsageError', () => {
    const tokens = fc.oneof(
      fc.constantFrom('--stun', '--timeout', '--family', '--iface', '--bind', '--tcp', '--json', '-q', '--help', 'nat', 'mapping', 'interfaces', '--', '-'),
      fc.string({ maxLength: 30 }),
    );
    fc.assert(
      fc.property(fc.array(tokens, { maxLength: 12 }), (argv) => {
        onlyTyped(() => parseArgs(argv), UsageError, InvalidArgumentError);
      }),
      RUNS,
    );
  });

  describe('identity files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'p2pd-id-fuzz-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('a key file with any content loads as an identity or fails with a DecodeError', async () => {
      await Identity.generate().save(join(dir, 'good.json'));
      const good = JSON.parse(readFileSync(join(dir, 'good.json'), 'utf8')) as Record<string, unknown>;
      let i = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.string({ maxLength: 400 }),
            fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
            fc.record({ k: fc.constantFrom(...Object.keys(good)), v: fc.jsonValue({ maxDepth: 1 }) }).map(({ k, v }) => JSON.stringify({ ...good, [k]: v })),
          ),
          async (text) => {
            const path = join(dir, `f${i++}.json`);
            writeFileSync(path, text, { mode: 0o600 });
            try {
              await Identity.load(path);
            } catch (e) {
              expect(e).toBeInstanceOf(DecodeError);
            }
          },
        ),
        { numRuns: 150 },
      );
    });
  });
});
