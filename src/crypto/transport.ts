/**
 * Wire framing of a secure (Noise) byte stream, for the handshake and after it.
 *
 * Every frame is a 4-byte header followed by a body of at most 65535 bytes (one Noise
 * message):
 * ```
 * byte 0     flags     FRAME_FLAG_MORE (0x01): more frames of the same message follow
 *                      FRAME_FLAG_CLOSE (0x02): authenticated end of stream
 * byte 1     reserved  must be 0
 * bytes 2-3  length    body length, u16 big-endian
 * ```
 * i.e. a u32 big-endian `flags << 24 | length`. Handshake frames carry a raw Noise
 * handshake message and have flags 0. Transport frames carry `ciphertext || tag`; the
 * 4 header bytes are the AEAD associated data, so flags and length are authenticated.
 *
 * An application message of up to {@link MAX_SECURE_MESSAGE} bytes is cut into
 * `ceil(length / NOISE_MAX_PLAINTEXT)` chunks of (nearly) equal size, one frame each, all but
 * the last flagged MORE ({@link messageChunkSizes}: a 64 KiB message is two 32 KiB frames, not
 * 65519 + 17 bytes); the receiver reassembles them, so message boundaries survive. An empty
 * message is one frame with an empty plaintext. Chunks are never empty except for a whole
 * empty message. Receivers accept any chunking within these rules, not only the even one.
 * @module
 */
import { DecryptError, FrameError, InvalidArgumentError, MessageTooBigError } from '../errors.js';
import { asBuffer, CipherState, NOISE_MAX_MESSAGE, NOISE_MAX_PLAINTEXT, NOISE_TAG_SIZE } from './noise.js';

/** Bytes of a frame header. */
export const FRAME_HEADER_SIZE = 4;
/** Flag: more frames of the same message follow. */
export const FRAME_FLAG_MORE = 0x01;
/** Flag: authenticated end of stream (the body is an empty plaintext). */
export const FRAME_FLAG_CLOSE = 0x02;
const KNOWN_FLAGS = FRAME_FLAG_MORE | FRAME_FLAG_CLOSE;
/** Largest frame on the wire: header + one Noise message. */
export const MAX_FRAME_SIZE = FRAME_HEADER_SIZE + NOISE_MAX_MESSAGE;
/** Largest application message a secure pipe carries by default: 16 MiB. */
export const MAX_SECURE_MESSAGE = 16 * 1024 * 1024;
/** Wire overhead per frame (header + tag). */
export const FRAME_OVERHEAD = FRAME_HEADER_SIZE + NOISE_TAG_SIZE;

function writeHeader(out: Buffer, offset: number, flags: number, length: number): void {
  out.writeUInt32BE(((flags << 24) | length) >>> 0, offset);
}

/** Parsed frame header; throws {@link FrameError} on reserved bits, unknown flags or oversize. */
export function parseFrameHeader(buf: Uint8Array, offset = 0): { flags: number; length: number } {
  if (buf.length - offset < FRAME_HEADER_SIZE) throw new FrameError('truncated frame header');
  const flags = buf[offset] as number;
  if (buf[offset + 1] !== 0) throw new FrameError('reserved frame header byte is not zero');
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new FrameError(`unknown frame flags 0x${flags.toString(16)}`);
  const length = ((buf[offset + 2] as number) << 8) | (buf[offset + 3] as number);
  return { flags, length };
}

/** Frames a Noise handshake message (flags 0). @throws {@link MessageTooBigError} above 65535 bytes. */
export function encodeHandshakeFrame(message: Uint8Array): Buffer {
  if (message.length > NOISE_MAX_MESSAGE) throw new MessageTooBigError(`handshake message too large (${message.length} bytes)`);
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + message.length);
  writeHeader(out, 0, 0, message.length);
  out.set(message, FRAME_HEADER_SIZE);
  return out;
}

/**
 * Unwraps a handshake frame (as returned by {@link FrameDecoder.next}) into the Noise message.
 * @throws {@link FrameError} if the frame is malformed or carries flags.
 */
