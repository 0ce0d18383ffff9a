/**
 * Serving peers' signalling requests (reverse connect, hole punching, relay): a request is
 * validated (connection id, and the address it carries must be the sender's own) and served
 * within a concurrency limit; failures become node warnings.
 *
 * The limit is shared fairly. One sender holds at most {@link MAX_SERVING_PER_PEER} slots.
 * When all {@link MAX_SERVING} are taken, a request from a sender holding fewer slots than
 * the biggest holder takes that holder's oldest slot (its work is aborted). Identities cost
 * nothing to make, so without this anyone could keep every slot busy with a few requests per
 * timeout from throw-away keys; with it, holding out a request needs MAX_SERVING newer
 * requests in the time it takes to serve it. A request that finds no slot to take is refused
 * with an answer (`<type>-err`, reason `busy`).
 * @module
 */
import { LimitError } from '../errors.js';
import { linkSignals } from '../util/abort.js';
import { parseAddress, type PeerAddress } from './address.js';
import type { NodeContext } from './context.js';
import { CONN_ID, errorOf } from './hello.js';
import type { SignalMessage } from './signalling.js';
import { serveReverse } from './strategy-direct.js';
import { servePunch } from './strategy-punch.js';
import { serveRelay } from './strategy-relay.js';

/** Most reverse/punch/relay requests served at once (further ones are refused). */
export const MAX_SERVING = 16;
/** Requests served at once for one sender: one peer cannot take every slot. */
export const MAX_SERVING_PER_PEER = 4;
/**
 * Most refusals being sent at once: a refusal costs a publish, so past this (a flood of
 * requests) further requests are dropped without an answer.
 */
export const MAX_REFUSING = 16;
/** Time allowed to send one refusal (ms). */
export const REFUSAL_TIMEOUT = 5_000;

/** A request being served. */
interface Slot {
  /** Sender's node id (hex). */
  from: string;
  /** The request type (for the warning when it is taken over). */
  type: string;
  /** Aborts its work when another request takes the slot. */
  ac: AbortController;
}

/** Serves the requests of one node. */
export class RequestServer {
  /** Requests being served, oldest first. */
  private readonly slots: Slot[] = [];
  private refusing = 0;
  private readonly servingFor = new Map<string, number>();

  /** Requests being served now. */
  get serving(): number {
    return this.slots.length;
  }

  /**
   * @param ctx the node
   * @param track registers background work (awaited when the node closes)
   */
  constructor(
    private readonly ctx: NodeContext,
    private readonly track: (p: Promise<unknown>) => void,
  ) {}

  /** Handles one signalling message (unknown types are ignored). */
  handle(m: SignalMessage): void {
    switch (m.type) {
      case 'reverse':
        this.serve(m, (peer, conn, signal) => serveReverse(this.ctx, peer, conn, signal));
        break;
      case 'relay':
        this.serve(m, (peer, conn, signal) => serveRelay(this.ctx, m, peer, conn, signal));
        break;
      case 'punch':
        this.serve(m, (peer, conn, signal) => servePunch(this.ctx, m, peer, conn, signal));
        break;
      default:
        break;
    }
  }

  /**
   * Answers `m` with a refusal (`<type>-err`, `reason: 'busy'`): the requester fails that
   * strategy at once rather than wait out its timeout. Within {@link MAX_REFUSING}.
   */
  private refuse(m: SignalMessage, peer: PeerAddress, why: string): void {
    const sig = this.ctx.signalling;
    if (!sig || this.refusing >= MAX_REFUSING) return;
    this.refusing++;
    this.track(
      sig
        .reply(m, peer, `${m.type}-err`, { error: why, reason: 'busy' }, { timeout: REFUSAL_TIMEOUT })
        .catch(() => undefined)
        .finally(() => this.refusing--),
    );
  }

  /**
   * The oldest slot of the sender holding the most, if it holds more than `mine` (the new
   * request's sender's count); undefined if no slot may be taken.
   */
  private victim(mine: number): Slot | undefined {
    let most = mine;
    let holder: string | undefined;
    for (const [from, n] of this.servingFor) {
      if (n > most) {
        most = n;
        holder = from;
      }
    }
    return holder === undefined ? undefined : this.slots.find((s) => s.from === holder);
  }

  private release(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const n = (this.servingFor.get(slot.from) ?? 1) - 1;
    if (n <= 0) this.servingFor.delete(slot.from);
    else this.servingFor.set(slot.from, n);
  }

  /** Validates a request (its address must be the sender's) and runs `fn` within the concurrency limit. */
  private serve(m: SignalMessage, fn: (peer: PeerAddress, conn: string, signal: AbortSignal) => Promise<void>): void {
    const conn = m.body.conn;
    if (typeof conn !== 'string' || !CONN_ID.test(conn)) return;
    let peer: PeerAddress;
    try {
      peer = parseAddress(m.body.addr as string);
    } catch {
      return;
    }
    if (peer.idHex !== m.from) return; // an address of someone else: refused
    const mine = this.servingFor.get(m.from) ?? 0;
    const victim = mine < MAX_SERVING_PER_PEER && this.slots.length >= MAX_SERVING ? this.victim(mine) : undefined;
    if (mine >= MAX_SERVING_PER_PEER || (this.slots.length >= MAX_SERVING && !victim)) {
      const why = mine >= MAX_SERVING_PER_PEER
        ? `too many requests being served for this peer (at most ${MAX_SERVING_PER_PEER})`
        : `too many requests being served (at most ${MAX_SERVING})`;
      this.ctx.event({ type: 'warning', peer: m.from, detail: `${m.type} request refused: ${why}` });
      this.refuse(m, peer, why);
      return;
    }
    if (victim) {
      this.release(victim);
      victim.ac.abort(new LimitError('MAX_SERVING', MAX_SERVING, `${victim.type} request given up: its slot went to a peer holding fewer (at most ${MAX_SERVING} served at once)`));
      this.ctx.event({ type: 'warning', peer: victim.from, detail: `${victim.type} request given up: all ${MAX_SERVING} slots were taken, the oldest of the biggest holder went to another peer` });
    }
    const slot: Slot = { from: m.from, type: m.type, ac: new AbortController() };
    this.slots.push(slot);
    this.servingFor.set(m.from, mine + 1);
    // Not AbortSignal.any(): the node's life signal outlives every request (see linkSignals).
    const link = linkSignals(undefined, [this.ctx.lifeSignal, slot.ac.signal], `${m.type} request`);
    this.track(
      fn(peer, conn, link.signal)
        .catch((e: unknown) => this.ctx.event({ type: 'warning', peer: m.from, detail: `${m.type} for peer failed: ${errorOf(e).message}` }))
        .finally(() => {
          link.done();
          this.release(slot);
        }),
    );
  }
}
