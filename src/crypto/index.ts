/**
 * Cryptography of p2pd: node identities (Ed25519), the Noise XX handshake
 * (`Noise_XX_25519_ChaChaPoly_SHA256`) with identity proof, and the encrypted framing used
 * after it. Transport-independent; only `node:crypto`.
 * @module
 */
export {
  Identity,
  IdentityFileError,
  InsecureKeyFileError,
  idFromPublicKey,
  parseNodeId,
  ID_LENGTH,
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  IDENTITY_FILE_TYPE,
  IDENTITY_FILE_VERSION,
  IDENTITY_FILE_MAX_SIZE,
  type IdentitySaveOptions,
  type IdentityLoadOptions,
} from './identity.js';
export {
  CipherState,
  SymmetricState,
  XXHandshakeState,
  generateX25519KeyPair,
  x25519KeyPairFromPrivate,
  x25519,
  hkdf2,
  NOISE_PROTOCOL_NAME,
  NOISE_MAX_MESSAGE,
  NOISE_MAX_PLAINTEXT,
  NOISE_TAG_SIZE,
  DH_LEN,
  HASH_LEN,
  type X25519KeyPair,
  type XXHandshakeOptions,
  type HandshakeSplit,
} from './noise.js';
export {
  encodeHandshakePayload,
  decodeHandshakePayload,
  verifyHandshakePayload,
  clearVerifiedPayloadCache,
  createHandshakePayload,
  noiseStaticCredential,
  staticKeySignedData,
  PAYLOAD_VERSION,
  STATIC_KEY_SIGNATURE_PREFIX,
  MAX_PAYLOAD_EXTENSIONS,
  MAX_PAYLOAD_SIZE,
  PAYLOAD_FIXED_SIZE,
  type HandshakePayload,
  type VerifiedPeer,
  type NoiseStaticCredential,
} from './handshake-payload.js';
export {
  SecureHandshake,
  performHandshake,
  DEFAULT_PROLOGUE,
  type SecureHandshakeOptions,
  type SecureHandshakeResult,
  type HandshakeTransport,
} from './handshake.js';
export {
  SecureChannel,
  FrameDecoder,
  MessageReassembler,
  encryptFrame,
  decryptFrame,
  encryptMessage,
  encryptedMessageSize,
  encodeHandshakeFrame,
  decodeHandshakeFrame,
  parseFrameHeader,
  FRAME_HEADER_SIZE,
  FRAME_FLAG_MORE,
  FRAME_FLAG_CLOSE,
  FRAME_OVERHEAD,
  MAX_FRAME_SIZE,
  MAX_SECURE_MESSAGE,
  type DecryptedFrame,
  type SecureChannelOptions,
} from './transport.js';
