/**
 * `Daemon`: one message handler serving many listening pipes (NICs × TCP/UDP × IPv4/IPv6 × ports).
 * @module
 */
import { AbortError, BindError, InvalidArgumentError, StateError } from '../errors.js';
import { checkPort, type Family } from '../interfaces/endpoint.js';
import { getInterfaces } from '../interfaces/interfaces.js';
import type { AddressScope } from '../interfaces/scope.js';
import { checkAbortOptions, closeWithin, forceSignal, linkSignals, type AbortOptions } from '../util/abort.js';
import { pipeOpen } from './open.js';
import type { Pipe } from './pipe.js';
import type { Message, MessageCallback, PipeOptions, Proto } from './types.js';

/** One listening socket to open. */
export interface ListenSpec {
  /** `'tcp'` or `'udp'`. */
  proto: Proto;
  /** Port; `0` = any free port. @default 0 */
  port?: number;
  /** Address to bind (may be `fe80::…%iface`). @default the wildcard address of `family` */
  host?: string;
  /** Interface to bind (its address of `family`). */
  iface?: string;
  /** Address family when `host` does not say. @default 4 */
  family?: Family;
}

/** What the daemon could not bind and skipped (address not available), with the reason. */
export interface SkippedBind {
  /** The address that was skipped. */
  address: string;
  /** Why. */
  error: Error;
}

/**
 * Serves many listening pipes with one handler. Pass a callback, or subclass and override
 * {@link Daemon.onMessage}. Reply with `msg.pipe.send(data, msg.from)` (works for TCP and UDP).
 *
 * @example
 * const d = new Daemon(async (msg) => { await msg.pipe.send(msg.data, msg.from); });
 * await d.listenLoopback(['tcp', 'udp'], 0);
 */
export class Daemon {
  /** Every listening pipe this daemon opened, in order. */
  readonly pipes: Pipe[] = [];
  /** Addresses `listenAll`/`listenLocal` skipped because they could not be bound (not in use). */
  readonly skipped: SkippedBind[] = [];
  private readonly handler: MessageCallback | undefined;
  private readonly pipeOpts: Omit<PipeOptions, 'bind' | 'onMessage' | 'signal' | 'timeout'>;
  private closing: Promise<void> | undefined;

  /**
   * @param onMessage - the handler for every message on every pipe; omit when subclassing.
   * @param opts - pipe options for every listening pipe (framing, queue limits, buffer sizes).
   */
  constructor(onMessage?: MessageCallback, opts: Omit<PipeOptions, 'bind' | 'onMessage' | 'signal' | 'timeout'> = {}) {
    if (onMessage !== undefined && typeof onMessage !== 'function') throw new InvalidArgumentError('Daemon handler must be a function');
    this.handler = onMessage;
    this.pipeOpts = opts;
  }

  /** The handler; override in a subclass. Errors it throws go to the pipe's `onError`. */
  onMessage(msg: Message): void | Promise<void> {
    return this.handler?.(msg);
  }

  /**
   * Opens one listening pipe. A port conflict rejects with `BindError` (`ERR_ADDRESS_IN_USE`)
   * naming the address; a closed daemon with `StateError`; a bad spec or option (checked before
   * any socket is opened) with `InvalidArgumentError` / `EndpointError`.
   */
  async listen(spec: ListenSpec, opts: AbortOptions = {}): Promise<Pipe> {
    checkOpts(opts);
    if (this.closing) throw new StateError('daemon is closed');
    if (spec === null || typeof spec !== 'object') throw new InvalidArgumentError('listen() needs a spec { proto, port?, host?, iface?, family? }');
    const bind = spec.host !== undefined ? { host: spec.host, port: spec.port ?? 0, iface: spec.iface } : { iface: spec.iface, port: spec.port ?? 0 };
    const pipe = await pipeOpen(spec.proto, undefined, {
      ...this.pipeOpts,
      ...opts,
      bind,
      family: spec.family,
      onMessage: (m) => this.onMessage(m),
    });
    if (this.closing) {
      // close() ran while this socket was opening: it must not outlive the daemon.
      await pipe.close();
      throw new StateError('daemon is closed');
    }
    this.pipes.push(pipe);
    return pipe;
  }

