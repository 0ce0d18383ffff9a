/**
 * `turnAllocate()`: creates a TURN allocation (RFC 8656 §7) and returns it as a
 * {@link TurnPipe}. Handles the long-term-credential challenge (401 → retry signed, 438 →
 * retry with the new nonce, bounded), 300 Try Alternate redirects (bounded, loops detected),
 * an overall timeout and cancellation — and never leaves a socket open when it fails.
 * @module
 */
import { AbortError, InvalidArgumentError, StunError } from '../../errors.js';
import { formatEndpoint, parseHost, toEndpoint, type Endpoint, type EndpointLike, type Family } from '../../interfaces/endpoint.js';
import { pipeOpen } from '../../pipes/open.js';
import { SUB_ALL, type MessageCallback, type PipeOptions, type QueueLimits } from '../../pipes/types.js';
import { cancellable, throwIfAborted, type AbortOptions } from '../../util/abort.js';
import type { StunAttribute } from '../stun/attributes.js';
import { ATTR, CLASS, ERROR_CODE, METHOD, TRANSPORT } from '../stun/constants.js';
import { getAttr } from '../stun/message.js';
import { StunTransport } from '../stun/transport.js';
import { TurnAuth } from './auth.js';
import {
  TURN_ALLOCATE_TIMEOUT, TURN_CHANNEL_LIFETIME, TURN_CHANNEL_REFRESH, TURN_CHANNEL_RETRY, TURN_CLOSE_TIMEOUT, TURN_DEFAULT_LIFETIME, TURN_DEFAULT_PORT,
  TURN_MAX_REDIRECTS, TURN_PERMISSION_LIFETIME, TURN_PERMISSION_REFRESH, TURN_REFRESH_RETRY, TURN_REQUEST_TIMEOUT, TURN_SOFTWARE,
} from './constants.js';
import { TurnPipe } from './pipe.js';
import { followRedirect } from './redirect.js';
import { TurnSession } from './session.js';

/** Options of {@link turnAllocate}. `timeout` bounds the whole allocation (default 10 s; `0` = none). */
export interface TurnAllocateOptions extends AbortOptions, QueueLimits {
  /** The TURN server: `'host:port'`, `'[v6]:port'`, an IP literal (port 3478) or `{ host, port? }`. */
  server: EndpointLike | { host: string; port?: number };
  /** Long-term credential username. */
  username: string;
  /** Long-term credential password. */
  password: string;
  /** Transport to the server: `'udp'` or `'tcp'`. The relay itself is always UDP. @default 'udp' */
  proto?: 'udp' | 'tcp';
  /** Requested allocation lifetime in seconds (the server may grant another). @default the server's (600 s) */
  lifetime?: number;
  /** Family of the relayed address (REQUESTED-ADDRESS-FAMILY). @default 4 */
  family?: Family;
  /** Local binding of the connection to the server. */
  bind?: PipeOptions['bind'];
  /** Message callback registered before any data can arrive; suppresses the default `SUB_ALL` subscription. */
  onMessage?: MessageCallback;
  /** Use ChannelBind/ChannelData for peers sent to (Send indications until bound). @default true */
  channels?: boolean;
  /**
   * Most 300 Try-Alternate redirects to follow; `0` follows none (a 300 is then a
   * `StunError`). A redirect is not authenticated: whoever answers for `server` can send the
   * client to another server, which then gets the username and a MESSAGE-INTEGRITY over the
   * password (never the password itself) and relays the traffic; unusable targets (broadcast,
   * multicast, unspecified, port 0, another family, loopback named by a remote server) are
   * refused. See `src/nat/turn/redirect.ts`. @default 3 (TURN_MAX_REDIRECTS)
   */
  maxRedirects?: number;
  /** Timeout of each background request (Refresh, CreatePermission, ChannelBind), ms. @default 10 000 */
  requestTimeout?: number;
  /** How long `close()` waits for the deallocation's answer, ms. @default 1000 */
  closeTimeout?: number;
  /** Permission refresh interval, ms, at most `TURN_PERMISSION_LIFETIME` (permissions live 300 s). @default 240 000 */
  permissionRefresh?: number;
  /** Channel refresh interval, ms, at most `TURN_CHANNEL_LIFETIME` (channels live 600 s). @default 540 000 */
  channelRefresh?: number;
  /** Wait before retrying a failed ChannelBind to a peer, ms. @default 30 000 */
  channelRetry?: number;
  /** Wait before retrying a timed-out allocation refresh, ms. @default 5000 */
  refreshRetry?: number;
  /** Initial STUN retransmission timeout over UDP, ms. @default 500 */
  rto?: number;
  /** SOFTWARE attribute of the Allocate request; `false` omits it. @default 'p2pd' */
  software?: string | false;
}

