/**
 * PCP (RFC 6887 §7.3, §13) options: THIRD_PARTY, PREFER_FAILURE, FILTER and unknown ones,
 * encoded and decoded (code(8) | reserved(8) | length(16) | data, padded to 4 bytes). Part of
 * the PCP codec (`pcp-codec.ts`): decoders throw only {@link DecodeError}, encoders
 * {@link InvalidArgumentError} or {@link MessageTooBigError}.
 * @module
 */
import { DecodeError, InvalidArgumentError, MessageTooBigError } from '../../errors.js';
import { PCP_HEADER_SIZE, PCP_MAX_MESSAGE_SIZE, PcpOptionCode, pcpOptionName } from './pcp-constants.js';
import { bytes16ToIp, checkBytes, checkU16, checkU8, ipToBytes16, rdBytes, rdU16, wrU16 } from './wire.js';

/** THIRD_PARTY (code 1, §13.1): the internal address the request is made on behalf of. */
export interface PcpThirdPartyOption {
  /** Discriminant. */
  type: 'third-party';
  /** The internal address the mapping is for. */
  internalAddress: string;
}
/** PREFER_FAILURE (code 2, §13.2): fail rather than map a port other than the suggested one. */
export interface PcpPreferFailureOption {
  /** Discriminant. */
  type: 'prefer-failure';
}
/** FILTER (code 3, §13.3): only let `remotePeerAddress/prefixLength`:`remotePeerPort` in. */
export interface PcpFilterOption {
  /** Discriminant. */
  type: 'filter';
  /** Prefix length over the 128-bit (IPv4-mapped) address, 0-128; 0 removes all filters. */
  prefixLength: number;
  /** Remote port, 0 = all ports. */
  remotePeerPort: number;
  /** Remote peer address (IPv4 or IPv6). */
  remotePeerAddress: string;
}
/** Any other option, kept as raw data (its length is `data.length`, padding excluded). */
export interface PcpUnknownOption {
  /** Discriminant. */
  type: 'unknown';
  /** Option code. */
  code: number;
  /** Option data, padding excluded. */
  data: Uint8Array;
}
/** A PCP option. */
export type PcpOption = PcpThirdPartyOption | PcpPreferFailureOption | PcpFilterOption | PcpUnknownOption;

const OPTION_DATA_LEN: Record<number, number> = { 1: 16, 2: 0, 3: 20 };

function optionWireSize(o: PcpOption): number {
  const len = o.type === 'third-party' ? 16 : o.type === 'prefer-failure' ? 0 : o.type === 'filter' ? 20 : o.data.length;
  return 4 + ((len + 3) & ~3);
}

function checkOption(o: PcpOption): void {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('PCP option must be an object');
  switch (o.type) {
    case 'third-party':
      ipToBytes16(o.internalAddress);
      return;
    case 'prefer-failure':
      return;
    case 'filter':
      if (checkU8(o.prefixLength, 'FILTER prefix length') > 128) throw new InvalidArgumentError(`invalid FILTER prefix length ${o.prefixLength} (max 128)`);
      checkU16(o.remotePeerPort, 'FILTER remote peer port');
      ipToBytes16(o.remotePeerAddress);
      return;
    case 'unknown':
      checkU8(o.code, 'option code');
      if (OPTION_DATA_LEN[o.code] !== undefined) {
        throw new InvalidArgumentError(`option code ${o.code} (${pcpOptionName(o.code)}) must use its typed form`);
      }
      if (!(o.data instanceof Uint8Array)) throw new InvalidArgumentError('unknown PCP option data must be a Uint8Array');
      if (o.data.length > PCP_MAX_MESSAGE_SIZE) throw new MessageTooBigError(`PCP option data of ${o.data.length} bytes is too big`);
      return;
    default:
      throw new InvalidArgumentError(`invalid PCP option type: ${String((o as { type: unknown }).type)}`);
  }
}

function writeOption(buf: Uint8Array, off: number, o: PcpOption): number {
  let code: number;
  let data: Uint8Array;
  switch (o.type) {
    case 'third-party':
      code = PcpOptionCode.THIRD_PARTY;
      data = ipToBytes16(o.internalAddress);
      break;
    case 'prefer-failure':
      code = PcpOptionCode.PREFER_FAILURE;
      data = new Uint8Array(0);
      break;
    case 'filter':
      code = PcpOptionCode.FILTER;
      data = new Uint8Array(20);
      data[1] = o.prefixLength;
      wrU16(data, 2, o.remotePeerPort);
      data.set(ipToBytes16(o.remotePeerAddress), 4);
      break;
    default:
      code = o.code;
      data = o.data;
  }
  buf[off] = code;
  buf[off + 1] = 0;
  wrU16(buf, off + 2, data.length);
  buf.set(data, off + 4);
  return off + 4 + ((data.length + 3) & ~3);
}

/**
 * Decodes the options in `buf[off..end)`. Each option must fit (with its padding), and
 * THIRD_PARTY / PREFER_FAILURE / FILTER must have their fixed lengths (16 / 0 / 20).
 * Padding and reserved bytes are ignored.
 */
export function decodePcpOptions(buf: Uint8Array, off = 0, end = buf.length): PcpOption[] {
  checkBytes(buf, 'PCP options');
  if (end > buf.length || off < 0 || off > end) throw new DecodeError('PCP options: bad range');
  const out: PcpOption[] = [];
  const what = 'PCP option';
  while (off < end) {
    if (end - off < 4) throw new DecodeError(`PCP option header truncated: ${end - off} bytes left`);
    const code = buf[off] as number;
    const len = rdU16(buf, off + 2, what);
    const padded = (len + 3) & ~3;
    if (off + 4 + padded > end) {
      throw new DecodeError(`PCP option ${pcpOptionName(code)} (length ${len}) runs past the end of the message`);
    }
    const fixed = OPTION_DATA_LEN[code];
    if (fixed !== undefined && len !== fixed) {
      throw new DecodeError(`PCP option ${pcpOptionName(code)} must have length ${fixed}, got ${len}`);
    }
    const d = off + 4;
    switch (code) {
      case PcpOptionCode.THIRD_PARTY:
        out.push({ type: 'third-party', internalAddress: bytes16ToIp(buf, d) });
        break;
      case PcpOptionCode.PREFER_FAILURE:
        out.push({ type: 'prefer-failure' });
        break;
      case PcpOptionCode.FILTER: {
        const prefixLength = buf[d + 1] as number;
        if (prefixLength > 128) throw new DecodeError(`PCP FILTER prefix length ${prefixLength} exceeds 128`);
        out.push({ type: 'filter', prefixLength, remotePeerPort: rdU16(buf, d + 2, what), remotePeerAddress: bytes16ToIp(buf, d + 4) });
        break;
      }
      default:
        out.push({ type: 'unknown', code, data: rdBytes(buf, d, len, what) });
    }
    off = d + padded;
  }
  return out;
}

/** Encodes a list of options (each padded to 4 bytes). */
export function encodePcpOptions(options: readonly PcpOption[]): Buffer {
  if (!Array.isArray(options)) throw new InvalidArgumentError('PCP options must be an array');
  for (const o of options) checkOption(o);
  const size = options.reduce((n, o) => n + optionWireSize(o), 0);
  if (size > PCP_MAX_MESSAGE_SIZE - PCP_HEADER_SIZE) throw new MessageTooBigError(`PCP options take ${size} bytes, too many for a 1100-byte message`);
  const buf = Buffer.alloc(size);
  let off = 0;
  for (const o of options) off = writeOption(buf, off, o);
  return buf;
}
