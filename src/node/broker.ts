/**
 * An MQTT broker in the process (aedes), so that a demo, a LAN or a test needs no outside
 * server. It only carries p2pd signalling: clients may subscribe to and publish on
 * `p2pd/1/<64 hex>` topics only (no wildcards, so nobody can watch everyone's inbox), and
 * messages are bounded in size. What one client can make it hold is bounded too: packets of
 * at most `MAX_MQTT_PACKET` bytes (a larger one drops the client before its body is read),
 * at most {@link MAX_BROKER_SUBSCRIPTIONS} subscriptions, clean sessions only (nothing is kept
 * or queued for a client that is gone). The payloads are end-to-end signed and encrypted anyway.
 * What one host can take is bounded: at most {@link MAX_BROKER_CONNECTIONS_PER_HOST} of the
 * connections come from one source address (see `maxConnectionsPerHost`), so one host cannot
 * hold every slot.
 * @module
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { InvalidArgumentError } from '../errors.js';
import { throwIfAborted, type AbortOptions } from '../util/abort.js';
import { checkPort, formatEndpoint, parseHost } from '../interfaces/endpoint.js';
import { bindError } from '../pipes/socket-errors.js';
import { SourceShare, sourceOf } from '../pipes/source-share.js';
import { MAX_ENVELOPE } from './envelope.js';
import { guardMqttStream } from './mqtt-guard.js';

/** Topic of a node's signalling inbox. */
export function inboxTopic(idHex: string): string {
  return `p2pd/1/${idHex}`;
}
const TOPIC_RE = /^p2pd\/1\/[0-9a-f]{64}$/;

/**
 * Subscriptions one client connection may hold on an embedded broker (each costs broker
 * memory; a p2pd node subscribes to its own inbox only). Further ones are refused.
 */
export const MAX_BROKER_SUBSCRIPTIONS = 8;

/** Default cap on an embedded broker's concurrent client connections. */
export const DEFAULT_BROKER_MAX_CONNECTIONS = 1024;

/**
 * Default cap on an embedded broker's concurrent client connections from one source (an IPv4
 * address, or an IPv6 /64; v4-mapped addresses count as IPv4). A p2pd node holds one
 * connection per broker, so this is room for 64 nodes behind one address (a NAT, one host).
 * Loopback is not exempt: on a shared host every local user is `127.0.0.1`, and a broker
 * behind a reverse proxy or tunnel sees all its clients from the proxy's address; raise
 * `maxConnectionsPerHost` for those set-ups (and for tests that run many clients on one host).
 */
export const MAX_BROKER_CONNECTIONS_PER_HOST = 64;

/** Options of {@link startBroker}. */
export interface BrokerOptions {
  /** Address to listen on. @default '::' (dual stack), falling back to '0.0.0.0' without IPv6 */
  host?: string;
  /** Port. @default 0 (a free port) */
  port?: number;
  /** Most concurrent client connections; one beyond it is closed on arrival. @default DEFAULT_BROKER_MAX_CONNECTIONS (1024) */
  maxConnections?: number;
  /**
   * Most concurrent client connections from one source address (IPv4 address or IPv6 /64),
   * loopback included; one beyond it is closed on arrival, before any MQTT is read (counted in
   * {@link BrokerStats.refusedPerHost}). At most `maxConnections` counts.
   * @default MAX_BROKER_CONNECTIONS_PER_HOST (64)
   */
  maxConnectionsPerHost?: number;
  /**
   * Errors of the running broker (its listening socket, aedes itself). They never crash the
   * process; without this callback they become process warnings (code `P2PD_BROKER`).
   */
  onError?: (err: Error) => void;
}

/** Counters of an embedded broker's connections (live ones: {@link Broker.clients}). */
export interface BrokerStats {
  /** Connections accepted (handed to MQTT). */
  accepted: number;
  /** Connections closed on arrival because `maxConnections` were open. */
  refusedFull: number;
  /** Connections closed on arrival because their source held `maxConnectionsPerHost`. */
  refusedPerHost: number;
}