/** Parses the `server` option; a bare IP gets the default port 3478. */
export function turnServerEndpoint(s: TurnAllocateOptions['server']): Endpoint {
  if (typeof s === 'string') {
    try {
      const h = parseHost(s);
      return toEndpoint({ host: h.host, port: TURN_DEFAULT_PORT, ...(h.scopeId ? { scopeId: h.scopeId } : {}) });
    } catch {
      return toEndpoint(s);
    }
  }
  if (s !== null && typeof s === 'object' && (s as { port?: number }).port === undefined) {
    return toEndpoint({ ...(s as { host: string }), port: TURN_DEFAULT_PORT });
  }
  return toEndpoint(s as EndpointLike);
}

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return v;
}

/** Validated settings of one allocation. */
interface Config {
  server: Endpoint;
  opts: TurnAllocateOptions;
  proto: 'udp' | 'tcp';
  maxRedirects: number;
  attrs: StunAttribute[];
}

/**
 * Allocates a relayed transport address on a TURN server and returns it as a {@link TurnPipe}
 * (a Pipe with `relayed`, `mapped`, `permit(peer)`; `send(data, peer)`; messages `from` the
 * peer). Rejects with {@link TurnAuthError} (wrong credentials), {@link StunError} (other error
 * responses, incl. `errorCode` 300 for a redirect loop, too many redirects or an unusable
 * ALTERNATE-SERVER, 437, 486, 508…), `TimeoutError`, `AbortError`, `InvalidArgumentError`, or
 * the connect errors of `pipeOpen` (TCP).
 *
 * Redirects (300 Try Alternate) are followed, up to `maxRedirects`, over the same transport and
 * with the same credentials (RFC 8489 §10), after checking the target: nothing is sent to a
 * broadcast, multicast or unspecified address, port 0, an address of another family, or a
 * loopback address named by a server not on this host. The redirect itself is not
 * authenticated, so a hostile server (or anyone answering for it) can move the allocation to
 * a server of its choice; that server sees the username and a MESSAGE-INTEGRITY keyed by the
 * password, never the password. Pass `maxRedirects: 0` to follow none.
 *
 * @example
 * const relay = await turnAllocate({ server: '203.0.113.10:3478', username: 'u', password: 'p' });
 * relay.onMessage((m) => relay.send(m.data, m.from)); // echo through the relay
 * console.log('peers can reach me at', relay.relayed);
 */
export function turnAllocate(opts: TurnAllocateOptions): Promise<TurnPipe> {
  let cfg: Config;
  try {
    throwIfAborted(opts?.signal);
    cfg = configure(opts);
  } catch (e) {
    return Promise.reject(e);
  }
  const timeout = opts.timeout === undefined ? TURN_ALLOCATE_TIMEOUT : opts.timeout;
  const ac = new AbortController();
  return cancellable<TurnPipe>({ signal: opts.signal, timeout }, `TURN allocation on ${formatEndpoint(cfg.server)}`, (resolve, reject) => {
    allocate(cfg, ac.signal).then(
      (pipe) => (ac.signal.aborted ? void pipe.close() : resolve(pipe)),
      reject,
    );
    return () => ac.abort(new AbortError('TURN allocation cancelled'));
  });
}

