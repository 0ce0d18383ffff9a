/**
 * TCP framing: incremental decoders for length-prefixed and newline-delimited messages, and
 * the matching encoders. Decoders enforce a maximum message size and never buffer more than
 * one maximum-size message.
 * @module
 */
import { FrameError, InvalidArgumentError, MessageTooBigError } from '../errors.js';
import { DEFAULT_MAX_LINE, DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE_LIMIT, type Framing } from './types.js';

/** Incremental decoder: feed chunks, get whole messages. */
export interface FrameDecoder {
  /** Feeds a chunk; calls `emit` for each complete message. Throws {@link FrameError} on a framing violation. */
  push(chunk: Buffer, emit: (frame: Buffer) => void): void;
  /** Bytes buffered waiting for the rest of a message. */
  readonly pending: number;
}

/** Decoder for u32 big-endian length-prefixed frames. */
export class LengthDecoder implements FrameDecoder {
  private chunks: Buffer[] = [];
  private total = 0;
  private need = -1; // payload length of the frame being collected, -1 = header not read yet
  constructor(private readonly max: number = DEFAULT_MAX_MESSAGE_SIZE) {}

  get pending(): number {
    return this.total;
  }

  push(chunk: Buffer, emit: (frame: Buffer) => void): void {
    if (this.total === 0) {
      this.parse(chunk, emit);
      return;
    }
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (this.need < 0) {
      if (this.total < 4) return;
      const head = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.total);
      this.chunks = [head];
      this.need = this.header(head, 0);
    }
    if (this.total < 4 + this.need) return; // collect the whole frame, then copy once
    const data = Buffer.concat(this.chunks, this.total);
    this.chunks = [];
    this.total = 0;
    this.need = -1;
    this.parse(data, emit);
  }

  private header(b: Buffer, off: number): number {
    const len = b.readUInt32BE(off);
    if (len > this.max) throw new FrameError(`frame of ${len} bytes exceeds the maximum of ${this.max}`);
    return len;
  }

  private parse(data: Buffer, emit: (frame: Buffer) => void): void {
    let off = 0;
    while (data.length - off >= 4) {
      const len = this.header(data, off);
      if (data.length - off - 4 < len) {
        this.need = len;
        break;
      }
      emit(data.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    if (off < data.length) {
      const rest = data.subarray(off);
      // A short tail is copied so it does not pin the whole chunk.
      this.chunks = [rest.length < 4096 ? Buffer.from(rest) : rest];
      this.total = rest.length;
      if (rest.length < 4) this.need = -1;
    }
  }
}

/**
 * Decoder for `\n`-terminated lines (a trailing `\r` is kept; the `\n` is removed). Linear in
 * the bytes received: a partial line is kept as the chunks it came in (short ones copied, so
 * they pin no big buffer) and only new bytes are searched for the newline.
 */
export class LineDecoder implements FrameDecoder {
  private parts: Buffer[] = [];
  private partial = 0;
  constructor(private readonly max: number = DEFAULT_MAX_LINE) {}

  get pending(): number {
    return this.partial;
  }

  push(chunk: Buffer, emit: (frame: Buffer) => void): void {
    let off = 0;
    for (;;) {
      const nl = chunk.indexOf(10, off);
      if (nl < 0) break;
      const len = this.partial + nl - off;
      if (len > this.max) throw new FrameError(`line of ${len} bytes exceeds the maximum of ${this.max}`);
      if (this.partial === 0) emit(chunk.subarray(off, nl));
      else {
        this.parts.push(chunk.subarray(off, nl));
        const line = Buffer.concat(this.parts, len);
        this.parts = [];
        this.partial = 0;
        emit(line);
      }
      off = nl + 1;
    }
    if (off < chunk.length) {
      const rest = chunk.subarray(off);
      this.partial += rest.length;
      if (this.partial > this.max) throw new FrameError(`line exceeds the maximum of ${this.max} bytes`);
      this.parts.push(rest.length < 4096 ? Buffer.from(rest) : rest);
    }
  }
}

/** Checks a configured maximum message size. */
export function checkMaxMessageSize(framing: Framing, v: number | undefined): number {
  const dflt = framing === 'line' ? DEFAULT_MAX_LINE : DEFAULT_MAX_MESSAGE_SIZE;
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > MAX_MESSAGE_SIZE_LIMIT) {
    throw new InvalidArgumentError(`maxMessageSize must be an integer 1..${MAX_MESSAGE_SIZE_LIMIT}`);
  }
  return v;
}

/** Creates the decoder for a framing; `undefined` for `'raw'`. */
export function createDecoder(framing: Framing, max: number): FrameDecoder | undefined {
  switch (framing) {
    case 'raw':
      return undefined;
    case 'length':
      return new LengthDecoder(max);
    case 'line':
      return new LineDecoder(max);
    default:
      throw new InvalidArgumentError(`unknown framing ${JSON.stringify(framing)}; expected 'raw', 'length' or 'line'`);
  }
}

/** Small messages are copied behind their header into one buffer; larger ones are written as two. */
const COALESCE_LIMIT = 16 * 1024;

/**
 * Encodes one message for the wire as one or two buffers.
 * Throws {@link MessageTooBigError} when it exceeds `max`, or {@link InvalidArgumentError}
 * when a `'line'` message contains a newline.
 */
export function encodeFrame(framing: Framing, data: Buffer, max: number): Buffer | [Buffer, Buffer] {
  if (framing === 'raw') return data;
  if (data.length > max) throw new MessageTooBigError(`message of ${data.length} bytes exceeds the maximum of ${max}`);
  if (framing === 'length') {
    if (data.length <= COALESCE_LIMIT) {
      const out = Buffer.allocUnsafe(4 + data.length);
      out.writeUInt32BE(data.length, 0);
      data.copy(out, 4);
      return out;
    }
    const h = Buffer.allocUnsafe(4);
    h.writeUInt32BE(data.length, 0);
    return [h, data];
  }
  if (data.indexOf(10) !== -1) throw new InvalidArgumentError("a message sent with 'line' framing must not contain a newline");
  const out = Buffer.allocUnsafe(data.length + 1);
  data.copy(out, 0);
  out[data.length] = 10;
  return out;
}
