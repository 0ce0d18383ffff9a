/**
 * Bytes of the STUN server's answers written without the general encoder: address and
 * SOFTWARE attributes, and the test for requests that need no decoding (see `server-core.ts`).
 * @module
 */
import { isKnownAttribute } from './attributes.js';
import { ADDRESS_FAMILY, ATTR, MAGIC_COOKIE, MAX_STUN_ATTRIBUTES, MAX_TEXT_BYTES, STUN_HEADER_SIZE } from './constants.js';
import { fingerprintOf } from './integrity.js';

/** An empty attribute (nothing to add). */
export const EMPTY = Buffer.alloc(0);

/** One address attribute (type, length, family, port, address), optionally XOR-ed with `xorKey` (header bytes 4–19). */
export function addressTlv(type: number, port: number, ip: Uint8Array, xorKey?: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(8 + ip.length);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(4 + ip.length, 2);
  b[4] = 0;
  b[5] = ip.length === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6;
  b.writeUInt16BE(xorKey ? port ^ (MAGIC_COOKIE >>> 16) : port, 6);
  for (let i = 0; i < ip.length; i++) b[8 + i] = (ip[i] as number) ^ (xorKey ? (xorKey[i] as number) : 0);
  return b;
}

/** Writes an address attribute into `b` at `off` (XOR-ed with `request` bytes 4–19 when given); returns the next offset. */
export function writeAddress(b: Buffer, off: number, type: number, port: number, ip: Uint8Array, request: Buffer | undefined): number {
  b.writeUInt16BE(type, off);
  b.writeUInt16BE(4 + ip.length, off + 2);
  b[off + 4] = 0;
  b[off + 5] = ip.length === 4 ? ADDRESS_FAMILY.IPV4 : ADDRESS_FAMILY.IPV6;
  b.writeUInt16BE(request ? port ^ (MAGIC_COOKIE >>> 16) : port, off + 6);
  for (let i = 0; i < ip.length; i++) b[off + 8 + i] = (ip[i] as number) ^ (request ? (request[4 + i] as number) : 0);
  return off + 8 + ip.length;
}

/**
 * True for an RFC 8489 Binding request whose answer needs nothing decoded: correct framing,
 * only comprehension-optional attributes p2pd has no codec for plus SOFTWARE (≤ 763 bytes),
 * and a correct FINGERPRINT, if any, last. Anything else takes the full decoder.
 */
export function isPlainBinding(d: Buffer): boolean {
  if (d.length < STUN_HEADER_SIZE || d.readUInt16BE(0) !== 0x0001 || d.readUInt32BE(4) !== MAGIC_COOKIE) return false;
  const len = d.readUInt16BE(2);
  if (len % 4 !== 0 || STUN_HEADER_SIZE + len !== d.length) return false;
  let off = STUN_HEADER_SIZE;
  let n = 0;
  while (off < d.length) {
    if (d.length - off < 4 || ++n > MAX_STUN_ATTRIBUTES) return false;
    const t = d.readUInt16BE(off);
    const l = d.readUInt16BE(off + 2);
    const next = off + 4 + l + ((4 - (l % 4)) % 4);
    if (next > d.length) return false;
    if (t === ATTR.FINGERPRINT) {
      return l === 4 && next === d.length && d.readUInt32BE(off + 4) === fingerprintOf(d.subarray(0, off));
    }
    if (t === ATTR.SOFTWARE ? l > MAX_TEXT_BYTES : t < 0x8000 || isKnownAttribute(t)) return false;
    off = next;
  }
  return true;
}

/** A SOFTWARE attribute carrying `text`, padded. */
export function softwareTlv(text: string): Buffer {
  const v = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
  b.writeUInt16BE(ATTR.SOFTWARE, 0);
  b.writeUInt16BE(v.length, 2);
  v.copy(b, 4);
  return b;
}
