/**
 * Minimal big-endian binary reader/writer for the DHT codecs. The reader throws
 * {@link DecodeError} on any overrun, so decoders never see `undefined` bytes.
 * @module
 */
import { DecodeError } from '../errors.js';

/** Largest integer carried in a u64 field (values above are rejected as non-portable). */
const MAX_U64_HI = 0x1fffff; // 2^53 - 1 = 0x1FFFFF_FFFFFFFF

/** Appends big-endian fields to a growing buffer. */
export class WireWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;

  constructor(initial = 256) {
    this.#buf = new Uint8Array(initial);
    this.#view = new DataView(this.#buf.buffer);
  }

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Writes one byte. */
  u8(v: number): this {
    this.#ensure(1);
    this.#view.setUint8(this.#len, v);
    this.#len += 1;
    return this;
  }

  /** Writes a big-endian u16. */
  u16(v: number): this {
    this.#ensure(2);
    this.#view.setUint16(this.#len, v);
    this.#len += 2;
    return this;
  }

  /** Writes a big-endian u32. */
  u32(v: number): this {
    this.#ensure(4);
    this.#view.setUint32(this.#len, v);
    this.#len += 4;
    return this;
  }

  /** Writes a safe non-negative integer as a big-endian u64. */
  u64(v: number): this {
    this.#ensure(8);
    this.#view.setUint32(this.#len, Math.floor(v / 0x100000000));
    this.#view.setUint32(this.#len + 4, v >>> 0);
    this.#len += 8;
    return this;
  }

  /** Writes raw bytes. */
  bytes(b: Uint8Array): this {
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** The bytes written so far (a copy-free view). */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** Reads big-endian fields; every overrun throws {@link DecodeError}. */
export class WireReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  readonly #what: string;

  constructor(buf: Uint8Array, what = 'message') {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#what = what;
  }

  /** Current offset. */
  get offset(): number {
    return this.#pos;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number, field: string): void {
    if (this.#pos + n > this.#buf.length) throw new DecodeError(`${this.#what}: truncated ${field}`);
  }

  /** Reads one byte. */
  u8(field = 'u8'): number {
    this.#need(1, field);
    return this.#view.getUint8(this.#pos++);
  }

  /** Reads a big-endian u16. */
  u16(field = 'u16'): number {
    this.#need(2, field);
    const v = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return v;
  }

  /** Reads a big-endian u32. */
  u32(field = 'u32'): number {
    this.#need(4, field);
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** Reads a big-endian u64 that must fit in a safe integer. */
  u64(field = 'u64'): number {
    this.#need(8, field);
    const hi = this.#view.getUint32(this.#pos);
    const lo = this.#view.getUint32(this.#pos + 4);
    if (hi > MAX_U64_HI) throw new DecodeError(`${this.#what}: ${field} exceeds 2^53-1`);
    this.#pos += 8;
    return hi * 0x100000000 + lo;
  }

  /** Reads `n` bytes as a copy (so decoded values never alias the input buffer). */
  bytes(n: number, field = 'bytes'): Uint8Array {
    this.#need(n, field);
    const out = this.#buf.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Throws {@link DecodeError} if any bytes are left. */
  end(): void {
    if (this.#pos !== this.#buf.length) {
      throw new DecodeError(`${this.#what}: ${this.#buf.length - this.#pos} trailing bytes`);
    }
  }
}
