import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { DecodeError, InvalidArgumentError, MessageTooBigError, StunError } from '../src/errors.js';
import {
  ATTR, CLASS, METHOD, StunStreamSplitter, TRANSPORT, bytesToIp, classifyPacket, decodeChannelData, decodeStun,
  encodeChannelData, encodeStun, getAttr, getAttrs, ipToBytes, isStun, longTermKey, messageType, newTransactionId,
  parseMessageType, prepareCredential, shortTermKey, splitStunStream, stunErrorOf, userHash, verifyFingerprint,
  verifyIntegrity, type StunAttribute, type StunMessage,
} from '../src/nat/stun/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5769 §2 test vectors (and RFC 8489 Appendix B.1).
const SAMPLE_REQUEST = hex(`000100582112a442b7e7a701bc34d686fa87dfae 802200105354554e207465737420636c69656e74
  002400046e0001ff 80290008932ff9b151263b36 000600096576746a3a68367659202020
  000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2 80280004e57a3bcf`);
const SAMPLE_IPV4_RESPONSE = hex(`0101003c2112a442b7e7a701bc34d686fa87dfae 8022000b7465737420766563746f7220
  002000080001a147e112a643 000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7 80280004c07d4c96`);
const SAMPLE_IPV6_RESPONSE = hex(`010100482112a442b7e7a701bc34d686fa87dfae 8022000b7465737420766563746f7220
  002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9 00080014a382954e4be67bf11784c97c8292c275bfe3ed41 80280004c8fb0b4c`);
const SAMPLE_LONG_TERM = hex(`000100602112a44278ad3433c6ad72c029da412e 00060012e3839ee38388e383aae38383e382afe382b90000
  0015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341 0014000b6578616d706c652e6f726700
  00080014f67024656dd64a3e02b8e0712e85c9a28ca89666`);
const SAMPLE_LONG_TERM_SHA256 = hex(`000100882112a44278ad3433c6ad72c029da412e
  001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704
  001500296f624d61744a6f733241414143662f2f3439396b39353464364f4c33346f4c394653547679363473410000000
  014000b6578616d706c652e6f726700
  001c0020fd8c273860d2e18ebca4c89b6973befa7ee8ecc69e9642db326fab65a0b955ba`);
const SHORT_TERM_PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';
const MATRIX_USER = '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9';
const MATRIX_PASSWORD = 'The\u00ADM\u00AAtr\u2168';

/** Copy of `buf` with the given byte ranges zeroed (RFC 5769 pads with spaces, we pad with zeros). */
function zeroed(buf: Buffer, ...ranges: [number, number][]): Buffer {
  const out = Buffer.from(buf);
  for (const [a, b] of ranges) out.fill(0, a, b);
  return out;
}

function expectDecodeError(buf: Uint8Array, re?: RegExp): void {
  let err: unknown;
  try {
    decodeStun(buf);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DecodeError);
  if (re) expect((err as Error).message).toMatch(re);
}

