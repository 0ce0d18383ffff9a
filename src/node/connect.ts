/**
 * `node.connect()`: which strategies can be tried for a peer, in what order and when, and the
 * race between them (connect-race.ts) under the caller's signal and timeout.
 * @module
 */
import { AbortError, ConnectError, InvalidArgumentError, TimeoutError } from '../errors.js';
import { formatEndpoint } from '../interfaces/endpoint.js';
import { cancellable, linkSignals } from '../util/abort.js';
import type { PeerAddress } from './address.js';
import { raceStrategies, START_AFTER } from './connect-race.js';
import type { NodeContext } from './context.js';
import { P2pConnectError, type StrategyFailure } from './errors.js';
import type { PunchModule } from './punch-api.js';
import { connectDirect, type ReverseWaiters } from './strategy-direct.js';
import { connectPunch } from './strategy-punch.js';
import { connectRelay, relayPossible } from './strategy-relay.js';
import { punchHopeless } from './nat-pairs.js';
import { STRATEGIES, type ConnectOptions, type NodePipe, type Strategy } from './types.js';
import type { Pipe } from '../pipes/pipe.js';
import { stunServers } from './external.js';

export { punchHopeless };

/**
 * Connects to `peer` with the strategies wanted (default: all, in order), each started at its
 * time ({@link START_AFTER}) or when the earlier ones have failed; the first authenticated
 * pipe wins and carries `path` (with `ms`, the time to connect).
 * @throws P2pConnectError (every strategy failed or none usable; `attempts`), TimeoutError, AbortError.
 */
export async function connectPeer(ctx: NodeContext, reverse: ReverseWaiters, peer: PeerAddress, opts: ConnectOptions, prepare?: (p: Pipe) => void): Promise<NodePipe> {
    const wanted = opts.strategies ?? ctx.opts.strategies ?? [...STRATEGIES];
    for (const s of wanted) if (!STRATEGIES.includes(s)) throw new InvalidArgumentError(`unknown strategy ${JSON.stringify(s)}`);
    const timeout = opts.timeout ?? ctx.timeouts.connect;
    const t0 = performance.now();
    const failures: StrategyFailure[] = [];
    const plan: Strategy[] = [];
    for (const s of wanted) {
      const why = await unavailable(ctx, s, peer);
      if (why) failures.push({ strategy: s, error: new ConnectError(`skipped: ${why}`) });
      else if (!plan.includes(s)) plan.push(s);
    }
    if (plan.length === 0) throw new P2pConnectError(`cannot connect to ${peer.idHex.slice(0, 16)}…: no usable strategy`, failures);
    const peerNat = peer.interfaces.find((i) => i.nat !== 'UNKNOWN')?.nat;
    const hopeless = punchHopeless(ctx.natType, peerNat);
    const startAfter = (s: Strategy): number => (s === 'relay' && hopeless ? START_AFTER.punch : START_AFTER[s]);
    const ac = new AbortController();
    // Not AbortSignal.any(): the node's life signal outlives every connect (see linkSignals).
    const link = linkSignals({ signal: opts.signal }, [ac.signal, ctx.lifeSignal], 'connect');
    const signal = link.signal;
    return cancellable<NodePipe>({ signal: opts.signal, timeout }, `connect to ${peer.idHex.slice(0, 16)}…`, (resolve, reject) => {
      const stop = raceStrategies<NodePipe>(
        {
          plan,
          startAfter,
          // A strategy that ends once the caller has aborted ends because of it: say so.
          run: (s) => runStrategy(ctx, reverse, s, peer, signal, opts.via, prepare).catch((e: unknown) => {
            throw opts.signal?.aborted ? abortedByCaller(opts.signal, e) : e;
          }),
          discard: (p) => void p.close(),
          onStart: (s) => ctx.event({ type: 'strategy-start', strategy: s, peer: peer.idHex, ms: performance.now() - t0 }),
          onWin: (s, p) => {
            const path = { ...p.path, ms: performance.now() - t0 };
            Object.defineProperty(p, 'path', { value: path, enumerable: true, configurable: true });
            ctx.event({ type: 'strategy-win', strategy: s, peer: peer.idHex, ms: path.ms, detail: `${path.transport} ${formatEndpoint(path.remote)}` });
          },
          onFail: (s, err) => ctx.event({ type: 'strategy-fail', strategy: s, peer: peer.idHex, ms: performance.now() - t0, detail: err.message }),
        },
        resolve,
        (f) => reject(new P2pConnectError(`cannot connect to ${peer.idHex.slice(0, 16)}…`, f)),
        failures,
      );
      return () => {
        stop();
        ac.abort(opts.signal?.aborted ? abortedByCaller(opts.signal) : new TimeoutError('connect ended'));
      };
    }).finally(() => link.done()).catch((e: unknown) => {
      if (e instanceof TimeoutError && failures.length > 0) {
        throw new TimeoutError(`${e.message} (${failures.map((f) => `${f.strategy}: ${f.error.message}`).join('; ')})`, { cause: new P2pConnectError('strategies failed', failures) });
      }
      throw e;
    });
}

