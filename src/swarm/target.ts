/**
 * Resolving a send target (endpoint, node id, peer, peer info) to a node id.
 * @module
 */
import { InvalidArgumentError, RoutingError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import { formatEndpoint, toEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import type { SwarmCore } from './core.js';
import type { SwarmTarget } from './types.js';

const HEX_ID = /^[0-9a-fA-F]{64}$/;

function endpointOf(t: unknown): Endpoint | undefined {
  if (typeof t === 'string') return toEndpoint(t);
  if (Array.isArray(t)) {
    if (t.length !== 2 || typeof t[0] !== 'string' || typeof t[1] !== 'number') throw new InvalidArgumentError('an address tuple is [host, port]');
    return toEndpoint({ host: t[0], port: t[1] });
  }
  if (typeof t === 'object' && t !== null && typeof (t as { host?: unknown }).host === 'string' && typeof (t as { port?: unknown }).port === 'number') {
    return toEndpoint(t as { host: string; port: number });
  }
  return undefined;
}

/**
 * The node id `target` names. With `mustBeKnown`, the id must be ours, a neighbour's or a
 * known member's (else {@link RoutingError}); an endpoint must be a known member's listener.
 * @throws {@link InvalidArgumentError} for anything that is not a target.
 */
export function resolveTarget(target: SwarmTarget, core: SwarmCore, selfId: Buffer, mustBeKnown = true): Buffer {
  let id: Buffer | undefined;
  if (typeof target === 'string' && HEX_ID.test(target)) id = Buffer.from(target, 'hex');
  else if (target instanceof Uint8Array) {
    if (target.length !== 32) throw new InvalidArgumentError('a node id is 32 bytes');
    id = Buffer.from(target);
  } else if (typeof target === 'object' && target !== null && !Array.isArray(target) && 'identity' in target && (target as { identity: unknown }).identity instanceof Identity) {
    id = (target as { identity: Identity }).identity.id;
  } else if (typeof target === 'object' && target !== null && !Array.isArray(target) && (target as { id?: unknown }).id instanceof Uint8Array) {
    const raw = (target as { id: Uint8Array }).id;
    if (raw.length !== 32) throw new InvalidArgumentError('a node id is 32 bytes');
    id = Buffer.from(raw);
  } else {
    let ep: Endpoint | undefined;
    try {
      ep = endpointOf(target);
    } catch (e) {
      throw new InvalidArgumentError(`invalid target: ${(e as Error).message}`, { cause: e });
    }
    if (!ep) throw new InvalidArgumentError('target must be an endpoint ("host:port", [host, port], { host, port }), a node id, or a peer');
    if (ep.host === core.endpoint.host && ep.port === core.endpoint.port) return selfId;
    const m = core.members.byEndpoint(ep);
    if (!m) throw new RoutingError(`no known swarm member listens on ${formatEndpoint(ep)}`);
    return m.id;
  }
  if (mustBeKnown && !id.equals(selfId)) {
    const hex = id.toString('hex');
    const m = core.members.get(hex);
    if ((!m || m.leaving) && !core.links.get(hex)) throw new RoutingError(`node ${hex.slice(0, 16)}… is not a known swarm member`);
  }
  return id;
}