describe('RFC 5769 test vectors', () => {
  it('2.1 sample request: attributes, MESSAGE-INTEGRITY, FINGERPRINT', () => {
    const m = decodeStun(SAMPLE_REQUEST);
    expect(m.method).toBe(METHOD.BINDING);
    expect(m.cls).toBe(CLASS.REQUEST);
    expect(m.cookie).toBe(true);
    expect(m.transactionId.toString()).toBe(hex('b7e7a701bc34d686fa87dfae').toString());
    expect(getAttr(m, ATTR.SOFTWARE)).toBe('STUN test client');
    expect(getAttr(m, ATTR.PRIORITY)).toBe(0x6e0001ff);
    expect(getAttr(m, ATTR.ICE_CONTROLLED)).toBe(0x932ff9b151263b36n);
    expect(getAttr(m, ATTR.USERNAME)).toBe('evtj:h6vY');
    expect(m.unknownRequired).toEqual([]);
    expect(verifyIntegrity(m, SHORT_TERM_PASSWORD)).toBe(true);
    expect(verifyIntegrity(SAMPLE_REQUEST, shortTermKey(SHORT_TERM_PASSWORD))).toBe(true);
    expect(verifyIntegrity(m, 'wrong')).toBe(false);
    expect(verifyIntegrity(m, SHORT_TERM_PASSWORD, { algorithm: 'sha256' })).toBe(false);
    expect(verifyFingerprint(m)).toBe(true);
    const tampered = Buffer.from(SAMPLE_REQUEST);
    tampered[30] = (tampered[30] as number) ^ 1;
    expect(verifyFingerprint(tampered)).toBe(false);
    expect(verifyIntegrity(tampered, SHORT_TERM_PASSWORD)).toBe(false);

    // Re-encoding reproduces the vector except that we pad USERNAME with zeros, not spaces.
    const ours = encodeStun(m, { integrity: { key: SHORT_TERM_PASSWORD }, fingerprint: true });
    expect(ours.length).toBe(SAMPLE_REQUEST.length);
    const mi = m.offsets.integrity as number;
    expect(ours.subarray(0, mi)).toEqual(zeroed(SAMPLE_REQUEST, [73, 76]).subarray(0, mi));
    expect(verifyIntegrity(ours, SHORT_TERM_PASSWORD)).toBe(true);
    expect(verifyFingerprint(ours)).toBe(true);
  });

  it.each([
    ['2.2 IPv4', SAMPLE_IPV4_RESPONSE, { host: '192.0.2.1', port: 32853, family: 4 }],
    ['2.3 IPv6', SAMPLE_IPV6_RESPONSE, { host: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853, family: 6 }],
  ] as const)('%s response: XOR-MAPPED-ADDRESS, integrity, fingerprint, re-encode', (_name, vector, addr) => {
    const m = decodeStun(vector);
    expect(m.cls).toBe(CLASS.SUCCESS);
    expect(getAttr(m, ATTR.SOFTWARE)).toBe('test vector');
    expect(getAttr(m, ATTR.XOR_MAPPED_ADDRESS)).toEqual(addr);
    expect(verifyIntegrity(m, SHORT_TERM_PASSWORD)).toBe(true);
    expect(verifyFingerprint(m)).toBe(true);
    const ours = encodeStun(m, { integrity: { key: SHORT_TERM_PASSWORD }, fingerprint: true });
    const mi = m.offsets.integrity as number;
    expect(ours.subarray(0, mi)).toEqual(zeroed(vector, [35, 36]).subarray(0, mi));
    expect(verifyIntegrity(ours, SHORT_TERM_PASSWORD)).toBe(true);
  });

  it('2.4 long-term credentials with SASLprep-ed password', () => {
    expect(prepareCredential(MATRIX_PASSWORD)).toBe('TheMatrIX');
    const key = longTermKey(MATRIX_USER, 'example.org', MATRIX_PASSWORD);
    expect(key).toEqual(longTermKey(MATRIX_USER, 'example.org', 'TheMatrIX'));
    const m = decodeStun(SAMPLE_LONG_TERM);
    expect(getAttr(m, ATTR.USERNAME)).toBe(MATRIX_USER);
    expect(getAttr(m, ATTR.NONCE)).toBe('f//499k954d6OL34oL9FSTvy64sA');
    expect(getAttr(m, ATTR.REALM)).toBe('example.org');
    expect(verifyIntegrity(m, key)).toBe(true);
    expect(verifyIntegrity(m, longTermKey(MATRIX_USER, 'example.org', 'TheMatrix'))).toBe(false);
    expect(verifyFingerprint(m)).toBe(false); // no FINGERPRINT in this vector
    expect(encodeStun(m, { integrity: { key } })).toEqual(SAMPLE_LONG_TERM);
  });

  it('RFC 8489 B.1: USERHASH and MESSAGE-INTEGRITY-SHA256', () => {
    const key = longTermKey(MATRIX_USER, 'example.org', MATRIX_PASSWORD);
    const m = decodeStun(SAMPLE_LONG_TERM_SHA256);
    expect(Buffer.from(getAttr(m, ATTR.USERHASH) as Uint8Array)).toEqual(userHash(MATRIX_USER, 'example.org'));
    expect(getAttr(m, ATTR.NONCE)).toBe('obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA');
    expect(verifyIntegrity(m, key)).toBe(true);
    expect(verifyIntegrity(m, key, { algorithm: 'sha1' })).toBe(false); // no SHA-1 MAC present
    expect(encodeStun(m, { integrity: { key, sha256: true } })).toEqual(SAMPLE_LONG_TERM_SHA256);
  });
});