function configure(opts: TurnAllocateOptions): Config {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('turnAllocate needs { server, username, password }');
  const server = turnServerEndpoint(opts.server);
  new TurnAuth(opts.username, opts.password); // validates the credentials
  const proto = opts.proto ?? 'udp';
  if (proto !== 'udp' && proto !== 'tcp') throw new InvalidArgumentError(`proto must be 'udp' or 'tcp', got ${JSON.stringify(proto)}`);
  if (opts.lifetime !== undefined && (!Number.isInteger(opts.lifetime) || opts.lifetime < 1 || opts.lifetime > 0xffffffff)) {
    throw new InvalidArgumentError('lifetime must be a positive integer number of seconds');
  }
  if (opts.family !== undefined && opts.family !== 4 && opts.family !== 6) throw new InvalidArgumentError('family must be 4 or 6');
  const maxRedirects = opts.maxRedirects ?? TURN_MAX_REDIRECTS;
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0 || maxRedirects > 16) throw new InvalidArgumentError('maxRedirects must be an integer 0-16');
  for (const k of ['requestTimeout', 'closeTimeout', 'permissionRefresh', 'channelRefresh', 'channelRetry', 'refreshRetry', 'rto'] as const) {
    positive(k, opts[k], 1);
  }
  // A refresh after the server's lifetime lets the permission/channel lapse (and one past
  // 2^31 − 1 ms would fire after 1 ms, a refresh storm).
  if ((opts.permissionRefresh ?? 0) > TURN_PERMISSION_LIFETIME) throw new InvalidArgumentError(`permissionRefresh must be at most ${TURN_PERMISSION_LIFETIME} ms (the permission lifetime)`);
  if ((opts.channelRefresh ?? 0) > TURN_CHANNEL_LIFETIME) throw new InvalidArgumentError(`channelRefresh must be at most ${TURN_CHANNEL_LIFETIME} ms (the channel lifetime)`);
  const attrs: StunAttribute[] = [{ type: ATTR.REQUESTED_TRANSPORT, value: TRANSPORT.UDP }];
  if (opts.lifetime !== undefined) attrs.push({ type: ATTR.LIFETIME, value: opts.lifetime });
  if (opts.family === 6) attrs.push({ type: ATTR.REQUESTED_ADDRESS_FAMILY, value: 6 });
  const software = opts.software ?? TURN_SOFTWARE;
  if (software !== false) attrs.push({ type: ATTR.SOFTWARE, value: software });
  return { server, opts, proto, maxRedirects, attrs };
}

/** The allocation proper: one server after another while redirected. */
async function allocate(cfg: Config, signal: AbortSignal): Promise<TurnPipe> {
  const { opts } = cfg;
  let server = cfg.server;
  const tried: Endpoint[] = [server];
  for (let hop = 0; ; hop++) {
    const pipe = await pipeOpen(cfg.proto, server, { ...(opts.bind !== undefined ? { bind: opts.bind } : {}), signal });
    pipe.unsubscribe(SUB_ALL); // the transport's callback reads everything; no queue to fill
    const transport = new StunTransport(pipe, true);
    const session = new TurnSession(transport, server, new TurnAuth(opts.username, opts.password));
    let done = false;
    try {
      const resp = await session.request(METHOD.ALLOCATE, cfg.attrs, {
        signal,
        acceptErrors: [ERROR_CODE.TRY_ALTERNATE],
        ...(opts.rto !== undefined ? { rto: opts.rto } : {}),
      });
      if (resp.cls === CLASS.ERROR) {
        // Checked before anything is sent there (see redirect.ts for what is followed and why).
        server = followRedirect(getAttr(resp, ATTR.ALTERNATE_SERVER), server, tried, hop, cfg.maxRedirects);
        tried.push(server);
        continue;
      }
      const relayed = getAttr(resp, ATTR.XOR_RELAYED_ADDRESS);
      if (relayed === undefined) throw new StunError(`TURN Allocate response from ${session.serverText} has no XOR-RELAYED-ADDRESS`);
      if (getAttr(resp, ATTR.LIFETIME) === 0) throw new StunError(`TURN Allocate response from ${session.serverText} grants a lifetime of 0`);
      const tp = new TurnPipe({
        session,
        relayed,
        mapped: getAttr(resp, ATTR.XOR_MAPPED_ADDRESS),
        lifetime: getAttr(resp, ATTR.LIFETIME) ?? opts.lifetime ?? TURN_DEFAULT_LIFETIME,
        requestedLifetime: opts.lifetime,
        requestTimeout: opts.requestTimeout ?? TURN_REQUEST_TIMEOUT,
        closeTimeout: opts.closeTimeout ?? TURN_CLOSE_TIMEOUT,
        refreshRetry: opts.refreshRetry ?? TURN_REFRESH_RETRY,
        permissionRefresh: opts.permissionRefresh ?? TURN_PERMISSION_REFRESH,
        channelRefresh: opts.channelRefresh ?? TURN_CHANNEL_REFRESH,
        channelRetry: opts.channelRetry ?? TURN_CHANNEL_RETRY,
        channels: opts.channels !== false,
        onMessage: opts.onMessage,
        maxQueue: opts.maxQueue,
        maxQueueBytes: opts.maxQueueBytes,
      });
      done = true;
      return tp;
    } finally {
      if (!done) {
        session.abort();
        await transport.close().catch(() => undefined);
      }
    }
  }
}
