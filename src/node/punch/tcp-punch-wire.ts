/**
 * Wire format of the short exchange that opens every connection a TCP hole punch produces,
 * before the connection is handed to the application:
 *
 * ```
 * hello / select (32 bytes)
 *  0  4 B  magic "P2TP"
 *  4  u8   version 1
 *  5  u8   type: 1 hello, 2 select
 *  6  u16  zero
 *  8  8 B  sender's tie-breaker (random per attempt; the larger one selects the connection)
 * 16  16 B HMAC-SHA256(K, bytes 0..15) truncated, K = HMAC-SHA256(nonce, "p2pd tcp punch v1")
 * ```
 *
 * Each side sends a HELLO as soon as a connection is up (whether its `connect()` succeeded,
 * by simultaneous open or not, or its listener accepted it). A HELLO with a bad MAC (a
 * stray connection to the punch port, another session) or our own tie-breaker (a socket
 * connected to itself) rejects the connection. The side with the larger tie-breaker sends
 * SELECT on the first connection it verified; both keep that one and close the others.
 * Decoding never throws: {@link decodeTcpPunch} classifies the input.
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import { MAX_NONCE_LENGTH, MIN_NONCE_LENGTH } from './punch-wire.js';

/** First bytes of every frame ("P2TP"). */
export const TCP_PUNCH_MAGIC: Buffer = Buffer.from('P2TP', 'ascii');
/** Version of the exchange. */
export const TCP_PUNCH_VERSION = 1;
/** Frame types. */
export const TCP_PUNCH_HELLO = 1;
export const TCP_PUNCH_SELECT = 2;
/** Size of a frame. */
export const TCP_PUNCH_FRAME_SIZE = 32;
/** Size of a tie-breaker. */
export const TCP_PUNCH_TIEBREAKER_SIZE = 8;

const MAC_OFFSET = 16;
const MAC_SIZE = 16;
const LABEL = Buffer.from('p2pd tcp punch v1', 'utf8');

/** Outcome of {@link decodeTcpPunch}. */
export type TcpPunchFrame =
  | { kind: 'frame'; type: typeof TCP_PUNCH_HELLO | typeof TCP_PUNCH_SELECT; tiebreaker: Buffer }
  | { kind: 'malformed' }
  | { kind: 'unauthenticated' };

/** The per-session key derived from the nonce shared through signalling. */
export class TcpPunchKey {
  readonly #key: Buffer;

  /** Throws {@link InvalidArgumentError} unless `nonce` is 16–1024 bytes. */
  constructor(nonce: Uint8Array) {
    if (!(nonce instanceof Uint8Array) || nonce.length < MIN_NONCE_LENGTH || nonce.length > MAX_NONCE_LENGTH) {
      throw new InvalidArgumentError(`nonce must be ${MIN_NONCE_LENGTH}-${MAX_NONCE_LENGTH} bytes`);
    }
    this.#key = createHmac('sha256', nonce).update(LABEL).digest();
  }

  /** The truncated MAC of `head` (bytes 0..15 of a frame). */
  mac(head: Uint8Array): Buffer {
    return createHmac('sha256', this.#key).update(head).digest().subarray(0, MAC_SIZE);
  }
}

/** Encodes a HELLO or SELECT carrying `tiebreaker` (8 bytes). */
export function encodeTcpPunch(key: TcpPunchKey, type: typeof TCP_PUNCH_HELLO | typeof TCP_PUNCH_SELECT, tiebreaker: Uint8Array): Buffer {
  if (tiebreaker.length !== TCP_PUNCH_TIEBREAKER_SIZE) throw new InvalidArgumentError(`tie-breaker must be ${TCP_PUNCH_TIEBREAKER_SIZE} bytes`);
  const b = Buffer.alloc(TCP_PUNCH_FRAME_SIZE);
  TCP_PUNCH_MAGIC.copy(b, 0);
  b[4] = TCP_PUNCH_VERSION;
  b[5] = type;
  b.set(tiebreaker, 8);
  key.mac(b.subarray(0, MAC_OFFSET)).copy(b, MAC_OFFSET);
  return b;
}

/** Classifies a {@link TCP_PUNCH_FRAME_SIZE}-byte frame: a valid HELLO/SELECT, malformed, or failing authentication. */
export function decodeTcpPunch(key: TcpPunchKey, data: Uint8Array): TcpPunchFrame {
  if (data.length !== TCP_PUNCH_FRAME_SIZE) return { kind: 'malformed' };
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!b.subarray(0, 4).equals(TCP_PUNCH_MAGIC) || b[4] !== TCP_PUNCH_VERSION || b.readUInt16BE(6) !== 0) return { kind: 'malformed' };
  const type = b[5];
  if (type !== TCP_PUNCH_HELLO && type !== TCP_PUNCH_SELECT) return { kind: 'malformed' };
  if (!timingSafeEqual(key.mac(b.subarray(0, MAC_OFFSET)), b.subarray(MAC_OFFSET))) return { kind: 'unauthenticated' };
  return { kind: 'frame', type, tiebreaker: Buffer.from(b.subarray(8, 8 + TCP_PUNCH_TIEBREAKER_SIZE)) };
}
