import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { MAX_IP_LITERAL_LENGTH, bytesToIp, ipFamily, ipToBytes, isMappedIPv4, unmapIPv4 } from '../src/interfaces/index.js';
import * as root from '../src/index.js';
import * as scope from '../src/interfaces/scope.js';
import * as stun from '../src/nat/stun/index.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));
/** How the WHATWG URL parser normalises an IPv6 literal (hex groups, even for IPv4-mapped). */
const urlForm = (ip: string): string => new URL(`http://[${ip}]/`).hostname.slice(1, -1);

const bytes4or16 = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
/** 16 bytes biased towards zero runs, `ffff` groups and the IPv4-mapped prefix. */
const group = fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
const bytes16 = fc.oneof(
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
  fc.array(group, { minLength: 8, maxLength: 8 }).map((gs) => Uint8Array.from(gs.flatMap((g) => [g >> 8, g & 0xff]))),
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((v4) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4])),
);

describe('one IP converter', () => {
  it('is the one every layer re-exports', () => {
    expect(scope.ipToBytes).toBe(ipToBytes);
    expect(scope.bytesToIp).toBe(bytesToIp);
    expect(stun.ipToBytes).toBe(ipToBytes);
    expect(stun.bytesToIp).toBe(bytesToIp);
    expect(root.ipToBytes).toBe(ipToBytes);
    expect(root.bytesToIp).toBe(bytesToIp);
  });
});

