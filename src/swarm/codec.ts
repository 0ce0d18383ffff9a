/**
 * Strict big-endian binary reading/writing for the swarm's wire formats. The reader throws
 * {@link DecodeError} on any overrun or bad value, so a decoder never sees `undefined`.
 * @module
 */
import { DecodeError } from '../errors.js';

/** Largest safe integer's high 32 bits (u64 fields must fit a JS number exactly). */
const MAX_U64_HI = 0x1fffff;

/** Builds a buffer from fields; sizes are computed by the caller, so there is one allocation. */
export class Writer {
  readonly buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Writes one byte. */
  u8(v: number): this {
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  /** Writes a big-endian u16. */
  u16(v: number): this {
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  /** Writes a big-endian u32. */
  u32(v: number): this {
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  /** Writes a safe non-negative integer as a big-endian u64. */
  u64(v: number): this {
    this.buf.writeUInt32BE(Math.floor(v / 0x100000000), this.pos);
    this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }

  /** Writes raw bytes. */
  bytes(b: Uint8Array): this {
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** The written bytes; throws if the precomputed size was wrong (a bug, not bad input). */
  done(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`swarm codec: wrote ${this.pos} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

/** Reads fields from a buffer; every overrun throws {@link DecodeError}. Byte fields are views, not copies. */
export class Reader {
  pos = 0;

  constructor(
    readonly buf: Buffer,
    private readonly what: string,
  ) {}

  /** Bytes not read yet. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (this.pos + n > this.buf.length) throw new DecodeError(`${this.what}: truncated ${field}`);
  }

  /** Reads one byte. */
  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++] as number;
  }

  /** Reads a big-endian u16. */
  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** Reads a big-endian u32. */
  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Reads a big-endian u64 that must fit a safe integer. */
  u64(field: string): number {
    this.need(8, field);
    const hi = this.buf.readUInt32BE(this.pos);
    if (hi > MAX_U64_HI) throw new DecodeError(`${this.what}: ${field} exceeds 2^53-1`);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return hi * 0x100000000 + lo;
  }

  /** Reads `n` bytes (a view into the input). */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Reads a u8-length-prefixed UTF-8 string of at most `max` bytes; must be valid UTF-8. */
  str8(max: number, field: string): string {
    const n = this.u8(`${field} length`);
    if (n > max) throw new DecodeError(`${this.what}: ${field} longer than ${max} bytes`);
    const b = this.bytes(n, field);
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== n) throw new DecodeError(`${this.what}: ${field} is not valid UTF-8`);
    return s;
  }

  /** Throws unless everything was read. */
  end(): void {
    if (this.pos !== this.buf.length) throw new DecodeError(`${this.what}: ${this.buf.length - this.pos} trailing bytes`);
  }
}

/** Number of leading bits two ids share (0..256); 256 when equal. */
export function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const x = ((a[i] as number) ^ (b[i] as number)) & 0xff;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return 256;
}

/** Compares the XOR distances `a⊕t` and `b⊕t`: negative when `a` is closer to `t`. */
export function compareDistance(a: Uint8Array, b: Uint8Array, t: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const da = ((a[i] as number) ^ (t[i] as number)) & 0xff;
    const db = ((b[i] as number) ^ (t[i] as number)) & 0xff;
    if (da !== db) return da - db;
  }
  return 0;
}