describe('integrity and fingerprint', () => {
  const base: StunMessage = {
    method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: newTransactionId(),
    attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: '203.0.113.9', port: 4242, family: 4 } }],
  };

  it('SHA-256, SHA-1 and both round-trip', () => {
    for (const sha256 of [false, true, 'both'] as const) {
      const buf = encodeStun(base, { integrity: { key: 'secret', sha256 }, fingerprint: true });
      const m = decodeStun(buf);
      expect(verifyIntegrity(m, 'secret')).toBe(true);
      expect(verifyIntegrity(m, 'Secret')).toBe(false);
      expect(verifyIntegrity(m, 'secret', { algorithm: 'sha1' })).toBe(sha256 !== true);
      expect(verifyIntegrity(m, 'secret', { algorithm: 'sha256' })).toBe(sha256 !== false);
      expect(verifyFingerprint(m)).toBe(true);
      expect(m.attributes.map((a) => a.type)).toEqual([
        ATTR.XOR_MAPPED_ADDRESS,
        ...(sha256 !== true ? [ATTR.MESSAGE_INTEGRITY] : []),
        ...(sha256 ? [ATTR.MESSAGE_INTEGRITY_SHA256] : []),
        ATTR.FINGERPRINT,
      ]);
    }
  });

  it('accepts a truncated MESSAGE-INTEGRITY-SHA256', () => {
    const plain = encodeStun(base);
    const head = Buffer.from(plain);
    head.writeUInt16BE(plain.length - 20 + 20, 2); // 4-byte header + 16-byte MAC
    const mac = createHmac('sha256', 'k').update(head).digest().subarray(0, 16);
    const msg = Buffer.concat([head, hex('001c0010'), mac]);
    expect(verifyIntegrity(msg, 'k')).toBe(true);
    expect(verifyIntegrity(msg, 'x')).toBe(false);
  });

  it('ignores attributes after MESSAGE-INTEGRITY, rejects any after FINGERPRINT', () => {
    const withMi = encodeStun(base, { integrity: { key: 'k' } });
    const extra = Buffer.concat([withMi, hex('80220004 74657374')]);
    extra.writeUInt16BE(extra.length - 20, 2);
    const m = decodeStun(extra);
    expect(getAttr(m, ATTR.SOFTWARE)).toBeUndefined();
    expect(verifyIntegrity(m, 'k')).toBe(true);
    const fp = encodeStun(base, { fingerprint: true });
    const after = Buffer.concat([fp, hex('80220004 74657374')]);
    after.writeUInt16BE(after.length - 20, 2);
    expectDecodeError(after, /after FINGERPRINT/);
  });

  it('integrity is refused on classic messages', () => {
    const classic: StunMessage = { ...base, cookie: false, transactionId: newTransactionId(true) };
    expect(() => encodeStun(classic, { integrity: { key: 'k' } })).toThrow(InvalidArgumentError);
  });
});

