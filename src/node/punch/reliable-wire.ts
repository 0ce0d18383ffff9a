/**
 * Wire format of reliable-stream packets, and 32-bit sequence arithmetic.
 *
 * ```
 *  0  u8   magic 0xD2
 *  1  u8   flags: SYN 1, ACK 2, FIN 4, RST 8, PING 16 (other bits must be 0)
 *  2  u32  conversation id (non-zero; chosen at random by the initiator)
 *  6  u32  seq: sequence number of this segment (SYN, each data segment and FIN use one)
 * 10  u32  ack: next sequence number expected from the peer (cumulative; 0 without ACK)
 * 14  u16  wnd: segments the sender can still receive beyond `ack`
 * 16  u32  ts: sender's clock (µs, wrapping)
 * 20  u32  tsEcho: the `ts` of the latest segment received from the peer (RTT measurement)
 * 24  u8   n: number of SACK blocks (≤ 4)
 * 25  n ×  (u32 start, u32 end): segments [start, end) received beyond `ack`
 *  …  payload: data segments; SYN: u16 = the largest payload the sender accepts (MSS)
 * ```
 *
 * A packet with neither payload nor SYN/FIN is a pure acknowledgement (it uses no sequence
 * number). Decoding is strict (see {@link decodeReliable}) and reports malformed input with
 * a `DecodeError`; it never throws anything else.
 * @module
 */
import { DecodeError } from '../../errors.js';

/** First byte of every reliable-stream packet (0xD1 is hole punching). */
export const RELIABLE_MAGIC = 0xd2;
/** Flag: opens a conversation; carries the sender's initial sequence number and MSS. */
export const FLAG_SYN = 1;
/** Flag: the `ack` and SACK fields are valid (required on every packet but a SYN or an RST). */
export const FLAG_ACK = 2;
/** Flag: the sender has no more data (uses one sequence number; no payload). */
export const FLAG_FIN = 4;
/** Flag: aborts the conversation at once (combines only with ACK; no payload). */
export const FLAG_RST = 8;
/** Flag: keep-alive or zero-window probe that asks the peer to acknowledge (requires ACK). */
export const FLAG_PING = 16;
const KNOWN_FLAGS = FLAG_SYN | FLAG_ACK | FLAG_FIN | FLAG_RST | FLAG_PING;
/** Fixed header size. */
export const HEADER_SIZE = 25;
/** SACK blocks per packet at most. */
export const MAX_SACK_BLOCKS = 4;
/** Largest header (with every SACK block). */
export const MAX_HEADER_SIZE = HEADER_SIZE + 8 * MAX_SACK_BLOCKS;
/** Largest SACK block (segments). */
export const MAX_SACK_SPAN = 0xffff;
/** Largest payload of one packet that fits a UDP datagram. */
export const MAX_RELIABLE_PAYLOAD = 65507 - MAX_HEADER_SIZE;
/** Smallest MSS a SYN may announce. */
export const MIN_MSS = 64;

/** A SACK block: segments `[start, end)` (sequence numbers, wrapping). */
export interface SackBlock {
  start: number;
  end: number;
}

/** One packet. */
export interface ReliablePacket {
  flags: number;
  conv: number;
  seq: number;
  ack: number;
  wnd: number;
  ts: number;
  tsEcho: number;
  sacks: SackBlock[];
  payload: Buffer;
}

/** `a − b` as a signed 32-bit distance (serial number arithmetic). */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** `a + n` modulo 2³². */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** Whether `data` starts like a reliable-stream packet (cheap demultiplexing test). */
export function isReliablePacket(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === RELIABLE_MAGIC;
}

