/**
 * Maps Node.js system errors (errno codes) to p2pd's typed errors.
 * @module
 */
import {
  BindError,
  ConnectError,
  ConnectionRefusedError,
  ConnectionResetError,
  P2pdError,
  PipeClosedError,
  TimeoutError,
  UnreachableError,
} from '../errors.js';

function errno(e: unknown): string {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : '';
}

/** Maps a connect failure to `ConnectionRefusedError`, `UnreachableError`, `TimeoutError` or `ConnectError`. */
export function connectError(e: unknown, target: string): Error {
  if (e instanceof P2pdError) return e;
  const code = errno(e);
  switch (code) {
    case 'ECONNREFUSED':
      return new ConnectionRefusedError(`connection to ${target} refused`, { cause: e });
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'EAFNOSUPPORT':
    case 'EINVAL':
      return new UnreachableError(`${target} is unreachable (${code})`, { cause: e });
    case 'ETIMEDOUT':
      return new TimeoutError(`connection to ${target} timed out`, { cause: e });
    default:
      return new ConnectError(`cannot connect to ${target}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

/** Maps a bind/listen failure to a `BindError` naming the address. */
export function bindError(e: unknown, address: string): Error {
  if (e instanceof P2pdError) return e;
  const code = errno(e);
  if (code === 'EADDRINUSE') return new BindError('ERR_ADDRESS_IN_USE', address, `address ${address} is already in use`, { cause: e });
  return new BindError('ERR_BIND', address, `cannot bind ${address}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

/** Maps an error on an established connection. */
export function streamError(e: unknown): Error {
  if (e instanceof P2pdError) return e;
  const code = errno(e);
  if (code === 'ECONNRESET' || code === 'EPIPE') return new ConnectionResetError(`connection reset by peer (${code})`, { cause: e });
  return new PipeClosedError(`connection failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