describe('message layout', () => {
  it('packs method and class into the message type', () => {
    expect(messageType(METHOD.BINDING, CLASS.REQUEST)).toBe(0x0001);
    expect(messageType(METHOD.BINDING, CLASS.INDICATION)).toBe(0x0011);
    expect(messageType(METHOD.BINDING, CLASS.SUCCESS)).toBe(0x0101);
    expect(messageType(METHOD.BINDING, CLASS.ERROR)).toBe(0x0111);
    expect(messageType(METHOD.ALLOCATE, CLASS.REQUEST)).toBe(0x0003);
    expect(messageType(METHOD.ALLOCATE, CLASS.ERROR)).toBe(0x0113);
    expect(messageType(METHOD.SEND, CLASS.INDICATION)).toBe(0x0016);
    expect(messageType(METHOD.DATA, CLASS.INDICATION)).toBe(0x0017);
    expect(messageType(METHOD.CHANNEL_BIND, CLASS.SUCCESS)).toBe(0x0109);
    for (let t = 0; t < 0x4000; t += 7) expect(messageType(parseMessageType(t).method, parseMessageType(t).cls)).toBe(t);
  });

  it('unknown comprehension-required attributes are listed, optional ones are not', () => {
    const buf = encodeStun({
      method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: newTransactionId(),
      attributes: [
        { type: 0x7fff, value: hex('01'), raw: true },
        { type: 0xc001, value: hex('0203'), raw: true },
        { type: 0x7fff, value: hex(''), raw: true },
        { type: ATTR.PASSWORD_ALGORITHM, value: hex('00010000'), raw: true },
      ],
    });
    const m = decodeStun(buf);
    expect(m.unknownRequired).toEqual([0x7fff, ATTR.PASSWORD_ALGORITHM]);
    expect(m.attributes).toHaveLength(4);
    expect(m.attributes[1]).toMatchObject({ type: 0xc001, raw: true });
  });

  it('TURN messages: Allocate, CreatePermission, ChannelBind, Send/Data', () => {
    const tid = newTransactionId();
    const token = hex('0102030405060708');
    const attrs: StunAttribute[] = [
      { type: ATTR.REQUESTED_TRANSPORT, value: TRANSPORT.UDP },
      { type: ATTR.LIFETIME, value: 600 },
      { type: ATTR.DONT_FRAGMENT, value: true },
      { type: ATTR.EVEN_PORT, value: { reserve: true } },
      { type: ATTR.REQUESTED_ADDRESS_FAMILY, value: 6 },
      { type: ATTR.RESERVATION_TOKEN, value: token },
      { type: ATTR.XOR_RELAYED_ADDRESS, value: { host: '2001:db8::7', port: 50000, family: 6 } },
      { type: ATTR.XOR_PEER_ADDRESS, value: { host: '198.51.100.1', port: 1, family: 4 } },
      { type: ATTR.XOR_PEER_ADDRESS, value: { host: '198.51.100.2', port: 2, family: 4 } },
      { type: ATTR.CHANNEL_NUMBER, value: 0x4001 },
      { type: ATTR.DATA, value: hex('deadbeefcafe') },
    ];
    const buf = encodeStun({ method: METHOD.ALLOCATE, cls: CLASS.REQUEST, transactionId: tid, attributes: attrs });
    expect(buf.readUInt16BE(0)).toBe(0x0003);
    // Fixed-layout checks straight from RFC 8656 §18.
    expect(buf.subarray(20, 28)).toEqual(hex('00190004 11000000'));
    expect(buf.subarray(36, 40)).toEqual(hex('001a0000'));
    expect(buf.subarray(40, 48)).toEqual(hex('00180001 80000000'));
    expect(buf.subarray(48, 56)).toEqual(hex('00170004 02000000'));
    const m = decodeStun(buf);
    expect(getAttr(m, ATTR.REQUESTED_TRANSPORT)).toBe(17);
    expect(getAttr(m, ATTR.LIFETIME)).toBe(600);
    expect(getAttr(m, ATTR.DONT_FRAGMENT)).toBe(true);
    expect(getAttr(m, ATTR.EVEN_PORT)).toEqual({ reserve: true });
    expect(getAttr(m, ATTR.REQUESTED_ADDRESS_FAMILY)).toBe(6);
    expect(Buffer.from(getAttr(m, ATTR.RESERVATION_TOKEN) as Uint8Array)).toEqual(token);
    expect(getAttr(m, ATTR.XOR_RELAYED_ADDRESS)).toEqual({ host: '2001:db8::7', port: 50000, family: 6 });
    expect(getAttrs(m, ATTR.XOR_PEER_ADDRESS).map((a) => a.host)).toEqual(['198.51.100.1', '198.51.100.2']);
    expect(getAttr(m, ATTR.CHANNEL_NUMBER)).toBe(0x4001);
    expect(Buffer.from(getAttr(m, ATTR.DATA) as Uint8Array)).toEqual(hex('deadbeefcafe'));
  });

  it('error responses become StunError', () => {
    const buf = encodeStun({
      method: METHOD.ALLOCATE, cls: CLASS.ERROR, transactionId: newTransactionId(),
      attributes: [
        { type: ATTR.ERROR_CODE, value: { code: 420, reason: 'Unknown Attribute' } },
        { type: ATTR.UNKNOWN_ATTRIBUTES, value: [0x7fff, 0x0031, 0x0032] },
      ],
    });
    expect(buf.subarray(20, 28)).toEqual(hex('0009 0015 0000 0414'));
    const m = decodeStun(buf);
    expect(getAttr(m, ATTR.UNKNOWN_ATTRIBUTES)).toEqual([0x7fff, 0x0031, 0x0032]);
    const err = stunErrorOf(m);
    expect(err).toBeInstanceOf(StunError);
    expect(err?.code).toBe('ERR_STUN');
    expect(err?.errorCode).toBe(420);
    expect(err?.reason).toBe('Unknown Attribute');
    expect(stunErrorOf({ ...m, cls: CLASS.SUCCESS })).toBeUndefined();
  });

  it('RFC 5780 attributes: CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS, RESPONSE-PORT, PADDING', () => {
    const buf = encodeStun({
      method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: newTransactionId(),
      attributes: [
        { type: ATTR.CHANGE_REQUEST, value: { changeIp: true, changePort: false } },
        { type: ATTR.RESPONSE_ORIGIN, value: { host: '192.0.2.10', port: 3478, family: 4 } },
        { type: ATTR.OTHER_ADDRESS, value: { host: '192.0.2.11', port: 3479, family: 4 } },
        { type: ATTR.RESPONSE_PORT, value: 5000 },
        { type: ATTR.PADDING, value: new Uint8Array(5) },
      ],
    });
    expect(buf.subarray(20, 28)).toEqual(hex('00030004 00000004'));
    expect(buf.subarray(28, 40)).toEqual(hex('802b0008 00010d96 c000020a'));
    const m = decodeStun(buf);
    expect(getAttr(m, ATTR.CHANGE_REQUEST)).toEqual({ changeIp: true, changePort: false });
    expect(getAttr(m, ATTR.OTHER_ADDRESS)).toEqual({ host: '192.0.2.11', port: 3479, family: 4 });
    expect(getAttr(m, ATTR.RESPONSE_PORT)).toBe(5000);
    expect(getAttr(m, ATTR.PADDING)?.length).toBe(5);
  });
});

