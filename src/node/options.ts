/**
 * Validation of {@link P2pNodeOptions}: every field is checked when the node is created, so
 * a bad STUN/TURN server, broker URL or strategy fails at once with a clear error.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import { parseStunServer } from '../nat/stun/client.js';
import { turnServerEndpoint } from '../nat/turn/allocate.js';
import { checkBrokerUrl } from './address.js';
import { errorOf } from './hello.js';
import { STRATEGIES, type NodeTimeouts, type P2pNodeOptions } from './types.js';

/**
 * The node's default timeouts (ms), used for every field of `P2pNodeOptions.timeouts` left
 * out: connect 15 000, direct 2000, reverse 4000, punch 6000, relay 10 000, handshake 5000,
 * nat 2500.
 */
export const DEFAULT_TIMEOUTS: Readonly<Required<NodeTimeouts>> = Object.freeze({
  connect: 15_000, direct: 2_000, reverse: 4_000, punch: 6_000, relay: 10_000, handshake: 5_000, nat: 2_500,
});

/** Longest node timeout accepted (ms): Node's timer limit, 2^31 − 1 (about 24.8 days). */
const MAX_NODE_TIMEOUT = 2_147_483_647;

function checkTimeouts(t: unknown): void {
  if (t === undefined) return;
  if (t === null || typeof t !== 'object') throw new InvalidArgumentError('timeouts must be an object of milliseconds, e.g. { connect: 15000 }');
  for (const [k, v] of Object.entries(t)) {
    if (!(k in DEFAULT_TIMEOUTS)) throw new InvalidArgumentError(`unknown timeout ${JSON.stringify(k)}; known: ${Object.keys(DEFAULT_TIMEOUTS).join(', ')}`);
    if (v === undefined) continue;
    if (typeof v !== 'number' || !(v > 0 && v <= MAX_NODE_TIMEOUT)) {
      throw new InvalidArgumentError(`timeouts.${k} must be a positive number of milliseconds (at most ${MAX_NODE_TIMEOUT}), got ${typeof v === 'number' ? String(v) : typeof v}`);
    }
  }
}

/**
 * Checks node options.
 * @throws InvalidArgumentError naming the bad field.
 */
export function validateNodeOptions(opts: P2pNodeOptions): void {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('P2pNode options must be an object');
  if (opts.identity !== undefined && !(opts.identity instanceof Identity)) throw new InvalidArgumentError('identity must be an Identity');
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535)) throw new InvalidArgumentError('port must be 0-65535');
  if (opts.listen !== undefined && opts.listen !== 'all' && opts.listen !== 'loopback') throw new InvalidArgumentError("listen must be 'all' or 'loopback'");
  if (opts.maxPeers !== undefined && !(Number.isInteger(opts.maxPeers) && opts.maxPeers >= 1)) throw new InvalidArgumentError('maxPeers must be a positive integer');
  if (opts.maxInboundPeers !== undefined && !(Number.isInteger(opts.maxInboundPeers) && opts.maxInboundPeers >= 1)) throw new InvalidArgumentError('maxInboundPeers must be a positive integer');
  if (opts.keepAlive !== undefined && !(Number.isFinite(opts.keepAlive) && opts.keepAlive >= 100)) throw new InvalidArgumentError('keepAlive must be >= 100 ms');
  checkTimeouts(opts.timeouts);
  for (const s of opts.strategies ?? []) if (!STRATEGIES.includes(s)) throw new InvalidArgumentError(`unknown strategy ${JSON.stringify(s)}`);
  for (const s of opts.stun ?? []) {
    try {
      parseStunServer(s);
    } catch (e) {
      throw new InvalidArgumentError(`bad STUN server ${JSON.stringify(s)}: ${errorOf(e).message}`, { cause: e });
    }
  }
  for (const t of opts.turn ?? []) {
    if (t === null || typeof t !== 'object' || typeof t.username !== 'string' || typeof t.password !== 'string') {
      throw new InvalidArgumentError('a TURN server needs { server, username, password }');
    }
    try {
      turnServerEndpoint(t.server);
    } catch (e) {
      throw new InvalidArgumentError(`bad TURN server ${JSON.stringify(t.server)}: ${errorOf(e).message}`, { cause: e });
    }
  }
  if (opts.signalling) {
    for (const url of opts.signalling.brokers ?? []) {
      try {
        checkBrokerUrl(url);
      } catch (e) {
        throw new InvalidArgumentError(`bad broker URL ${JSON.stringify(url)}: ${errorOf(e).message}`, { cause: e });
      }
    }
    const size = opts.signalling.replayCacheSize;
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 1)) throw new InvalidArgumentError('signalling.replayCacheSize must be a positive integer');
    const e = opts.signalling.embedded;
    const perHost = typeof e === 'object' && e !== null ? e.maxConnectionsPerHost : undefined;
    if (perHost !== undefined && !(Number.isInteger(perHost) && perHost >= 1)) throw new InvalidArgumentError('signalling.embedded.maxConnectionsPerHost must be a positive integer');
  }
}