export function decodeHandshakeFrame(frame: Uint8Array): Buffer {
  const { flags, length } = parseFrameHeader(frame);
  if (flags !== 0) throw new FrameError('unexpected flags on a handshake frame');
  if (frame.length !== FRAME_HEADER_SIZE + length) throw new FrameError('frame length mismatch');
  return asBuffer(frame).subarray(FRAME_HEADER_SIZE);
}

/**
 * Encrypts one chunk (≤ {@link NOISE_MAX_PLAINTEXT} bytes) into a frame: header + ciphertext + tag.
 * @throws {@link MessageTooBigError} if `plaintext` is too large for one Noise message.
 */
export function encryptFrame(cs: CipherState, plaintext: Uint8Array, flags = 0): Buffer {
  const len = plaintext.length;
  if (len > NOISE_MAX_PLAINTEXT) throw new MessageTooBigError(`frame plaintext too large (${len} > ${NOISE_MAX_PLAINTEXT}); chunk it`);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new InvalidArgumentError('unknown frame flags');
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + len);
  writeHeader(out, 0, flags, len + NOISE_TAG_SIZE);
  cs.encryptInto(out.subarray(0, FRAME_HEADER_SIZE), plaintext, out, FRAME_HEADER_SIZE);
  return out;
}

/** Number of frames a message of `length` bytes is cut into: `max(1, ceil(length / NOISE_MAX_PLAINTEXT))`. */
export function messageChunkCount(length: number): number {
  return length <= NOISE_MAX_PLAINTEXT ? 1 : Math.ceil(length / NOISE_MAX_PLAINTEXT);
}

/**
 * Plaintext sizes of the frames of a message of `length` bytes: {@link messageChunkCount}
 * chunks as equal as possible (the first `length % n` are one byte longer), e.g.
 * `65536 → [32768, 32768]`, `65520 → [32760, 32760]`, `0 → [0]`.
 */
export function messageChunkSizes(length: number): number[] {
  const n = messageChunkCount(length);
  const base = Math.floor(length / n);
  const extra = length - base * n;
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = i < extra ? base + 1 : base;
  return out;
}

/** Wire size of a message of `length` bytes once chunked and encrypted. */
export function encryptedMessageSize(length: number): number {
  return length + messageChunkCount(length) * FRAME_OVERHEAD;
}

/**
 * Encrypts a whole application message (chunked into as many frames as needed) into one
 * contiguous buffer, ready for a single socket write.
 * @throws {@link MessageTooBigError} if `message` exceeds `maxMessageSize`.
 */
export function encryptMessage(cs: CipherState, message: Uint8Array, maxMessageSize = MAX_SECURE_MESSAGE): Buffer {
  const total = message.length;
  if (total > maxMessageSize) throw new MessageTooBigError(`message too large (${total} > ${maxMessageSize} bytes)`);
  const chunks = messageChunkCount(total);
  const out = Buffer.allocUnsafe(total + chunks * FRAME_OVERHEAD);
  if (chunks === 1) {
    writeHeader(out, 0, 0, total + NOISE_TAG_SIZE);
    cs.encryptInto(out.subarray(0, FRAME_HEADER_SIZE), message, out, FRAME_HEADER_SIZE);
    return out;
  }
  const base = Math.floor(total / chunks);
  const extra = total - base * chunks;
  let pos = 0;
  let off = 0;
  for (let i = 0; i < chunks; i++) {
    const n = i < extra ? base + 1 : base;
    writeHeader(out, pos, i === chunks - 1 ? 0 : FRAME_FLAG_MORE, n + NOISE_TAG_SIZE);
    pos += FRAME_HEADER_SIZE;
    pos += cs.encryptInto(out.subarray(pos - FRAME_HEADER_SIZE, pos), message.subarray(off, off + n), out, pos);
    off += n;
  }
  return out;
}

/** A decrypted frame. */
export interface DecryptedFrame {
  /** Frame flags (authenticated). */
  flags: number;
  /** The chunk's plaintext. */
  plaintext: Buffer;
}

