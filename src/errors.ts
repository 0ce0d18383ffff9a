/**
 * Typed errors for p2pd. Every error thrown by the library is a {@link P2pdError}
 * with a stable, machine-readable `code`; subclasses name the common cases.
 * @module
 */

/** Options accepted by every p2pd error constructor. */
export interface P2pdErrorOptions {
  /** The underlying error, if any (e.g. the Node.js system error). */
  cause?: unknown;
}

/** Base class of every error raised by p2pd. `code` is stable across releases. */
export class P2pdError extends Error {
  /** Stable machine-readable error code, e.g. `'ERR_TIMEOUT'`. */
  readonly code: string;
  constructor(code: string, message: string, options?: P2pdErrorOptions) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An operation did not finish within its `timeout`. Code `ERR_TIMEOUT`. */
export class TimeoutError extends P2pdError {
  constructor(message = 'operation timed out', options?: P2pdErrorOptions) {
    super('ERR_TIMEOUT', message, options);
  }
}

/**
 * An operation was cancelled through its `AbortSignal`. Code `ABORT_ERR` (the same code
 * Node.js uses), `name` is `'AbortError'`. `cause` holds the signal's reason.
 */
export class AbortError extends P2pdError {
  constructor(message = 'operation aborted', options?: P2pdErrorOptions) {
    super('ABORT_ERR', message, options);
  }
}

/** Bad argument or option given by the caller. Code `ERR_INVALID_ARG`. */
export class InvalidArgumentError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_INVALID_ARG', message, options);
  }
}

/** A string or object could not be parsed as an endpoint. Code `ERR_BAD_ENDPOINT`. */
export class EndpointError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_BAD_ENDPOINT', message, options);
  }
}

/** No interface has the requested name. Code `ERR_NO_INTERFACE`. */
export class InterfaceNotFoundError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_NO_INTERFACE', message, options);
  }
}

/** Base class of connection failures. Code `ERR_CONNECT` unless a subclass says otherwise. */
export class ConnectError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions, code = 'ERR_CONNECT') {
    super(code, message, options);
  }
}

/** The peer actively refused the connection (TCP RST / ICMP port unreachable). Code `ERR_CONNECTION_REFUSED`. */
export class ConnectionRefusedError extends ConnectError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super(message, options, 'ERR_CONNECTION_REFUSED');
  }
}

/** No route to the host or network. Code `ERR_UNREACHABLE`. */
export class UnreachableError extends ConnectError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super(message, options, 'ERR_UNREACHABLE');
  }
}

/** The address is already in use, or cannot be bound. Code `ERR_ADDRESS_IN_USE` / `ERR_BIND`. */
export class BindError extends P2pdError {
  /** The address that could not be bound, formatted `host:port`. */
  readonly address: string;
  constructor(code: 'ERR_ADDRESS_IN_USE' | 'ERR_BIND', address: string, message: string, options?: P2pdErrorOptions) {
    super(code, message, options);
    this.address = address;
  }
}

/** The pipe is closed: send/recv after close, or the peer went away. Code `ERR_PIPE_CLOSED`. */
export class PipeClosedError extends P2pdError {
  constructor(message = 'pipe is closed', options?: P2pdErrorOptions) {
    super('ERR_PIPE_CLOSED', message, options);
  }
}

/** The peer reset the connection (TCP RST). Code `ERR_CONNECTION_RESET`. */
export class ConnectionResetError extends PipeClosedError {
  constructor(message = 'connection reset by peer', options?: P2pdErrorOptions) {
    super(message, options);
    (this as { code: string }).code = 'ERR_CONNECTION_RESET';
  }
}

/** A received frame violates the framing (oversized, malformed). Code `ERR_FRAME`. */
export class FrameError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_FRAME', message, options);
  }
}

/** A message is larger than the transport or framing allows. Code `ERR_MESSAGE_TOO_BIG`. */
export class MessageTooBigError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_MESSAGE_TOO_BIG', message, options);
  }
}

/** A wire message from the network could not be decoded. Code `ERR_DECODE`. */
export class DecodeError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_DECODE', message, options);
  }
}

/**
 * The secure-channel (Noise) handshake failed: malformed or unauthenticated message, bad
 * identity proof, protocol misuse. Code `ERR_HANDSHAKE` unless a subclass says otherwise.
 */
export class HandshakeError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions, code = 'ERR_HANDSHAKE') {
    super(code, message, options);
  }
}

/**
 * The peer proved an identity, but not the one that was expected (`remoteId` pin).
 * Code `ERR_PEER_ID_MISMATCH`. `expected`/`actual` are the node ids in hex.
 */
export class PeerIdMismatchError extends HandshakeError {
  /** The node id that was expected, hex. */
  readonly expected: string;
  /** The node id the peer authenticated as, hex. */
  readonly actual: string;
  constructor(expected: string, actual: string, message?: string, options?: P2pdErrorOptions) {
    super(message ?? `peer id mismatch: expected ${expected}, got ${actual}`, options, 'ERR_PEER_ID_MISMATCH');
    this.expected = expected;
    this.actual = actual;
  }
}

/** An encrypted message failed authentication (tampered, replayed, wrong key). Code `ERR_DECRYPT`. */
export class DecryptError extends P2pdError {
  constructor(message = 'message authentication failed', options?: P2pdErrorOptions) {
    super('ERR_DECRYPT', message, options);
  }
}

/** Which port-mapping protocol a {@link PortMappingError} came from. */
export type PortMappingMethod = 'nat-pmp' | 'pcp' | 'upnp';

