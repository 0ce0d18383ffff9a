/**
 * The warnings a node gives at start about the servers it was configured with and could not
 * use: a signalling broker whose first connection failed, a STUN server that never answered.
 * The node starts anyway (offline start works); these say which server and what failed, once
 * per server.
 * @module
 */
import { TimeoutError } from '../errors.js';
import { formatEndpoint, sameEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import type { NatDetection } from '../nat/detect/nat-type.js';
import { errorOf } from './hello.js';

const TIMED_OUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);
const UNREACHABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
const NOT_FOUND = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME']);

/**
 * What failed, in a few words: `refused (ECONNREFUSED)`, `timed out`, `unreachable (…)`,
 * `host not found (…)`, or the error's own message. Looks through `cause`s.
 */
export function describeFailure(e: unknown): string {
  for (let c: unknown = e, depth = 0; c !== undefined && c !== null && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof TimeoutError) return 'timed out';
    const own = (c as { code?: unknown }).code;
    // A system error's code, else one named in the message (`connect ECONNREFUSED 127.0.0.1:1`).
    const code = typeof own === 'string' ? own : c instanceof Error ? /\b(E[A-Z_]{3,})\b/.exec(c.message)?.[1] : undefined;
    if (code === 'ECONNREFUSED') return 'refused (ECONNREFUSED)';
    if (code === 'ECONNRESET') return 'reset (ECONNRESET)';
    if (typeof code === 'string' && TIMED_OUT.has(code)) return `timed out (${code})`;
    if (typeof code === 'string' && UNREACHABLE.has(code)) return `unreachable (${code})`;
    if (typeof code === 'string' && NOT_FOUND.has(code)) return `host not found (${code})`;
    if (c instanceof Error && /connack timeout/i.test(c.message)) return 'timed out (no CONNACK)';
  }
  return errorOf(e).message;
}

/** The warning for a configured broker whose first connection at start failed. */
export function brokerWarning(url: string, err: unknown): string {
  return `signalling broker ${url} not connected at start: ${describeFailure(err)}; retrying in the background`;
}

/** What a STUN server did during the start: answered, or the first failure seen. */
type StunOutcome = { ok: true } | { ok: false; why: string };

/**
 * Tracks the configured STUN servers' answers during a node's start (NAT detection's test
 * records, the listen socket's binding request) and names the ones that never answered.
 */
export class StunOutcomes {
  private readonly seen = new Map<string, StunOutcome>();

  /** @param servers the configured servers in use (parsed). */
  constructor(private readonly servers: readonly Endpoint[]) {}

  /** Records an answer from `to`, or a failure (`why`: what failed, see {@link describeFailure}). */
  record(to: Endpoint, ok: boolean, why = 'no answer'): void {
    const s = this.servers.find((x) => sameEndpoint(x, to));
    if (s === undefined) return; // not a configured server (a hairpin test, an alternate address)
    const key = formatEndpoint(s);
    const was = this.seen.get(key);
    if (ok) this.seen.set(key, { ok: true });
    else if (was === undefined) this.seen.set(key, { ok: false, why });
  }

  /** Takes the records of a NAT detection (its test I and mapping tests name their server). */
  detection(r: NatDetection): void {
    for (const t of r.tests) this.record(t.to, t.ok, t.error === undefined || t.error === 'timeout' ? 'timed out' : describeFailure(new Error(t.error)));
  }

  /** One warning per configured server that was asked and never answered. */
  warnings(): string[] {
    const out: string[] = [];
    for (const [key, o] of this.seen) if (!o.ok) out.push(`STUN server ${key} did not answer at start: ${o.why}`);
    return out;
  }
}
