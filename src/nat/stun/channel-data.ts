/**
 * TURN ChannelData messages (RFC 8656 §12.4–12.6) and first-byte demultiplexing of STUN,
 * ChannelData and other traffic sharing a port (RFC 7983).
 *
 * A ChannelData message is a 4-byte header (channel number, data length) and the data. Over
 * TCP/TLS it is padded to a multiple of 4 bytes (padding not counted in the length); over UDP
 * padding is optional.
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../../errors.js';

/** Lowest TURN channel number. */
export const CHANNEL_MIN = 0x4000;
/** Highest TURN channel number (RFC 8656; 0x5000–0x7FFF are reserved, unlike RFC 5766). */
export const CHANNEL_MAX = 0x4fff;
/** Size of the ChannelData header. */
export const CHANNEL_DATA_HEADER_SIZE = 4;
/** Largest ChannelData payload (16-bit length field). */
export const MAX_CHANNEL_DATA_PAYLOAD = 0xffff;

/** A decoded ChannelData message. */
export interface ChannelData {
  /** Channel number, {@link CHANNEL_MIN}–{@link CHANNEL_MAX}. */
  channel: number;
  /** Application data (a view into the decoded buffer). */
  data: Uint8Array;
}

/** True for a valid TURN channel number (0x4000–0x4FFF). */
export function isValidChannel(channel: number): boolean {
  return Number.isInteger(channel) && channel >= CHANNEL_MIN && channel <= CHANNEL_MAX;
}

/** Size of a ChannelData message carrying `dataLength` bytes, padded (stream) or not. */
export function channelDataSize(dataLength: number, padded: boolean): number {
  return CHANNEL_DATA_HEADER_SIZE + (padded ? (dataLength + 3) & ~3 : dataLength);
}

/**
 * Encodes a ChannelData message. Set `pad` for TCP/TLS transports (RFC 8656 §12.5 requires
 * 4-byte alignment there); UDP sends it unpadded. Throws {@link InvalidArgumentError}.
 */
export function encodeChannelData(channel: number, data: Uint8Array, opts: { pad?: boolean } = {}): Buffer {
  if (!isValidChannel(channel)) throw new InvalidArgumentError(`invalid TURN channel number ${String(channel)} (0x4000-0x4FFF)`);
  if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('ChannelData payload must be a Uint8Array');
  if (data.length > MAX_CHANNEL_DATA_PAYLOAD) throw new InvalidArgumentError(`ChannelData payload of ${data.length} bytes exceeds ${MAX_CHANNEL_DATA_PAYLOAD}`);
  const out = Buffer.alloc(channelDataSize(data.length, opts.pad === true));
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  out.set(data, CHANNEL_DATA_HEADER_SIZE);
  return out;
}

/**
 * Decodes one ChannelData message filling `buf` (a UDP datagram, or a frame from the TCP
 * splitter). Up to 3 trailing padding bytes (to the next multiple of 4) are accepted and
 * ignored; anything else after the data, a short buffer, or a channel number outside
 * 0x4000–0x4FFF throws {@link DecodeError} (and nothing else).
 */
export function decodeChannelData(buf: Uint8Array): ChannelData {
  if (!(buf instanceof Uint8Array)) throw new DecodeError('ChannelData input is not a byte array');
  if (buf.length < CHANNEL_DATA_HEADER_SIZE) throw new DecodeError(`ChannelData of ${buf.length} bytes is shorter than its header`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const channel = b.readUInt16BE(0);
  if (!isValidChannel(channel)) throw new DecodeError(`invalid TURN channel number 0x${channel.toString(16)}`);
  const length = b.readUInt16BE(2);
  const end = CHANNEL_DATA_HEADER_SIZE + length;
  if (b.length < end) throw new DecodeError(`ChannelData claims ${length} bytes but carries ${b.length - CHANNEL_DATA_HEADER_SIZE}`);
  if (b.length !== end && b.length !== channelDataSize(length, true)) {
    throw new DecodeError(`ChannelData has ${b.length - end} unexpected trailing bytes`);
  }
  return { channel, data: b.subarray(CHANNEL_DATA_HEADER_SIZE, end) };
}

/** What the first byte of a packet says it is (RFC 7983 §7). */
export type PacketKind = 'stun' | 'channel-data' | 'other';

/**
 * Classifies a packet on a port shared by STUN, TURN ChannelData and other protocols by its
 * first byte: 0–3 STUN, 64–79 ChannelData, anything else (DTLS, RTP, …, or empty) `'other'`.
 * A cheap dispatch hint only; the decoders do the validation.
 */
export function classifyPacket(buf: Uint8Array): PacketKind {
  const b = buf.length > 0 ? (buf[0] as number) : -1;
  if (b >= 0 && b <= 3) return 'stun';
  if (b >= 64 && b <= 79) return 'channel-data';
  return 'other';
}