describe('RFC 3489 classic messages', () => {
  // Binding Response, 16-byte transaction id, no magic cookie:
  // MAPPED-ADDRESS 192.0.2.1:32853, SOURCE-ADDRESS 198.51.100.1:3478, CHANGED-ADDRESS 198.51.100.2:3479.
  const CLASSIC_RESPONSE = hex(`0101 0024 0102030405060708090a0b0c0d0e0f10
    0001 0008 0001 8055 c0000201
    0004 0008 0001 0d96 c6336401
    0005 0008 0001 0d97 c6336402`);

  it('decodes MAPPED-, SOURCE- and CHANGED-ADDRESS', () => {
    const m = decodeStun(CLASSIC_RESPONSE);
    expect(m.cookie).toBe(false);
    expect(m.method).toBe(METHOD.BINDING);
    expect(m.cls).toBe(CLASS.SUCCESS);
    expect(Buffer.from(m.transactionId)).toEqual(hex('0102030405060708090a0b0c0d0e0f10'));
    expect(getAttr(m, ATTR.MAPPED_ADDRESS)).toEqual({ host: '192.0.2.1', port: 32853, family: 4 });
    expect(getAttr(m, ATTR.SOURCE_ADDRESS)).toEqual({ host: '198.51.100.1', port: 3478, family: 4 });
    expect(getAttr(m, ATTR.CHANGED_ADDRESS)).toEqual({ host: '198.51.100.2', port: 3479, family: 4 });
    expect(isStun(CLASSIC_RESPONSE)).toBe(false);
    expect(isStun(CLASSIC_RESPONSE, { classic: true })).toBe(true);
    expect(verifyIntegrity(m, 'k')).toBe(false);
    expect(encodeStun(m)).toEqual(CLASSIC_RESPONSE);
  });

  it('encodes a classic Binding Request with CHANGE-REQUEST', () => {
    const tid = hex('00112233445566778899aabbccddeeff');
    const buf = encodeStun({
      method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: tid, cookie: false,
      attributes: [{ type: ATTR.CHANGE_REQUEST, value: { changeIp: true, changePort: true } }],
    });
    expect(buf).toEqual(hex('0001 0008 00112233445566778899aabbccddeeff 0003 0004 00000006'));
    expect(() => encodeStun({ method: 1, cls: 0, transactionId: hex('2112a442000000000000000000000000'), cookie: false, attributes: [] }))
      .toThrow(InvalidArgumentError);
    expect(newTransactionId(true)).toHaveLength(16);
  });
});

