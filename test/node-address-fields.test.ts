/**
 * The address parser's field checks on correctly signed addresses: each case is built record
 * by record and signed by the identity in it (so the signature holds and only the field check
 * can reject it), next to a control that differs only in the field under test and parses.
 * Port 0, endpoint address classes per kind (lan, external, global, loopback), an endpoint
 * family that disagrees with its host (the encoder's check; on the wire, a v4-mapped address
 * under the IPv6 flag), an all-zero signalling key, and more interfaces / endpoints /
 * signalling channels than an address holds.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { ipToBytes } from '../src/interfaces/scope.js';
import { DELTA_TYPE_CODE } from '../src/nat/detect/delta.js';
import {
  ADDR_PREFIX, ADDR_VERSION, MAX_ADDR_ENDPOINTS, MAX_ADDR_INTERFACES, MAX_ADDR_SIGNAL, encodeAddress, parseAddress,
  type AddrEndpoint, type AddrEndpointKind, type PeerAddressInit,
} from '../src/node/address.js';
import { base58Encode } from '../src/node/base58.js';
import { deriveSignalKey } from '../src/node/envelope.js';
import { AddressError } from '../src/node/errors.js';

const id = Identity.fromPrivateKey(Buffer.alloc(32, 11));
const signalKey = deriveSignalKey(id).publicKey;
const KIND_CODE: Record<AddrEndpointKind, number> = { lan: 0, 'link-local': 1, global: 2, external: 3, mapped: 4, loopback: 5 };

/** One endpoint in wire form: flags, address, port. */
function ep(kind: AddrEndpointKind, host: string, port = 4000, proto: 'tcp' | 'udp' = 'tcp'): Buffer {
  const ip = Buffer.from(ipToBytes(host));
  const flags = KIND_CODE[kind] | (ip.length === 16 ? 0x08 : 0) | (proto === 'udp' ? 0x10 : 0);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([flags]), ip, p]);
}

