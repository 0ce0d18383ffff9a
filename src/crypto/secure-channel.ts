/**
 * {@link SecureChannel}: the encrypted transport of one secure stream after its handshake,
 * in the frame format of `frames.ts` (chunked messages, authenticated close).
 * @module
 */
import { DecryptError, FrameError, InvalidArgumentError, MessageTooBigError } from '../errors.js';
import { asBuffer } from './bytes.js';
import type { CipherState } from './cipher-state.js';
import {
  encryptFrame,
  encryptMessage,
  FRAME_FLAG_CLOSE,
  FRAME_FLAG_MORE,
  FRAME_HEADER_SIZE,
  KNOWN_FRAME_FLAGS,
  MAX_FRAME_BODY,
  MAX_SECURE_MESSAGE,
  messageChunkCount,
  parseFrameHeader,
  writeFrameHeader,
  type FrameDecoder,
} from './frames.js';
import { NOISE_TAG_SIZE } from './noise-constants.js';

/** Options of {@link SecureChannel}. */
export interface SecureChannelOptions {
  /** Largest message accepted and sent (bytes). @default {@link MAX_SECURE_MESSAGE} (16 MiB) */
  maxMessageSize?: number;
}

/**
 * The post-handshake transport state of one secure stream: turns messages into wire bytes
 * and wire bytes back into messages. Both directions are independent. Messages must be
 * encrypted in the order they are written and bytes fed in the order they arrive.
 *
 * Receiving: a frame that lies within one read is decrypted in place (no copy); a frame split
 * across reads is gathered into a reused scratch buffer (at most one frame, 256 KiB) and
 * decrypted in one call, which measures cheaper than a streaming decipher that allocates a
 * buffer per piece. A message is only returned once every one of its frames has authenticated.
 * After the handshake, feed any bytes already buffered past the last handshake frame
 * ({@link FrameDecoder.drain}) to {@link decrypt} first.
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
  #scratch: Buffer | undefined; // grows to the largest split frame seen (≤ MAX_FRAME_SIZE)
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
      writeFrameHeader(hdr, hdr.length - FRAME_HEADER_SIZE, last ? 0 : FRAME_FLAG_MORE, n + NOISE_TAG_SIZE);
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
    const length = ((buf[off + 1] as number) << 16) | ((buf[off + 2] as number) << 8) | (buf[off + 3] as number);
    if ((flags & ~KNOWN_FRAME_FLAGS) !== 0 || length > MAX_FRAME_BODY) parseFrameHeader(buf, off); // throws the precise FrameError
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
