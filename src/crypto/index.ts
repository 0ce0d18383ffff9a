/**
 * Cryptography of p2pd: node identities (Ed25519), the Noise XX handshake
 * (`Noise_XX_25519_ChaChaPoly_SHA256`) with identity proof, and the encrypted framing used
 * after it. Transport-independent; only `node:crypto`.
 * @module
 */
export {
  Identity,
  idFromPublicKey,
  parseNodeId,
  ID_LENGTH,
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  IDENTITY_FILE_TYPE,
  IDENTITY_FILE_VERSION,
} from './identity.js';
export {
  IdentityFileError,
  InsecureKeyFileError,
  IDENTITY_FILE_MAX_SIZE,
  type IdentitySaveOptions,
  type IdentityLoadOptions,
} from './identity-file.js';
export { XXHandshakeState, type XXHandshakeOptions, type HandshakeSplit } from './noise.js';
export { CipherState } from './cipher-state.js';
export { SymmetricState, hkdf2 } from './symmetric-state.js';
export { generateX25519KeyPair, x25519KeyPairFromPrivate, x25519, type X25519KeyPair } from './x25519.js';
export { NOISE_PROTOCOL_NAME, NOISE_MAX_MESSAGE, NOISE_MAX_PLAINTEXT, NOISE_TAG_SIZE, DH_LEN, HASH_LEN } from './noise-constants.js';
export { takeEphemeralKeyPair, resetEphemeralPool, ephemeralPoolStats, holdEphemeralRefill, releaseEphemeralRefill, type EphemeralPoolStats } from './ephemeral.js';
export { STATIC_KEY_HINT_HOSTS, staticKeyHintStats, clearStaticKeyHints, type StaticKeyHintStats } from './static-key-hints.js';
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
export { SecureChannel, type SecureChannelOptions } from './secure-channel.js';
export {
  FrameDecoder,
  MessageReassembler,
  encryptFrame,
  decryptFrame,
  encryptMessage,
  encryptedMessageSize,
  messageChunkCount,
  messageChunkSizes,
  encodeHandshakeFrame,
  decodeHandshakeFrame,
  parseFrameHeader,
  FRAME_HEADER_SIZE,
  FRAME_FLAG_MORE,
  FRAME_FLAG_CLOSE,
  FRAME_OVERHEAD,
  MAX_FRAME_SIZE,
  MAX_FRAME_BODY,
  MAX_FRAME_PLAINTEXT,
  MAX_SECURE_MESSAGE,
  type DecryptedFrame,
} from './frames.js';
export {
  SecurePipe,
  SecureServer,
  secure,
  secureServer,
  connectSecure,
  listenSecure,
  DEFAULT_HANDSHAKE_TIMEOUT,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  type SecureOptions,
  type ConnectSecureOptions,
  type SecureServerOptions,
  type SecureServerStats,
  type ListenSecureOptions,
} from './secure-pipe.js';
