/**
 * Serving incoming DHT requests.
 *
 * A request's `sender` contact enters the routing table at once when the transport
 * authenticated the peer (`ctx.remoteId`, which must then equal `sender.id`, else the request
 * is dropped). Over unauthenticated transports a new sender, or a known id claiming a new
 * address, is first pinged at the claimed address (at most
 * {@link MAX_PENDING_VERIFICATIONS} at a time), so a forged request cannot redirect an
 * existing contact or plant an unreachable one.
 * @module
 */
import { contactProblem, type Contact } from './contact.js';
import { idEquals, idToHex, type DhtId } from './id.js';
import { MAX_CONTACTS, type DhtRequest, type DhtResponse } from './messages.js';
import type { NodeCore, Replicator } from './replication.js';
import { resolveRecords } from './resolve.js';
import type { DhtRequestContext, DhtRequestHandler } from './transport.js';

/** Most concurrent address verifications of unauthenticated senders. */
export const MAX_PENDING_VERIFICATIONS = 64;

/** Builds the request handler of a node. `onRequest` is called once per served request. */
export function createRequestHandler(core: NodeCore, replicator: Replicator, onRequest: () => void): DhtRequestHandler {
  const verifying = new Set<string>();

  const noteSender = (sender: Contact, ctx: DhtRequestContext): void => {
    if (ctx.remoteId) {
      core.table.add(sender);
      return;
    }
    const known = core.table.get(sender.id);
    if (known && known.contact.host === sender.host && known.contact.port === sender.port) {
      core.table.add(known.contact);
      return;
    }
    const hex = idToHex(sender.id);
    if (verifying.has(hex) || verifying.size >= MAX_PENDING_VERIFICATIONS) return;
    verifying.add(hex);
    core.bg.run((signal) => core.rpc(sender, { type: 'PING' }, signal, { passive: true }).finally(() => verifying.delete(hex)));
  };

  return async (req: DhtRequest, ctx: DhtRequestContext): Promise<DhtResponse | undefined> => {
    if (core.closed) return undefined;
    onRequest();
    const sender = req.sender;
    const responder = core.id;
    if (sender) {
      if (ctx.remoteId && !idEquals(ctx.remoteId, sender.id)) return undefined;
      if (contactProblem(sender) !== undefined) {
        return { type: 'ERROR', responder, code: 'bad-request', message: 'invalid sender contact' };
      }
      if (!idEquals(sender.id, core.id)) noteSender(sender, ctx);
    }
    const exclude = sender?.id ?? ctx.remoteId;
    const nearest = (t: DhtId): Contact[] => core.table.closest(t, Math.min(core.k, MAX_CONTACTS), { excludeFailing: true, ...(exclude ? { exclude } : {}) });
    switch (req.type) {
      case 'PING':
        return { type: 'PONG', responder };
      case 'FIND_NODE':
        return { type: 'NODES', responder, contacts: nearest(req.target) };
      case 'FIND_VALUE': {
        const best = resolveRecords(req.keyId, replicator.localCopies(req.keyId)).winner;
        const contacts = nearest(req.keyId);
        return best ? { type: 'VALUE', responder, record: best, contacts } : { type: 'VALUE', responder, contacts };
      }
      case 'STORE':
      case 'DELETE':
        return { type: 'STORED', responder, status: core.store.offer(req.record) };
    }
  };
}
