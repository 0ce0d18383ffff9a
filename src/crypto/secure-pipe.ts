/**
 * Encrypted, authenticated pipes: `secure(tcpPipe, { identity })` runs the p2pd Noise XX
 * handshake (`Noise_XX_25519_ChaChaPoly_SHA256`, static keys vouched for by the node
 * `Identity`) over a raw TCP pipe and returns a {@link SecurePipe}: a `Pipe` with the
 * same API whose messages travel encrypted, length-delimited (boundaries preserved) and
 * bounded by `maxMessageSize`.
 *
 * ```ts
 * const server = await listenSecure('127.0.0.1:0', { identity: serverId, onPipe: (p) => p.onMessage((m) => p.send(m.data)) });
 * const pipe = await connectSecure(server.local, { identity: clientId, remoteId: serverId.id });
 * await pipe.send('hello'); (await pipe.recv()).data; // 'hello'
 * await pipe.close();
 * ```
 *
 * Wire format: the handshake frames and then the encrypted frames of `frames.ts`. `close()`
 * sends an authenticated CLOSE frame before the TCP FIN; a connection that ends without one
 * (the peer crashed, or someone in the middle cut it) closes the pipe with a
 * `PipeClosedError`, never silently.
 *
 * This module gathers the pieces, one mechanism per file:
 * - `secure-pipe-core.ts`: the {@link SecurePipe} class (encrypting send, decrypting receive, close);
 * - `secure-connect.ts`: {@link secure} and {@link connectSecure} (the handshake runner);
 * - `secure-server.ts`: {@link SecureServer}, {@link secureServer} and {@link listenSecure};
 * - `ephemeral.ts`: the pre-generated ephemeral keys the handshakes use.
 * @module
 */
export { SecurePipe, type SecurePipeInit } from './secure-pipe-core.js';
export { secure, connectSecure, DEFAULT_HANDSHAKE_TIMEOUT, type SecureOptions, type ConnectSecureOptions } from './secure-connect.js';
export {
  SecureServer,
  secureServer,
  listenSecure,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  type SecureServerOptions,
  type SecureServerStats,
  type ListenSecureOptions,
} from './secure-server.js';
