/**
 * `pipeOpen(proto, dest?, opts?)`: opens a TCP/UDP client (with `dest`) or server (without).
 * @module
 */
import { createSocket } from 'node:dgram';
import { createConnection, createServer, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { InterfaceNotFoundError, InvalidArgumentError } from '../errors.js';
import { checkPort, formatEndpoint, missingZone, nodeHost, parseHost, toEndpoint, type Endpoint, type EndpointLike, type Family } from '../interfaces/endpoint.js';
import { cancellable, checkAbortOptions } from '../util/abort.js';
import { checkMaxMessageSize } from './framing.js';
import { bindError, connectError } from './socket-errors.js';
import { TcpPipe } from './tcp.js';
import { TcpServer } from './tcp-server.js';
import { DEFAULT_CONNECT_TIMEOUT, type BindOptions, type Framing, type PipeOptions, type Proto } from './types.js';
import { UdpPipe } from './udp.js';

/** A resolved local binding. */
interface Binding {
  host: string | undefined;
  scopeId: string | undefined;
  port: number;
  family: Family | undefined;
}

/** Resolves `bind` options (address, port, interface name) into a concrete binding. */
export function resolveBind(bind: PipeOptions['bind'], family: Family | undefined): Binding {
  if (bind === undefined) return { host: undefined, scopeId: undefined, port: 0, family };
  if (typeof bind === 'string') {
    const e = toEndpoint(bind);
    return { host: e.host, scopeId: e.scopeId, port: e.port, family: e.family };
  }
  if (bind === null || typeof bind !== 'object') throw new InvalidArgumentError('bind must be "host:port" or { host?, port?, iface? }');
  const b = bind as BindOptions & { scopeId?: string | number };
  const port = b.port === undefined ? 0 : checkPort(b.port, 'bind port');
  if (b.host !== undefined && b.host !== '') {
    const h = parseHost(b.host);
    const zone = b.scopeId !== undefined ? String(b.scopeId) : h.scopeId ?? (h.host.startsWith('fe80') ? b.iface : undefined);
    return { host: h.host, scopeId: zone, port, family: h.family };
  }
  if (b.iface !== undefined) return bindIface(b.iface, port, family);
  return { host: undefined, scopeId: undefined, port, family };
}

function bindIface(name: string, port: number, family: Family | undefined): Binding {
  const all = networkInterfaces();
  const addrs = all[name];
  if (!addrs) throw new InterfaceNotFoundError(`no interface named ${JSON.stringify(name)} (known: ${Object.keys(all).join(', ')})`);
  const fam = family ?? 4;
  const cands = addrs.filter((a) => (fam === 4 ? a.family === 'IPv4' : a.family === 'IPv6'));
  const best = cands.find((a) => !a.address.startsWith('fe80')) ?? cands[0];
  if (!best) throw new InterfaceNotFoundError(`interface ${name} has no IPv${fam} address`);
  const linkLocal = best.address.startsWith('fe80');
  return { host: best.address, scopeId: linkLocal ? name : undefined, port, family: fam };
}

function wildcard(f: Family): string {
  return f === 6 ? '::' : '0.0.0.0';
}

/**
 * Opens a pipe. With `dest` it is a client (TCP connects; UDP sends to `dest` by default);
 * without it a server (TCP listens; UDP binds). Rejects with typed errors:
 * `ConnectionRefusedError`, `UnreachableError`, `TimeoutError`, `BindError`, `AbortError`.
 *
 * @example
 * const server = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', onMessage: (m) => m.pipe.send(m.data) });
 * const client = await pipeOpen('tcp', server.local);
 * await client.send('hello'); console.log((await client.recv()).data.toString());
 */
export async function pipeOpen(proto: 'tcp', dest: EndpointLike, opts?: PipeOptions): Promise<TcpPipe>;
/** Opens a TCP server: listens on `opts.bind` (default: any address, a random port). */
export async function pipeOpen(proto: 'tcp', dest?: undefined, opts?: PipeOptions): Promise<TcpServer>;
/**
 * Opens a UDP pipe: binds a socket and, with `dest`, sends to `dest` by default. The socket is
 * not connected: a client receives datagrams from any source, not only `dest`, each with
 * `msg.from` naming its sender (NAT traversal relies on it, e.g. STUN CHANGE-REQUEST answers
 * from another address). To take only `dest`'s, subscribe with `source: { host, port }` and
 * `recv({ sub })`, or check `msg.from`. One datagram is one message: `framing` and
 * `maxMessageSize` are checked, then ignored. `send` refuses payloads over `MAX_UDP_PAYLOAD`.
 */
export async function pipeOpen(proto: 'udp', dest?: EndpointLike, opts?: PipeOptions): Promise<UdpPipe>;
/** Opens a pipe when `proto` is only known at run time; the result type is the union of the above. */
export async function pipeOpen(proto: Proto, dest?: EndpointLike, opts?: PipeOptions): Promise<TcpPipe | TcpServer | UdpPipe>;
export async function pipeOpen(proto: Proto, dest?: EndpointLike, opts: PipeOptions = {}): Promise<TcpPipe | TcpServer | UdpPipe> {
  return openPipe(proto, dest, opts, undefined);
}

/**
 * @internal `pipeOpen('tcp', dest, opts)` that also writes `early` on the socket as soon as
 * the connection is established, before the pipe exists (the bytes leave in the same turn as
 * the connect completes). For protocols whose first message does not depend on the
 * connection, e.g. the secure handshake's message 1. The bytes are not counted in the pipe's
 * `stats`. Without `early` it is exactly `pipeOpen('tcp', dest, opts)`.
 */
export async function connectTcpWith(dest: EndpointLike, opts: PipeOptions, early: Uint8Array | undefined): Promise<TcpPipe> {
  return (await openPipe('tcp', dest, opts, early)) as TcpPipe;
}

async function openPipe(proto: Proto, dest: EndpointLike | undefined, opts: PipeOptions, early: Uint8Array | undefined): Promise<TcpPipe | TcpServer | UdpPipe> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError(`pipeOpen options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  checkAbortOptions(opts);
  if (proto !== 'tcp' && proto !== 'udp') throw new InvalidArgumentError(`proto must be 'tcp' or 'udp', got ${JSON.stringify(proto)}`);
  // Checked here, not in the socket's event handler that builds the pipe (a throw there would be uncaught).
  if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw new InvalidArgumentError('onMessage must be a function');
  if (opts.family !== undefined && opts.family !== 4 && opts.family !== 6) throw new InvalidArgumentError(`family must be 4 or 6, got ${JSON.stringify(opts.family)}`);
  for (const k of ['noDelay', 'reuseAddr', 'ipv6Only', 'copyPayloads'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw new InvalidArgumentError(`${k} must be a boolean`);
  }
  const remote = dest === undefined ? undefined : toEndpoint(dest);
  const bind = resolveBind(opts.bind, remote?.family ?? opts.family);
  const family: Family = remote?.family ?? bind.family ?? opts.family ?? 4;
  if (bind.family !== undefined && bind.family !== family) {
    throw new InvalidArgumentError(`bind address family IPv${bind.family} does not match IPv${family}`);
  }
  const framing: Framing = opts.framing ?? 'raw';
  // Validated here: a bad value would otherwise throw inside a socket event handler (uncaught).
  if (framing !== 'raw' && framing !== 'length' && framing !== 'line') {
    throw new InvalidArgumentError(`unknown framing ${JSON.stringify(framing)}; expected 'raw', 'length' or 'line'`);
  }
  for (const k of ['maxQueue', 'maxQueueBytes', 'maxAcceptQueue', 'maxConnections', 'backlog', 'recvBufferSize', 'sendBufferSize', 'flushTimeout'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
  }
  const maxMessageSize = checkMaxMessageSize(framing, opts.maxMessageSize);
  const noZone = remote && missingZone(remote, bind.scopeId);
  if (noZone) throw noZone;
  if (proto === 'udp') return openUdp(remote, bind, family, opts);
  if (remote) return connectTcp(remote, bind, framing, maxMessageSize, opts, early);
  if (early !== undefined) throw new InvalidArgumentError('early data needs a destination');
  return listenTcp(bind, family, framing, maxMessageSize, opts);
}

function connectTcp(remote: Endpoint, bind: Binding, framing: Framing, maxMessageSize: number, opts: PipeOptions, early: Uint8Array | undefined): Promise<TcpPipe> {
  const target = formatEndpoint(remote);
  const timeout = opts.timeout ?? DEFAULT_CONNECT_TIMEOUT;
  return cancellable<TcpPipe>({ signal: opts.signal, timeout }, `connect to ${target}`, (resolve, reject) => {
    const sock: Socket = createConnection({
      host: nodeHost(remote),
      port: remote.port,
      family: remote.family,
      ...(bind.host !== undefined ? { localAddress: nodeHost({ host: bind.host, scopeId: bind.scopeId }) } : {}),
      ...(bind.port ? { localPort: bind.port } : {}),
    });
    let ok = false;
    // A failure to bind the local address (port in use, address not ours) is a BindError, not a connect error.
    const localAddr = (): string => formatEndpoint({ host: bind.host ?? wildcard(remote.family), port: bind.port, scopeId: bind.scopeId, family: remote.family });
    const onError = (e: Error): void => reject((e as { syscall?: string }).syscall === 'bind' ? bindError(e, localAddr()) : connectError(e, target));
    sock.once('error', onError);
    // Queued before our 'connect' listener: node:net writes it first when the connect completes.
    if (early !== undefined) sock.write(early);
    sock.once('connect', () => {
      ok = true;
      resolve(
        new TcpPipe(sock, {
          framing,
          maxMessageSize,
          maxQueue: opts.maxQueue,
          maxQueueBytes: opts.maxQueueBytes,
          copyPayloads: opts.copyPayloads,
          onMessage: opts.onMessage,
          defaultSub: true,
          flushTimeout: opts.flushTimeout,
          holdBurstTails: opts.noDelay ?? true,
          deferNoDelay: opts.noDelay ?? true,
          // A dotted quad is already the form the socket reports (isIP admits no other).
          knownRemote: remote.family === 4 ? { host: remote.host, port: remote.port, family: 4 } : undefined,
        }),
      );
    });
    return () => {
      sock.off('error', onError);
      if (!ok) {
        sock.on('error', () => undefined);
        sock.destroy();
      }
    };
  });
}

function listenTcp(bind: Binding, family: Family, framing: Framing, maxMessageSize: number, opts: PipeOptions): Promise<TcpServer> {
  const host = bind.host ?? wildcard(family);
  const addr = formatEndpoint({ host, port: bind.port, scopeId: bind.scopeId, family });
  return cancellable<TcpServer>({ signal: opts.signal, timeout: opts.timeout }, `listen on ${addr}`, (resolve, reject) => {
    // TCP_NODELAY: each accepted pipe sets it at its first send (TcpPipeInit.deferNoDelay).
    const server = createServer();
    const onError = (e: Error): void => reject(bindError(e, addr));
    server.once('error', onError);
    server.listen({ host: nodeHost({ host, scopeId: bind.scopeId }), port: bind.port, backlog: opts.backlog ?? 511, ipv6Only: opts.ipv6Only ?? family === 6 }, () => {
      server.off('error', onError);
      const a = server.address();
      const port = a && typeof a === 'object' ? a.port : bind.port;
      const local: Endpoint = { host, port, family };
      if (bind.scopeId) local.scopeId = bind.scopeId;
      resolve(
        new TcpServer(server, local, {
          framing,
          maxMessageSize,
          noDelay: opts.noDelay ?? true,
          onMessage: opts.onMessage,
          maxQueue: opts.maxQueue,
          maxQueueBytes: opts.maxQueueBytes,
          copyPayloads: opts.copyPayloads,
          maxAcceptQueue: opts.maxAcceptQueue,
          maxConnections: opts.maxConnections,
          flushTimeout: opts.flushTimeout,
        }),
      );
    });
    return () => {
      server.off('error', onError);
      if (!server.listening) {
        server.on('error', () => undefined);
        server.close();
      }
    };
  });
}

function openUdp(remote: Endpoint | undefined, bind: Binding, family: Family, opts: PipeOptions): Promise<UdpPipe> {
  const host = bind.host ?? wildcard(family);
  const addr = formatEndpoint({ host, port: bind.port, scopeId: bind.scopeId, family });
  return cancellable<UdpPipe>({ signal: opts.signal, timeout: opts.timeout }, `bind ${addr}`, (resolve, reject) => {
    const sock = createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      reuseAddr: opts.reuseAddr ?? false,
      ipv6Only: opts.ipv6Only ?? (family === 6 && !remote && bind.host === undefined),
      ...(opts.recvBufferSize ? { recvBufferSize: opts.recvBufferSize } : {}),
      ...(opts.sendBufferSize ? { sendBufferSize: opts.sendBufferSize } : {}),
    });
    let ok = false;
    const onError = (e: Error): void => reject(bindError(e, addr));
    sock.once('error', onError);
    sock.bind({ port: bind.port, address: nodeHost({ host, scopeId: bind.scopeId }) }, () => {
      ok = true;
      resolve(new UdpPipe(sock, { remote, onMessage: opts.onMessage, maxQueue: opts.maxQueue, maxQueueBytes: opts.maxQueueBytes, copyPayloads: opts.copyPayloads }));
    });
    return () => {
      sock.off('error', onError);
      if (!ok) {
        sock.on('error', () => undefined);
        try {
          sock.close();
        } catch {
          /* never bound */
        }
      }
    };
  });
}
