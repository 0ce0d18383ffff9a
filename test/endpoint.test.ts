import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EndpointError } from '../src/errors.js';
import {
  MAX_ENDPOINT_LENGTH,
  checkPort,
  endpointFromNode,
  formatEndpoint,
  nodeHost,
  parseEndpoint,
  parseHost,
  sameEndpoint,
  toEndpoint,
  type Endpoint,
  type EndpointLike,
} from '../src/interfaces/endpoint.js';

function expectBadEndpoint(fn: () => unknown): EndpointError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(EndpointError);
  const err = caught as EndpointError;
  expect(err.code).toBe('ERR_BAD_ENDPOINT');
  expect(err.message.length).toBeGreaterThan(0);
  return err;
}

describe('parseEndpoint: valid forms', () => {
  const table: [string, Endpoint][] = [
    ['1.2.3.4:5', { host: '1.2.3.4', port: 5, family: 4 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0, family: 4 }],
    ['255.255.255.255:65535', { host: '255.255.255.255', port: 65535, family: 4 }],
    ['[::1]:80', { host: '::1', port: 80, family: 6 }],
    ['[::]:1', { host: '::', port: 1, family: 6 }],
    ['[2001:DB8::1]:443', { host: '2001:db8::1', port: 443, family: 6 }],
    ['[::ffff:1.2.3.4]:9', { host: '::ffff:1.2.3.4', port: 9, family: 6 }],
    ['[fe80::1%eth0]:8080', { host: 'fe80::1', port: 8080, family: 6, scopeId: 'eth0' }],
    ['[fe80::1%2]:8080', { host: 'fe80::1', port: 8080, family: 6, scopeId: '2' }],
    ['[fe80::1%en0.100]:1', { host: 'fe80::1', port: 1, family: 6, scopeId: 'en0.100' }],
    ['1.2.3.4:00080', { host: '1.2.3.4', port: 80, family: 4 }],
  ];
  it.each(table)('%s', (text, want) => {
    expect(parseEndpoint(text)).toEqual(want);
    expect(toEndpoint(text)).toEqual(want);
  });
});

describe('toEndpoint: object form', () => {
  const table: [EndpointLike, Endpoint][] = [
    [{ host: '1.2.3.4', port: 5 }, { host: '1.2.3.4', port: 5, family: 4 }],
    [{ host: '::1', port: 5 }, { host: '::1', port: 5, family: 6 }],
    [{ host: '[::1]', port: 5 }, { host: '::1', port: 5, family: 6 }],
    [{ host: 'fe80::1%eth0', port: 5 }, { host: 'fe80::1', port: 5, family: 6, scopeId: 'eth0' }],
    [{ host: 'fe80::1', port: 5, scopeId: 3 }, { host: 'fe80::1', port: 5, family: 6, scopeId: '3' }],
    [{ host: 'fe80::1', port: 5, scopeId: 'wlan0' }, { host: 'fe80::1', port: 5, family: 6, scopeId: 'wlan0' }],
    [{ host: 'fe80::1', port: 5, scopeId: '' }, { host: 'fe80::1', port: 5, family: 6 }],
  ];
  it.each(table)('%j', (input, want) => {
    expect(toEndpoint(input)).toEqual(want);
  });
});

