/**
 * A DHT node on its own sockets, without the swarm (the "custom DHT" of Cicada's LocalNode):
 * `startDhtNode()` listens on a TCP port ({@link PipeDhtTransport}), joins through bootstrap
 * contacts and returns a {@link DhtNode} whose `close()` also closes the sockets.
 *
 * ```ts
 * const a = await startDhtNode({ bind: '127.0.0.1:0' });
 * const b = await startDhtNode({ bind: '127.0.0.1:0', bootstrap: [a.contactString] });
 * await b.set('color', 'blue');
 * await a.get('color');            // 'blue'
 * await Promise.all([a.close(), b.close()]);
 * ```
 *
 * Contacts are shared as strings `<64 hex id>@<host>:<port>` (IPv6: `<id>@[v6]:port`), see
 * {@link formatContactString} and {@link parseContact}.
 * @module
 */
import { ConnectError, InvalidArgumentError } from '../errors.js';
import { Identity } from '../crypto/identity.js';
import { parseEndpoint, type EndpointLike } from '../interfaces/endpoint.js';
import type { BindOptions } from '../pipes/types.js';
import type { AbortOptions } from '../util/abort.js';
import { contactAddress, contactProblem, type Contact } from './contact.js';
import { idFromHex, idToHex } from './id.js';
import { DhtNode } from './node.js';
import type { DhtNodeOptions } from './options.js';
import { PipeDhtTransport, type PipeDhtTransportOptions } from './pipe-transport.js';

/** Longest contact string accepted (64 hex + `@` + a bracketed IPv6 endpoint). */
export const MAX_CONTACT_STRING = 64 + 1 + 2 + 45 + 1 + 5;

/**
 * A contact string could not be parsed (or a contact object is invalid). Code
 * `ERR_BAD_CONTACT`; also an {@link InvalidArgumentError}. `input` is the offending text
 * (truncated to 120 characters).
 */
export class ContactParseError extends InvalidArgumentError {
  readonly input: string;
  constructor(input: unknown, reason: string) {
    const text = typeof input === 'string' ? input.slice(0, 120) : String(typeof input);
    super(`invalid DHT contact ${JSON.stringify(text)}: ${reason} (expected "<64 hex id>@host:port")`);
    (this as { code: string }).code = 'ERR_BAD_CONTACT';
    this.input = text;
  }
}

/** `<64 hex id>@host:port` (IPv6 bracketed): the full, parseable form of a contact. */
export function formatContactString(c: Pick<Contact, 'id' | 'host' | 'port' | 'family'>): string {
  return `${idToHex(c.id)}@${contactAddress(c)}`;
}

/**
 * Parses `<64 hex id>@host:port` or `<64 hex id>@[v6]:port` into a contact. The host must be
 * an IP literal (no DNS, no zone), the port 1–65535.
 * @throws ContactParseError on anything else.
 */
export function parseContact(s: string): Contact {
  if (typeof s !== 'string') throw new ContactParseError(s, 'not a string');
  if (s.length === 0 || s.length > MAX_CONTACT_STRING) throw new ContactParseError(s, 'bad length');
  const at = s.indexOf('@');
  if (at < 0) throw new ContactParseError(s, 'missing "@"');
  let id;
  try {
    id = idFromHex(s.slice(0, at));
  } catch {
    throw new ContactParseError(s, 'the id is not 64 hex characters');
  }
  let ep;
  try {
    ep = parseEndpoint(s.slice(at + 1));
  } catch (e) {
    throw new ContactParseError(s, (e as Error).message);
  }
  if (ep.scopeId !== undefined) throw new ContactParseError(s, 'an IPv6 zone cannot be shared with other nodes');
  const c: Contact = { id, host: ep.host, port: ep.port, family: ep.family };
  const problem = contactProblem(c);
  if (problem) throw new ContactParseError(s, problem);
  return c;
}

/** A contact given as an object or a string, checked. @throws ContactParseError */
export function toContact(c: Contact | string): Contact {
  if (typeof c === 'string') return parseContact(c);
  if (c === null || typeof c !== 'object') throw new ContactParseError(c, 'not a contact');
  const problem = contactProblem(c);
  if (problem) throw new ContactParseError(`${typeof c.host === 'string' ? c.host : '?'}:${String(c.port)}`, problem);
  return c;
}