function record(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

/** An interface record: NAT unknown, delta NA, then the endpoints. */
const iface = (...eps: Buffer[]): Buffer => record(1, Buffer.concat([Buffer.from([0, DELTA_TYPE_CODE.NA, 0, 0]), ...eps]));
const mqttUrl = (url: string): Buffer => record(2, Buffer.from(url, 'utf8'));
const mqttSelf = (port: number): Buffer => {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return record(3, p);
};

/** A signed address from raw records (signed by `id`, so only field checks can reject it). */
function signed(records: Buffer[], key: Uint8Array = signalKey): string {
  const head = Buffer.alloc(69);
  head[0] = ADDR_VERSION;
  head.writeUInt32BE(1_700_000_000, 1);
  id.publicKey.copy(head, 5);
  Buffer.from(key).copy(head, 37);
  const body = Buffer.concat([head, ...records]);
  const sig = id.sign(Buffer.concat([Buffer.from('p2pd-addr-v1\0', 'latin1'), body]));
  return ADDR_PREFIX + base58Encode(Buffer.concat([body, sig]));
}

/** The AddressError `parseAddress` throws (fails the test if it parses or throws anything else). */
function rejection(text: string): AddressError {
  try {
    parseAddress(text);
  } catch (e) {
    expect(e).toBeInstanceOf(AddressError);
    expect((e as AddressError).code).toBe('ERR_BAD_ADDRESS');
    return e as AddressError;
  }
  throw new Error('the address was accepted');
}

describe('address parser: endpoint fields (signed addresses)', () => {
  it('the builder makes addresses encodeAddress would make (control)', () => {
    const text = signed([iface(ep('lan', '192.168.1.5', 4000), ep('loopback', '127.0.0.1', 4000, 'udp')), mqttSelf(1883)]);
    const want = encodeAddress(id, {
      signalKey,
      timestamp: 1_700_000_000,
      interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [
        { kind: 'lan', proto: 'tcp', host: '192.168.1.5', port: 4000, family: 4 },
        { kind: 'loopback', proto: 'udp', host: '127.0.0.1', port: 4000, family: 4 },
      ] }],
      signal: [{ type: 'mqtt-self', port: 1883 }],
    });
    expect(text).toBe(want);
    expect(parseAddress(text).idHex).toBe(id.idHex);
  });

  // [kind, good host (control), bad host, what is wrong]
  const classes: [AddrEndpointKind, string, string, string][] = [
    ['lan', '10.1.2.3', '8.8.8.8', 'a LAN endpoint with a public IPv4 address'],
    ['lan', 'fd00::5', '2001:4860:4860::8888', 'a LAN endpoint with a public IPv6 address'],
    ['lan', '192.168.0.9', '127.0.0.1', 'a LAN endpoint on loopback'],
    ['external', '198.51.100.7', '0.0.0.0', 'an external endpoint that is unspecified'],
    ['external', '198.51.100.7', '224.0.0.251', 'an external endpoint that is multicast'],
    ['external', '198.51.100.7', '169.254.1.1', 'an external endpoint that is link-local'],
    ['mapped', '198.51.100.7', '239.255.255.250', 'a mapped endpoint that is multicast'],
    ['external', '198.51.100.7', '255.255.255.255', 'an external endpoint that is the broadcast address'],
    ['global', '203.0.113.9', '255.255.255.255', 'a global endpoint that is the broadcast address'],
    ['global', '2001:db8::7', '::ffff:8.8.8.8', 'a global IPv6 endpoint that is v4-mapped'],
    ['global', '2001:db8::7', 'ff02::1', 'a global IPv6 endpoint that is multicast'],
    ['global', '2001:db8::7', '::', 'a global IPv6 endpoint that is unspecified'],
    ['global', '203.0.113.9', '10.9.9.9', 'a global endpoint with a private address'],
    ['loopback', '127.0.0.1', '10.0.0.1', 'a loopback endpoint with a private address'],
    ['loopback', '127.0.0.1', '0.0.0.0', 'a loopback endpoint that is unspecified (IPv4)'],
    ['loopback', '::1', '::', 'a loopback endpoint that is unspecified (IPv6)'],
    ['loopback', '::1', '2001:db8::1', 'a loopback endpoint with a global IPv6 address'],
    ['link-local', 'fe80::1', '2001:db8::1', 'a link-local endpoint that is not link-local'],
  ];
  for (const [kind, good, bad, what] of classes) {
    it(`rejects ${what} (${kind} ${bad}); ${good} parses`, () => {
      expect(parseAddress(signed([iface(ep(kind, good))])).interfaces[0]?.endpoints[0]).toMatchObject({ kind, port: 4000 });
      const err = rejection(signed([iface(ep(kind, bad))]));
      expect(err.field).toBe('endpoint');
      // encodeAddress makes the same check (what it makes always parses).
      const family = bad.includes(':') ? 6 : 4;
      const init = { signalKey, interfaces: [{ nat: 'UNKNOWN' as const, delta: { type: 'NA' as const, value: 0 }, endpoints: [{ kind, proto: 'tcp' as const, host: bad, port: 4000, family: family as 4 | 6 }] }], signal: [] };
      expect(() => encodeAddress(id, init)).toThrow(expect.objectContaining({ field: 'endpoint' }));
    });
  }

  it('encodeAddress rejects an endpoint whose family does not match its host (AddressError, field endpoint)', () => {
    const init = (e: AddrEndpoint): PeerAddressInit => ({ signalKey, interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [e] }], signal: [] });
    // [kind, host, right family]
    const hosts: [AddrEndpointKind, string, 4 | 6][] = [
      ['loopback', '127.0.0.1', 4], ['loopback', '::1', 6], ['lan', '10.0.0.1', 4], ['lan', 'fd00::5', 6],
      ['link-local', 'fe80::1', 6], ['global', '203.0.113.9', 4], ['global', '2001:db8::7', 6], ['external', '198.51.100.7', 4], ['mapped', '2001:db8::9', 6],
    ];
    for (const [kind, host, family] of hosts) {
      for (const proto of ['tcp', 'udp'] as const) {
        // Control: the right family encodes, and parses back with that family.
        const ok = parseAddress(encodeAddress(id, init({ kind, proto, host, port: 4000, family })));
        expect(ok.interfaces[0]?.endpoints[0]).toEqual({ kind, proto, host, port: 4000, family });
        let err: unknown;
        try {
          encodeAddress(id, init({ kind, proto, host, port: 4000, family: family === 4 ? 6 : 4 }));
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(AddressError);
        expect((err as AddressError).code).toBe('ERR_BAD_ADDRESS');
        expect((err as AddressError).field).toBe('endpoint');
        expect((err as AddressError).message).toMatch(/family/);
      }
    }
    // A family that is neither 4 nor 6.
    for (const family of [0, 5, '4', undefined]) {
      expect(() => encodeAddress(id, init({ kind: 'lan', proto: 'tcp', host: '10.0.0.1', port: 4000, family: family as 4 }))).toThrow(
        expect.objectContaining({ code: 'ERR_BAD_ADDRESS', field: 'endpoint' }),
      );
    }
  });

  it('rejects an endpoint whose IPv6 flag carries an IPv4 address (v4-mapped) on every kind; the IPv4 form parses', () => {
    // The family bit sets the address length, so the only way family and address bytes can
    // disagree on the wire is an IPv4 address in IPv6 (v4-mapped) form.
    const hosts: [AddrEndpointKind, string][] = [
      ['lan', '10.0.0.1'], ['global', '8.8.8.8'], ['external', '198.51.100.7'], ['mapped', '198.51.100.7'], ['loopback', '127.0.0.1'], ['link-local', '169.254.1.1'],
    ];
    for (const [kind, v4] of hosts) {
      if (kind !== 'link-local') expect(parseAddress(signed([iface(ep(kind, v4))])).interfaces[0]?.endpoints[0]).toMatchObject({ kind, host: v4, family: 4 });
      expect(rejection(signed([iface(ep(kind, `::ffff:${v4}`))])).field).toBe('endpoint');
    }
  });

  it('rejects port 0 on every kind of endpoint; port 1 and 65535 parse', () => {
    const hosts: [AddrEndpointKind, string][] = [['lan', '10.0.0.1'], ['global', '2001:db8::1'], ['external', '198.51.100.1'], ['loopback', '127.0.0.1']];
    for (const [kind, host] of hosts) {
      for (const port of [1, 65535]) expect(parseAddress(signed([iface(ep(kind, host, port))])).interfaces[0]?.endpoints[0]?.port).toBe(port);
      for (const proto of ['tcp', 'udp'] as const) expect(rejection(signed([iface(ep(kind, host, 0, proto))])).field).toBe('endpoint');
    }
    // A bad endpoint after good ones still fails the whole address.
    expect(rejection(signed([iface(ep('lan', '10.0.0.1'), ep('lan', '10.0.0.2', 0))])).field).toBe('endpoint');
  });

  it('rejects a self-hosted broker on port 0', () => {
    expect(parseAddress(signed([mqttSelf(1)])).signal).toEqual([{ type: 'mqtt-self', port: 1 }]);
    expect(rejection(signed([mqttSelf(0)])).field).toBe('signal');
  });
});

