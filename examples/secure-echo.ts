/**
 * Encrypted echo on loopback: peer A listens with `listenSecure` and echoes every message;
 * peer B connects with `connectSecure`, pinning A's node id, and sends a few messages (one
 * of 1 MiB). Both ends learn the other's authenticated node id from the Noise XX handshake.
 *
 * Run: npx tsx examples/secure-echo.ts
 */
import { connectSecure, Identity, listenSecure, formatEndpoint } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the demo did, for the test that runs it. */
export interface SecureEchoResult {
  /** A's node id (hex), as B authenticated it. */
  serverId: string;
  /** B's node id (hex), as A authenticated it. */
  clientId: string;
  /** Whether both ends computed the same handshake hash. */
  sameHandshakeHash: boolean;
  /** Sizes of the messages echoed back intact. */
  echoed: number[];
}

export async function main(log: (line: string) => void = console.log): Promise<SecureEchoResult> {
  const a = Identity.generate();
  const b = Identity.generate();
  let serverSideHash: Buffer | undefined;
  let clientSeenByServer = '';

  // Peer A: every secured connection echoes what it receives. `onMessage` is the callback of
  // each secure pipe (registered before any message arrives).
  await using server = await listenSecure('127.0.0.1:0', {
    identity: a,
    onPipe: (pipe) => {
      serverSideHash = pipe.handshakeHash;
      clientSeenByServer = pipe.remoteIdHex;
      log(`A: secured connection from ${formatEndpoint(pipe.remote)}, peer ${pipe.remoteIdHex.slice(0, 16)}…`);
    },
    onMessage: (msg) => msg.pipe.send(msg.data),
  });
  log(`A: node ${a.idHex.slice(0, 16)}… listening on ${formatEndpoint(server.local)}`);

  // Peer B: connect, pinning A's id; a different peer would fail with PeerIdMismatchError.
  const pipe = await connectSecure(server.local, { identity: b, remoteId: a.id, timeout: 5000 });
  log(`B: connected to ${pipe.remoteIdHex.slice(0, 16)}… (${pipe.proto}, framing '${pipe.framing}', max message ${pipe.maxMessageSize} bytes)`);

  const echoed: number[] = [];
  const messages = [Buffer.from('hello, encrypted world'), Buffer.alloc(0), Buffer.alloc(1024 * 1024, 0x5a)];
  for (const m of messages) {
    await pipe.send(m);
    const reply = await pipe.recv({ timeout: 5000 });
    if (!reply.data.equals(m)) throw new Error(`echo of ${m.length} bytes came back different`);
    echoed.push(reply.data.length);
    log(`B: ${m.length} bytes echoed back intact`);
  }
  await pipe.close(); // sends the authenticated close, then the TCP FIN
  log(`B: closed; sent ${pipe.stats.bytesOut} bytes of plaintext as ${pipe.inner.stats.bytesOut} bytes on the wire`);

  return {
    serverId: pipe.remoteIdHex,
    clientId: clientSeenByServer,
    sameHandshakeHash: serverSideHash !== undefined && serverSideHash.equals(pipe.handshakeHash),
    echoed,
  };
}

runMain(import.meta.url, () => main());