describe('garbage is rejected with EndpointError (ERR_BAD_ENDPOINT)', () => {
  const strings = [
    '',
    ':',
    '::',
    '1.2.3.4',
    '1.2.3.4:',
    ':80',
    '1.2.3.4:65536',
    '1.2.3.4:99999',
    '1.2.3.4:123456',
    '1.2.3.4:-1',
    '1.2.3.4:+80',
    '1.2.3.4:8 0',
    '1.2.3.4:80 ',
    ' 1.2.3.4:80',
    '1.2.3.4:80\n',
    '1.2.3.4:0x50',
    '1.2.3.4:1e3',
    '1.2.3:80',
    '1.2.3.256:80',
    '01.2.3.4:80',
    '[::1]',
    '[::1]:',
    '[::1]80',
    '[::1]:80]',
    '[[::1]]:80',
    '[::1:80',
    '::1:80',
    'fe80::1%eth0:80',
    '[]:80',
    '[:::1]:80',
    'host.name:80',
    'localhost:80',
    '[1.2.3.4]:5',
    '1.2.3.4%eth0:5',
    '[fe80::1%]:80',
    '[fe80::1%eth 0]:80',
    '[fe80::1%eth0%1]:80',
    `[fe80::1%${'a'.repeat(65)}]:80`,
    `1.2.3.4:${'1'.repeat(200)}`,
    'x'.repeat(MAX_ENDPOINT_LENGTH + 1),
    `[::1]:80${' '.repeat(10_000)}`,
    '\u0000',
    '１.２.３.４:80',
  ];
  it.each(strings.map((s) => [s.length > 40 ? `${s.slice(0, 40)}… (${s.length} chars)` : JSON.stringify(s), s]))(
    'string %s',
    (_label, s) => {
      expectBadEndpoint(() => parseEndpoint(s));
      expectBadEndpoint(() => toEndpoint(s));
    },
  );

  const objects: unknown[] = [
    null,
    undefined,
    42,
    {},
    { host: 1, port: 80 },
    { host: '1.2.3.4' },
    { host: '1.2.3.4', port: '80' },
    { host: '1.2.3.4', port: 1.5 },
    { host: '1.2.3.4', port: -1 },
    { host: '1.2.3.4', port: 65536 },
    { host: '1.2.3.4', port: Number.NaN },
    { host: 'example.com', port: 80 },
    { host: '', port: 80 },
    { host: '[1.2.3.4]', port: 80 },
    { host: '1.2.3.4', port: 80, scopeId: 'eth0' },
    { host: 'fe80::1', port: 80, scopeId: -1 },
    { host: 'fe80::1', port: 80, scopeId: 1.5 },
    { host: 'fe80::1', port: 80, scopeId: Number.NaN },
    { host: 'fe80::1', port: 80, scopeId: 'bad zone' },
    { host: 'fe80::1', port: 80, scopeId: {} },
    Object.create(null) as unknown,
  ];
  it.each(objects.map((o, i) => [i, o]))('object #%i', (_i, o) => {
    expectBadEndpoint(() => toEndpoint(o as EndpointLike));
  });

  it('non-string input to parseEndpoint/parseHost', () => {
    for (const bad of [undefined, null, 80, {}, Object.create(null) as unknown, Symbol('x')]) {
      expectBadEndpoint(() => parseEndpoint(bad as string));
      expectBadEndpoint(() => parseHost(bad as string));
    }
  });

  it('messages are clear and truncated', () => {
    expect(expectBadEndpoint(() => parseEndpoint('::1:80')).message).toMatch(/brackets/);
    expect(expectBadEndpoint(() => parseEndpoint('1.2.3.4')).message).toMatch(/port/);
    expect(expectBadEndpoint(() => parseEndpoint('host.name:80')).message).toMatch(/not an IP address/);
    expect(expectBadEndpoint(() => parseEndpoint('x'.repeat(100_000))).message.length).toBeLessThan(200);
    expect(expectBadEndpoint(() => checkPort('80')).message).toMatch(/port/);
  });
});