describe('address parser: keys and limits (signed addresses)', () => {
  it('rejects an all-zero signalling key (any other key parses), and encodeAddress refuses to make one', () => {
    const one = Buffer.alloc(32);
    one[31] = 1;
    expect(parseAddress(signed([], one)).signalKey.equals(one)).toBe(true);
    expect(rejection(signed([], Buffer.alloc(32))).field).toBe('signalKey');
    // The encoder promises that what it makes parses.
    let err: unknown;
    try {
      encodeAddress(id, { signalKey: Buffer.alloc(32), interfaces: [], signal: [] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AddressError);
    expect((err as AddressError).field).toBe('signalKey');
  });

  it(`at most ${MAX_ADDR_INTERFACES} interfaces`, () => {
    const one = iface(ep('lan', '10.0.0.1'));
    expect(parseAddress(signed(Array.from({ length: MAX_ADDR_INTERFACES }, () => one))).interfaces).toHaveLength(MAX_ADDR_INTERFACES);
    expect(rejection(signed(Array.from({ length: MAX_ADDR_INTERFACES + 1 }, () => one))).field).toBe('interface');
    // Empty interface records count too.
    expect(rejection(signed(Array.from({ length: MAX_ADDR_INTERFACES + 1 }, () => iface()))).field).toBe('interface');
  });

  it(`at most ${MAX_ADDR_ENDPOINTS} endpoints per interface (${MAX_ADDR_ENDPOINTS} in each of two interfaces is fine)`, () => {
    const eps = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => ep('lan', `10.0.0.${i + 1}`));
    const ok = parseAddress(signed([iface(...eps(MAX_ADDR_ENDPOINTS)), iface(...eps(MAX_ADDR_ENDPOINTS))]));
    expect(ok.interfaces.map((i) => i.endpoints.length)).toEqual([MAX_ADDR_ENDPOINTS, MAX_ADDR_ENDPOINTS]);
    expect(rejection(signed([iface(...eps(MAX_ADDR_ENDPOINTS + 1))])).field).toBe('endpoint');
    expect(rejection(signed([iface(ep('loopback', '127.0.0.1')), iface(...eps(MAX_ADDR_ENDPOINTS + 1))])).field).toBe('endpoint');
  });

  it(`at most ${MAX_ADDR_SIGNAL} signalling channels, brokers by URL and self-hosted counted together`, () => {
    const urls = Array.from({ length: MAX_ADDR_SIGNAL }, (_, i) => mqttUrl(`mqtt://10.0.0.${i + 1}:1883`));
    expect(parseAddress(signed(urls)).signal).toHaveLength(MAX_ADDR_SIGNAL);
    expect(rejection(signed([...urls, mqttUrl('mqtt://10.0.1.1:1883')])).field).toBe('signal');
    expect(rejection(signed([...urls, mqttSelf(1884)])).field).toBe('signal');
    expect(rejection(signed(Array.from({ length: MAX_ADDR_SIGNAL + 1 }, (_, i) => mqttSelf(2000 + i)))).field).toBe('signal');
    // Unknown optional records are not signalling channels and do not count.
    expect(parseAddress(signed([...urls, record(0x90, Buffer.from('x'))])).signal).toHaveLength(MAX_ADDR_SIGNAL);
  });
});
