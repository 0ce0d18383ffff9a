/**
 * Network membership and upkeep of {@link DhtNode}: joining through bootstrap contacts (with
 * a `ConnectError` that says why each one failed), republishing records to their current k
 * closest nodes, and refreshing buckets by lookups of random ids in their range.
 * @module
 */
import { ConnectError } from '../errors.js';
import { contactProblem, type Contact } from './contact.js';
import { idEquals, idToHex, keyToId, randomIdInBucket } from './id.js';
import type { NodeRpc } from './node-rpc.js';
import { JOIN_PING_ATTEMPTS } from './options.js';
import type { DhtRecord } from './record.js';
import type { Replicator } from './replication.js';

/**
 * The `ConnectError` of a join whose bootstrap contacts all failed: the message names each
 * contact and why it failed (wrong node id, handshake refused, timeout, ...); the `cause` is
 * that error when there is one contact, else an `AggregateError` of them (in contact order).
 */
function bootstrapError(failures: ReadonlyArray<{ contact: Contact; error: unknown }>): ConnectError {
  const describe = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  const detail = failures.map((f) => `${idToHex(f.contact.id).slice(0, 16)}…@${f.contact.family === 6 ? `[${f.contact.host}]` : f.contact.host}:${f.contact.port}: ${describe(f.error)}`);
  const errors = failures.map((f) => f.error);
  const msg = `no DHT bootstrap node answered${detail.length ? ` (${detail.join('; ')})` : ''}`;
  if (errors.length === 0) return new ConnectError(msg);
  return new ConnectError(msg, { cause: errors.length === 1 ? errors[0] : new AggregateError(errors, 'every DHT bootstrap contact failed') });
}

/**
 * `DhtNode.join` once its arguments are checked: pings each valid `bootstrap` contact (up to
 * {@link JOIN_PING_ATTEMPTS} times), looks up our own id, then refreshes every bucket further
 * than our closest neighbour. Resolves with the routing table size.
 * @throws ConnectError if bootstrap contacts were given and none answered.
 */
export async function joinNetwork(net: NodeRpc, bootstrap: readonly Contact[], signal: AbortSignal): Promise<number> {
  const valid = bootstrap.filter((c) => !idEquals(c.id, net.id) && contactProblem(c) === undefined);
  // The last error of each contact that never answered, to say why in the ConnectError.
  const failures: Array<{ contact: Contact; error: unknown } | undefined> = [];
  const pingUntilAnswered = async (c: Contact, index: number): Promise<boolean> => {
    let last: unknown;
    for (let i = 0; i < JOIN_PING_ATTEMPTS && !signal.aborted; i++) {
      try {
        await net.rpc(c, { type: 'PING' }, signal);
        return true;
      } catch (e) {
        last = e;
      }
    }
    if (last !== undefined) failures[index] = { contact: c, error: last };
    return false;
  };
  const alive = await Promise.all(valid.map(pingUntilAnswered));
  if (valid.length > 0 && !alive.includes(true)) throw bootstrapError(failures.filter((f) => f !== undefined));
  await net.lookup(net.id, 'node', signal);
  await Promise.all(net.table.bucketsToRefresh(0).map((i) => net.lookup(randomIdInBucket(net.id, i), 'node', signal)));
  return net.table.size;
}

/**
 * Re-stores each of `jobs` on the current k closest nodes of its key, α at a time (taking
 * them from the front of `jobs`). A record that fails is skipped; the abort of `signal` is
 * not. Resolves with the number of records republished.
 */
export async function republishRecords(net: NodeRpc, replicator: Replicator, jobs: DhtRecord[], signal: AbortSignal): Promise<number> {
  let done = 0;
  const worker = async (): Promise<void> => {
    for (let r = jobs.shift(); r; r = jobs.shift()) {
      const keyId = keyToId(r.key);
      try {
        const look = await net.lookup(keyId, 'node', signal);
        await replicator.replicate(r, keyId, look.closest, signal, false);
        done++;
      } catch (e) {
        if (signal.aborted) throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: net.alpha }, worker));
  return done;
}

/** Looks up a random id in each bucket not looked up for `maxAge` ms (all with `0`); resolves with their number. */
export async function refreshBuckets(net: NodeRpc, maxAge: number, signal: AbortSignal): Promise<number> {
  const idx = net.table.bucketsToRefresh(maxAge);
  for (const i of idx) await net.lookup(randomIdInBucket(net.id, i), 'node', signal);
  return idx.length;
}
