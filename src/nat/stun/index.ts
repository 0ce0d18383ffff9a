/**
 * p2pd's own STUN/TURN codec: RFC 8489/5389 messages, RFC 3489 classic decoding, RFC 5780
 * NAT-behaviour attributes, RFC 8656 TURN attributes and ChannelData, TCP stream framing,
 * MESSAGE-INTEGRITY(-SHA256), FINGERPRINT and credential keys.
 * @module
 */
export * from './constants.js';
export {
  type AttrContext, type ChangeRequest, type EvenPort, type KnownAttributeType, type KnownStunAttribute,
  type RawStunAttribute, type StunAttribute, type StunAttributeValues, type StunErrorValue,
  decodeAttribute, encodeAttributeValue, isKnownAttribute,
} from './attributes.js';
export {
  type DecodedStunMessage, type EncodeStunOptions, type ProtectionOffsets, type StunMessage,
  decodeStun, encodeStun, getAttr, getAttrs, isStun, messageType, newTransactionId, parseMessageType,
  stunErrorOf, verifyFingerprint, verifyIntegrity,
} from './message.js';
export {
  type PasswordAlgorithm, type StunKey,
  crc32, fingerprintOf, longTermKey, prepareCredential, shortTermKey, userHash,
} from './integrity.js';
export {
  type ChannelData, type PacketKind,
  CHANNEL_DATA_HEADER_SIZE, CHANNEL_MAX, CHANNEL_MIN, MAX_CHANNEL_DATA_PAYLOAD,
  channelDataSize, classifyPacket, decodeChannelData, encodeChannelData, isValidChannel,
} from './channel-data.js';
export {
  type StreamFrame, type StreamSplitterOptions,
  DEFAULT_MAX_STREAM_FRAME, StunStreamSplitter, splitStunStream, streamFrameSize,
} from './stream.js';
export { bytesToIp, ipToBytes } from '../../interfaces/ip.js';
export { StunTransport, type StunReceived, type TransactionOptions, type PacketListener, type StunPacket, STUN_RTO, STUN_MAX_TRIES, STUN_RM, STUN_TCP_TIMEOUT, MAX_PENDING_TRANSACTIONS } from './transport.js';
export { StunError } from '../../errors.js';
export {
  type BindingOptions, type StunClientOptions, type StunMapping,
  STUN_PORT, STUN_SOFTWARE, ATTR_XOR_MAPPED_ADDRESS_OLD, TCP_CLOSE_GRACE, StunClient, parseBindingResponse, parseStunServer,
  randomTransactionId, sourceAddressFor, stunGetMapping,
} from './client.js';
export {
  type StunServerOptions, type StunServerStats,
  DEFAULT_MAX_REQUEST_SIZE, DEFAULT_MAX_STUN_CONNECTIONS, DEFAULT_STUN_RATE_LIMIT, DEFAULT_STUN_TCP_IDLE, MAX_RATE_ENTRIES, MAX_STUN_TCP_UNSENT, STUN_ALT_PORT,
  StunServer, describeStunServer, startStunServer,
} from './server.js';
