/**
 * How a `PipeDhtTransport` (see `pipe-transport.ts`) is set up: option checks, the host put in
 * our contact for a wildcard bind, and the default secure layer.
 * @module
 */
import { networkInterfaces } from 'node:os';
import { InvalidArgumentError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { secure as securePipe } from '../crypto/secure-pipe.js';
import type { Family } from '../interfaces/endpoint.js';
import { idEquals, isId, type DhtId } from './id.js';
import { MAX_DHT_FRAME, type LinkUpgrade, type PipeDhtTransportOptions } from './pipe-transport-options.js';

/** A numeric option: `dflt` when absent, else a finite number ≥ 1 (≥ 0 with `allowZero`). */
export function option(v: number | undefined, dflt: number, what: string, allowZero = false): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < (allowZero ? 0 : 1)) {
    throw new InvalidArgumentError(`${what} must be a ${allowZero ? 'non-negative' : 'positive'} number`);
  }
  return v;
}

/** A host other nodes can reach us at when we are bound to a wildcard address. */
export function guessHost(family: Family): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      if (family === 4 ? a.family === 'IPv4' : a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80')) return a.address;
    }
  }
  return family === 4 ? '127.0.0.1' : '::1';
}

/** The default secure layer: the p2pd Noise XX handshake with `identity`. */
export function noiseUpgrade(identity: Identity): LinkUpgrade {
  return async (raw, o) => {
    const sp = await securePipe(raw, {
      identity,
      initiator: o.initiator,
      ...(o.remoteId ? { remoteId: o.remoteId } : {}),
      signal: o.signal,
      timeout: o.timeout,
      maxMessageSize: MAX_DHT_FRAME,
      onMessage: (m) => o.onFrame(m.data),
    });
    return { pipe: sp, remoteId: new Uint8Array(sp.remoteId) };
  };
}

/** What {@link checkListenOptions} settles: identity, our id, and the secure layer (`undefined` = plain mode). */
export interface ListenSettings {
  /** Our identity, if given. */
  identity: Identity | undefined;
  /** Our node id. */
  id: DhtId;
  /** The secure layer, `undefined` in plain mode. */
  upgrade: LinkUpgrade | undefined;
}

/**
 * Checks the identity / id / secure / publicHost options of `PipeDhtTransport.listen`.
 * @throws InvalidArgumentError on bad options.
 */
export function checkListenOptions(opts: PipeDhtTransportOptions): ListenSettings {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('PipeDhtTransport.listen needs options');
  const identity = opts.identity;
  const id = identity ? new Uint8Array(identity.id) : opts.id;
  if (!isId(id)) throw new InvalidArgumentError('a DHT transport needs an identity or a 32-byte id');
  if (identity && opts.id !== undefined && !(isId(opts.id) && idEquals(opts.id, id))) throw new InvalidArgumentError('id does not match the identity');
  const secure = opts.secure ?? identity !== undefined;
  if (secure && !identity && !opts.upgrade) throw new InvalidArgumentError('secure mode needs an identity');
  if (opts.publicHost !== undefined && (typeof opts.publicHost !== 'string' || opts.publicHost.length === 0)) {
    throw new InvalidArgumentError('publicHost must be an IP address');
  }
  const upgrade = secure ? opts.upgrade ?? noiseUpgrade(identity as Identity) : undefined;
  return { identity, id, upgrade };
}
