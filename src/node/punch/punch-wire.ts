/**
 * Wire format of hole-punching packets: authenticated probes and acks, and bare keep-alives.
 *
 * ```
 * probe / ack (40 bytes)                       keep-alive (4 bytes)
 *  0  u8   magic 0xD1                           0  u8  magic 0xD1
 *  1  u8   type: 1 probe, 2 ack                 1  u8  type 3
 *  2  u8   flags: bit 0 = nominate (probes)     2  u16 zero
 *  3  u8   zero
 *  4  8 B  transaction id (an ack echoes the probe's)
 * 12  8 B  sender's tie-breaker (random per attempt; the larger one nominates the path)
 * 20  u32  sender's measured RTT in µs (nominations; else 0)
 * 24  16 B HMAC-SHA256(K, bytes 0..23) truncated, K = HMAC-SHA256(nonce, "p2pd punch v1")
 * ```
 *
 * The first byte (0xD1) is outside every range RFC 7983 assigns (STUN 0–3, DTLS 20–63, TURN
 * ChannelData 64–79, RTP 128–191), so punch traffic shares a socket with STUN/TURN and with
 * reliable streams (0xD2). Decoding never throws: {@link decodePunch} classifies the input.
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';

/** First byte of every punch packet. */
export const PUNCH_MAGIC = 0xd1;
/** Packet type: an authenticated connectivity probe (may nominate the path). */
export const PUNCH_PROBE = 1;
/** Packet type: an authenticated answer to a probe, echoing its transaction id. */
export const PUNCH_ACK = 2;
/** Packet type: a bare 4-byte keep-alive that holds the NAT mapping open. */
export const PUNCH_KEEPALIVE = 3;
/** Probe flag: the sender (controlling side) nominates this path. */
export const PUNCH_FLAG_NOMINATE = 1;
/** Size of a probe or ack. */
export const PUNCH_PACKET_SIZE = 40;
/** Size of a keep-alive. */
export const PUNCH_KEEPALIVE_SIZE = 4;
/** Smallest accepted session nonce (bytes). */
export const MIN_NONCE_LENGTH = 16;
/** Largest accepted session nonce (bytes). */
export const MAX_NONCE_LENGTH = 1024;

const MAC_OFFSET = 24;
const MAC_SIZE = 16;
const LABEL = Buffer.from('p2pd punch v1', 'utf8');

/** A decoded probe or ack. */
export interface PunchPacket {
  /** {@link PUNCH_PROBE} or {@link PUNCH_ACK}. */
  type: typeof PUNCH_PROBE | typeof PUNCH_ACK;
  /** Whether a probe nominates the path. */
  nominate: boolean;
  /** 8-byte transaction id. */
  txid: Buffer;
  /** 8-byte tie-breaker of the sender. */
  tiebreaker: Buffer;
  /** Sender's RTT estimate (µs), 0 when unknown. */
  rttUs: number;
}

/** Outcome of {@link decodePunch}. */
export type PunchDecodeResult =
  | { kind: 'packet'; packet: PunchPacket }
  | { kind: 'keepalive' }
  | { kind: 'malformed' }
  | { kind: 'unauthenticated' };

/** The per-session authentication key derived from the nonce shared through signalling. */
export class PunchKey {
  readonly #key: Buffer;

  /** Throws {@link InvalidArgumentError} unless `nonce` is 16–1024 bytes. */
  constructor(nonce: Uint8Array) {
    if (!(nonce instanceof Uint8Array) || nonce.length < MIN_NONCE_LENGTH || nonce.length > MAX_NONCE_LENGTH) {
      throw new InvalidArgumentError(`nonce must be a Uint8Array of ${MIN_NONCE_LENGTH}-${MAX_NONCE_LENGTH} bytes`);
    }
    this.#key = createHmac('sha256', nonce).update(LABEL).digest();
  }

  /** @internal The truncated MAC of `header`. */
  mac(header: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(header).digest().subarray(0, MAC_SIZE);
  }
}

/** Encodes an authenticated probe or ack. */
export function encodePunch(key: PunchKey, p: PunchPacket): Buffer {
  const b = Buffer.alloc(PUNCH_PACKET_SIZE);
  b[0] = PUNCH_MAGIC;
  b[1] = p.type;
  b[2] = p.nominate && p.type === PUNCH_PROBE ? PUNCH_FLAG_NOMINATE : 0;
  p.txid.copy(b, 4, 0, 8);
  p.tiebreaker.copy(b, 12, 0, 8);
  b.writeUInt32BE(Math.min(0xffffffff, Math.max(0, Math.round(p.rttUs))) >>> 0, 20);
  key.mac(b.subarray(0, MAC_OFFSET)).copy(b, MAC_OFFSET);
  return b;
}

/** The 4-byte keep-alive (unauthenticated: receivers drop it, it only refreshes NAT bindings). */
export function encodeKeepAlive(): Buffer {
  return Buffer.from([PUNCH_MAGIC, PUNCH_KEEPALIVE, 0, 0]);
}

/** Whether `data` starts like a punch packet (cheap demultiplexing test). */
export function isPunchPacket(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === PUNCH_MAGIC;
}

/**
 * Decodes and authenticates a punch packet. Strict: exact sizes, known type, zero reserved
 * bits, nominate only on probes. Never throws.
 */
export function decodePunch(key: PunchKey, data: Buffer): PunchDecodeResult {
  if (data.length < PUNCH_KEEPALIVE_SIZE || data[0] !== PUNCH_MAGIC) return { kind: 'malformed' };
  const type = data[1];
  if (type === PUNCH_KEEPALIVE) {
    return data.length === PUNCH_KEEPALIVE_SIZE && data[2] === 0 && data[3] === 0 ? { kind: 'keepalive' } : { kind: 'malformed' };
  }
  if ((type !== PUNCH_PROBE && type !== PUNCH_ACK) || data.length !== PUNCH_PACKET_SIZE || data[3] !== 0) return { kind: 'malformed' };
  const flags = data[2] as number;
  if ((flags & ~PUNCH_FLAG_NOMINATE) !== 0 || (type === PUNCH_ACK && flags !== 0)) return { kind: 'malformed' };
  const want = key.mac(data.subarray(0, MAC_OFFSET));
  if (!timingSafeEqual(want, data.subarray(MAC_OFFSET, MAC_OFFSET + MAC_SIZE))) return { kind: 'unauthenticated' };
  return {
    kind: 'packet',
    packet: {
      type,
      nominate: flags === PUNCH_FLAG_NOMINATE,
      txid: Buffer.from(data.subarray(4, 12)),
      tiebreaker: Buffer.from(data.subarray(12, 20)),
      rttUs: data.readUInt32BE(20),
    },
  };
}
