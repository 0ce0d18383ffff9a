/**
 * Checking a `SwarmPeer`'s options and `bind()` arguments, and turning the options into the
 * {@link CoreConfig} of its `SwarmCore` (defaults filled in).
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { checkPort, parseHost } from '../interfaces/endpoint.js';
import { isUnspecified } from '../interfaces/scope.js';
import {
  DEFAULT_BROADCAST_REDUNDANCY, DEFAULT_LINK_TIMEOUT, DEFAULT_LINKS_PER_BUCKET, DEFAULT_MAX_LINKS, DEFAULT_SEEN_CACHE_SIZE,
  MAINTAIN_INTERVAL,
} from './constants.js';
import type { CoreConfig } from './core-config.js';
import type { ResolvedProtocol } from './protocol.js';
import type { SwarmBindOptions, SwarmPeerOptions } from './types.js';

/**
 * `v`, or `dflt` when `v` is `undefined`.
 * @throws {@link InvalidArgumentError} (naming option `name`) unless `v` is a positive integer.
 */
export function positiveInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return v;
}

/** Checks the counts the core is configured with (`linksPerBucket`, `maxLinks`, `broadcastRedundancy`). */
export function checkCoreCounts(opts: SwarmPeerOptions): void {
  positiveInt(opts.linksPerBucket, 1, 'linksPerBucket');
  positiveInt(opts.maxLinks, 1, 'maxLinks');
  positiveInt(opts.broadcastRedundancy, 1, 'broadcastRedundancy');
}

/**
 * Checks `bind(host, port, opts)`'s address arguments; returns the host others dial
 * (`opts.externalHost`, else `host`), parsed.
 * @throws {@link InvalidArgumentError} for a bad host or port, or a wildcard address without `externalHost`.
 */
export function checkBindAddress(host: string, port: number, opts: SwarmBindOptions): { host: string } {
  parseHost(host);
  checkPort(port, 'port');
  const extHost = opts.externalHost ?? host;
  const ext = parseHost(extHost);
  if (isUnspecified(ext.host)) throw new InvalidArgumentError('binding a wildcard address needs opts.externalHost (the address other members dial)');
  if (opts.externalPort !== undefined) checkPort(opts.externalPort, 'externalPort');
  return ext;
}

/** The core configuration for checked options `o` (defaults for what they leave out). */
export function coreConfig(identity: Identity, protocol: ResolvedProtocol, o: SwarmPeerOptions): CoreConfig {
  return {
    identity,
    protocol,
    now: o.now ?? Date.now,
    linksPerBucket: o.linksPerBucket ?? DEFAULT_LINKS_PER_BUCKET,
    maxLinks: o.maxLinks ?? DEFAULT_MAX_LINKS,
    redundancy: o.broadcastRedundancy ?? DEFAULT_BROADCAST_REDUNDANCY,
    linkTimeout: o.linkTimeout ?? DEFAULT_LINK_TIMEOUT,
    seenCacheSize: o.seenCacheSize ?? DEFAULT_SEEN_CACHE_SIZE,
    maintainInterval: o.maintainInterval ?? MAINTAIN_INTERVAL,
  };
}