/** Encodes a packet. The caller keeps fields in range (u32 / u16, ≤ 4 SACK blocks). */
export function encodeReliable(p: ReliablePacket): Buffer {
  const n = Math.min(p.sacks.length, MAX_SACK_BLOCKS);
  const hl = HEADER_SIZE + 8 * n;
  const b = Buffer.allocUnsafe(hl + p.payload.length);
  b[0] = RELIABLE_MAGIC;
  b[1] = p.flags;
  b.writeUInt32BE(p.conv >>> 0, 2);
  b.writeUInt32BE(p.seq >>> 0, 6);
  b.writeUInt32BE(p.ack >>> 0, 10);
  b.writeUInt16BE(p.wnd & 0xffff, 14);
  b.writeUInt32BE(p.ts >>> 0, 16);
  b.writeUInt32BE(p.tsEcho >>> 0, 20);
  b[24] = n;
  for (let i = 0; i < n; i++) {
    const s = p.sacks[i] as SackBlock;
    b.writeUInt32BE(s.start >>> 0, HEADER_SIZE + 8 * i);
    b.writeUInt32BE(s.end >>> 0, HEADER_SIZE + 8 * i + 4);
  }
  p.payload.copy(b, hl);
  return b;
}

function bad(why: string): never {
  throw new DecodeError(`malformed reliable-stream packet: ${why}`);
}

/**
 * Decodes a packet. Throws {@link DecodeError} when it is malformed: too short, wrong magic,
 * unknown flags, conversation 0, too many or inconsistent SACK blocks, an impossible flag
 * combination (SYN with FIN/RST/PING, RST with anything but ACK, PING without ACK), a
 * payload on FIN/RST, a SYN without its 2-byte MSS (≥ {@link MIN_MSS}), ack fields without ACK. `payload` is a view of `data`.
 */
export function decodeReliable(data: Buffer): ReliablePacket {
  if (data.length < HEADER_SIZE) bad(`${data.length} bytes`);
  if (data[0] !== RELIABLE_MAGIC) bad('magic');
  const flags = data[1] as number;
  if ((flags & ~KNOWN_FLAGS) !== 0) bad('unknown flags');
  const conv = data.readUInt32BE(2);
  if (conv === 0) bad('conversation 0');
  const n = data[24] as number;
  if (n > MAX_SACK_BLOCKS) bad(`${n} SACK blocks`);
  const hl = HEADER_SIZE + 8 * n;
  if (data.length < hl) bad('truncated SACK blocks');
  const seq = data.readUInt32BE(6);
  const ack = data.readUInt32BE(10);
  const tsEcho = data.readUInt32BE(20);
  const payload = data.subarray(hl);
  const has = (f: number): boolean => (flags & f) !== 0;
  if (has(FLAG_SYN) && (has(FLAG_FIN) || has(FLAG_RST) || has(FLAG_PING))) bad('SYN with FIN/RST/PING');
  if (has(FLAG_RST) && (flags & ~(FLAG_RST | FLAG_ACK)) !== 0) bad('RST with other flags');
  if (has(FLAG_PING) && !has(FLAG_ACK)) bad('PING without ACK');
  if (!has(FLAG_SYN) && !has(FLAG_RST) && !has(FLAG_ACK)) bad('no ACK');
  if ((has(FLAG_FIN) || has(FLAG_RST)) && payload.length > 0) bad('payload on FIN/RST');
  if (has(FLAG_SYN) && (payload.length !== 2 || payload.readUInt16BE(0) < MIN_MSS)) bad('SYN without a valid MSS');
  if (!has(FLAG_ACK) && (ack !== 0 || n !== 0)) bad('ack fields without ACK');
  if (has(FLAG_SYN) && n !== 0) bad('SACK on SYN');
  if (payload.length > MAX_RELIABLE_PAYLOAD) bad('payload too large');
  const sacks: SackBlock[] = [];
  for (let i = 0; i < n; i++) {
    const start = data.readUInt32BE(HEADER_SIZE + 8 * i);
    const end = data.readUInt32BE(HEADER_SIZE + 8 * i + 4);
    const span = seqDiff(end, start);
    if (span <= 0 || span > MAX_SACK_SPAN) bad('empty or oversized SACK block');
    if (seqDiff(start, ack) <= 0) bad('SACK block not beyond ack');
    sacks.push({ start, end });
  }
  return { flags, conv, seq, ack, wnd: data.readUInt16BE(14), ts: data.readUInt32BE(16), tsEcho, sacks, payload };
}