describe('strict decoding', () => {
  const tid = 'b7e7a701bc34d686fa87dfae';
  const msg = (attrs: string, lengthOverride?: number): Buffer => {
    const body = hex(attrs);
    const h = hex(`0001 0000 2112a442 ${tid}`);
    h.writeUInt16BE(lengthOverride ?? body.length, 2);
    return Buffer.concat([h, body]);
  };

  it.each([
    ['too short', hex('0001000021')],
    ['leading bits', hex(`c001 0000 2112a442 ${tid}`)],
    ['length not multiple of 4', msg('', 2)],
    ['length longer than datagram', msg('', 8)],
    ['length shorter than datagram', msg('00250000', 0)],
    ['28-byte datagram, bogus attribute length', msg('0020 00ff 00010000')],
    ['28-byte datagram, attribute length one past the end', msg('8022 0005 41424344')],
    ['XOR-MAPPED-ADDRESS v4 with v6 length', msg('0020 0014 0001a147 e112a643 00000000 00000000 00000000')],
    ['address family 3', msg('0001 0008 00030000 01020304')],
    ['address too short', msg('0001 0002 0001 0000')],
    ['ERROR-CODE class 7', msg('0009 0004 00000700')],
    ['ERROR-CODE number 100', msg('0009 0004 00000464')],
    ['ERROR-CODE too short', msg('0009 0003 00000400')],
    ['UNKNOWN-ATTRIBUTES odd length', msg('000a 0003 00010200')],
    ['SOFTWARE not UTF-8', msg('8022 0002 c3280000')],
    ['LIFETIME length 3', msg('000d 0003 00000000')],
    ['CHANGE-REQUEST length 8', msg('0003 0008 00000000 00000000')],
    ['MESSAGE-INTEGRITY length 16', msg('0008 0010 00000000 00000000 00000000 00000000')],
    ['MESSAGE-INTEGRITY-SHA256 length 12', msg('001c 000c 00000000 00000000 00000000')],
    ['FINGERPRINT length 8', msg('8028 0008 00000000 00000000')],
    ['DONT-FRAGMENT with a value', msg('001a 0001 00000000')],
    ['REQUESTED-ADDRESS-FAMILY 3', msg('0017 0004 03000000')],
    ['EVEN-PORT length 4', msg('0018 0004 80000000')],
    ['USERHASH length 16', msg(`001e 0010 ${'00'.repeat(16)}`)],
  ])('%s', (_name, buf) => {
    expectDecodeError(buf);
  });

  it('string length limits (USERNAME 513, REALM 763 bytes)', () => {
    const attr = (type: string, n: number): string => `${type}${n.toString(16).padStart(4, '0')}${'61'.repeat(n)}${'00'.repeat((4 - (n % 4)) % 4)}`;
    expect(getAttr(decodeStun(msg(attr('0006', 513))), ATTR.USERNAME)).toHaveLength(513);
    expectDecodeError(msg(attr('0006', 514)), /USERNAME|0x0006/);
    expect(getAttr(decodeStun(msg(attr('0014', 763))), ATTR.REALM)).toHaveLength(763);
    expectDecodeError(msg(attr('0014', 764)));
    expectDecodeError(msg(attr('0015', 764)));
    expectDecodeError(msg(attr('8022', 764)));
  });

  it('more than 64 attributes', () => {
    expect(decodeStun(msg('80300000'.repeat(64))).attributes).toHaveLength(64);
    expectDecodeError(msg('80300000'.repeat(65)), /64/);
  });

  it('padding bytes are ignored, non-Uint8Array input rejected', () => {
    expect(getAttr(decodeStun(msg('8022 0001 41ffffff')), ATTR.SOFTWARE)).toBe('A');
    expectDecodeError('not bytes' as unknown as Uint8Array);
  });
});

describe('encoder validation', () => {
  const m = (attributes: StunAttribute[]): StunMessage => ({ method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: newTransactionId(), attributes });
  it.each([
    ['bad tid', { method: 1, cls: 0, transactionId: new Uint8Array(11), attributes: [] } as StunMessage],
    ['bad method', { method: 0x1000, cls: 0, transactionId: new Uint8Array(12), attributes: [] } as StunMessage],
    ['bad class', { method: 1, cls: 4, transactionId: new Uint8Array(12), attributes: [] } as unknown as StunMessage],
    ['SOFTWARE of 128 chars', m([{ type: ATTR.SOFTWARE, value: 'x'.repeat(128) }])],
    ['USERNAME of 514 bytes', m([{ type: ATTR.USERNAME, value: 'x'.repeat(514) }])],
    ['lone surrogate', m([{ type: ATTR.REALM, value: '\ud800' }])],
    ['bad host', m([{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host: 'example.com', port: 1, family: 4 } }])],
    ['family mismatch', m([{ type: ATTR.MAPPED_ADDRESS, value: { host: '::1', port: 1, family: 4 } }])],
    ['bad port', m([{ type: ATTR.MAPPED_ADDRESS, value: { host: '1.2.3.4', port: 70000, family: 4 } }])],
    ['error code 200', m([{ type: ATTR.ERROR_CODE, value: { code: 200, reason: '' } }])],
    ['lifetime -1', m([{ type: ATTR.LIFETIME, value: -1 }])],
    ['reservation token of 7 bytes', m([{ type: ATTR.RESERVATION_TOKEN, value: new Uint8Array(7) }])],
    ['65 attributes', m(new Array(65).fill({ type: ATTR.DONT_FRAGMENT, value: true }))],
  ])('%s -> InvalidArgumentError', (_n, msg) => {
    expect(() => encodeStun(msg)).toThrow(InvalidArgumentError);
  });

  it('oversized message -> MessageTooBigError', () => {
    const big = new Uint8Array(0xffff);
    expect(() => encodeStun(m([{ type: ATTR.DATA, value: big }]))).toThrow(MessageTooBigError);
    expect(encodeStun(m([{ type: ATTR.DATA, value: new Uint8Array(0xfff0) }])).length).toBe(20 + 4 + 0xfff0);
  });

  it('drops caller-supplied integrity/fingerprint attributes', () => {
    const buf = encodeStun(m([{ type: ATTR.FINGERPRINT, value: 1 }, { type: ATTR.MESSAGE_INTEGRITY, value: new Uint8Array(20) }]));
    expect(buf.length).toBe(20);
  });
});

