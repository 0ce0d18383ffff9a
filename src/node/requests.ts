/**
 * Serving peers' signalling requests (reverse connect, hole punching, relay): a request is
 * validated (connection id, and the address it carries must be the sender's own) and served
 * within a concurrency limit (past it, refused with an answer: `<type>-err`, reason `busy`);
 * failures become node warnings.
 * @module
 */
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

/** Serves the requests of one node. */
export class RequestServer {
  private serving = 0;
  private refusing = 0;
  private readonly servingFor = new Map<string, number>();

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
        this.serve(m, (peer, conn) => serveReverse(this.ctx, peer, conn));
        break;
      case 'relay':
        this.serve(m, (peer, conn) => serveRelay(this.ctx, m, peer, conn));
        break;
      case 'punch':
        this.serve(m, (peer, conn) => servePunch(this.ctx, m, peer, conn));
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

  /** Validates a request (its address must be the sender's) and runs `fn` within the concurrency limit. */
  private serve(m: SignalMessage, fn: (peer: PeerAddress, conn: string) => Promise<void>): void {
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
    if (this.serving >= MAX_SERVING || mine >= MAX_SERVING_PER_PEER) {
      const why = mine >= MAX_SERVING_PER_PEER
        ? `too many requests being served for this peer (at most ${MAX_SERVING_PER_PEER})`
        : `too many requests being served (at most ${MAX_SERVING})`;
      this.ctx.event({ type: 'warning', peer: m.from, detail: `${m.type} request refused: ${why}` });
      this.refuse(m, peer, why);
      return;
    }
    this.serving++;
    this.servingFor.set(m.from, mine + 1);
    this.track(
      fn(peer, conn)
        .catch((e: unknown) => this.ctx.event({ type: 'warning', peer: m.from, detail: `${m.type} for peer failed: ${errorOf(e).message}` }))
        .finally(() => {
          this.serving--;
          const n = (this.servingFor.get(m.from) ?? 1) - 1;
          if (n <= 0) this.servingFor.delete(m.from);
          else this.servingFor.set(m.from, n);
        }),
    );
  }
}