  /**
   * Listens on every address of every up interface (IPv4 and IPv6, link-local included, loopback
   * included), for each protocol, on `port`. With port `0` the first socket picks the port and
   * every other socket uses the same one. Addresses that cannot be bound at all are recorded in
   * {@link Daemon.skipped}; a port conflict fails the whole call and closes what it opened, and
   * so does binding none at all (`BindError` `ERR_BIND`, e.g. a privileged port without the right).
   * `opts.timeout` bounds the whole call (`TimeoutError`), and `opts.signal` cancels it
   * (`AbortError`); either way what it opened is closed. A closed daemon: `StateError`.
   */
  listenAll(protos: Proto | Proto[] = ['tcp', 'udp'], port = 0, opts: AbortOptions = {}): Promise<Pipe[]> {
    return this.listenScopes(protos, port, () => true, opts);
  }

  /** Listens on `127.0.0.1` and `::1` (where available) for each protocol. */
  listenLoopback(protos: Proto | Proto[] = ['tcp', 'udp'], port = 0, opts: AbortOptions = {}): Promise<Pipe[]> {
    return this.listenScopes(protos, port, (s) => s === 'loopback', opts);
  }

  /** Listens on every LAN address (private, ULA, CGNAT and link-local; not loopback, not global). */
  listenLocal(protos: Proto | Proto[] = ['tcp', 'udp'], port = 0, opts: AbortOptions = {}): Promise<Pipe[]> {
    return this.listenScopes(protos, port, (s) => s !== 'loopback' && s !== 'global', opts);
  }

  private async listenScopes(protos: Proto | Proto[], port: number, want: (s: AddressScope) => boolean, opts: AbortOptions): Promise<Pipe[]> {
    checkOpts(opts);
    if (this.closing) throw new StateError('daemon is closed');
    const list = Array.isArray(protos) ? protos : [protos];
    for (const p of list) if (p !== 'tcp' && p !== 'udp') throw new InvalidArgumentError(`proto must be 'tcp' or 'udp', got ${JSON.stringify(p)}`);
    checkPort(port);
    // One budget for the whole call (every socket it opens), not a fresh `timeout` per socket.
    const t = opts.timeout;
    const link = t !== undefined && t > 0 && Number.isFinite(t) ? linkSignals(opts, [], 'daemon listen') : undefined;
    try {
      return await this.listenEach(list, port, want, link ? { signal: link.signal } : opts.signal ? { signal: opts.signal } : {});
    } finally {
      link?.done();
    }
  }

  private async listenEach(list: Proto[], port: number, want: (s: AddressScope) => boolean, opts: AbortOptions): Promise<Pipe[]> {
    const specs: ListenSpec[] = [];
    for (const iface of await getInterfaces(opts.signal ? { signal: opts.signal } : {})) {
      if (!iface.up) continue;
      for (const a of iface.addresses) {
        if (!want(a.scope)) continue;
        const host = a.scope === 'link-local' && a.family === 6 ? `${a.address}%${iface.name}` : a.address;
        for (const proto of list) specs.push({ proto, host, family: a.family });
      }
    }
    const opened: Pipe[] = [];
    let chosen = port;
    try {
      for (const s of specs) {
        try {
          const p = await this.listen({ ...s, port: chosen }, opts);
          opened.push(p);
          if (chosen === 0) chosen = p.local.port;
        } catch (e) {
          if (e instanceof BindError && e.code === 'ERR_BIND') {
            this.skipped.push({ address: e.address, error: e });
            continue;
          }
          throw e;
        }
      }
      if (opened.length === 0 && specs.length > 0) {
        const last = this.skipped.at(-1)?.error;
        throw new BindError('ERR_BIND', this.skipped.at(-1)?.address ?? '', `could not listen on any of ${specs.length} addresses${last ? ` (last: ${last.message})` : ''}`, last ? { cause: last } : undefined);
      }
    } catch (e) {
      await Promise.all(opened.map((p) => p.close()));
      for (const p of opened) this.pipes.splice(this.pipes.indexOf(p), 1);
      throw e;
    }
    return opened;
  }

  /**
   * Closes every pipe the daemon opened (and their accepted connections). Idempotent. With
   * `opts`, a signal that aborts or a timeout that passes first closes what is left at once
   * (TCP connections are reset) and rejects with `AbortError` / `TimeoutError` once all is closed.
   */
  close(opts?: AbortOptions): Promise<void> {
    const graceful = (): Promise<void> => (this.closing ??= Promise.all(this.pipes.map((p) => p.close())).then(() => undefined));
    return closeWithin(graceful, opts, () => {
      const now = forceSignal(new AbortError('daemon closed'));
      for (const p of this.pipes) p.close({ signal: now }).catch(() => undefined);
    }, 'daemon close');
  }

  /** `await using daemon = …` closes it. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** `opts` is an options object with a valid `signal`/`timeout`, and the signal is not aborted. */
function checkOpts(opts: AbortOptions): void {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError(`options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  checkAbortOptions(opts);
}