/** Options of {@link startDhtNode}. */
export interface StartDhtNodeOptions
  extends Omit<DhtNodeOptions, 'transport' | 'contact' | 'signer'>,
    Omit<PipeDhtTransportOptions, 'identity' | 'id' | 'bind'>,
    AbortOptions {
  /** Our identity (signs records; authenticates us in secure mode). @default a fresh one */
  identity?: Identity;
  /** Where to listen. @default `0.0.0.0:0` (see `publicHost` for what others are told) */
  bind?: EndpointLike | BindOptions;
  /**
   * Nodes to join through: contacts or `<id>@host:port` strings. Without any the node starts
   * a new network (others join through it). Join fails (and the node is closed) if none answers.
   * @default []
   */
  bootstrap?: ReadonlyArray<Contact | string>;
  /** Noise on every link. @default `true` (we always have an identity) */
  secure?: boolean;
}

/** A {@link DhtNode} bound to its own TCP socket. `close()` also closes the transport. */
export class StandaloneDhtNode extends DhtNode {
  /** The transport (server, pooled links, counters). */
  readonly transport: PipeDhtTransport;
  /** Our identity. */
  readonly identity: Identity;

  constructor(opts: DhtNodeOptions & { transport: PipeDhtTransport; identity: Identity }) {
    const { identity, ...rest } = opts;
    super({ ...rest, signer: identity });
    this.transport = opts.transport;
    this.identity = identity;
  }

  /** Our contact as a string to share: `<id>@host:port`. */
  get contactString(): string {
    return formatContactString(this.contact);
  }

  /**
   * Stops the node, then closes the server and every connection. Idempotent. With `opts`, a
   * signal that aborts or a timeout that passes first resets the connections still open and
   * rejects with `AbortError` / `TimeoutError` once all is closed.
   */
  override async close(opts?: AbortOptions): Promise<void> {
    await super.close();
    await this.transport.close(opts);
  }
}

/**
 * Starts a DHT node on real sockets: listens (`bind`), then joins through `bootstrap`.
 * `timeout`/`signal` bound the join.
 * @throws ContactParseError for a malformed bootstrap contact (before anything is opened);
 *   BindError; ConnectError if no bootstrap node answered.
 */
export async function startDhtNode(opts: StartDhtNodeOptions = {}): Promise<StandaloneDhtNode> {
  const {
    identity = Identity.generate(), bind, bootstrap = [], secure = true, signal, timeout,
    publicHost, publicPort, maxConnections, maxInbound, idleTimeout, connectTimeout, handshakeTimeout,
    maxMalformed, maxPending, maxServing, upgrade, ...nodeOpts
  } = opts;
  if (!(identity instanceof Identity)) throw new InvalidArgumentError('identity must be an Identity');
  if (!Array.isArray(bootstrap)) throw new InvalidArgumentError('bootstrap must be an array of contacts');
  const boot = bootstrap.map(toContact);
  const transport = await PipeDhtTransport.listen({
    identity, secure,
    ...(bind !== undefined ? { bind } : {}),
    ...defined({ publicHost, publicPort, maxConnections, maxInbound, idleTimeout, connectTimeout, handshakeTimeout, maxMalformed, maxPending, maxServing, upgrade }),
  }, { ...(signal ? { signal } : {}) });
  let node: StandaloneDhtNode;
  try {
    node = new StandaloneDhtNode({ ...nodeOpts, transport, contact: transport.contact, identity });
  } catch (e) {
    await transport.close();
    throw e;
  }
  if (boot.length > 0) {
    try {
      await node.join(boot, { ...(signal ? { signal } : {}), ...(timeout !== undefined ? { timeout } : {}) });
    } catch (e) {
      await node.close();
      // Keep the per-contact cause (PeerIdMismatchError, HandshakeError, TimeoutError, ...) at hand.
      if (e instanceof ConnectError) throw new ConnectError(`${e.message} (tried ${boot.map(formatContactString).join(', ')})`, { cause: e.cause ?? e });
      throw e;
    }
  }
  return node;
}

/** `obj` without its `undefined` properties. */
function defined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
