/** Peer address format: round trips, validation of every field, signature, fuzz. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { bytesToIp, ipToBytes } from '../src/interfaces/scope.js';
import { AddressError } from '../src/node/errors.js';
import { DecodeError } from '../src/errors.js';
import {
  ADDR_PREFIX, MAX_ADDR_ENDPOINTS, MAX_ADDR_INTERFACES, describeAddress, encodeAddress, parseAddress,
  type AddrEndpoint, type AddrInterface, type PeerAddressInit,
} from '../src/node/address.js';
import { MAX_BASE58_TEXT, base58Decode, base58Encode } from '../src/node/base58.js';
import { deriveSignalKey } from '../src/node/envelope.js';

const RUNS = Math.max(2_000, Number(process.env.ADDR_FUZZ_RUNS) || 0);
const id = Identity.fromPrivateKey(Buffer.alloc(32, 7));
const signalKey = deriveSignalKey(id).publicKey;

function onlyAddressError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
  }
}

const sample: PeerAddressInit = {
  signalKey,
  timestamp: 1_700_000_000,
  interfaces: [
    {
      nat: 'PORT_RESTRICTED_CONE',
      delta: { type: 'INDEPENDENT', value: 2 },
      endpoints: [
        { kind: 'lan', proto: 'tcp', host: '192.168.1.11', port: 40001, family: 4 },
        { kind: 'lan', proto: 'udp', host: '192.168.1.11', port: 40001, family: 4 },
        { kind: 'link-local', proto: 'tcp', host: 'fe80::ff:fe00:a11', port: 40001, family: 6 },
        { kind: 'global', proto: 'tcp', host: '2001:db8:a::11', port: 40001, family: 6 },
        { kind: 'external', proto: 'udp', host: '198.51.100.10', port: 53211, family: 4 },
        { kind: 'mapped', proto: 'tcp', host: '198.51.100.10', port: 40001, family: 4 },
        { kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port: 40001, family: 4 },
      ],
    },
  ],
  signal: [{ type: 'mqtt', url: 'mqtt://203.0.113.10:1883' }, { type: 'mqtt-self', port: 1884 }],
};

describe('base58', () => {
  it('round-trips, keeps leading zeros, rejects foreign characters', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      expect(base58Decode(base58Encode(b))?.equals(Buffer.from(b))).toBe(true);
    }), { numRuns: 500 });
    expect(base58Encode(Buffer.from([0, 0, 1]))).toBe('112');
    expect(() => base58Decode('0OIl')).toThrow(DecodeError);
    expect(() => base58Decode('abc d')).toThrow(DecodeError);
    expect(() => base58Decode('2'.repeat(MAX_BASE58_TEXT + 1))).toThrow(DecodeError);
  });
});

describe('peer address', () => {
  it('round-trips every field and is one copy-pasteable word', () => {
    const text = encodeAddress(id, sample);
    expect(text.startsWith(ADDR_PREFIX)).toBe(true);
    expect(text).toMatch(/^[1-9A-HJ-NP-Za-km-z]+$/);
    expect(text.length).toBeLessThan(400);
    const a = parseAddress(text);
    expect(a.idHex).toBe(id.idHex);
    expect(a.publicKey.equals(id.publicKey)).toBe(true);
    expect(a.signalKey.equals(signalKey)).toBe(true);
    expect(a.timestamp).toBe(1_700_000_000);
    expect(a.interfaces).toEqual(sample.interfaces);
    expect(a.signal).toEqual(sample.signal);
    expect(parseAddress(`  ${text}\n`).text).toBe(text);
    expect(describeAddress(a)).toContain('PORT_RESTRICTED_CONE');
  });

  it('an address with no interfaces and no brokers is valid (offline node)', () => {
    const a = parseAddress(encodeAddress(id, { signalKey, interfaces: [], signal: [] }));
    expect(a.interfaces).toEqual([]);
    expect(a.signal).toEqual([]);
  });

  it('rejects a tampered address (signature) and every flipped byte', () => {
    const text = encodeAddress(id, sample);
    const raw = base58Decode(text.slice(ADDR_PREFIX.length)) as Buffer;
    let caught = 0;
    for (let i = 0; i < raw.length; i++) {
      const b = Buffer.from(raw);
      b[i] = (b[i] as number) ^ 0x01;
      const t = ADDR_PREFIX + base58Encode(b);
      try {
        parseAddress(t);
      } catch (e) {
        expect(e).toBeInstanceOf(AddressError);
        caught++;
      }
    }
    expect(caught).toBe(raw.length);
    // Another identity's signature over the same body.
    const other = Identity.generate();
    const forged = Buffer.from(raw);
    id.publicKey.copy(forged, 5); // keep the key, sign with someone else
    const body = forged.subarray(0, forged.length - 64);
    other.sign(body).copy(forged, forged.length - 64);
    expect(() => parseAddress(ADDR_PREFIX + base58Encode(forged))).toThrow(expect.objectContaining({ field: 'signature' }));
  });

  it('rejects bad input with a typed error naming the field', () => {
    const bad: [unknown, string][] = [
      [42, 'encoding'],
      ['', 'encoding'],
      ['hello', 'encoding'],
      ['p2pd0OIl', 'encoding'],
      ['p2pd' + '2'.repeat(3000), 'encoding'],
      ['p2pd2', 'length'],
      [ADDR_PREFIX + base58Encode(Buffer.alloc(200, 0)), 'version'],
    ];
    for (const [input, field] of bad) {
      expect(() => parseAddress(input as string)).toThrow(AddressError);
      try {
        parseAddress(input as string);
      } catch (e) {
        expect((e as AddressError).field).toBe(field);
        expect((e as AddressError).code).toBe('ERR_BAD_ADDRESS');
      }
    }
  });

  it('refuses to encode invalid fields (so every encoded address parses)', () => {
    const ep = (over: Partial<AddrEndpoint>): PeerAddressInit => ({
      ...sample,
      interfaces: [{ nat: 'FULL_CONE', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'lan', proto: 'tcp', host: '10.0.0.1', port: 1, family: 4, ...over }] }],
    });
    const cases: PeerAddressInit[] = [
      ep({ port: 0 }),
      ep({ port: 70000 }),
      ep({ host: '127.0.0.1' }),
      ep({ kind: 'lan', host: '8.8.8.8' }),
      ep({ kind: 'global', host: '10.1.1.1' }),
      ep({ kind: 'link-local', host: '2001:db8::1' }),
      ep({ kind: 'external', host: '0.0.0.0' }),
      ep({ kind: 'external', host: '224.0.0.1' }),
      ep({ kind: 'global', host: 'ff02::1' }),
      ep({ kind: 'global', host: '::ffff:8.8.8.8' }),
      ep({ kind: 'loopback', host: '10.0.0.1' }),
      ep({ host: 'example.com' }),
      ep({ proto: 'sctp' as 'tcp' }),
      ep({ kind: 'nearby' as 'lan' }),
      { ...sample, interfaces: [{ nat: 'WEIRD' as 'OPEN', delta: { type: 'NA', value: 0 }, endpoints: [] }] },
      { ...sample, interfaces: [{ nat: 'OPEN', delta: { type: 'NA', value: 40000 }, endpoints: [] }] },
      { ...sample, interfaces: Array.from({ length: MAX_ADDR_INTERFACES + 1 }, (): AddrInterface => ({ nat: 'OPEN', delta: { type: 'NA', value: 0 }, endpoints: [] })) },
      { ...sample, interfaces: [{ nat: 'OPEN', delta: { type: 'NA', value: 0 }, endpoints: Array.from({ length: MAX_ADDR_ENDPOINTS + 1 }, (_, i) => ({ kind: 'lan' as const, proto: 'tcp' as const, host: '10.0.0.1', port: i + 1, family: 4 as const })) }] },
      { ...sample, signal: [{ type: 'mqtt', url: 'http://x:1' }] },
      { ...sample, signal: [{ type: 'mqtt', url: 'mqtt://user:pw@host:1883' }] },
      { ...sample, signal: [{ type: 'mqtt', url: 'mqtt://' }] },
      { ...sample, signal: [{ type: 'mqtt', url: `mqtt://${'a'.repeat(300)}:1` }] },
      { ...sample, signal: [{ type: 'mqtt-self', port: 0 }] },
      { ...sample, signal: [{ type: 'carrier-pigeon' } as unknown as { type: 'mqtt'; url: string }] },
      { ...sample, signalKey: Buffer.alloc(31) },
    ];
    for (const c of cases) expect(() => encodeAddress(id, c)).toThrow(AddressError);
  });

  it('skips unknown optional records, rejects unknown critical ones', () => {
    const text = encodeAddress(id, { signalKey, interfaces: [], signal: [] });
    const raw = base58Decode(text.slice(ADDR_PREFIX.length)) as Buffer;
    const body = raw.subarray(0, raw.length - 64);
    const resign = (extra: Buffer): string => {
      const b = Buffer.concat([body, extra]);
      const sig = id.sign(Buffer.concat([Buffer.from('p2pd-addr-v1\0', 'latin1'), b]));
      return ADDR_PREFIX + base58Encode(Buffer.concat([b, sig]));
    };
    expect(parseAddress(resign(Buffer.from([0x90, 0, 2, 1, 2]))).interfaces).toEqual([]);
    expect(() => parseAddress(resign(Buffer.from([0x10, 0, 2, 1, 2])))).toThrow(expect.objectContaining({ field: 'record' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 9, 1, 2])))).toThrow(expect.objectContaining({ field: 'record' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 4, 9, 1, 0, 0])))).toThrow(expect.objectContaining({ field: 'nat' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 4, 0, 9, 0, 0])))).toThrow(expect.objectContaining({ field: 'delta' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 11, 0, 1, 0, 0, 0x20, 10, 0, 0, 1, 0, 1])))).toThrow(expect.objectContaining({ field: 'endpoint' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 11, 0, 1, 0, 0, 0x07, 10, 0, 0, 1, 0, 1])))).toThrow(expect.objectContaining({ field: 'endpoint' }));
    expect(() => parseAddress(resign(Buffer.from([0x01, 0, 10, 0, 1, 0, 0, 0x00, 10, 0, 0, 1, 0])))).toThrow(expect.objectContaining({ field: 'endpoint' }));
    expect(() => parseAddress(resign(Buffer.from([0x03, 0, 2, 0, 0])))).toThrow(expect.objectContaining({ field: 'signal' }));
    expect(() => parseAddress(resign(Buffer.from([0x02, 0, 2, 0xff, 0xfe])))).toThrow(expect.objectContaining({ field: 'signal' }));
  });

  // ---- fuzz ----
  const ipFor = (kind: AddrEndpoint['kind'], v6: boolean): fc.Arbitrary<string> => {
    switch (kind) {
      case 'lan':
        return v6 ? fc.uint8Array({ minLength: 15, maxLength: 15 }).map((b) => bytesToIp(Buffer.concat([Buffer.from([0xfd]), b])))
          : fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map(([a, b, c]) => `10.${a}.${b}.${c}`);
      case 'link-local':
        return fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => bytesToIp(Buffer.concat([Buffer.from([0xfe, 0x80, 0, 0, 0, 0, 0, 0]), b])));
      case 'loopback':
        return fc.constant(v6 ? '::1' : '127.0.0.1');
      default:
        return v6 ? fc.uint8Array({ minLength: 14, maxLength: 14 }).map((b) => bytesToIp(Buffer.concat([Buffer.from([0x20, 0x01]), b])))
          : fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 }))
            .filter(([a, b]) => a !== 10 && a !== 127 && !(a === 192 && b === 168) && !(a === 172 && b >= 16 && b < 32) && !(a === 169 && b === 254) && !(a === 100 && b >= 64 && b < 128))
            .map((x) => x.join('.'));
    }
  };
  const endpoint: fc.Arbitrary<AddrEndpoint> = fc
    .tuple(fc.constantFrom<AddrEndpoint['kind']>('lan', 'link-local', 'global', 'external', 'mapped', 'loopback'), fc.boolean(), fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'), fc.integer({ min: 1, max: 65535 }))
    .chain(([kind, v6raw, proto, port]) => {
      const v6 = kind === 'link-local' ? true : v6raw;
      return ipFor(kind, v6).map((host) => ({ kind, proto, host, port, family: (v6 ? 6 : 4) as 4 | 6 }));
    });
  const iface: fc.Arbitrary<AddrInterface> = fc.record({
    nat: fc.constantFrom('UNKNOWN', 'OPEN', 'SYMMETRIC_UDP_FIREWALL', 'FULL_CONE', 'RESTRICTED_CONE', 'PORT_RESTRICTED_CONE', 'SYMMETRIC', 'BLOCKED' as const),
    delta: fc.record({ type: fc.constantFrom('NA', 'EQUAL', 'PRESERVING', 'INDEPENDENT', 'DEPENDENT', 'RANDOM' as const), value: fc.integer({ min: -32768, max: 32767 }) }),
    endpoints: fc.array(endpoint, { maxLength: 6 }),
  });
  const init: fc.Arbitrary<PeerAddressInit> = fc.record({
    signalKey: fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((b) => b.some((x) => x !== 0)),
    timestamp: fc.integer({ min: 0, max: 0xffffffff }),
    interfaces: fc.array(iface, { maxLength: 3 }),
    signal: fc.array(fc.oneof(
      fc.tuple(fc.constantFrom('mqtt', 'mqtts', 'ws', 'wss'), fc.integer({ min: 1, max: 65535 })).map(([s, p]) => ({ type: 'mqtt' as const, url: `${s}://broker.example:${p}` })),
      fc.integer({ min: 1, max: 65535 }).map((port) => ({ type: 'mqtt-self' as const, port })),
    ), { maxLength: 3 }),
  });

  it('fuzz: every valid init round-trips', () => {
    fc.assert(fc.property(init, (i) => {
      const a = parseAddress(encodeAddress(id, i));
      expect(a.interfaces).toEqual(i.interfaces.map((x) => ({ ...x, endpoints: x.endpoints.map((e) => ({ ...e, host: bytesToIp(ipToBytes(e.host)) })) })));
      expect(a.signal).toEqual(i.signal);
      expect(a.timestamp).toBe(i.timestamp);
    }), { numRuns: Math.ceil(RUNS / 4) });
  });

  it('fuzz: arbitrary strings and mutated addresses throw only AddressError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 500 }), (s) => onlyAddressError(() => parseAddress(s))), { numRuns: RUNS });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => onlyAddressError(() => parseAddress(ADDR_PREFIX + base58Encode(b)))), { numRuns: RUNS });
    const good = base58Decode(encodeAddress(id, sample).slice(ADDR_PREFIX.length)) as Buffer;
    fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: good.length }), (i, v, cut) => {
      const b = Buffer.from(good);
      b[i] = v;
      onlyAddressError(() => parseAddress(ADDR_PREFIX + base58Encode(b)));
      onlyAddressError(() => parseAddress(ADDR_PREFIX + base58Encode(b.subarray(0, cut))));
      // Structure-valid mutations (re-signed): the parser's field checks alone must hold.
      onlyAddressError(() => parseAddress(ADDR_PREFIX + base58Encode(b), { skipSignature: true }));
    }), { numRuns: RUNS });
  });
});
