/**
 * NAT keep-alives for a punched path that carries no reliable stream (a stream sends its own
 * PINGs): a 4-byte packet every `intervalMs`, which receivers' punch and stream code drop.
 * @module
 */
import { InvalidArgumentError } from '../../errors.js';
import { toEndpoint, type EndpointLike } from '../../interfaces/endpoint.js';
import { Pipe } from '../../pipes/pipe.js';
import { encodeKeepAlive } from './punch-wire.js';
import { positive } from './udp-punch.js';

/** Default NAT keep-alive interval (ms): below the common 30 s UDP binding timeout. */
export const DEFAULT_KEEPALIVE_INTERVAL = 15_000;

/** Options of {@link keepAlive}. */
export interface KeepAliveOptions {
  /** Stops the keep-alives when aborted. */
  signal?: AbortSignal;
}

/**
 * Keeps the NAT binding of a punched path open: sends a 4-byte keep-alive (ignored by
 * receivers) to `remote` every `intervalMs` (default 15 s, under the common 30 s UDP binding
 * timeout) until the returned function is called, `signal` aborts or the pipe closes. The
 * timer does not keep the process alive. Not needed while a reliable stream runs on the path
 * (it has its own keep-alives).
 */
export function keepAlive(pipe: Pipe, remote: EndpointLike, intervalMs: number = DEFAULT_KEEPALIVE_INTERVAL, opts: KeepAliveOptions = {}): () => void {
  if (!(pipe instanceof Pipe)) throw new InvalidArgumentError('keepAlive() needs a Pipe');
  const to = toEndpoint(remote);
  const every = positive(intervalMs, DEFAULT_KEEPALIVE_INTERVAL, 'intervalMs', 10);
  const packet = encodeKeepAlive();
  let stopped = false;
  const timer = setInterval(() => {
    if (pipe.closed) stop();
    else void pipe.send(packet, to).catch(() => undefined);
  }, every);
  timer.unref?.();
  const offClose = pipe.onClose(() => stop());
  const onAbort = (): void => stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  function stop(): void {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    offClose();
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (opts.signal?.aborted) stop();
  return stop;
}
