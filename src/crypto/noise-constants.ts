/**
 * Sizes and names of `Noise_XX_25519_ChaChaPoly_SHA256` (Noise Protocol Framework,
 * revision 34), shared by the cipher, symmetric and handshake states and by the framing.
 * @module
 */

/** The full Noise protocol name; 32 bytes, so it is used as the initial `h` directly. */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256';
/** Largest Noise message, handshake or transport, in bytes (Noise spec §3). */
export const NOISE_MAX_MESSAGE = 65535;
/** Size of the ChaCha20-Poly1305 authentication tag. */
export const NOISE_TAG_SIZE = 16;
/** Largest plaintext that fits one Noise transport message: 65535 − 16 = 65519. */
export const NOISE_MAX_PLAINTEXT = NOISE_MAX_MESSAGE - NOISE_TAG_SIZE;
/** X25519 public key / shared secret length (DHLEN). */
export const DH_LEN = 32;
/** SHA-256 output length (HASHLEN). */
export const HASH_LEN = 32;