describe('IP helpers', () => {
  it.each([
    ['1.2.3.4', '01020304', '1.2.3.4'],
    ['::', '00'.repeat(16), '::'],
    ['::1', `${'00'.repeat(15)}01`, '::1'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['fe80::1%eth0', 'fe800000000000000000000000000001', 'fe80::1'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008', '1:2:3:4:5:6:7:8'],
  ])('%s', (text, bytes, canon) => {
    expect(Buffer.from(ipToBytes(text)).toString('hex')).toBe(bytes);
    expect(bytesToIp(hex(bytes))).toBe(canon);
  });
});

describe('ChannelData and stream framing', () => {
  it('encodes/decodes with and without padding', () => {
    const udp = encodeChannelData(0x4000, hex('010203'));
    expect(udp).toEqual(hex('40000003 010203'));
    const tcp = encodeChannelData(0x4fff, hex('010203'), { pad: true });
    expect(tcp).toEqual(hex('4fff0003 01020300'));
    for (const b of [udp, tcp]) expect(Buffer.from(decodeChannelData(b).data)).toEqual(hex('010203'));
    expect(decodeChannelData(hex('40010000')).data.length).toBe(0);
  });

  it('rejects bad channels, short and over-long datagrams', () => {
    expect(() => encodeChannelData(0x5000, hex('00'))).toThrow(InvalidArgumentError);
    expect(() => encodeChannelData(0x3fff, hex('00'))).toThrow(InvalidArgumentError);
    for (const b of ['4000', '40000004 010203', '50000000', '3fff0000', '40000001 01000000 00', '40000000 00000000']) {
      expect(() => decodeChannelData(hex(b))).toThrow(DecodeError);
    }
  });

  it('classifies packets by first byte (RFC 7983)', () => {
    expect(classifyPacket(SAMPLE_REQUEST)).toBe('stun');
    expect(classifyPacket(hex('40000000'))).toBe('channel-data');
    expect(classifyPacket(hex('16fefd'))).toBe('other');
    expect(classifyPacket(new Uint8Array(0))).toBe('other');
  });

  it('splits a byte stream delivered one byte at a time', () => {
    const stream = Buffer.concat([SAMPLE_REQUEST, encodeChannelData(0x4001, hex('aabbcc'), { pad: true }), SAMPLE_IPV4_RESPONSE]);
    const s = new StunStreamSplitter();
    const frames = [];
    for (const byte of stream) frames.push(...s.push(Buffer.from([byte])));
    expect(frames.map((f) => f.kind)).toEqual(['stun', 'channel-data', 'stun']);
    expect(frames[0]?.data).toEqual(SAMPLE_REQUEST);
    expect(frames[1]).toMatchObject({ channel: 0x4001, data: hex('aabbcc') });
    expect(s.buffered).toBe(0);
    const { frames: f2, rest } = splitStunStream(Buffer.concat([stream, hex('0001')]));
    expect(f2).toHaveLength(3);
    expect(rest).toEqual(hex('0001'));
  });

  it('fails on garbage, oversized frames, and stays failed', () => {
    const s = new StunStreamSplitter({ maxFrameSize: 100 });
    expect(s.push(hex('0001'))).toEqual([]);
    expect(s.buffered).toBe(2);
    expect(s.takeRemainder()).toEqual(hex('0001'));
    expect(() => s.push(hex('00010100'))).toThrow(/exceeds/);
    expect(() => s.push(SAMPLE_REQUEST)).toThrow(DecodeError);
    expect(() => new StunStreamSplitter().push(hex('80000000'))).toThrow(DecodeError);
    expect(() => new StunStreamSplitter().push(hex('00010002'))).toThrow(DecodeError);
    expect(() => new StunStreamSplitter().push(hex('50000000'))).toThrow(DecodeError);
    expect(() => new StunStreamSplitter({ maxFrameSize: 10 })).toThrow(InvalidArgumentError);
  });
});

// The `stun` npm package (nodertc/stun 2.1.0) as an independent oracle.
interface OracleMessage {
  type: number;
  transactionId: Buffer;
  addXorAddress(host: string, port: number): void;
  addSoftware(s: string): void;
  addMessageIntegrity(key: string): void;
  addFingerprint(): void;
  getXorAddress(): { address: string; port: number; family: string } | undefined;
  getSoftware(): string | undefined;
}
interface Oracle {
  createMessage(type: number, tid?: Buffer): OracleMessage;
  encode(m: OracleMessage): Buffer;
  decode(b: Buffer): OracleMessage;
  validateMessageIntegrity(m: OracleMessage, key: string): boolean;
  validateFingerprint(m: OracleMessage): boolean;
  constants: Record<string, number>;
}
const oracle = createRequire(import.meta.url)('stun') as Oracle;

describe('interop with the `stun` npm package', () => {
  it('our Binding request decodes in theirs', () => {
    const tid = newTransactionId();
    const buf = encodeStun({ method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: tid, attributes: [{ type: ATTR.SOFTWARE, value: 'p2pd' }] }, { fingerprint: true });
    const theirs = oracle.decode(buf);
    expect(theirs.type).toBe(oracle.constants.STUN_BINDING_REQUEST);
    expect(theirs.transactionId).toEqual(tid);
    expect(theirs.getSoftware()).toBe('p2pd');
    expect(oracle.validateFingerprint(theirs)).toBe(true);
  });

  it.each([
    ['IPv4', '192.0.2.1', 'IPv4'],
    ['IPv6', '2001:db8::1', 'IPv6'],
  ])('our Binding success (%s XOR-MAPPED-ADDRESS, MI, FP) decodes and verifies in theirs', (_n, host, family) => {
    const tid = newTransactionId();
    const buf = encodeStun(
      { method: METHOD.BINDING, cls: CLASS.SUCCESS, transactionId: tid, attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: { host, port: 54321, family: host.includes(':') ? 6 : 4 } }] },
      { integrity: { key: 'pass' }, fingerprint: true },
    );
    const theirs = oracle.decode(buf);
    expect(theirs.type).toBe(oracle.constants.STUN_BINDING_RESPONSE);
    expect(theirs.getXorAddress()).toEqual({ address: host, port: 54321, family });
    expect(oracle.validateMessageIntegrity(theirs, 'pass')).toBe(true);
    expect(oracle.validateFingerprint(theirs)).toBe(true);
  });

  it.each([
    ['IPv4', '203.0.113.77'],
    ['IPv6', '2001:db8:85a3::8a2e:370:7334'],
  ])('their Binding success (%s) decodes and verifies in ours', (_n, host) => {
    const tid = newTransactionId();
    const theirs = oracle.createMessage(oracle.constants.STUN_BINDING_RESPONSE as number, tid);
    theirs.addXorAddress(host, 40000);
    theirs.addSoftware('nodertc');
    theirs.addMessageIntegrity('pass');
    theirs.addFingerprint();
    const m = decodeStun(oracle.encode(theirs));
    expect(m.cls).toBe(CLASS.SUCCESS);
    expect(Buffer.from(m.transactionId)).toEqual(tid);
    expect(getAttr(m, ATTR.XOR_MAPPED_ADDRESS)).toEqual({ host, port: 40000, family: host.includes(':') ? 6 : 4 });
    expect(getAttr(m, ATTR.SOFTWARE)).toBe('nodertc');
    expect(verifyIntegrity(m, 'pass')).toBe(true);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('their Binding request decodes in ours', () => {
    const theirs = oracle.createMessage(oracle.constants.STUN_BINDING_REQUEST as number);
    const m = decodeStun(oracle.encode(theirs));
    expect(m.method).toBe(METHOD.BINDING);
    expect(m.cls).toBe(CLASS.REQUEST);
    expect(Buffer.from(m.transactionId)).toEqual(theirs.transactionId);
  });
});
