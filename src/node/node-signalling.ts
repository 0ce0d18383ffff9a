/**
 * A node's signalling set-up at start: the embedded MQTT broker (when configured, or when no
 * broker is given) and the signalling client on every broker. A configured broker that does
 * not connect at start is named in a node warning (once); the node starts without it.
 * @module
 */
import type { Identity } from '../crypto/identity.js';
import type { X25519KeyPair } from '../crypto/x25519.js';
import type { AbortOptions } from '../util/abort.js';
import type { PeerAddress } from './address.js';
import { startBroker, type Broker } from './broker.js';
import { Signalling, type SignalMessage } from './signalling.js';
import { brokerWarning } from './start-warnings.js';
import type { P2pNodeOptions } from './types.js';

/** What {@link startNodeSignalling} needs from its node. */
export interface NodeSignallingSetup {
  /** The node's `signalling` option (not `false`). */
  cfg: Exclude<P2pNodeOptions['signalling'], false>;
  /** The node listens on loopback only: so does its embedded broker. */
  loopback: boolean;
  /** The node's identity. */
  identity: Identity;
  /** The node's signalling key pair. */
  signalKey: X25519KeyPair;
  /** Signalling messages for the node. */
  onMessage: (m: SignalMessage) => void;
  /** Whether a peer runs on this host (its embedded broker is reachable on loopback). */
  sameHost: (peer: PeerAddress) => boolean;
  /** Called with the embedded broker as soon as it runs (the node closes it). */
  onBroker: (b: Broker) => void;
  /** Called with the signalling client before it connects (the node closes it). */
  onSignalling: (s: Signalling) => void;
  /** The node's warnings (a configured broker that did not connect at start, once each). */
  warn: (detail: string) => void;
}

/** Starts the embedded broker if there is one, then the signalling client on every broker. */
export async function startNodeSignalling(s: NodeSignallingSetup, opts: AbortOptions): Promise<void> {
  const brokers = [...(s.cfg?.brokers ?? [])];
  const embedded = s.cfg?.embedded ?? brokers.length === 0;
  if (embedded) {
    const e = typeof embedded === 'object' ? embedded : {};
    const broker = await startBroker({
      host: e.host ?? (s.loopback ? '127.0.0.1' : undefined),
      ...(e.port !== undefined ? { port: e.port } : {}),
      ...(e.maxConnectionsPerHost !== undefined ? { maxConnectionsPerHost: e.maxConnectionsPerHost } : {}),
    });
    s.onBroker(broker);
    brokers.unshift(broker.url);
  }
  const signalling = new Signalling({
    identity: s.identity,
    signalKey: s.signalKey,
    brokers,
    ...(s.cfg?.connectTimeout !== undefined ? { connectTimeout: s.cfg.connectTimeout } : {}),
    ...(s.cfg?.replayCacheSize !== undefined ? { replayCacheSize: s.cfg.replayCacheSize } : {}),
    onMessage: s.onMessage,
    sameHost: s.sameHost,
    onBrokerFailure: (url, err) => s.warn(brokerWarning(url, err)),
  });
  s.onSignalling(signalling);
  await signalling.start(opts);
}
