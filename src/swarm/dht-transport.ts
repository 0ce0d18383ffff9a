/**
 * A {@link DhtTransport} over a swarm: DHT RPC frames travel as directed swarm messages of
 * kind {@link KIND_DHT}, so they are encrypted on every link, signed by their origin and
 * routed over as many hops as needed. The requester's id given to the DHT handler
 * (`remoteId`) is the message's verified origin, so a DHT node cannot be spoofed.
 * @module
 */
import { DhtConnection } from '../dht/connection.js';
import type { Contact } from '../dht/contact.js';
import type { DhtRequest, DhtResponse } from '../dht/messages.js';
import type { DhtRequestHandler, DhtRequestOptions, DhtTransport } from '../dht/transport.js';
import { PipeClosedError } from '../errors.js';
import type { SwarmPeer } from './peer.js';
import type { SwarmPeerInfo } from './types.js';

/** Message kind of DHT frames on the swarm. */
export const KIND_DHT = 2;
/** Most peers with a DHT connection state kept at once (the least recently created idle one dropped first). */
export const MAX_CONNECTIONS = 4096;

/** DHT RPC over a bound swarm peer. */
export class SwarmDhtTransport implements DhtTransport {
  readonly #peer: SwarmPeer;
  readonly #conns = new Map<string, DhtConnection>();
  #handler: DhtRequestHandler | undefined;
  #closed = false;
  readonly #unregister: () => void;

  constructor(peer: SwarmPeer) {
    this.#peer = peer;
    this.#unregister = peer.registerBuiltin(KIND_DHT, (env, _from, src) => this.#conn(src).receive(env.payload));
  }

  /** The DHT contact of a swarm member (its listening endpoint, id and key). */
  static contactOf(info: SwarmPeerInfo | { id: Buffer; publicKey: Buffer; endpoint: { host: string; port: number; family: 4 | 6 } }): Contact {
    const ep = info.endpoint;
    if (!ep) throw new PipeClosedError('member endpoint unknown');
    return { id: new Uint8Array(info.id), host: ep.host, port: ep.port, family: ep.family, publicKey: new Uint8Array(info.publicKey) };
  }

  #conn(info: { id: Buffer; idHex: string }): DhtConnection {
    let c = this.#conns.get(info.idHex);
    if (c) return c;
    const to = Buffer.from(info.id);
    c = new DhtConnection({
      send: (frame) => this.#peer.sendInternal(KIND_DHT, to, Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)),
      handler: () => this.#handler,
      localId: new Uint8Array(this.#peer.id),
      context: { remoteId: new Uint8Array(to) },
    });
    if (this.#conns.size >= MAX_CONNECTIONS) {
      // The oldest idle one: a busy oldest (a request of ours in flight) must not stop the
      // eviction, or each request from a new origin meanwhile would grow the map for good.
      for (const [k, old] of this.#conns) {
        if (old.pending > 0) continue;
        old.close();
        this.#conns.delete(k);
        break;
      }
    }
    this.#conns.set(info.idHex, c);
    return c;
  }

  /** Peers with a DHT connection state (diagnostics). */
  get connections(): number {
    return this.#conns.size;
  }

  /** Sends `req` to `to` over the swarm (a directed message) and resolves with the response. */
  request(to: Contact, req: DhtRequest, opts: DhtRequestOptions): Promise<DhtResponse> {
    if (this.#closed) return Promise.reject(new PipeClosedError('DHT transport is closed'));
    const id = Buffer.from(to.id);
    return this.#conn({ id, idHex: id.toString('hex') }).request(req, opts);
  }

  /** Installs the handler serving incoming requests. */
  onRequest(handler: DhtRequestHandler | undefined): void {
    this.#handler = handler;
  }

  /** Stops serving and fails pending requests. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unregister();
    for (const c of this.#conns.values()) c.close();
    this.#conns.clear();
  }
}
