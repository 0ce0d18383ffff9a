/**
 * The pipe layer: one `Pipe` API for TCP and UDP, IPv4 and IPv6, clients and servers.
 * @module
 */
export { Pipe, type SendData } from './pipe.js';
export { MessageHub, type CloseCallback, type ErrorCallback } from './hub.js';
export { TcpPipe, BURST_TAIL_HOLD_MS } from './tcp.js';
export { TcpServer, type ConnectionCallback } from './tcp-server.js';
export { UdpPipe } from './udp.js';
export { pipeOpen } from './open.js';
export { compileSub, type Matcher } from './sub-queue.js';
export { LengthDecoder, LineDecoder, encodeFrame, type FrameDecoder } from './framing.js';
export * from './types.js';
export { Daemon, type ListenSpec, type SkippedBind } from './daemon.js';
