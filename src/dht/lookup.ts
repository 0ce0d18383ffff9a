/**
 * Iterative, α-parallel Kademlia lookup.
 *
 * The shortlist starts with the `k` contacts of our routing table closest to the target
 * (hop 1). At most `alpha` queries are in flight; each goes to the closest not-yet-queried
 * contact among the `k` closest that have not failed. Contacts learned from an answer at
 * hop `h` are at hop `h + 1`. The lookup ends when every one of the `k` closest non-failed
 * contacts has answered, or (value lookups) once `quorum` records have been collected, or
 * after {@link MAX_LOOKUP_QUERIES} queries (peers that keep answering with made-up contacts,
 * ever closer to the target, cannot keep a lookup running forever).
 *
 * A lookup's **hop count** is the hop of the contact that delivered the first record (value
 * lookups) or of the closest contact that answered (node lookups): the number of sequential
 * round trips needed to reach the target's neighbourhood.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { toAbortError } from '../util/abort.js';
import type { Contact } from './contact.js';
import { compareDistance, idEquals, type DhtId } from './id.js';
import type { DhtRecord } from './record.js';

/** Kademlia's lookup parallelism α. */
export const DEFAULT_ALPHA = 3;
/** Most queries one lookup sends (an honest one needs about k + α·log₂(network size)). */
export const MAX_LOOKUP_QUERIES = 512;

/** A record found during a lookup. */
export interface FoundRecord {
  readonly record: DhtRecord;
  /** Who returned it. */
  readonly from: Contact;
  /** Hop at which it was found. */
  readonly hop: number;
}

/** Outcome of a lookup. */
export interface LookupResult {
  /** The target id. */
  readonly target: DhtId;
  /** Up to k contacts that answered, closest first. */
  readonly closest: Contact[];
  /** Verified records returned by FIND_VALUE (value lookups). */
  readonly records: FoundRecord[];
  /** Hop count (see module doc); 0 if nothing answered. */
  readonly hops: number;
  /** Requests sent. */
  readonly messages: number;
  /** Requests that failed (timeout, unreachable, bad reply). */
  readonly failures: number;
  /** Wall time, ms. */
  readonly durationMs: number;
}

/** One contact's answer to a lookup query. */
export interface QueryAnswer {
  contacts: readonly Contact[];
  record?: DhtRecord;
}

/** What a lookup needs from its node. */
export interface LookupDeps {
  readonly selfId: DhtId;
  readonly k: number;
  readonly alpha: number;
  /** Starting contacts (usually the routing table's k closest). */
  readonly seeds: readonly Contact[];
  /** Sends FIND_NODE / FIND_VALUE; rejects on any failure. Contacts must already be validated. */
  query(contact: Contact, signal: AbortSignal): Promise<QueryAnswer>;
}

/** Cheap map key for an id (32 latin1 characters). */
function keyOf(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1');
}

const NEW = 0;
const PENDING = 1;
const OK = 2;
const FAILED = 3;

interface Candidate {
  readonly contact: Contact;
  readonly hop: number;
  state: number;
}

/**
 * Runs one lookup. Rejects only if `signal` aborts; unreachable contacts just count as
 * failures. `quorum` (value lookups) stops the lookup early after that many records.
 */
export async function iterativeLookup(
  target: DhtId,
  deps: LookupDeps,
  signal: AbortSignal,
  quorum = Infinity,
): Promise<LookupResult> {
  const started = performance.now();
  const seen = new Set<string>([keyOf(deps.selfId)]);
  const list: Candidate[] = [];
  const records: FoundRecord[] = [];
  let messages = 0;
  let failures = 0;
  let inflight = 0;
  let wake: (() => void) | undefined;
  const ctrl = new AbortController();
  setMaxListeners(0, ctrl.signal);
  const onAbort = (): void => {
    ctrl.abort(signal.reason);
    wake?.();
  };
  signal.addEventListener('abort', onAbort, { once: true });

  const insert = (contact: Contact, hop: number): void => {
    const key = keyOf(contact.id);
    if (seen.has(key)) return;
    seen.add(key);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareDistance(target, (list[mid] as Candidate).contact.id, contact.id) < 0) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, { contact, hop, state: NEW });
  };
  for (const c of deps.seeds) insert(c, 1);

  const launch = (cand: Candidate): void => {
    cand.state = PENDING;
    inflight++;
    messages++;
    deps.query(cand.contact, ctrl.signal).then(
      (ans) => {
        cand.state = OK;
        for (const c of ans.contacts) if (!idEquals(c.id, deps.selfId)) insert(c, cand.hop + 1);
        if (ans.record) records.push({ record: ans.record, from: cand.contact, hop: cand.hop });
      },
      () => {
        cand.state = FAILED;
        failures++;
      },
    ).finally(() => {
      inflight--;
      wake?.();
    });
  };

  try {
    for (;;) {
      if (signal.aborted) throw toAbortError(signal);
      if (records.length >= quorum) break;
      let considered = 0;
      let open = false;
      for (const cand of list) {
        if (cand.state === FAILED) continue;
        if (++considered > deps.k) break;
        if (cand.state === NEW) {
          open = true;
          if (inflight < deps.alpha && messages < MAX_LOOKUP_QUERIES) launch(cand);
        } else if (cand.state === PENDING) {
          open = true;
        }
      }
      if (!open || inflight === 0) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!ctrl.signal.aborted) ctrl.abort(new Error('lookup finished'));
  }

  const closest: Contact[] = [];
  let hops = 0;
  for (const cand of list) {
    if (cand.state !== OK) continue;
    if (closest.length === 0) hops = cand.hop;
    closest.push(cand.contact);
    if (closest.length >= deps.k) break;
  }
  if (records.length > 0) hops = Math.min(...records.map((r) => r.hop));
  return { target, closest, records, hops, messages, failures, durationMs: performance.now() - started };
}
