/**
 * A node's lifecycle: its state (`new` → `starting` → `running` → `closing` → `closed`), the
 * signal aborted when it closes, the live pipes and background tasks it owns, and the order
 * in which its close lets go of them: pipes first, then everything else the node holds, then
 * the background tasks are awaited, and last what those may still be using (the broker).
 * @module
 */
import { StateError } from '../errors.js';
import type { NodePipe } from './types.js';

/** Where a node is in its life. */
export type NodeState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/** The lifecycle of one node (see the module doc). */
export class NodeLifecycle {
  /** The current state; the node sets `running` itself when its start completes. */
  state: NodeState = 'new';
  /** Live pipes to peers (inbound and outbound), until each closes. */
  readonly pipes = new Set<NodePipe>();
  private readonly life = new AbortController();
  private readonly background = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;

  /** Aborted (with a StateError) when the close begins. */
  get signal(): AbortSignal {
    return this.life.signal;
  }

  /** Whether the close has begun (`closing` or `closed`). */
  get ended(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  /** @throws StateError unless the node is in `state`. */
  expect(state: NodeState): void {
    if (this.state !== state) throw new StateError(`node is ${this.state}`);
  }

  /** Moves from `new` to `starting`. @throws StateError when not `new`. */
  begin(): void {
    this.expect('new');
    this.state = 'starting';
  }

  /** Runs `p` in the background: its failure is ignored, the close waits for it. */
  track<T>(p: Promise<T>): void {
    const q = p.catch(() => undefined);
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  /**
   * Keeps `np` among the live {@link pipes} until it closes; once the close has begun, closes
   * it instead and returns false.
   */
  keep(np: NodePipe): boolean {
    if (this.ended) {
      void np.close();
      return false;
    }
    this.pipes.add(np);
    np.onClose(() => this.pipes.delete(np));
    return true;
  }

  /**
   * Closes once (later calls return the same promise): aborts {@link signal}, and unless the
   * node never started, closes the live pipes, then settles what `release` returns (closing
   * listeners, relays, signalling, mappings), then waits for the background tasks, then runs
   * `last`. The state is `closed` when the returned promise resolves. `force`, when it aborts,
   * makes the pipes' closes give up waiting and reset (it is passed to each `close()`).
   */
  close(release: () => readonly unknown[], last: () => Promise<void>, force?: AbortSignal): Promise<void> {
    if (this.closing) return this.closing;
    const was = this.state;
    this.state = 'closing';
    this.life.abort(new StateError('node closed'));
    this.closing = (async () => {
      if (was !== 'new') {
        await Promise.allSettled([...this.pipes].map((p) => p.close(force ? { signal: force } : undefined)));
        await Promise.allSettled(release());
        await Promise.allSettled([...this.background]);
        await last();
      }
      this.state = 'closed';
    })();
    return this.closing;
  }
}