/**
 * Decrypts one transport frame (header + ciphertext + tag, exactly).
 * @throws {@link FrameError} if malformed; {@link DecryptError} if authentication fails.
 */
export function decryptFrame(cs: CipherState, frame: Uint8Array): DecryptedFrame {
  const { flags, length } = parseFrameHeader(frame);
  if (frame.length !== FRAME_HEADER_SIZE + length) throw new FrameError('frame length mismatch');
  if (length < NOISE_TAG_SIZE) throw new FrameError('transport frame shorter than the authentication tag');
  const buf = asBuffer(frame);
  const plaintext = cs.decryptWithAd(buf.subarray(0, FRAME_HEADER_SIZE), buf.subarray(FRAME_HEADER_SIZE));
  return { flags, plaintext };
}

/**
 * Splits a byte stream into frames. {@link push} bytes as they arrive, then take complete
 * frames with {@link next} (header included). A frame that lies inside one pushed chunk is
 * returned as a view of it (no copy); one that spans chunks is copied once.
 * Headers are validated as soon as they are complete ({@link FrameError}).
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #head = 0; // index of first chunk in #chunks
  #offset = 0; // read offset in #chunks[#head]
  #buffered = 0;
  readonly #hdr = Buffer.alloc(FRAME_HEADER_SIZE);

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Appends received bytes (kept by reference: do not reuse the buffer). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
      // Amortised compaction of consumed slots.
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    this.#chunks.push(asBuffer(chunk));
    this.#buffered += chunk.length;
  }

  /** Copies `n` bytes from the queue into `out` at `pos`, consuming them. */
  #take(out: Buffer, pos: number, n: number): void {
    while (n > 0) {
      const c = this.#chunks[this.#head] as Buffer;
      const avail = c.length - this.#offset;
      const k = Math.min(avail, n);
      c.copy(out, pos, this.#offset, this.#offset + k);
      pos += k;
      n -= k;
      this.#consume(k);
    }
  }

  #consume(k: number): void {
    this.#offset += k;
    this.#buffered -= k;
    const c = this.#chunks[this.#head] as Buffer;
    if (this.#offset >= c.length) {
      this.#chunks[this.#head] = undefined as unknown as Buffer;
      this.#head++;
      this.#offset = 0;
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      }
    }
  }

  /** The next complete frame, or `undefined` if more bytes are needed. @throws {@link FrameError}. */
  next(): Buffer | undefined {
    if (this.#buffered < FRAME_HEADER_SIZE) return undefined;
    const c = this.#chunks[this.#head] as Buffer;
    const off = this.#offset;
    let length: number;
    if (c.length - off >= FRAME_HEADER_SIZE) {
      length = parseFrameHeader(c, off).length;
      const total = FRAME_HEADER_SIZE + length;
      if (c.length - off >= total) {
        this.#consume(total);
        return c.subarray(off, off + total);
      }
    } else {
      // Header spans chunks: peek without consuming.
      let p = 0;
      for (let i = this.#head, o = off; p < FRAME_HEADER_SIZE; i++, o = 0) {
        const ch = this.#chunks[i] as Buffer;
        const k = Math.min(ch.length - o, FRAME_HEADER_SIZE - p);
        ch.copy(this.#hdr, p, o, o + k);
        p += k;
      }
      length = parseFrameHeader(this.#hdr).length;
    }
    const total = FRAME_HEADER_SIZE + length;
    if (this.#buffered < total) return undefined;
    const frame = Buffer.allocUnsafe(total);
    this.#take(frame, 0, total);
    return frame;
  }

  /** Removes and returns every buffered byte not yet framed (e.g. to hand the stream on). */
  drain(): Buffer {
    const out = Buffer.allocUnsafe(this.#buffered);
    this.#take(out, 0, this.#buffered);
    return out;
  }
}

/**
 * Reassembles chunked messages: feed each decrypted chunk with its MORE flag; returns the
 * complete message after its last chunk. A single-chunk message is returned without copying.
 */
export class MessageReassembler {
  readonly maxMessageSize: number;
  #parts: Buffer[] = [];
  #total = 0;

  constructor(maxMessageSize = MAX_SECURE_MESSAGE) {
    if (!Number.isSafeInteger(maxMessageSize) || maxMessageSize < 0) throw new InvalidArgumentError('invalid maxMessageSize');
    this.maxMessageSize = maxMessageSize;
  }

  /** `true` while a message is partially received. */
  get pending(): boolean {
    return this.#parts.length > 0;
  }

  /**
   * Adds a chunk. @throws {@link MessageTooBigError} when the message exceeds the maximum,
   * {@link FrameError} on an empty non-final chunk.
   */
  push(chunk: Buffer, more: boolean): Buffer | undefined {
    const total = this.#total + chunk.length;
    if (total > this.maxMessageSize) {
      this.reset();
      throw new MessageTooBigError(`incoming message exceeds ${this.maxMessageSize} bytes`);
    }
    if (more) {
      if (chunk.length === 0) throw new FrameError('empty non-final message chunk');
      this.#parts.push(chunk);
      this.#total = total;
      return undefined;
    }
    if (this.#parts.length === 0) return chunk;
    this.#parts.push(chunk);
    const msg = Buffer.concat(this.#parts, total);
    this.reset();
    return msg;
  }

  /** Drops any partial message. */
  reset(): void {
    this.#parts = [];
    this.#total = 0;
  }
}

/** Options of {@link SecureChannel}. */
export interface SecureChannelOptions {
  /** Largest message accepted and sent. Default {@link MAX_SECURE_MESSAGE}. */
  maxMessageSize?: number;
}

/**
 * The post-handshake transport state of one secure stream: turns messages into wire bytes
 * and wire bytes back into messages. Both directions are independent. Messages must be
 * encrypted in the order they are written and bytes fed in the order they arrive.
 *
 * Receiving: a frame that lies within one read is decrypted in place (no copy); a frame split
 * across reads is gathered into a reused scratch buffer (at most one frame, 64 KiB) and
 * decrypted in one call, which measures cheaper than a streaming decipher that allocates a
 * buffer per piece. A message is only returned once every one of its frames has authenticated. After the handshake, feed any bytes already buffered past the
 * last handshake frame ({@link FrameDecoder.drain}) to {@link decrypt} first.
 *
 * After any error from {@link decrypt} the channel is unusable (every later call throws the
 * same error): the stream must be closed.
 */
export class SecureChannel {
  readonly maxMessageSize: number;
  readonly #send: CipherState;
  readonly #recv: CipherState;
  #remoteClosed = false;
  #localClosed = false;
  #error: Error | undefined;
  // Receive state: a frame header being filled, then (for a frame split across reads) its body
  // gathered into a reused scratch buffer.
  readonly #hdr = Buffer.alloc(FRAME_HEADER_SIZE);
  #hdrFill = 0;
  #flags = 0;
  #bodyLen = 0; // body length of the frame being gathered; 0 = reading a header
  #bodyFill = 0;
  #scratch: Buffer | undefined; // grows to the largest split frame seen (≤ 65535 bytes)
  #msgParts: Buffer[] = []; // authenticated chunks of the current message
  #msgSize = 0; // bytes of the current message, including the current frame

  constructor(ciphers: { send: CipherState; recv: CipherState }, opts: SecureChannelOptions = {}) {
    if (!ciphers?.send?.hasKey() || !ciphers.recv?.hasKey()) throw new InvalidArgumentError('SecureChannel needs keyed ciphers');
    const max = opts.maxMessageSize ?? MAX_SECURE_MESSAGE;
    if (!Number.isSafeInteger(max) || max < 0) throw new InvalidArgumentError('invalid maxMessageSize');
    this.#send = ciphers.send;
    this.#recv = ciphers.recv;
    this.maxMessageSize = max;
  }

  /** `true` once the peer's authenticated close frame arrived. */
  get remoteClosed(): boolean {
    return this.#remoteClosed;
  }

  /** `true` while a frame or a chunked message is partially received. */
  get receiving(): boolean {
    return this.#bodyLen > 0 || this.#hdrFill > 0 || this.#msgParts.length > 0;
  }

  /**
   * Encrypts one message into wire bytes (one or more frames, one contiguous buffer).
   * @throws {@link MessageTooBigError} above `maxMessageSize`; {@link InvalidArgumentError} after {@link encryptClose}.
   */
  encrypt(message: Uint8Array): Buffer {
    if (this.#localClosed) throw new InvalidArgumentError('secure channel closed for sending');
    return encryptMessage(this.#send, message, this.maxMessageSize);
  }

  /**
   * Like {@link encrypt} but without the copy into one buffer: returns the pieces (header,
   * ciphertext, tag, per frame) for a vectored write (`socket.cork(); write…; uncork()` or
   * `writev`). Worth it for large messages; for small ones {@link encrypt} is better.
   */
  encryptv(message: Uint8Array): Buffer[] {
    if (this.#localClosed) throw new InvalidArgumentError('secure channel closed for sending');
    const total = message.length;
    if (total > this.maxMessageSize) throw new MessageTooBigError(`message too large (${total} > ${this.maxMessageSize} bytes)`);
    const chunks = messageChunkCount(total);
    const base = Math.floor(total / chunks);
    const extra = total - base * chunks;
    const parts: Buffer[] = [];
    // The tag of a frame and the header of the next share one small buffer: 2n + 1 pieces for
    // n frames (header, ciphertext, tag+header, ciphertext, …, tag) instead of 3n.
    let hdr = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
    let off = 0;
    for (let i = 0; i < chunks; i++) {
      const n = i < extra ? base + 1 : base;
      const last = i === chunks - 1;
      writeHeader(hdr, hdr.length - FRAME_HEADER_SIZE, last ? 0 : FRAME_FLAG_MORE, n + NOISE_TAG_SIZE);
      if (i === 0) parts.push(hdr);
      const ad = hdr.subarray(hdr.length - FRAME_HEADER_SIZE);
      const chunk = chunks === 1 ? message : message.subarray(off, off + n);
      if (last) {
        this.#send.encryptToParts(ad, chunk, parts);
      } else {
        const next = Buffer.allocUnsafe(NOISE_TAG_SIZE + FRAME_HEADER_SIZE);
        this.#send.encryptToParts(ad, chunk, parts, next);
        parts.push(next);
        hdr = next;
      }
      off += n;
    }
    return parts;
  }

  /** The authenticated close frame; after it nothing more can be sent. */
  encryptClose(): Buffer {
    if (this.#localClosed) throw new InvalidArgumentError('secure channel already closed for sending');
    this.#localClosed = true;
    return encryptFrame(this.#send, Buffer.alloc(0), FRAME_FLAG_CLOSE);
  }

  /**
   * Feeds received bytes; returns the messages they complete (possibly none).
   * @throws {@link FrameError}, {@link DecryptError}, {@link MessageTooBigError}.
   */
  decrypt(chunk: Uint8Array): Buffer[] {
    if (this.#error) throw this.#error;
    const out: Buffer[] = [];
    try {
      this.#consume(asBuffer(chunk), out);
    } catch (e) {
      this.#bodyLen = 0;
      this.#scratch = undefined;
      this.#msgParts = [];
      this.#error =
        e instanceof FrameError || e instanceof DecryptError || e instanceof MessageTooBigError
          ? e
          : new FrameError('bad frame', { cause: e });
      throw this.#error;
    }
    return out;
  }

  /** Validates a frame header; returns the body length. */
  #onHeader(buf: Buffer, off: number): number {
    if (this.#remoteClosed) throw new FrameError('data after the close frame');
    // parseFrameHeader, inlined (no object per frame).
    const flags = buf[off] as number;
    if (buf[off + 1] !== 0 || (flags & ~KNOWN_FLAGS) !== 0) parseFrameHeader(buf, off); // throws the precise FrameError
    const length = ((buf[off + 2] as number) << 8) | (buf[off + 3] as number);
    if (length < NOISE_TAG_SIZE) throw new FrameError('transport frame shorter than the authentication tag');
    const pt = length - NOISE_TAG_SIZE;
    if (flags & FRAME_FLAG_CLOSE) {
      if (flags !== FRAME_FLAG_CLOSE || pt !== 0 || this.#msgParts.length > 0) throw new FrameError('malformed close frame');
    } else if (flags & FRAME_FLAG_MORE && pt === 0) {
      throw new FrameError('empty non-final message chunk');
    }
    if (this.#msgSize + pt > this.maxMessageSize) {
      throw new MessageTooBigError(`incoming message exceeds ${this.maxMessageSize} bytes`);
    }
    this.#flags = flags;
    this.#msgSize += pt;
    return length;
  }

  /** An authenticated frame's plaintext. */
  #onFrame(plaintext: Buffer, out: Buffer[]): void {
    const flags = this.#flags;
    if (flags & FRAME_FLAG_CLOSE) {
      this.#remoteClosed = true;
      this.#msgSize = 0;
      return;
    }
    if (flags & FRAME_FLAG_MORE) {
      this.#msgParts.push(plaintext);
      return;
    }
    if (this.#msgParts.length === 0) {
      out.push(plaintext);
    } else {
      this.#msgParts.push(plaintext);
      out.push(Buffer.concat(this.#msgParts, this.#msgSize));
      this.#msgParts = [];
    }
    this.#msgSize = 0;
  }

  #consume(buf: Buffer, out: Buffer[]): void {
    let off = 0;
    const end = buf.length;
    while (off < end) {
      if (this.#bodyLen > 0) {
        // Gathering a frame that spans reads; decrypt it in one call once complete. One copy of
        // a split frame costs less than a streaming decipher with a buffer per piece.
        const len = this.#bodyLen;
        const scratch = this.#scratch as Buffer;
        const k = Math.min(len - this.#bodyFill, end - off);
        buf.copy(scratch, FRAME_HEADER_SIZE + this.#bodyFill, off, off + k);
        this.#bodyFill += k;
        off += k;
        if (this.#bodyFill < len) return;
        this.#bodyLen = 0;
        this.#onFrame(this.#recv.decryptWithAd(scratch.subarray(0, FRAME_HEADER_SIZE), scratch.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + len)), out);
        continue;
      }
      let hdrBuf: Buffer;
      let hdrOff: number;
      if (this.#hdrFill === 0 && end - off >= FRAME_HEADER_SIZE) {
        hdrBuf = buf;
        hdrOff = off;
        off += FRAME_HEADER_SIZE;
      } else {
        const k = Math.min(FRAME_HEADER_SIZE - this.#hdrFill, end - off);
        buf.copy(this.#hdr, this.#hdrFill, off, off + k);
        this.#hdrFill += k;
        off += k;
        if (this.#hdrFill < FRAME_HEADER_SIZE) return;
        this.#hdrFill = 0;
        hdrBuf = this.#hdr;
        hdrOff = 0;
      }
      const length = this.#onHeader(hdrBuf, hdrOff);
      if (end - off >= length) {
        // Whole body in this read: one-shot decryption, no copies.
        const pt = this.#recv.decryptWithAd(hdrBuf.subarray(hdrOff, hdrOff + FRAME_HEADER_SIZE), buf.subarray(off, off + length));
        off += length;
        this.#onFrame(pt, out);
      } else {
        let scratch = this.#scratch;
        if (scratch === undefined || scratch.length < FRAME_HEADER_SIZE + length) {
          scratch = this.#scratch = Buffer.allocUnsafe(FRAME_HEADER_SIZE + Math.max(length, 16 * 1024));
        }
        hdrBuf.copy(scratch, 0, hdrOff, hdrOff + FRAME_HEADER_SIZE);
        this.#bodyLen = length;
        this.#bodyFill = 0;
      }
    }
  }
}