/** Options of {@link PortMappingError}. */
export interface PortMappingErrorOptions extends P2pdErrorOptions {
  /** The protocol's numeric result/error code, when the gateway answered with one. */
  resultCode?: number;
}

/**
 * A gateway refused or failed a port-mapping operation (NAT-PMP / PCP result code, UPnP
 * fault), or no gateway answered. Code `ERR_PORT_MAPPING`.
 */
export class PortMappingError extends P2pdError {
  /** The protocol that failed. */
  readonly method: PortMappingMethod;
  /** The gateway's result code (NAT-PMP / PCP result, UPnP error code), if it sent one. */
  readonly resultCode?: number;
  constructor(method: PortMappingMethod, message: string, options?: PortMappingErrorOptions) {
    super('ERR_PORT_MAPPING', message, options);
    this.method = method;
    if (options?.resultCode !== undefined) this.resultCode = options.resultCode;
  }
}

/** Options of {@link StunError}: the ERROR-CODE of a STUN error response, when there is one. */
export interface StunErrorOptions extends P2pdErrorOptions {
  /** STUN error code from the ERROR-CODE attribute, e.g. `401`, `438`. */
  errorCode?: number;
  /** Reason phrase from the ERROR-CODE attribute. */
  reason?: string;
}

/**
 * A STUN/TURN transaction failed at the protocol level, typically with an error response;
 * `errorCode`/`reason` then carry its ERROR-CODE. Code `ERR_STUN`.
 */
export class StunError extends P2pdError {
  /** STUN error code (300–699) of the error response, if any. */
  readonly errorCode: number | undefined;
  /** Reason phrase of the error response, if any. */
  readonly reason: string | undefined;
  constructor(message: string, options?: StunErrorOptions) {
    super('ERR_STUN', message, options);
    this.errorCode = options?.errorCode;
    this.reason = options?.reason;
  }
}

/** A key (or other named item) does not exist, e.g. a DHT `get` of a missing key. Code `ERR_NOT_FOUND`. */
export class NotFoundError extends P2pdError {
  constructor(message = 'not found', options?: P2pdErrorOptions) {
    super('ERR_NOT_FOUND', message, options);
  }
}

/**
 * A DHT record was rejected: bad or forged signature, not signed by the key's owner, stale,
 * timestamp too far in the future, or a key/value over the size limits. Code `ERR_RECORD`.
 */
export class RecordError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_RECORD', message, options);
  }
}

/** Identity of a swarm protocol, as reported by {@link ProtocolMismatchError}. */
export interface ProtocolDescriptor {
  /** Protocol name, e.g. `'p2pd-swarm'`. */
  readonly name: string;
  /** Protocol version string. */
  readonly version: string;
  /** Whether the protocol runs over encrypted (Noise) links. */
  readonly encrypted: boolean;
}

/**
 * A peer speaks another protocol (name, version, or encryption mode) and was refused.
 * Code `ERR_PROTOCOL_MISMATCH`. `remote` is what the peer announced, when it announced anything.
 */
export class ProtocolMismatchError extends P2pdError {
  /** Our protocol. */
  readonly local: ProtocolDescriptor | undefined;
  /** The peer's protocol, if it sent a readable preamble. */
  readonly remote: ProtocolDescriptor | undefined;
  constructor(message: string, local?: ProtocolDescriptor, remote?: ProtocolDescriptor, options?: P2pdErrorOptions) {
    super('ERR_PROTOCOL_MISMATCH', message, options);
    this.local = local;
    this.remote = remote;
  }
}

/** A synced-dict write was refused because another member holds a live lease on the key. Code `ERR_LEASE`. */
export class LeaseError extends P2pdError {
  /** Hex node id of the lease holder, when known. */
  readonly owner: string | undefined;
  /** When the holder's lease ends (ms since epoch), when known. */
  readonly expires: number | undefined;
  constructor(message: string, owner?: string, expires?: number, options?: P2pdErrorOptions) {
    super('ERR_LEASE', message, options);
    this.owner = owner;
    this.expires = expires;
  }
}

/** An operation is not valid in the object's current state (e.g. after close). Code `ERR_STATE`. */
export class StateError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_STATE', message, options);
  }
}

/** An operation that needs `bind()` was called before it. Code `ERR_STATE`. */
export class NotBoundError extends StateError {
  constructor(message = 'you must call bind() first', options?: P2pdErrorOptions) {
    super(message, options);
  }
}

/**
 * A message was not sent because every link it could take has a full send buffer (the
 * receiver or the network is slower than the sender). Code `ERR_CONGESTED`. Retry later.
 */
export class CongestedError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_CONGESTED', message, options);
  }
}

/**
 * A configured limit is reached (for example a node's `maxPeers`): the operation was refused
 * rather than letting resource use grow without bound. Code `ERR_LIMIT`. `limit` names the
 * option, `value` its value.
 */
export class LimitError extends P2pdError {
  /** The option whose limit was reached, e.g. `'maxPeers'`. */
  readonly limit: string;
  /** The limit's value. */
  readonly value: number;
  constructor(limit: string, value: number, message: string, options?: P2pdErrorOptions) {
    super('ERR_LIMIT', message, options);
    this.limit = limit;
    this.value = value;
  }
}

/** No route to the requested node (unknown target, or no links at all). Code `ERR_NO_ROUTE`. */
export class RoutingError extends P2pdError {
  constructor(message: string, options?: P2pdErrorOptions) {
    super('ERR_NO_ROUTE', message, options);
  }
}