/** Message of a strategy's failure when the caller's signal ended the connect. */
const ABORTED_BY_CALLER = 'aborted by the caller';

/**
 * The error of a strategy ended by the caller's abort (code `ABORT_ERR`); `cause` is the
 * strategy's own error, or the caller's reason.
 */
function abortedByCaller(callerSignal: AbortSignal, strategyError?: unknown): AbortError {
  if (strategyError instanceof AbortError && strategyError.message === ABORTED_BY_CALLER) return strategyError;
  return new AbortError(ABORTED_BY_CALLER, { cause: strategyError ?? callerSignal.reason });
}

/** Why `s` cannot be used for `peer`, or undefined. */
async function unavailable(ctx: NodeContext, s: Strategy, peer: PeerAddress): Promise<string | undefined> {
  const self = ctx.isSelf(peer);
  switch (s) {
    case 'direct':
      return peer.interfaces.some((i) => i.endpoints.some((e) => e.proto === 'tcp')) ? undefined : 'no TCP endpoint in the address';
    case 'reverse':
      if (self) return 'not needed to reach ourselves';
      if (!ctx.signalling) return 'signalling is disabled';
      return peer.signal.length ? undefined : 'the peer has no signalling channel';
    case 'punch':
      if (self) return 'not needed to reach ourselves';
      if (!ctx.signalling) return 'signalling is disabled';
      if (!peer.signal.length) return 'the peer has no signalling channel';
      if (stunServers(ctx.opts.stun, 4).length === 0) return 'no IPv4 STUN server configured';
      return (await ctx.punchModule()) ? undefined : 'the hole punching module is not available';
    case 'relay':
      if (self) return 'not needed to reach ourselves';
      if (!ctx.signalling) return 'signalling is disabled';
      if (!peer.signal.length) return 'the peer has no signalling channel';
      if (ctx.opts.relay === false) return 'relaying is disabled';
      if (!relayPossible(ctx)) return 'no TURN server configured (and no STUN server to use the peer\'s relay)';
      return (await ctx.punchModule()) ? undefined : 'the reliable stream module (src/node/punch) is not available';
  }
}

async function runStrategy(ctx: NodeContext, reverse: ReverseWaiters, s: Strategy, peer: PeerAddress, signal: AbortSignal, via: ConnectOptions['via'], prepare: ((p: Pipe) => void) | undefined): Promise<NodePipe> {
  switch (s) {
    case 'direct':
      return connectDirect(ctx, peer, signal, via);
    case 'reverse':
      return reverse.connect(ctx, peer, signal, prepare);
    case 'punch':
      return connectPunch(ctx, (await ctx.punchModule()) as PunchModule, peer, signal);
    case 'relay':
      return connectRelay(ctx, (await ctx.punchModule()) as PunchModule, peer, signal);
  }
}
