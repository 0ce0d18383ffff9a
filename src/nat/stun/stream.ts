/**
 * Framing of STUN messages and TURN ChannelData on a byte stream (TCP/TLS, RFC 8489 §6.2.2,
 * RFC 8656 §12.5). The first two bits of each frame tell which it is: `00` STUN (20-byte
 * header + length field), `01` ChannelData (4-byte header + length rounded up to 4).
 * Anything else, a STUN length that is not a multiple of 4, a reserved channel number or a
 * frame larger than the configured maximum means the stream is unusable: {@link DecodeError}.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../../errors.js';
import { CHANNEL_DATA_HEADER_SIZE, CHANNEL_MAX, CHANNEL_MIN, channelDataSize } from './channel-data.js';
import { MAX_STUN_MESSAGE_SIZE, STUN_HEADER_SIZE } from './constants.js';

/**
 * Default (and largest) frame size accepted on a stream: {@link MAX_STUN_MESSAGE_SIZE}
 * (65552), which also covers the largest padded ChannelData frame (65540). It bounds what the
 * splitter ever buffers.
 */
export const DEFAULT_MAX_STREAM_FRAME = MAX_STUN_MESSAGE_SIZE;

/** One frame cut from the stream. Byte fields may be views into the pushed chunks. */
export type StreamFrame =
  /** A whole STUN message (decode it with `decodeStun`, which keeps `raw` for integrity checks). */
  | { kind: 'stun'; data: Buffer }
  /** A ChannelData message, header and padding removed. */
  | { kind: 'channel-data'; channel: number; data: Buffer };

/** Options of the stream splitter. */
export interface StreamSplitterOptions {
  /** Largest frame accepted, in bytes (24–65552). @default {@link DEFAULT_MAX_STREAM_FRAME} */
  maxFrameSize?: number;
}

function maxFrame(opts: StreamSplitterOptions | undefined): number {
  const m = opts?.maxFrameSize ?? DEFAULT_MAX_STREAM_FRAME;
  if (!Number.isInteger(m) || m < STUN_HEADER_SIZE + 4 || m > DEFAULT_MAX_STREAM_FRAME) {
    throw new InvalidArgumentError(`maxFrameSize must be an integer ${STUN_HEADER_SIZE + 4}-${DEFAULT_MAX_STREAM_FRAME}`);
  }
  return m;
}

/**
 * Size of the frame whose first 4 bytes are `head` (stream padding included). Throws
 * {@link DecodeError} if those bytes cannot start a STUN or ChannelData frame of at most
 * `maxFrameSize` bytes.
 */
export function streamFrameSize(head: Uint8Array, maxFrameSize = DEFAULT_MAX_STREAM_FRAME): number {
  if (head.length < 4) throw new DecodeError('need 4 bytes to size a stream frame');
  const first = ((head[0] as number) << 8) | (head[1] as number);
  const length = ((head[2] as number) << 8) | (head[3] as number);
  let size: number;
  if (first >> 14 === 0) {
    if (length % 4 !== 0) throw new DecodeError(`STUN frame length ${length} is not a multiple of 4`);
    size = STUN_HEADER_SIZE + length;
  } else if (first >> 14 === 1) {
    if (first < CHANNEL_MIN || first > CHANNEL_MAX) throw new DecodeError(`reserved TURN channel number 0x${first.toString(16)} on stream`);
    size = channelDataSize(length, true);
  } else {
    throw new DecodeError(`stream frame starts with 0x${(head[0] as number).toString(16)}: neither STUN nor ChannelData`);
  }
  if (size > maxFrameSize) throw new DecodeError(`stream frame of ${size} bytes exceeds the ${maxFrameSize}-byte limit`);
  return size;
}

function toFrame(frame: Buffer): StreamFrame {
  const first = frame.readUInt16BE(0);
  if (first >> 14 === 0) return { kind: 'stun', data: frame };
  const length = frame.readUInt16BE(2);
  return { kind: 'channel-data', channel: first, data: frame.subarray(CHANNEL_DATA_HEADER_SIZE, CHANNEL_DATA_HEADER_SIZE + length) };
}

