/**
 * STUN Binding wire helpers of the client: random transaction ids, and reading the mapping out
 * of a success response (see `client.ts`).
 * @module
 */
import { randomFillSync } from 'node:crypto';
import { StunError } from '../../errors.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import { unmapIPv4 } from '../../interfaces/ip.js';
import { decodeAttribute } from './attributes.js';
import { ATTR, MAGIC_COOKIE } from './constants.js';
import type { DecodedStunMessage } from './message.js';
import { ATTR_XOR_MAPPED_ADDRESS_OLD, type StunMapping } from './client-options.js';

// Transaction ids come from a pool filled by one CSPRNG call per 4 KiB: `randomBytes(12)` per
// request costs microseconds, a noticeable share of a loopback round trip.
const TID_POOL = Buffer.alloc(4096);
let tidOffset = TID_POOL.length;

/** Fills `id` (12 bytes; 16 for RFC 3489 classic, then never starting with the magic cookie) with random bytes. */
export function fillTransactionId(id: Buffer, classic: boolean): void {
  const n = id.length;
  for (;;) {
    if (tidOffset + n > TID_POOL.length) {
      randomFillSync(TID_POOL);
      tidOffset = 0;
    }
    TID_POOL.copy(id, 0, tidOffset, tidOffset + n);
    tidOffset += n;
    if (!classic || id.readUInt32BE(0) !== MAGIC_COOKIE) return;
  }
}

/** A fresh random transaction id (12 bytes; 16 for RFC 3489 classic, never starting with the magic cookie). */
export function randomTransactionId(classic = false): Buffer {
  const id = Buffer.allocUnsafe(classic ? 16 : 12);
  fillTransactionId(id, classic);
  return id;
}

/** Reads the mapping out of a success response; throws {@link StunError} when it carries none. */
export function parseBindingResponse(msg: DecodedStunMessage): Omit<StunMapping, 'local' | 'server' | 'from' | 'proto' | 'rtt'> {
  // One pass over the attributes (first of each type wins, as with getAttr).
  let xorMapped: Endpoint | undefined;
  let mapped: Endpoint | undefined;
  let oldXor: Uint8Array | undefined;
  let origin: Endpoint | undefined;
  let source: Endpoint | undefined;
  let other: Endpoint | undefined;
  let changed: Endpoint | undefined;
  let software: string | undefined;
  for (const a of msg.attributes) {
    if (a.raw === true) {
      if (a.type === ATTR_XOR_MAPPED_ADDRESS_OLD) oldXor ??= a.value;
      continue;
    }
    switch (a.type) {
      case ATTR.XOR_MAPPED_ADDRESS: xorMapped ??= a.value; break;
      case ATTR.MAPPED_ADDRESS: mapped ??= a.value; break;
      case ATTR.RESPONSE_ORIGIN: origin ??= a.value; break;
      case ATTR.SOURCE_ADDRESS: source ??= a.value; break;
      case ATTR.OTHER_ADDRESS: other ??= a.value; break;
      case ATTR.CHANGED_ADDRESS: changed ??= a.value; break;
      case ATTR.SOFTWARE: software ??= a.value; break;
      default:
    }
  }
  let m = xorMapped ?? mapped;
  if (!m && oldXor) {
    try {
      const d = decodeAttribute(ATTR.XOR_MAPPED_ADDRESS, Buffer.from(oldXor), { xorKey: msg.raw.subarray(4, 20) });
      if (d.raw !== true) m = d.value as Endpoint;
    } catch {
      /* malformed: no mapping */
    }
  }
  if (!m) throw new StunError('STUN Binding response without (XOR-)MAPPED-ADDRESS');
  const out: Omit<StunMapping, 'local' | 'server' | 'from' | 'proto' | 'rtt'> = { mapped: unmapped(m), classic: !msg.cookie };
  const o = origin ?? source;
  if (o) out.responseOrigin = unmapped(o);
  if (other) {
    out.otherAddress = unmapped(other);
    out.otherKind = 'rfc5780';
  } else if (changed) {
    out.otherAddress = unmapped(changed);
    out.otherKind = 'rfc3489';
  }
  if (software !== undefined) out.software = software;
  return out;
}

/** `e` with an IPv4-mapped IPv6 address turned into plain IPv4. */
export function unmapped(e: Endpoint): Endpoint {
  if (e.family !== 6) return e;
  const h = unmapIPv4(e.host);
  return h === e.host ? e : { host: h, port: e.port, family: 4 };
}
