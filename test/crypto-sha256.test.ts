import * as nodeCrypto from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hmacSha256, sha256, sha256With, SHA256_ONE_SHOT } from '../src/crypto/sha256.js';
import { hkdf2 } from '../src/crypto/symmetric-state.js';

const { createHash, createHmac } = nodeCrypto;
const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 0, maxLength: max });

describe('sha256 / hmacSha256 (the handshake hash functions)', () => {
  it('uses the one-shot hash where this Node has crypto.hash with buffer output (20.12+)', () => {
    const h = (nodeCrypto as { hash?: (a: string, d: Uint8Array, e: string) => unknown }).hash;
    let has = false;
    try {
      has = typeof h === 'function' && Buffer.isBuffer(h('sha256', Buffer.alloc(0), 'buffer'));
    } catch {
      has = false;
    }
    expect(SHA256_ONE_SHOT).toBe(has);
  });

  it('RFC 4231 test case 2 (short key) and 6 (key longer than a block)', () => {
    expect(hmacSha256(Buffer.from('Jefe'), Buffer.from('what do ya want '), Buffer.from('for nothing?')).toString('hex')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    expect(hmacSha256(Buffer.alloc(131, 0xaa), Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First')).toString('hex')).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
  });

  const oneShot = (d: Uint8Array): Buffer => createHash('sha256').update(d).digest();
  const impls = [
    ['the active path', sha256],
    ['the one-shot path', sha256With(oneShot)],
    ['the createHash fallback', sha256With(undefined)],
  ] as const;

  it.each(impls)('sha256: %s equals createHash for any input (property)', (_name, hash) => {
    fc.assert(
      fc.property(bytes(200), fc.option(bytes(200), { nil: undefined }), (a, b) => {
        const h = createHash('sha256').update(a);
        if (b) h.update(b);
        expect(hash(a, b).equals(h.digest())).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('hmacSha256 equals createHmac over any split of its input (property)', () => {
    fc.assert(
      fc.property(bytes(150), fc.array(bytes(100), { maxLength: 4 }), (key, parts) => {
        expect(hmacSha256(key, ...parts).equals(createHmac('sha256', key).update(Buffer.concat(parts)).digest())).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('HKDF with two outputs matches RFC 5869 built on createHmac', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), bytes(64), (ck, ikm) => {
        const t = createHmac('sha256', ck).update(ikm).digest();
        const o1 = createHmac('sha256', t).update(Buffer.from([1])).digest();
        const o2 = createHmac('sha256', t).update(o1).update(Buffer.from([2])).digest();
        const [a, b] = hkdf2(ck, ikm);
        expect(a.equals(o1) && b.equals(o2)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('does not modify its inputs', () => {
    const key = Buffer.alloc(32, 7);
    const data = Buffer.alloc(10, 9);
    hmacSha256(key, data);
    sha256(key, data);
    expect(key.equals(Buffer.alloc(32, 7)) && data.equals(Buffer.alloc(10, 9))).toBe(true);
  });
});