function asBuffer(b: Uint8Array): Buffer {
  if (!(b instanceof Uint8Array)) throw new InvalidArgumentError('stream chunk must be a Uint8Array');
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Splits `buf` into complete frames; `rest` is the incomplete tail (shorter than one frame,
 * so never more than `maxFrameSize` bytes). Stateless; see {@link StunStreamSplitter} for
 * incremental use. Throws {@link DecodeError} on a framing violation.
 */
export function splitStunStream(buf: Uint8Array, opts?: StreamSplitterOptions): { frames: StreamFrame[]; rest: Buffer } {
  const max = maxFrame(opts);
  const b = asBuffer(buf);
  const frames: StreamFrame[] = [];
  let off = 0;
  while (b.length - off >= 4) {
    const size = streamFrameSize(b.subarray(off, off + 4), max);
    if (b.length - off < size) break;
    frames.push(toFrame(b.subarray(off, off + size)));
    off += size;
  }
  return { frames, rest: b.subarray(off) };
}

/**
 * Incremental splitter for a TCP/TLS connection carrying STUN and ChannelData: feed it
 * whatever the socket delivers, get back the frames completed so far. It keeps at most one
 * partial frame (≤ `maxFrameSize` bytes) and copies only when a frame spans chunks. After it
 * throws {@link DecodeError} (frames completed earlier in the same chunk are dropped) it stays
 * failed: the stream has lost sync and the connection should be closed.
 */
export class StunStreamSplitter {
  readonly #max: number;
  #chunks: Buffer[] = [];
  #head = 0;
  #buffered = 0;
  #need = 0;
  #error: DecodeError | undefined;

  constructor(opts?: StreamSplitterOptions) {
    this.#max = maxFrame(opts);
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Appends `chunk` and returns every frame it completes, in order. */
  push(chunk: Uint8Array): StreamFrame[] {
    if (this.#error) throw this.#error;
    const c = asBuffer(chunk);
    if (c.length > 0) {
      this.#chunks.push(c);
      this.#buffered += c.length;
    }
    const frames: StreamFrame[] = [];
    try {
      for (;;) {
        if (this.#need === 0) {
          if (this.#buffered < 4) break;
          this.#need = streamFrameSize(this.#peek4(), this.#max);
        }
        if (this.#buffered < this.#need) break;
        frames.push(toFrame(this.#take(this.#need)));
        this.#need = 0;
      }
    } catch (e) {
      this.#error = e instanceof DecodeError ? e : new DecodeError('stream framing failed', { cause: e });
      this.#chunks = [];
      this.#head = 0;
      this.#buffered = 0;
      throw this.#error;
    }
    return frames;
  }

  /**
   * Removes and returns the buffered bytes of the incomplete frame, e.g. when the connection
   * switches to raw data after an RFC 6062 ConnectionBind. The splitter is then empty.
   */
  takeRemainder(): Buffer {
    const out = Buffer.concat(this.#chunks.slice(this.#head), this.#buffered);
    this.#chunks = [];
    this.#head = 0;
    this.#buffered = 0;
    this.#need = 0;
    return out;
  }

  /** Drops the consumed head chunk; compacts the array now and then so this stays O(1) amortised. */
  #shift(): void {
    this.#head++;
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  #peek4(): Buffer {
    const first = this.#chunks[this.#head] as Buffer;
    if (first.length >= 4) return first.subarray(0, 4);
    const out = Buffer.alloc(4);
    let n = 0;
    for (let i = this.#head; n < 4; i++) {
      const c = this.#chunks[i] as Buffer;
      const k = Math.min(4 - n, c.length);
      c.copy(out, n, 0, k);
      n += k;
    }
    return out;
  }

  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[this.#head] as Buffer;
    if (first.length >= n) {
      if (first.length === n) this.#shift();
      else this.#chunks[this.#head] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const c = this.#chunks[this.#head] as Buffer;
      const k = Math.min(n - got, c.length);
      c.copy(out, got, 0, k);
      got += k;
      if (k === c.length) this.#shift();
      else this.#chunks[this.#head] = c.subarray(k);
    }
    return out;
  }
}
