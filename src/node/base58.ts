/**
 * Base58 (the Bitcoin alphabet: no `0`, `O`, `I`, `l`, no punctuation), so that a peer
 * address is one word: a double click selects all of it and nothing in it needs quoting.
 * Quadratic, meant for short inputs (a few hundred bytes); callers bound the length.
 * @module
 */
import { DecodeError } from '../errors.js';

/** The alphabet. */
export const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE58_ALPHABET.length; i++) DECODE[BASE58_ALPHABET.charCodeAt(i)] = i;

/** Encodes bytes as base58; leading zero bytes become leading `'1'`s. */
export function base58Encode(data: Uint8Array): string {
  let zeros = 0;
  while (zeros < data.length && data[zeros] === 0) zeros++;
  // Digits in base 58, little-endian; log(256)/log(58) ≈ 1.366.
  const digits = new Uint8Array(Math.ceil((data.length - zeros) * 1.37) + 1);
  let len = 0;
  for (let i = zeros; i < data.length; i++) {
    let carry = data[i] as number;
    for (let j = 0; j < len; j++) {
      carry += (digits[j] as number) << 8;
      digits[j] = carry % 58;
      carry = (carry / 58) | 0;
    }
    while (carry > 0) {
      digits[len++] = carry % 58;
      carry = (carry / 58) | 0;
    }
  }
  let out = '1'.repeat(zeros);
  for (let i = len - 1; i >= 0; i--) out += BASE58_ALPHABET[digits[i] as number];
  return out;
}

/** Longest text {@link base58Decode} accepts (decoding is quadratic in the length). */
export const MAX_BASE58_TEXT = 8192;

/**
 * Decodes base58 (Bitcoin alphabet).
 * @throws DecodeError on a character outside the alphabet, or text longer than `max`.
 */
export function base58Decode(text: string, max = MAX_BASE58_TEXT): Buffer {
  if (typeof text !== 'string') throw new DecodeError('base58 input must be a string');
  if (text.length > max) throw new DecodeError(`base58 text longer than ${max} characters`);
  let zeros = 0;
  while (zeros < text.length && text.charCodeAt(zeros) === 49 /* '1' */) zeros++;
  const bytes = new Uint8Array(Math.ceil((text.length - zeros) * 0.733) + 1);
  let len = 0;
  for (let i = zeros; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? (DECODE[c] as number) : -1;
    if (v < 0) throw new DecodeError(`not base58: bad character at ${i}`);
    let carry = v;
    for (let j = 0; j < len; j++) {
      carry += (bytes[j] as number) * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes[len++] = carry & 0xff;
      carry >>= 8;
    }
  }
  const out = Buffer.alloc(zeros + len);
  for (let i = 0; i < len; i++) out[zeros + i] = bytes[len - 1 - i] as number;
  return out;
}