/** A running embedded broker. */
export interface Broker extends AsyncDisposable {
  /** The port it listens on. */
  readonly port: number;
  /** The address it listens on. */
  readonly host: string;
  /** A URL that reaches it from this host (`mqtt://127.0.0.1:PORT` for a wildcard bind). */
  readonly url: string;
  /** Connected clients. */
  readonly clients: number;
  /** Connection counters (accepted, refused). */
  readonly stats: Readonly<BrokerStats>;
  /** Stops it: closes every client connection and the listening socket. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts an embedded MQTT broker (aedes) on `host:port`.
 * @throws BindError when the port is taken.
 */
export async function startBroker(opts: BrokerOptions & AbortOptions = {}): Promise<Broker> {
  throwIfAborted(opts.signal);
  const port = checkPort(opts.port ?? 0);
  if (opts.host !== undefined) parseHost(opts.host);
  const maxConnections = opts.maxConnections ?? DEFAULT_BROKER_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new InvalidArgumentError('maxConnections must be a positive integer');
  const perHost = opts.maxConnectionsPerHost ?? MAX_BROKER_CONNECTIONS_PER_HOST;
  if (!Number.isInteger(perHost) || perHost < 1) throw new InvalidArgumentError('maxConnectionsPerHost must be a positive integer');
  // Topics each client connection is subscribed to (see MAX_BROKER_SUBSCRIPTIONS).
  const subs = new WeakMap<object, Set<string>>();
  const aedes = await Aedes.createBroker({
    // Only clean sessions: a persistent one would keep subscriptions and queue messages for a
    // client that is gone, without bound (p2pd clients always connect clean).
    authenticate: (client, _user, _password, done) => {
      if (client.clean) done(null, true);
      else done(Object.assign(new Error('persistent sessions are not supported'), { returnCode: 5 as const }), false);
    },
    authorizeSubscribe: (client, sub, cb) => {
      const mine = subs.get(client) ?? new Set<string>();
      subs.set(client, mine);
      if (TOPIC_RE.test(sub.topic) && (mine.has(sub.topic) || mine.size < MAX_BROKER_SUBSCRIPTIONS)) {
        mine.add(sub.topic);
        cb(null, sub);
      } else cb(null, null); // refused (SUBACK 0x80), the connection stays
    },
    authorizePublish: (_client, packet, cb) => {
      const size = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
      if (!TOPIC_RE.test(packet.topic) || size > MAX_ENVELOPE || packet.retain) cb(new Error('publish not allowed'));
      else cb(null);
    },
  });
  const report = (e: Error): void => {
    if (opts.onError) {
      try {
        opts.onError(e);
        return;
      } catch {
        /* fall through to the warning */
      }
    }
    process.emitWarning(`p2pd broker: ${e.message}`, { code: 'P2PD_BROKER' });
  };
  (aedes as unknown as NodeJS.EventEmitter).on('error', report); // emitted by aedes though missing from its types
  aedes.on('unsubscribe', (topics, client) => {
    const mine = subs.get(client);
    for (const t of topics) mine?.delete(t);
  });
  const sockets = new Set<Socket>();
  const bySource = new SourceShare<Socket>();
  const stats: BrokerStats = { accepted: 0, refusedFull: 0, refusedPerHost: 0 };
  const server: Server = createServer({ noDelay: true }, (sock) => {
    sock.on('error', () => undefined);
    // Refused at accept time: nothing of the connection is read, no MQTT state is made.
    const source = sourceOf(sock.remoteAddress);
    if (bySource.count(source) >= perHost) {
      stats.refusedPerHost++;
      sock.destroy();
      return;
    }
    if (sockets.size >= maxConnections) {
      stats.refusedFull++;
      sock.destroy();
      return;
    }
    stats.accepted++;
    sockets.add(sock);
    bySource.add(source, sock);
    sock.once('close', () => {
      sockets.delete(sock);
      bySource.delete(source, sock);
    });
    aedes.handle(sock);
    // A client announcing a packet larger than any p2pd message is dropped before its body is
    // buffered (aedes reads with `read()` on 'readable': each chunk it takes is seen first).
    guardMqttStream(sock);
  });
  const listen = (host: string, ipv6Only: boolean): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      server.once('error', onErr);
      server.listen({ host, port, ipv6Only }, () => {
        server.off('error', onErr);
        resolve();
      });
    });
  let host = opts.host ?? '::';
  try {
    try {
      await listen(host, false);
    } catch (e) {
      if (opts.host !== undefined || (e as { code?: string }).code !== 'EAFNOSUPPORT') throw e;
      host = '0.0.0.0';
      await listen(host, false);
    }
  } catch (e) {
    await new Promise<void>((r) => aedes.close(() => r()));
    throw bindError(e as Error, formatEndpoint({ host, port }));
  }
  // From now on the listening socket's errors (a failed accept: ENOBUFS, ENOMEM…) are reported, never thrown.
  server.on('error', report);
  const a = server.address();
  const bound = a && typeof a === 'object' ? a.port : port;
  const reach = host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | undefined;
  const broker: Broker = {
    port: bound,
    host,
    url: `mqtt://${formatEndpoint({ host: reach, port: bound })}`,
    get clients() {
      return sockets.size;
    },
    stats,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        for (const s of sockets) s.destroy();
        await closed;
        await new Promise<void>((r) => aedes.close(() => r()));
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return broker.close();
    },
  };
  if (opts.signal?.aborted) {
    await broker.close();
    throwIfAborted(opts.signal);
  }
  return broker;
}