describe('formatting', () => {
  it.each([
    [{ host: '1.2.3.4', port: 5 }, '1.2.3.4:5'],
    [{ host: '::1', port: 5 }, '[::1]:5'],
    [{ host: '::1', port: 5, family: 6 as const }, '[::1]:5'],
    [{ host: 'fe80::1', port: 5, scopeId: 'eth0' }, '[fe80::1%eth0]:5'],
  ])('%j → %s', (e, text) => {
    expect(formatEndpoint(e)).toBe(text);
  });

  it('nodeHost carries the zone the way Node.js sockets expect', () => {
    expect(nodeHost({ host: 'fe80::1', scopeId: 'eth0' })).toBe('fe80::1%eth0');
    expect(nodeHost({ host: '1.2.3.4' })).toBe('1.2.3.4');
  });

  it('endpointFromNode splits the zone', () => {
    expect(endpointFromNode('fe80::1%eth0', 9)).toEqual({ host: 'fe80::1', port: 9, family: 6, scopeId: 'eth0' });
    expect(endpointFromNode('10.0.0.1', 9)).toEqual({ host: '10.0.0.1', port: 9, family: 4 });
  });

  it('sameEndpoint ignores a missing zone but not a different one', () => {
    const a = parseEndpoint('[fe80::1%eth0]:1');
    expect(sameEndpoint(a, parseEndpoint('[fe80::1]:1'))).toBe(true);
    expect(sameEndpoint(a, parseEndpoint('[fe80::1%eth1]:1'))).toBe(false);
    expect(sameEndpoint(a, parseEndpoint('[fe80::1%eth0]:2'))).toBe(false);
  });
});

describe('properties', () => {
  it('parseEndpoint throws nothing but EndpointError on arbitrary strings', () => {
    const interesting = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'grapheme', maxLength: 60 }),
      fc.string({ unit: fc.constantFrom(...'[]:%.0123456789abcdefABCDEF:: x-'.split('')), maxLength: 60 }),
      fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), fc.string({ maxLength: 12 })).map(([h, rest]) => `${h}${rest}`),
      fc.tuple(fc.ipV6(), fc.string({ maxLength: 12 })).map(([h, rest]) => `[${h}]${rest}`),
    );
    fc.assert(
      fc.property(interesting, (s) => {
        try {
          const e = parseEndpoint(s);
          // Anything accepted is a well-formed endpoint that survives a round trip.
          expect(e.port).toBeGreaterThanOrEqual(0);
          expect(e.port).toBeLessThanOrEqual(65535);
          expect(parseEndpoint(formatEndpoint(e))).toEqual(e);
        } catch (err) {
          if (!(err instanceof EndpointError)) throw err;
          expect(err.code).toBe('ERR_BAD_ENDPOINT');
        }
      }),
      { numRuns: 10_000 },
    );
  });

  const port = fc.integer({ min: 0, max: 65535 });
  const zone = fc.stringMatching(/^[A-Za-z0-9_.\-@]{1,16}$/);

  it('round trip: v4', () => {
    fc.assert(
      fc.property(fc.ipV4(), port, (host, p) => {
        const e = parseEndpoint(formatEndpoint({ host, port: p }));
        expect(e).toEqual({ host, port: p, family: 4 });
        expect(parseEndpoint(formatEndpoint(e))).toEqual(e);
      }),
    );
  });

  it('round trip: v6', () => {
    fc.assert(
      fc.property(fc.ipV6(), port, (host, p) => {
        const e = parseEndpoint(formatEndpoint({ host, port: p }));
        expect(e).toEqual({ host: host.toLowerCase(), port: p, family: 6 });
        expect(parseEndpoint(formatEndpoint(e))).toEqual(e);
      }),
    );
  });

  it('round trip: v6 with zone', () => {
    fc.assert(
      fc.property(fc.ipV6(), zone, port, (host, z, p) => {
        const text = formatEndpoint({ host, port: p, scopeId: z });
        expect(text).toBe(`[${host}%${z}]:${p}`);
        const e = parseEndpoint(text);
        expect(e).toEqual({ host: host.toLowerCase(), port: p, family: 6, scopeId: z });
        expect(formatEndpoint(e)).toBe(`[${host.toLowerCase()}%${z}]:${p}`);
        expect(toEndpoint({ host, port: p, scopeId: z })).toEqual(e);
      }),
    );
  });
});
