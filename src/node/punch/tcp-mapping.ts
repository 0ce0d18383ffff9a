/**
 * Learning the external TCP mapping of the port a TCP hole punch will use: a STUN Binding over
 * TCP from an explicitly bound local port. The binding is explicit (never the kernel's
 * autobind of `connect()`) because libuv sets `SO_REUSEADDR` only on explicit binds, and on
 * Linux the punch's sockets can share the port with this connection only when every socket
 * on it has that option and none of them listens.
 *
 * Keep the returned STUN connection open until the punch is over: on NATs that drop a
 * mapping once no connection uses it (most real ones), it holds the mapping the peer was
 * told about. Close it with {@link TcpMapping.close} afterwards (or at once with `keep: false`).
 * @module
 */
import { InvalidArgumentError } from '../../errors.js';
import type { Endpoint, EndpointLike } from '../../interfaces/endpoint.js';
import { parseStunServer, StunClient } from '../../nat/stun/client.js';
import { throwIfAborted, type AbortOptions } from '../../util/abort.js';

/** Default bound of {@link tcpMapping} (ms). */
export const DEFAULT_TCP_MAPPING_TIMEOUT = 3_000;

/** Options of {@link tcpMapping}. */
export interface TcpMappingOptions extends AbortOptions {
  /** The STUN server (TCP): an IP literal with optional port (default 3478), or `{ host, port }`. */
  server: EndpointLike | { host: string; port?: number };
  /** Local address to bind. @default the wildcard address of the server's family */
  localHost?: string;
  /** Local port to bind; `0` lets the kernel choose one (see {@link TcpMapping.local}). @default 0 */
  localPort?: number;
  /** Keep the STUN connection open (it holds the NAT mapping) until {@link TcpMapping.close}. @default true */
  keep?: boolean;
  /** Bound of the connection and the transaction (ms). @default DEFAULT_TCP_MAPPING_TIMEOUT (3 s) */
  timeout?: number;
}

/** What {@link tcpMapping} learned. */
export interface TcpMapping {
  /** The bound local endpoint: punch from this `localHost`/`localPort`. Host is the routed source address when bound to the wildcard. */
  local: Endpoint;
  /** The external (server-reflexive) endpoint the STUN server saw: send it to the peer. */
  mapped: Endpoint;
  /** The open STUN connection (`keep: true`), else `undefined`. */
  client: StunClient | undefined;
  /** Closes the STUN connection (idempotent; resolves at once when it was not kept). */
  close(): Promise<void>;
}

/**
 * Opens a TCP connection to a STUN server from `localHost:localPort` (bound explicitly, so
 * the port can be shared with {@link tcpPunch}'s sockets) and returns the local and mapped
 * endpoints. Rejects with `BindError`, `ConnectError`s, `TimeoutError`, `AbortError`,
 * `StunError`, `InvalidArgumentError`.
 */
export async function tcpMapping(opts: TcpMappingOptions): Promise<TcpMapping> {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('tcpMapping() expects options');
  throwIfAborted(opts.signal);
  const timeout = opts.timeout ?? DEFAULT_TCP_MAPPING_TIMEOUT;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0) throw new InvalidArgumentError('timeout must be a positive number');
  const port = opts.localPort ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('localPort must be an integer 0-65535');
  const deadline = AbortSignal.timeout(timeout);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  const server = parseStunServer(opts.server);
  const host = opts.localHost ?? (server.family === 6 ? '::' : '0.0.0.0');
  const client = await StunClient.open({ server, proto: 'tcp', bind: { host, port }, signal, timeout });
  try {
    const m = await client.binding({ signal, timeout });
    const keep = opts.keep !== false;
    if (!keep) await client.close();
    return { local: m.local, mapped: m.mapped, client: keep ? client : undefined, close: () => client.close() };
  } catch (e) {
    await client.close();
    throw e;
  }
}

