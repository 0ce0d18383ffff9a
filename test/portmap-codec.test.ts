import { describe, expect, it } from 'vitest';
import { DecodeError, InvalidArgumentError, MessageTooBigError, PortMappingError, P2pdError } from '../src/errors.js';
import {
  NatPmpResult,
  PcpResult,
  bytes16ToIp,
  canonicalIp,
  decodeNatPmpAnnouncement,
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  decodePcpAnnouncement,
  decodePcpOptions,
  decodePcpRequest,
  decodePcpResponse,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
  encodePcpOptions,
  encodePcpRequest,
  encodePcpResponse,
  formatIpv6,
  generatePcpNonce,
  ipToBytes16,
  isFromServer,
  natPmpResponseMatches,
  natPmpResultMessage,
  natPmpResultName,
  pcpNonceEquals,
  pcpOptionName,
  pcpResponseMatches,
  pcpResultName,
  peekPortMapHeader,
  type PcpMapRequest,
  type PcpPeerRequest,
} from '../src/nat/portmap/index.js';

/** Hex string (spaces/newlines allowed) to bytes. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const zeros = (n: number): string => '00'.repeat(n);

function decodeErr(fn: () => unknown, re?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a DecodeError').toBeInstanceOf(DecodeError);
  expect((caught as DecodeError).code).toBe('ERR_DECODE');
  if (re) expect((caught as Error).message).toMatch(re);
}

// ---------------------------------------------------------------------------------------
describe('NAT-PMP codec (RFC 6886) — byte-exact vectors', () => {
  it('external-address request is | vers=0 | op=0 |', () => {
    const b = encodeNatPmpRequest({ kind: 'external-address' });
    expect(b).toEqual(hex('00 00'));
    expect(decodeNatPmpRequest(b)).toEqual({ kind: 'external-address' });
  });

  it('map UDP request: op 1, reserved, internal 5000, suggested 6000, lifetime 7200', () => {
    const b = encodeNatPmpRequest({ kind: 'map', protocol: 'udp', internalPort: 5000, externalPort: 6000, lifetime: 7200 });
    expect(b).toEqual(hex('00 01 0000 1388 1770 00001c20'));
    expect(decodeNatPmpRequest(b)).toEqual({ kind: 'map', protocol: 'udp', internalPort: 5000, externalPort: 6000, lifetime: 7200 });
  });

  it('map TCP "delete all" request is all zero after op 2', () => {
    const b = encodeNatPmpRequest({ kind: 'map', protocol: 'tcp', internalPort: 0, externalPort: 0, lifetime: 0 });
    expect(b).toEqual(hex(`00 02 ${zeros(10)}`));
  });

  it('map request with max values', () => {
    const b = encodeNatPmpRequest({ kind: 'map', protocol: 'tcp', internalPort: 65535, externalPort: 65535, lifetime: 0xffffffff });
    expect(b).toEqual(hex('00 02 0000 ffff ffff ffffffff'));
  });

  it('external-address response: op 128, result 0, epoch, address', () => {
    const bytes = hex('00 80 0000 12345678 cb007107');
    const r = decodeNatPmpResponse(bytes);
    expect(r).toEqual({ kind: 'external-address', resultCode: 0, epoch: 0x12345678, externalAddress: '203.0.113.7' });
    expect(encodeNatPmpResponse(r)).toEqual(bytes);
  });

  it('map TCP response: op 130, epoch 3600, internal 5000, mapped 50000, lifetime 3600', () => {
    const bytes = hex('00 82 0000 00000e10 1388 c350 00000e10');
    const r = decodeNatPmpResponse(bytes);
    expect(r).toEqual({ kind: 'map', protocol: 'tcp', resultCode: 0, epoch: 3600, internalPort: 5000, externalPort: 50000, lifetime: 3600 });
    expect(encodeNatPmpResponse(r)).toEqual(bytes);
  });

  it('full-size error response keeps its fields (NO_RESOURCES)', () => {
    const bytes = hex('00 81 0004 00000001 1388 0000 00000000');
    const r = decodeNatPmpResponse(bytes);
    expect(r).toMatchObject({ kind: 'map', protocol: 'udp', resultCode: NatPmpResult.NO_RESOURCES, internalPort: 5000 });
  });

  it('8-byte error response (unsupported version, as a PCP-only/NAT-PMP gateway sends) is header-only', () => {
    const bytes = hex('00 81 0001 0000002a');
    const r = decodeNatPmpResponse(bytes);
    expect(r).toEqual({ kind: 'header-only', op: 129, resultCode: NatPmpResult.UNSUPP_VERSION, epoch: 42 });
    expect(encodeNatPmpResponse(r)).toEqual(bytes);
    // unsupported opcode reply to an unknown opcode 3
    expect(decodeNatPmpResponse(hex('00 83 0005 00000001'))).toEqual({ kind: 'header-only', op: 131, resultCode: 5, epoch: 1 });
  });

  it('announcement = successful 12-byte opcode-128 packet', () => {
    expect(decodeNatPmpAnnouncement(hex('00 80 0000 00000064 c6336401'))).toEqual({
      kind: 'external-address',
      resultCode: 0,
      epoch: 100,
      externalAddress: '198.51.100.1',
    });
    decodeErr(() => decodeNatPmpAnnouncement(hex('00 80 0003 00000064 00000000')), /NETWORK_FAILURE/);
    decodeErr(() => decodeNatPmpAnnouncement(hex('00 81 0000 00000e10 1388 c350 00000e10')), /opcode 128/);
  });

  it('result names and messages', () => {
    expect([0, 1, 2, 3, 4, 5].map(natPmpResultName)).toEqual(['SUCCESS', 'UNSUPP_VERSION', 'NOT_AUTHORIZED', 'NETWORK_FAILURE', 'NO_RESOURCES', 'UNSUPP_OPCODE']);
    expect(natPmpResultName(77)).toBe('UNKNOWN_77');
    expect(natPmpResultMessage(4)).toMatch(/resources/);
  });

  it('response matching: opcode + internal port', () => {
    const req = { kind: 'map', protocol: 'udp', internalPort: 5000, externalPort: 0, lifetime: 60 } as const;
    const ok = decodeNatPmpResponse(hex('00 81 0000 00000001 1388 c350 0000003c'));
    const otherPort = decodeNatPmpResponse(hex('00 81 0000 00000001 1389 c350 0000003c'));
    const tcp = decodeNatPmpResponse(hex('00 82 0000 00000001 1388 c350 0000003c'));
    expect(natPmpResponseMatches(req, ok)).toBe(true);
    expect(natPmpResponseMatches(req, otherPort)).toBe(false);
    expect(natPmpResponseMatches(req, tcp)).toBe(false);
    expect(natPmpResponseMatches(req, decodeNatPmpResponse(hex('00 81 0001 00000000')))).toBe(true);
    expect(natPmpResponseMatches({ kind: 'external-address' }, ok)).toBe(false);
  });
});

describe('NAT-PMP codec — malformed input', () => {
  it('2-byte reply (the one that crashes the nat-pmp package)', () => {
    decodeErr(() => decodeNatPmpResponse(hex('00 80')), /truncated/);
    decodeErr(() => decodeNatPmpResponse(hex('00 81')), /truncated/);
  });
  it('empty and 1-byte', () => {
    decodeErr(() => decodeNatPmpResponse(new Uint8Array(0)), /too short/);
    decodeErr(() => decodeNatPmpResponse(hex('00')), /too short/);
    decodeErr(() => decodeNatPmpRequest(new Uint8Array(0)));
  });
  it('wrong version (PCP v2, v1)', () => {
    decodeErr(() => decodeNatPmpResponse(hex('02 80 0000 00000000 01020304')), /version 2/);
    decodeErr(() => decodeNatPmpResponse(hex('01 80 0000 00000000 01020304')), /version 1/);
    decodeErr(() => decodeNatPmpRequest(hex('02 00')), /version/);
  });
  it('wrong opcode: a request where a response is expected and vice versa', () => {
    decodeErr(() => decodeNatPmpResponse(hex('00 00 0000 00000000 01020304')), /request/);
    decodeErr(() => decodeNatPmpRequest(hex('00 80')), /response/);
    decodeErr(() => decodeNatPmpRequest(hex('00 03')), /unsupported/);
    decodeErr(() => decodeNatPmpResponse(hex('00 83 0000 00000000 01020304')), /unknown/);
  });
  it('truncated', () => {
    decodeErr(() => decodeNatPmpResponse(hex('00 80 0000 000000')), /truncated/);
    decodeErr(() => decodeNatPmpResponse(hex('00 80 0000 00000000 010203')), /truncated/);
    decodeErr(() => decodeNatPmpResponse(hex('00 82 0000 00000e10 1388 c350 000e10')), /truncated/);
    decodeErr(() => decodeNatPmpRequest(hex('00 01 0000 1388 1770 00001c')), /12 bytes/);
    // a success must carry its body
    decodeErr(() => decodeNatPmpResponse(hex('00 80 0000 00000001')), /truncated/);
    // header-only is 8 exactly: 9..11 bytes are neither form
    decodeErr(() => decodeNatPmpResponse(hex('00 81 0004 00000001 13')));
  });
  it('oversized', () => {
    decodeErr(() => decodeNatPmpResponse(hex('00 80 0000 12345678 cb007107 00')), /oversized/);
    decodeErr(() => decodeNatPmpResponse(hex(`00 82 0000 00000e10 1388 c350 00000e10 ${zeros(4)}`)), /oversized/);
    decodeErr(() => decodeNatPmpResponse(Buffer.concat([hex('00 80 0000'), Buffer.alloc(1500)])), /oversized/);
    decodeErr(() => decodeNatPmpRequest(hex('00 00 00')), /2 bytes/);
  });
  it('not bytes', () => {
    decodeErr(() => decodeNatPmpResponse('0080' as unknown as Uint8Array));
  });
  it('encoders validate their input', () => {
    const bad = [
      { kind: 'map', protocol: 'udp', internalPort: 70000, externalPort: 0, lifetime: 1 },
      { kind: 'map', protocol: 'udp', internalPort: 1, externalPort: -1, lifetime: 1 },
      { kind: 'map', protocol: 'udp', internalPort: 1, externalPort: 1, lifetime: 2 ** 32 },
      { kind: 'map', protocol: 'sctp', internalPort: 1, externalPort: 1, lifetime: 1 },
      { kind: 'map', protocol: 'tcp', internalPort: 1.5, externalPort: 1, lifetime: 1 },
      { kind: 'nope' },
    ];
    for (const r of bad) expect(() => encodeNatPmpRequest(r as never)).toThrow(InvalidArgumentError);
    expect(() => encodeNatPmpResponse({ kind: 'external-address', resultCode: 0, epoch: 0, externalAddress: '::1' })).toThrow(InvalidArgumentError);
    expect(() => encodeNatPmpResponse({ kind: 'header-only', op: 129, resultCode: 0, epoch: 0 })).toThrow(InvalidArgumentError);
    expect(() => encodeNatPmpResponse({ kind: 'header-only', op: 1, resultCode: 1, epoch: 0 })).toThrow(InvalidArgumentError);
  });
  it('decoded values do not alias the input buffer', () => {
    const b = hex('00 80 0000 12345678 cb007107');
    const r = decodeNatPmpResponse(b);
    b.fill(0xff);
    expect(r).toMatchObject({ externalAddress: '203.0.113.7', epoch: 0x12345678 });
  });
});

// ---------------------------------------------------------------------------------------
const NONCE = hex('0102030405060708090a0b0c');
const MAP_REQ: PcpMapRequest = {
  kind: 'map',
  lifetime: 7200,
  clientAddress: '192.168.1.10',
  nonce: NONCE,
  protocol: 17,
  internalPort: 5000,
  externalPort: 0,
  externalAddress: '0.0.0.0',
};
const MAP_REQ_HEX = `
  02 01 0000 00001c20 ${zeros(10)} ffff c0a8010a
  0102030405060708090a0b0c 11 000000 1388 0000 ${zeros(10)} ffff 00000000`;

describe('PCP codec (RFC 6887) — byte-exact vectors', () => {
  it('MAP request: header, nonce, UDP, internal 5000, no suggestion (::ffff:0.0.0.0)', () => {
    const b = encodePcpRequest(MAP_REQ);
    expect(b.length).toBe(60);
    expect(b).toEqual(hex(MAP_REQ_HEX));
    expect(decodePcpRequest(b)).toEqual({ ...MAP_REQ, nonce: new Uint8Array(NONCE), options: [] });
  });

  it('MAP request with PREFER_FAILURE, THIRD_PARTY and FILTER options', () => {
    const req: PcpMapRequest = {
      ...MAP_REQ,
      externalPort: 5000,
      options: [
        { type: 'prefer-failure' },
        { type: 'third-party', internalAddress: '192.168.1.20' },
        { type: 'filter', prefixLength: 128, remotePeerPort: 443, remotePeerAddress: '198.51.100.9' },
      ],
    };
    const b = encodePcpRequest(req);
    const expected = hex(`
      02 01 0000 00001c20 ${zeros(10)} ffff c0a8010a
      0102030405060708090a0b0c 11 000000 1388 1388 ${zeros(10)} ffff 00000000
      02 00 0000
      01 00 0010 ${zeros(10)} ffff c0a80114
      03 00 0014 00 80 01bb ${zeros(10)} ffff c6336409`);
    expect(b).toEqual(expected);
    expect(b.length).toBe(60 + 4 + 20 + 24);
    expect(decodePcpRequest(b)).toEqual({ ...req, nonce: new Uint8Array(NONCE) });
  });

  it('PEER request over IPv6', () => {
    const req: PcpPeerRequest = {
      kind: 'peer',
      lifetime: 120,
      clientAddress: '2001:db8::2',
      nonce: NONCE,
      protocol: 6,
      internalPort: 8080,
      externalPort: 0,
      externalAddress: '::',
      remotePeerPort: 443,
      remotePeerAddress: '2001:db8::1',
    };
    const b = encodePcpRequest(req);
    expect(b).toEqual(
      hex(`02 02 0000 00000078 20010db8 ${zeros(10)} 0002
           0102030405060708090a0b0c 06 000000 1f90 0000 ${zeros(16)}
           01bb 0000 20010db8 ${zeros(10)} 0001`),
    );
    expect(b.length).toBe(80);
    expect(decodePcpRequest(b)).toEqual({ ...req, nonce: new Uint8Array(NONCE), options: [] });
  });

  it('ANNOUNCE request is the bare 24-byte header', () => {
    const b = encodePcpRequest({ kind: 'announce', lifetime: 0, clientAddress: '10.0.0.2' });
    expect(b).toEqual(hex(`02 00 0000 00000000 ${zeros(10)} ffff 0a000002`));
    expect(decodePcpRequest(b)).toEqual({ kind: 'announce', lifetime: 0, clientAddress: '10.0.0.2', options: [] });
  });

  it('MAP success response', () => {
    const bytes = hex(`
      02 81 00 00 00001c20 000004d2 ${zeros(12)}
      0102030405060708090a0b0c 11 000000 1388 c350 ${zeros(10)} ffff cb007107`);
    const r = decodePcpResponse(bytes);
    expect(r).toEqual({
      kind: 'map',
      version: 2,
      resultCode: 0,
      lifetime: 7200,
      epoch: 1234,
      options: [],
      nonce: new Uint8Array(NONCE),
      protocol: 17,
      internalPort: 5000,
      externalPort: 50000,
      externalAddress: '203.0.113.7',
    });
    expect(encodePcpResponse(r)).toEqual(bytes);
    expect(pcpResponseMatches(MAP_REQ, r)).toBe(true);
    expect(pcpResponseMatches({ ...MAP_REQ, nonce: generatePcpNonce() }, r)).toBe(false);
    expect(pcpResponseMatches({ ...MAP_REQ, internalPort: 5001 }, r)).toBe(false);
    expect(pcpResponseMatches({ ...MAP_REQ, protocol: 6 }, r)).toBe(false);
  });

  it('unsolicited ANNOUNCE response', () => {
    const bytes = hex(`02 80 00 00 00000000 00000005 ${zeros(12)}`);
    expect(decodePcpAnnouncement(bytes)).toEqual({ kind: 'announce', version: 2, resultCode: 0, lifetime: 0, epoch: 5, options: [] });
    expect(encodePcpResponse({ kind: 'announce', resultCode: 0, lifetime: 0, epoch: 5 })).toEqual(bytes);
    decodeErr(() => decodePcpAnnouncement(hex(`02 80 00 07 00000000 00000005 ${zeros(12)}`)), /NETWORK_FAILURE/);
  });

  it('UNSUPP_VERSION from a server speaking another version decodes header-only with that version', () => {
    const bytes = hex(`01 81 00 01 00000708 00000010 ${zeros(12)}`);
    const r = decodePcpResponse(bytes);
    expect(r).toEqual({ kind: 'header-only', opcode: 1, version: 1, resultCode: PcpResult.UNSUPP_VERSION, lifetime: 1800, epoch: 16, options: [] });
    expect(encodePcpResponse(r)).toEqual(bytes);
  });

  it('error responses without (complete) opcode data are header-only', () => {
    // NO_RESOURCES without MAP data
    expect(decodePcpResponse(hex(`02 81 00 08 0000001e 00000001 ${zeros(12)}`))).toMatchObject({ kind: 'header-only', opcode: 1, resultCode: 8 });
    // UNSUPP_OPCODE for opcode 5 (echoing some of the request)
    expect(decodePcpResponse(hex(`02 85 00 04 00000000 00000001 ${zeros(12)} ${zeros(8)}`))).toMatchObject({ kind: 'header-only', opcode: 5, resultCode: 4 });
    // full MAP data on an error is decoded
    const full = decodePcpResponse(hex(`02 81 00 08 0000001e 00000001 ${zeros(12)} 0102030405060708090a0b0c 11 000000 1388 0000 ${zeros(16)}`));
    expect(full).toMatchObject({ kind: 'map', resultCode: 8, externalAddress: '::' });
    expect(pcpResponseMatches(MAP_REQ, full)).toBe(true);
  });

  it('unknown options are kept with their length, padding added and stripped', () => {
    const opts = [{ type: 'unknown' as const, code: 0x80, data: hex('aabbcc') }];
    const b = encodePcpOptions(opts);
    expect(b).toEqual(hex('80 00 0003 aabbcc 00'));
    expect(decodePcpOptions(b)).toEqual([{ type: 'unknown', code: 0x80, data: new Uint8Array(hex('aabbcc')) }]);
    expect(decodePcpOptions(hex('81 00 0000'))).toEqual([{ type: 'unknown', code: 0x81, data: new Uint8Array(0) }]);
  });

  it('result and option names', () => {
    expect(pcpResultName(0)).toBe('SUCCESS');
    expect(pcpResultName(12)).toBe('ADDRESS_MISMATCH');
    expect(pcpResultName(13)).toBe('EXCESSIVE_REMOTE_PEERS');
    expect(pcpResultName(99)).toBe('UNKNOWN_99');
    expect(pcpOptionName(3)).toBe('FILTER');
  });

  it('nonces', () => {
    const a = generatePcpNonce();
    expect(a.length).toBe(12);
    expect(pcpNonceEquals(a, new Uint8Array(a))).toBe(true);
    expect(pcpNonceEquals(a, generatePcpNonce())).toBe(false);
  });
});

describe('PCP codec — malformed input', () => {
  const okResponse = hex(`02 81 00 00 00001c20 000004d2 ${zeros(12)} 0102030405060708090a0b0c 11 000000 1388 c350 ${zeros(10)} ffff cb007107`);

  it('2-byte reply', () => {
    decodeErr(() => decodePcpResponse(hex('02 81')), /too short/);
    decodeErr(() => decodePcpRequest(hex('02 01')), /too short/);
  });
  it('version 0 (a NAT-PMP gateway answering) is refused with a pointer to NAT-PMP', () => {
    decodeErr(() => decodePcpResponse(hex('00 81 0001 00000000')), /NAT-PMP/);
    expect(peekPortMapHeader(hex('00 81 0001 00000000'))).toEqual({ version: 0, response: true, opcode: 1 });
    expect(decodeNatPmpResponse(hex('00 81 0001 00000000'))).toMatchObject({ kind: 'header-only', resultCode: 1 });
  });
  it('wrong version on anything but UNSUPP_VERSION', () => {
    decodeErr(() => decodePcpResponse(hex(`03 80 00 00 00000000 00000005 ${zeros(12)}`)), /version 3/);
    decodeErr(() => decodePcpRequest(hex(`01 00 0000 00000000 ${zeros(16)}`)), /version 1/);
  });
  it('R bit wrong way round', () => {
    decodeErr(() => decodePcpResponse(hex(MAP_REQ_HEX)), /R bit/);
    decodeErr(() => decodePcpRequest(okResponse), /R bit/);
  });
  it('unknown opcode on a success response', () => {
    decodeErr(() => decodePcpResponse(hex(`02 83 00 00 00000000 00000005 ${zeros(12)}`)), /unknown PCP opcode/);
    decodeErr(() => decodePcpRequest(hex(`02 03 0000 00000000 ${zeros(16)}`)), /unsupported/);
  });
  it('truncated', () => {
    decodeErr(() => decodePcpResponse(okResponse.subarray(0, 20)), /too short/);
    decodeErr(() => decodePcpResponse(okResponse.subarray(0, 56)), /truncated/);
    decodeErr(() => decodePcpResponse(okResponse.subarray(0, 58)), /multiple of 4/);
    decodeErr(() => decodePcpRequest(hex(MAP_REQ_HEX).subarray(0, 48)), /truncated/);
  });
  it('oversized (> 1100 bytes) and not a multiple of 4', () => {
    const big = Buffer.concat([okResponse, Buffer.alloc(1104 - okResponse.length)]);
    decodeErr(() => decodePcpResponse(big), /oversized/);
    decodeErr(() => decodePcpResponse(Buffer.concat([okResponse, hex('00')])), /multiple of 4/);
    const bigReq = Buffer.concat([hex(MAP_REQ_HEX), Buffer.alloc(1104 - 60)]);
    decodeErr(() => decodePcpRequest(bigReq), /oversized/);
  });
  it('options: truncated header, running past the end, wrong fixed lengths, bad prefix', () => {
    decodeErr(() => decodePcpResponse(Buffer.concat([okResponse, hex('02 00 00 08')])), /runs past/);
    decodeErr(() => decodePcpOptions(hex('02 00')), /truncated/);
    decodeErr(() => decodePcpResponse(Buffer.concat([okResponse, hex('02 00 0004 00000000')])), /length 0/);
    decodeErr(() => decodePcpResponse(Buffer.concat([okResponse, hex(`01 00 000c ${zeros(12)}`)])), /length 16/);
    decodeErr(() => decodePcpResponse(Buffer.concat([okResponse, hex(`03 00 0014 00 81 0000 ${zeros(16)}`)])), /prefix length 129/);
  });
  it('encoders validate their input', () => {
    expect(() => encodePcpRequest({ ...MAP_REQ, nonce: new Uint8Array(11) })).toThrow(InvalidArgumentError);
    expect(() => encodePcpRequest({ ...MAP_REQ, internalPort: 65536 })).toThrow(InvalidArgumentError);
    expect(() => encodePcpRequest({ ...MAP_REQ, protocol: 256 })).toThrow(InvalidArgumentError);
    expect(() => encodePcpRequest({ ...MAP_REQ, clientAddress: 'example.com' })).toThrow(InvalidArgumentError);
    expect(() => encodePcpRequest({ ...MAP_REQ, clientAddress: 'fe80::1%eth0' })).toThrow(InvalidArgumentError);
    expect(() => encodePcpRequest({ ...MAP_REQ, options: [{ type: 'filter', prefixLength: 129, remotePeerPort: 0, remotePeerAddress: '::' }] })).toThrow(
      InvalidArgumentError,
    );
    expect(() => encodePcpRequest({ ...MAP_REQ, options: [{ type: 'unknown', code: 1, data: new Uint8Array(16) }] })).toThrow(InvalidArgumentError);
    // 60-byte MAP + 4 + 1040 = 1104 > 1100
    expect(() => encodePcpRequest({ ...MAP_REQ, options: [{ type: 'unknown', code: 200, data: new Uint8Array(1040) }] })).toThrow(MessageTooBigError);
    // exactly 1100 is fine
    expect(encodePcpRequest({ ...MAP_REQ, options: [{ type: 'unknown', code: 200, data: new Uint8Array(1036) }] }).length).toBe(1100);
    expect(() => encodePcpResponse({ kind: 'header-only', opcode: 1, resultCode: 0, lifetime: 0, epoch: 0 })).toThrow(InvalidArgumentError);
    expect(() => encodePcpResponse({ kind: 'announce', version: 1, resultCode: 0, lifetime: 0, epoch: 0 })).toThrow(InvalidArgumentError);
  });
  it('decoded nonce is a copy', () => {
    const b = Buffer.from(okResponse);
    const r = decodePcpResponse(b);
    b.fill(0);
    expect(r.kind === 'map' && Buffer.from(r.nonce).toString('hex')).toBe('0102030405060708090a0b0c');
  });
});

// ---------------------------------------------------------------------------------------
describe('addresses and source checks', () => {
  it('IPv4-mapped and IPv6 16-byte forms', () => {
    expect(Buffer.from(ipToBytes16('1.2.3.4')).toString('hex')).toBe(`${zeros(10)}ffff01020304`);
    expect(Buffer.from(ipToBytes16('::ffff:1.2.3.4')).toString('hex')).toBe(`${zeros(10)}ffff01020304`);
    expect(Buffer.from(ipToBytes16('2001:DB8::1')).toString('hex')).toBe(`20010db8${zeros(10)}0001`);
    expect(Buffer.from(ipToBytes16('::1.2.3.4')).toString('hex')).toBe(`${zeros(12)}01020304`);
    expect(Buffer.from(ipToBytes16('1:2:3:4:5:6:7.8.9.10')).toString('hex')).toBe('000100020003000400050006' + '0708090a');
    expect(bytes16ToIp(ipToBytes16('::ffff:10.1.2.3'))).toBe('10.1.2.3');
    expect(bytes16ToIp(ipToBytes16('::'))).toBe('::');
    expect(bytes16ToIp(ipToBytes16('0.0.0.0'))).toBe('0.0.0.0');
  });
  it('RFC 5952 formatting', () => {
    const f = (s: string): string => formatIpv6(ipToBytes16(s));
    expect(f('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(f('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1'); // single zero group not compressed
    expect(f('2001:0:0:1:0:0:0:1')).toBe('2001:0:0:1::1'); // longest run
    expect(f('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1'); // first of equal runs
    expect(f('::')).toBe('::');
    expect(f('1::')).toBe('1::');
  });
  it('canonicalIp / isFromServer', () => {
    expect(canonicalIp('::ffff:192.168.1.1')).toBe('192.168.1.1');
    expect(canonicalIp('FE80::1%eth0')).toBe('fe80::1');
    expect(canonicalIp('nope')).toBeUndefined();
    const gw = { host: '192.168.1.1', port: 5351 };
    expect(isFromServer({ host: '192.168.1.1', port: 5351 }, gw)).toBe(true);
    expect(isFromServer({ host: '::ffff:192.168.1.1', port: 5351 }, gw)).toBe(true);
    expect(isFromServer({ host: '192.168.1.2', port: 5351 }, gw)).toBe(false);
    expect(isFromServer({ host: '192.168.1.1', port: 5350 }, gw)).toBe(false);
    expect(isFromServer({ host: '192.168.1.1', port: 5350 }, gw, { checkPort: false })).toBe(true);
    expect(isFromServer({ host: 'garbage', port: 5351 }, gw)).toBe(false);
  });
  it('peekPortMapHeader', () => {
    expect(peekPortMapHeader(hex('02 81'))).toEqual({ version: 2, response: true, opcode: 1 });
    decodeErr(() => peekPortMapHeader(hex('02')));
  });
});

describe('PortMappingError', () => {
  it('carries method and result code', () => {
    const e = new PortMappingError('pcp', 'gateway refused: NO_RESOURCES', { resultCode: 8 });
    expect(e).toBeInstanceOf(P2pdError);
    expect(e.code).toBe('ERR_PORT_MAPPING');
    expect(e.name).toBe('PortMappingError');
    expect(e.method).toBe('pcp');
    expect(e.resultCode).toBe(8);
    expect(new PortMappingError('nat-pmp', 'no answer').resultCode).toBeUndefined();
  });
});
