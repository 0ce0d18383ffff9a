/**
 * Signalling broker connections (see `signalling.ts`): one MQTT client per broker URL,
 * subscribed to our inbox, with a promise for its first connection; and the broker URLs a
 * peer's address names.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { StateError, TimeoutError } from '../errors.js';
import { formatEndpoint } from '../interfaces/endpoint.js';
import { ipScope } from '../interfaces/scope.js';
import type { PeerAddress } from './address.js';
import { SignalError } from './errors.js';
import { guardMqttStream } from './mqtt-guard.js';

/** One broker connection. */
export interface Conn {
  /** The broker URL. */
  url: string;
  /** The MQTT client. */
  client: MqttClient;
  /** A configured broker (kept and reconnected), rather than one opened for a peer. */
  configured: boolean;
  /** Resolves when connected and subscribed; rejects if the first attempt fails. */
  ready: Promise<void>;
  /** Connected and subscribed now. */
  up: boolean;
  /**
   * The failers of the publishes in flight on this connection: each is called once when the
   * connection closes. One shared `close` listener serves them all (one listener per publish
   * would pile up on the client: a `MaxListenersExceededWarning` past ten).
   */
  readonly inFlight: Set<() => void>;
  /**
   * When we last published or received on it (`performance.now()`): when the connections
   * opened for peers run out, the least recently used idle one is closed to make room.
   */
  lastUsed: number;
  /** Requests waiting for their answer through it: it is not closed to make room while > 0. */
  pins: number;
}

/** How {@link openBroker} connects. */
export interface OpenBrokerOptions {
  /** Our inbox topic, subscribed to on every connect. */
  topic: string;
  /** Time allowed to connect (ms). */
  connectTimeout: number;
  /** Delay before reconnecting a configured broker (ms). */
  reconnectPeriod: number;
  /** Each message published on `topic`. */
  onMessage(payload: Buffer): void;
  /** The connection failed or closed (after its first attempt is settled). */
  onDown(conn: Conn): void;
}

/** Connects to the broker at `url` and subscribes to our inbox; reconnects only a `configured` one. */
export function openBroker(url: string, configured: boolean, o: OpenBrokerOptions): Conn {
  const timeout = o.connectTimeout;
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    clean: true,
    clientId: `p2pd-${randomBytes(8).toString('hex')}`,
    connectTimeout: timeout,
    reconnectPeriod: configured ? o.reconnectPeriod : 0,
    keepalive: 30,
    resubscribe: true,
    queueQoSZero: false,
    manualConnect: true,
  });
  // Every connection (reconnects too) drops a broker that announces a packet larger than any
  // p2pd message, before mqtt.js buffers it: anyone who can publish on our inbox could send one.
  const c = client as unknown as { streamBuilder: (cl: MqttClient) => Duplex };
  const build = c.streamBuilder;
  if (typeof build !== 'function') throw new StateError('mqtt.js changed: no stream builder to guard');
  c.streamBuilder = (cl) => {
    const stream = build(cl);
    guardMqttStream(stream);
    return stream;
  };
  const conn: Conn = { url, client, configured, ready: Promise.resolve(), up: false, inFlight: new Set(), lastUsed: performance.now(), pins: 0 };
  // A broker that vanishes mid-publish: every publish in flight fails now rather than waits
  // for its caller's timeout.
  client.on('close', () => {
    for (const fail of [...conn.inFlight]) fail();
  });
  conn.ready = new Promise<void>((resolve, reject) => {
    let first = true;
    const timer = setTimeout(() => {
      if (first) {
        first = false;
        const msg = `broker ${url} did not answer within ${timeout} ms`;
        reject(new SignalError('not-connected', msg, { cause: new TimeoutError(msg) }));
      }
    }, timeout + 100);
    timer.unref();
    client.on('connect', () => {
      (client.stream as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
      client.subscribe(o.topic, { qos: 1 }, (err) => {
        if (err) {
          if (first) {
            first = false;
            clearTimeout(timer);
            reject(new SignalError('not-connected', `broker ${url} refused our subscription: ${err.message}`, { cause: err }));
          }
          return;
        }
        conn.up = true;
        if (first) {
          first = false;
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const down = (err?: Error): void => {
      conn.up = false;
      if (first) {
        first = false;
        clearTimeout(timer);
        reject(new SignalError('not-connected', `cannot connect to broker ${url}${err ? `: ${err.message}` : ''}`, err ? { cause: err } : undefined));
      }
      o.onDown(conn);
    };
    client.on('error', (e) => down(e));
    client.on('close', () => down());
    client.on('offline', () => (conn.up = false));
  });
  conn.ready.catch(() => undefined);
  client.connect();
  client.on('message', (topic, payload) => {
    if (topic !== o.topic) return;
    conn.lastUsed = performance.now();
    o.onMessage(payload);
  });
  return conn;
}

/** True for a loopback host name or address (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(h.replace(/%.*$/, '')) !== 0) return ipScope(h) === 'loopback';
  return h === 'localhost' || h.endsWith('.localhost');
}

function urlHost(url: string): string | undefined {
  try {
    return new URL(url).hostname;
  } catch {
    return undefined;
  }
}

/**
 * Broker URLs that may reach `peer`, best first: shared configured ones, then the peer's own.
 * `sameHost`: whether the peer runs on this host; for a peer elsewhere loopback URLs are left
 * out, since from here they name our own host's broker, not the peer's.
 */
export function brokerUrlsFor(peer: PeerAddress, sameHost = false): string[] {
  const urls: string[] = [];
  const usable = (host: string | undefined): boolean => sameHost || host === undefined || !isLoopbackHost(host);
  for (const s of peer.signal) {
    if (s.type === 'mqtt') {
      if (usable(urlHost(s.url))) urls.push(s.url);
    } else {
      // A broker the peer runs itself: at each of its addresses (loopback first: same host).
      const hosts: string[] = [];
      for (const iface of peer.interfaces) {
        for (const e of iface.endpoints) {
          if (e.proto !== 'tcp' || e.kind === 'link-local' || !usable(e.host)) continue;
          const h = formatEndpoint({ host: e.host, port: s.port, family: e.family });
          if (!hosts.includes(h)) hosts.push(h);
        }
      }
      // Loopback first (same host), then LAN, then the rest, as advertised.
      const rank = (h: string): number => (h.startsWith('127.') || h.startsWith('[::1]') ? 0 : 1);
      hosts.sort((a, b) => rank(a) - rank(b));
      for (const h of hosts) urls.push(`mqtt://${h}`);
    }
  }
  return urls;
}
