/**
 * The node's user callbacks: protocol handlers (`addMsgCb`), new-pipe, address-change and
 * error listeners, and the `onEvent` option. A throwing or rejecting callback never breaks
 * the node: message-handler errors go to the error listeners (or become a process warning),
 * others become process warnings.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Message } from '../pipes/types.js';
import { errorOf, safe } from './hello.js';
import type { NodeEvent, NodeMessageCallback, NodePipe, P2pNodeOptions } from './types.js';

type Remover = () => void;

/** One list of callbacks with add (returning a remover) and remove. */
class CallbackList<F> {
  /** Current callbacks (replaced, never mutated: safe to iterate while callbacks change it). */
  list: readonly F[] = [];

  add(cb: F): Remover {
    this.list = [...this.list, cb];
    return () => this.remove(cb);
  }

  remove(cb: F): void {
    this.list = this.list.filter((c) => c !== cb);
  }
}

/** The callbacks of one node. */
export class NodeHandlers {
  /** Protocol handlers. */
  readonly messages = new CallbackList<NodeMessageCallback>();
  /** New-pipe listeners. */
  readonly pipes = new CallbackList<(p: NodePipe) => void>();
  /** Address-change listeners. */
  readonly addrs = new CallbackList<(addr: string) => void>();
  /** Error listeners (errors of message handlers). */
  readonly errors = new CallbackList<(e: Error) => void>();

  /** @param opts the node's options (read on every event: `onEvent` may be replaced later). */
  constructor(private readonly opts: P2pNodeOptions) {}

  /** Adds a protocol handler. @throws InvalidArgumentError if `cb` is not a function. */
  addMessage(cb: NodeMessageCallback): Remover {
    if (typeof cb !== 'function') throw new InvalidArgumentError('addMsgCb expects a function');
    return this.messages.add(cb);
  }

  /** Calls every protocol handler with a message (the pipes' `onMessage`). */
  readonly dispatch = (m: Message): void => {
    const pipe = m.pipe as NodePipe;
    for (const cb of this.messages.list) {
      try {
        const r = cb(m.data, pipe);
        if (r && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).then(undefined, (e: unknown) => this.report(e));
      } catch (e) {
        this.report(e);
      }
    }
  };

  /** Tells the new-pipe listeners. */
  pipeOpened(p: NodePipe): void {
    for (const cb of this.pipes.list) safe(() => cb(p));
  }

  /** Tells the address-change listeners. */
  addrChanged(addr: string): void {
    for (const cb of this.addrs.list) safe(() => cb(addr));
  }

  /** Reports a node event to `opts.onEvent`. */
  event(e: NodeEvent): void {
    const cb = this.opts.onEvent;
    if (cb) safe(() => cb(e));
  }

  private report(e: unknown): void {
    const err = errorOf(e);
    if (this.errors.list.length === 0) process.emitWarning(`p2pd node: error in a message callback: ${err.message}`, { code: 'P2PD_CALLBACK_ERROR' });
    for (const cb of this.errors.list) safe(() => cb(err));
  }
}
