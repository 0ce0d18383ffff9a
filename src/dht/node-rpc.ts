/**
 * RPC and lookup plumbing of {@link DhtNode}: operations tied to the node's lifetime (each one
 * cancelled by `close`), single RPCs with their bookkeeping (routing table, failure marking,
 * metrics), and iterative lookups whose FIND_VALUE answers are verified before use.
 * @module
 */
import { DecodeError, P2pdError } from '../errors.js';
import { toAbortError, type AbortOptions } from '../util/abort.js';
import { contactProblem, type Contact } from './contact.js';
import { idEquals, type DhtId } from './id.js';
import { iterativeLookup, type LookupResult, type QueryAnswer } from './lookup.js';
import { responseTypeFor, type DhtRequest, type DhtResponse } from './messages.js';
import type { DhtMetricsRecorder } from './node-support.js';
import { verifyRecord } from './record.js';
import type { RoutingTable } from './routing-table.js';
import { linkSignals, type DhtTransport } from './transport.js';

/** What a {@link NodeRpc} runs with (settled by the `DhtNode` constructor). */
export interface NodeRpcOptions {
  /** Aborted when the node closes; every operation is linked to it. */
  readonly closeSignal: AbortSignal;
  /** How requests reach other nodes. */
  readonly transport: DhtTransport;
  /** Our advertised contact. */
  readonly contact: Contact;
  /** The node's routing table (seeds lookups, learns responders, counts failures). */
  readonly table: RoutingTable;
  /** Bucket size / replication factor. */
  readonly k: number;
  /** Lookup parallelism. */
  readonly alpha: number;
  /** The node's counters. */
  readonly metrics: DhtMetricsRecorder;
  /** Clock, ms. */
  readonly now: () => number;
  /** Per-RPC timeout, ms. */
  readonly requestTimeout: number;
  /** Tolerated future clock skew of record timestamps, ms. */
  readonly maxClockSkew: number;
  /** Record lifetime after signing, ms (`0` = never expire). */
  readonly recordTtl: number;
  /** Send our contact with requests. */
  readonly advertise: boolean;
}

/** The RPC, lookup and operation plumbing of one node. */
export class NodeRpc {
  /** Our id. */
  readonly id: DhtId;
  /** The node's routing table. */
  readonly table: RoutingTable;
  /** Lookup parallelism. */
  readonly alpha: number;
  readonly #o: NodeRpcOptions;

  constructor(opts: NodeRpcOptions) {
    this.#o = opts;
    this.id = opts.contact.id;
    this.table = opts.table;
    this.alpha = opts.alpha;
  }

  /**
   * Runs `fn` with a signal aborted by `opts` (signal / timeout) or by the node closing; an
   * error thrown after that signal aborted becomes its `AbortError` / `TimeoutError`.
   */
  async op<T>(opts: AbortOptions | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const link = linkSignals(opts, [this.#o.closeSignal], what);
    try {
      if (link.signal.aborted) throw toAbortError(link.signal);
      return await fn(link.signal);
    } catch (e) {
      if (link.signal.aborted) throw toAbortError(link.signal);
      throw e;
    } finally {
      link.done();
    }
  }

  /**
   * One RPC to `to`: adds the responder to the routing table when it answers as `to`, and
   * (unless `passive`) counts a failure against the contact known at that very address.
   * @throws DecodeError for a reply from another node or of the wrong type; P2pdError
   *   `ERR_DHT_REMOTE` for an ERROR reply; the transport's errors.
   */
  async rpc(to: Contact, req: DhtRequest, signal: AbortSignal, opts?: { passive?: boolean }): Promise<DhtResponse> {
    const o = this.#o;
    const full: DhtRequest = o.advertise ? { ...req, sender: o.contact } : req;
    o.metrics.sent++;
    try {
      const res = await o.transport.request(to, full, { signal, timeout: o.requestTimeout });
      if (!idEquals(res.responder, to.id)) throw new DecodeError('DHT reply from an unexpected node');
      this.table.add(to);
      if (res.type === 'ERROR') throw new P2pdError('ERR_DHT_REMOTE', `DHT peer error ${res.code}: ${res.message}`);
      if (res.type !== responseTypeFor(req.type)) throw new DecodeError(`DHT reply ${res.type} to ${req.type}`);
      return res;
    } catch (e) {
      if (!signal.aborted) {
        o.metrics.failed++;
        // Only count the failure against the contact we know at that very address.
        const known = this.table.get(to.id);
        if (!opts?.passive && known && known.contact.host === to.host && known.contact.port === to.port) this.table.markFailed(to.id);
      }
      throw e;
    }
  }

  /**
   * Iterative lookup of `target` (FIND_NODE in `'node'` mode, FIND_VALUE in `'value'` mode,
   * stopping after `quorum` verified records), recorded in the metrics.
   */
  async lookup(target: DhtId, mode: 'node' | 'value', signal: AbortSignal, quorum = Infinity): Promise<LookupResult> {
    const o = this.#o;
    this.table.touch(target);
    const seeds = this.table.closest(target, o.k);
    const res = await iterativeLookup(target, {
      selfId: this.id, k: o.k, alpha: this.alpha, seeds,
      query: (c, s) => this.#query(c, target, mode, s),
    }, signal, quorum);
    o.metrics.lookup(res);
    return res;
  }

  async #query(c: Contact, target: DhtId, mode: 'node' | 'value', signal: AbortSignal): Promise<QueryAnswer> {
    const o = this.#o;
    const res = await this.rpc(c, mode === 'node' ? { type: 'FIND_NODE', target } : { type: 'FIND_VALUE', keyId: target }, signal);
    if (res.type !== 'NODES' && res.type !== 'VALUE') throw new DecodeError('unexpected DHT reply');
    const contacts = res.contacts.filter((x) => contactProblem(x) === undefined);
    if (res.type === 'NODES' || !res.record) return { contacts };
    try {
      verifyRecord(res.record, { keyId: target, now: o.now(), maxClockSkew: o.maxClockSkew, maxAge: o.recordTtl });
      return { contacts, record: res.record };
    } catch {
      o.metrics.rejectedRecords++;
      return { contacts };
    }
  }
}
