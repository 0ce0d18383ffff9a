/**
 * IP literal ⇄ bytes conversion for STUN address attributes. Output text follows RFC 5952
 * (lower-case, longest zero run compressed) and prints IPv4-mapped IPv6 addresses as
 * `::ffff:a.b.c.d`, the way Node.js reports them.
 * @module
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../../errors.js';

function v4Bytes(s: string, out: Uint8Array, at: number): void {
  const parts = s.split('.');
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i]);
}

/**
 * Converts an IP literal (`1.2.3.4`, `2001:db8::1`, `::ffff:1.2.3.4`; a `%zone` suffix is
 * ignored) to its 4- or 16-byte network form. Throws {@link InvalidArgumentError} otherwise.
 */
export function ipToBytes(host: string): Uint8Array {
  if (typeof host !== 'string') throw new InvalidArgumentError('IP address must be a string');
  const pct = host.indexOf('%');
  const addr = pct >= 0 ? host.slice(0, pct) : host;
  const v = isIP(addr);
  if (v === 4) {
    const out = new Uint8Array(4);
    v4Bytes(addr, out, 0);
    return out;
  }
  if (v !== 6) throw new InvalidArgumentError(`not an IP address: ${JSON.stringify(host.slice(0, 80))}`);
  const out = new Uint8Array(16);
  let text = addr;
  let limit = 8; // number of 16-bit groups written by the hex part
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) >= 0) {
    v4Bytes(text.slice(lastColon + 1), out, 12);
    // Keep a trailing "::" ("::1.2.3.4"), drop a lone trailing ":" ("::ffff:1.2.3.4").
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
    limit = 6;
  }
  const dbl = text.indexOf('::');
  const split = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = dbl >= 0 ? split(text.slice(0, dbl)) : split(text);
  const tail = dbl >= 0 ? split(text.slice(dbl + 2)) : [];
  const groups = [...head, ...new Array<string>(limit - head.length - tail.length).fill('0'), ...tail];
  for (let i = 0; i < limit; i++) {
    const g = parseInt(groups[i] ?? '0', 16);
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  }
  return out;
}

/** Formats 4 or 16 network-order bytes as an IP literal; throws {@link InvalidArgumentError} for other lengths. */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new InvalidArgumentError(`an IP address has 4 or 16 bytes, not ${b.length}`);
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[2 * i] as number) << 8) | (b[2 * i + 1] as number));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  // Longest run of zero groups (length >= 2, first one on ties) becomes "::".
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}