describe('ipToBytes', () => {
  it.each([
    ['0.0.0.0', '00000000'],
    ['255.255.255.255', 'ffffffff'],
    ['::', '00'.repeat(16)],
    ['::1', `${'00'.repeat(15)}01`],
    ['1::', `0001${'00'.repeat(14)}`],
    ['2001:DB8::1', `20010db8${'00'.repeat(10)}0001`],
    ['::ffff:1.2.3.4', `${'00'.repeat(10)}ffff01020304`],
    ['::FFFF:102:304', `${'00'.repeat(10)}ffff01020304`],
    ['::1.2.3.4', `${'00'.repeat(12)}01020304`],
    ['1:2:3:4:5:6:7.8.9.10', '0001000200030004000500060708090a'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['fe80::1%eth0', `fe80${'00'.repeat(12)}0001`],
  ])('%s', (text, bytes) => {
    expect(hex(ipToBytes(text))).toBe(bytes);
  });

  it.each([
    '', ' 1.2.3.4', '1.2.3.4 ', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '0x7f.0.0.1', '1.2.3.-4',
    ':', ':::', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', 'g::1', '::ffff:1.2.3', '::1.2.3.4:5', '[::1]',
    'localhost', 'example.com', '%eth0', '1.2.3.4%eth0', `::${'1'.repeat(MAX_IP_LITERAL_LENGTH)}`,
  ])('rejects %j with InvalidArgumentError', (bad) => {
    expect(() => ipToBytes(bad)).toThrow(InvalidArgumentError);
    expect(ipFamily(bad)).toBeUndefined();
  });

  it('rejects non-strings and over-long literals with InvalidArgumentError', () => {
    for (const bad of [undefined, null, 1234, {}, ['1.2.3.4']]) expect(() => ipToBytes(bad as unknown as string)).toThrow(InvalidArgumentError);
    const zone = 'z'.repeat(MAX_IP_LITERAL_LENGTH - 'fe80::1%'.length);
    expect(ipToBytes(`fe80::1%${zone}`)).toHaveLength(16);
    expect(() => ipToBytes(`fe80::1%${zone}z`)).toThrow(InvalidArgumentError);
  });

  it('accepts exactly what net.isIP accepts, with the family it reports', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string({ maxLength: 50 }), fc.stringMatching(/^[0-9a-fA-F:.]{0,45}$/)), (s) => {
        const v = isIP(s);
        if (v === 0) {
          expect(() => ipToBytes(s)).toThrow(InvalidArgumentError);
        } else {
          expect(ipToBytes(s)).toHaveLength(v === 4 ? 4 : 16);
          expect(ipFamily(s)).toBe(v);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('reports the family of IPv4 and (zoned) IPv6 literals', () => {
    expect(ipFamily('1.2.3.4')).toBe(4);
    expect(ipFamily('fe80::1%2')).toBe(6);
    expect(ipFamily('nope')).toBeUndefined();
  });

  it('agrees with the WHATWG URL parser on the bytes', () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        expect(hex(ipToBytes(ip))).toBe(hex(ipToBytes(urlForm(ip))));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('bytesToIp (RFC 5952)', () => {
  it.each([
    ['01020304', '1.2.3.4'],
    ['00'.repeat(16), '::'],
    [`${'00'.repeat(15)}01`, '::1'],
    [`0001${'00'.repeat(14)}`, '1::'],
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['20010000000000010000000000000001', '2001:0:0:1::1'], // the longest run
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // the first of equal runs
    ['000100020003000400050006000700ab', '1:2:3:4:5:6:7:ab'],
    ['ABCD000000000000000000000000EF01', 'abcd::ef01'], // lowercase
    [`${'00'.repeat(10)}ffff01020304`, '::ffff:1.2.3.4'], // RFC 5952 §5
    [`${'00'.repeat(10)}ffff00000000`, '::ffff:0.0.0.0'],
    [`${'00'.repeat(12)}01020304`, '::102:304'], // IPv4-compatible (deprecated): hex
    [`${'00'.repeat(8)}ffff000001020304`, '::ffff:0:102:304'], // IPv4-translated: hex
  ])('%s -> %s', (bytes, text) => {
    expect(bytesToIp(fromHex(bytes))).toBe(text);
    expect(hex(ipToBytes(text))).toBe(bytes.toLowerCase());
  });

  it('formats IPv4-mapped addresses as asked', () => {
    const b = fromHex(`${'00'.repeat(10)}ffff c0a80101`);
    expect(bytesToIp(b)).toBe('::ffff:192.168.1.1');
    expect(bytesToIp(b, { mapped: 'dotted' })).toBe('::ffff:192.168.1.1');
    expect(bytesToIp(b, { mapped: 'hex' })).toBe('::ffff:c0a8:101');
    expect(bytesToIp(b, { mapped: 'unmap' })).toBe('192.168.1.1');
    expect(isMappedIPv4(b)).toBe(true);
    expect(isMappedIPv4(b.subarray(12))).toBe(false);
    expect(bytesToIp(fromHex('01020304'), { mapped: 'unmap' })).toBe('1.2.3.4');
  });

  it('rejects anything but 4 or 16 bytes with InvalidArgumentError', () => {
    for (const n of [0, 1, 3, 5, 15, 17, 32]) expect(() => bytesToIp(new Uint8Array(n))).toThrow(InvalidArgumentError);
    for (const bad of [undefined, null, '1.2.3.4', [1, 2, 3, 4]]) expect(() => bytesToIp(bad as unknown as Uint8Array)).toThrow(InvalidArgumentError);
  });

  it('bytes -> text -> bytes is the identity for random 4- and 16-byte inputs', () => {
    fc.assert(
      fc.property(fc.oneof(bytes4or16, bytes16), fc.constantFrom('dotted', 'hex', undefined), (b, mapped) => {
        const text = bytesToIp(b, mapped ? { mapped } : undefined);
        expect(isIP(text)).toBe(b.length === 4 ? 4 : 6);
        expect(hex(ipToBytes(text))).toBe(hex(b));
      }),
      { numRuns: 5000 },
    );
  });

  it('equals the WHATWG URL normalisation (dotted only for IPv4-mapped)', () => {
    fc.assert(
      fc.property(bytes16, (b) => {
        const text = bytesToIp(b);
        if (isMappedIPv4(b)) {
          expect(text).toBe(`::ffff:${b.subarray(12).join('.')}`);
        } else {
          expect(text).toBe(urlForm(text));
        }
        expect(bytesToIp(b, { mapped: 'hex' })).toBe(urlForm(text));
      }),
      { numRuns: 5000 },
    );
  });

  it('text -> bytes -> text is the URL normalisation (dotted when IPv4-mapped), IPv4 unchanged', () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const url = urlForm(ip);
        const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(url);
        const v4 = (g: string): string => `${parseInt(g, 16) >> 8}.${parseInt(g, 16) & 0xff}`;
        expect(bytesToIp(ipToBytes(ip))).toBe(mapped ? `::ffff:${v4(mapped[1] as string)}.${v4(mapped[2] as string)}` : url);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        expect(bytesToIp(ipToBytes(ip))).toBe(ip);
      }),
    );
    expect(bytesToIp(ipToBytes('0:0:0:0:0:0:0:0'))).toBe('::');
    expect(bytesToIp(ipToBytes('fe80::1%eth0'))).toBe('fe80::1');
    expect(bytesToIp(ipToBytes('::FFFF:C0A8:101'))).toBe('::ffff:192.168.1.1');
  });

  it('text -> bytes -> text is idempotent and lowercase', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const canon = bytesToIp(ipToBytes(ip));
        expect(canon).toBe(canon.toLowerCase());
        expect(bytesToIp(ipToBytes(canon))).toBe(canon);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('unmapIPv4', () => {
  it('returns the embedded IPv4 address, and anything else unchanged, never throwing', () => {
    expect(unmapIPv4('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(unmapIPv4('::FFFF:102:304')).toBe('1.2.3.4');
    expect(unmapIPv4('::ffff:1.2.3.4%eth0')).toBe('1.2.3.4');
    expect(unmapIPv4('::1.2.3.4')).toBe('::1.2.3.4');
    expect(unmapIPv4('::1')).toBe('::1');
    expect(unmapIPv4('1.2.3.4')).toBe('1.2.3.4');
    expect(unmapIPv4('FE80::1')).toBe('FE80::1');
    expect(unmapIPv4('junk')).toBe('junk');
    const long = `::ffff:1.2.3.4%${'z'.repeat(MAX_IP_LITERAL_LENGTH)}`;
    expect(unmapIPv4(long)).toBe(long);
    expect(unmapIPv4(42 as unknown as string)).toBe(42);
  });
});
