/**
 * A small, scriptable TURN server on loopback for the TURN client tests (not a test file
 * itself). It implements just enough of RFC 8656 to be a real relay: long-term credentials
 * (401 challenge, 438 on demand), Allocate with a granted lifetime and expiry, Refresh
 * (lifetime 0 deletes), CreatePermission, ChannelBind, Send/Data indications and ChannelData,
 * over UDP or TCP. A `hook` sees every request first and can replace the answer with raw
 * bytes, drop it, or fall through to the default handling — that is how the tests produce
 * truncated, oversized, wrong-id, wrong-source, redirecting and silent servers.
 * @module
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import {
  ATTR, CLASS, METHOD, StunStreamSplitter, decodeChannelData, decodeStun, encodeChannelData, encodeStun, getAttr,
  longTermKey, verifyIntegrity, type DecodedStunMessage, type StunAttribute,
} from '../src/nat/stun/index.js';

/** What a hook decides for one request. */
export type HookResult = 'drop' | Buffer | Buffer[] | undefined;

/** The request a hook sees. */
export interface FakeRequest {
  msg: DecodedStunMessage;
  from: Endpoint;
  /** Sends raw bytes to the client on its connection/socket. */
  send(buf: Buffer): void;
  /** Builds a response to `msg` (same tid and method) with these attributes; signed when the request was. */
  response(cls: 2 | 3, attributes: StunAttribute[], opts?: { sign?: boolean }): Buffer;
}

/** Options of {@link FakeTurnServer.start}. */
export interface FakeTurnOptions {
  proto?: 'udp' | 'tcp';
  realm?: string;
  users?: Record<string, string>;
  /** Lifetime granted (seconds) for Allocate/Refresh; default: what was asked, or 600. */
  lifetime?: number;
  /** The first N signed requests get 438 Stale Nonce (with a fresh nonce). */
  staleNonces?: number;
  /** Intercepts requests; return undefined for the default handling. */
  hook?: (req: FakeRequest) => HookResult;
  /** Expire allocations when not refreshed (default true). */
  expire?: boolean;
  /** Delay (ms) before handling a request; 0/undefined = at once. */
  delay?: (msg: DecodedStunMessage) => number;
}

interface Allocation {
  key: string;
  client: Client;
  relay: UdpSocket;
  relayed: Endpoint;
  perms: Map<string, number>;
  channels: Map<number, Endpoint>;
  byPeer: Map<string, number>;
  expiry: NodeJS.Timeout | undefined;
}

interface Client {
  key: string;
  from: Endpoint;
  send(buf: Buffer): void;
}

/** A fake TURN server; see the module comment. */
export class FakeTurnServer {
  readonly opts: Required<Pick<FakeTurnOptions, 'proto' | 'realm' | 'users'>> & FakeTurnOptions;
  /** Every request received, in order. */
  readonly requests: DecodedStunMessage[] = [];
  /** Live allocations by client key. */
  readonly allocations = new Map<string, Allocation>();
  /** Allocations deleted by Refresh(0). */
  deleted = 0;
  /** Allocations that expired. */
  expired = 0;
  nonce = 'nonce-0';
  #nonceCount = 0;
  #stale = 0;
  udp: UdpSocket | undefined;
  tcp: Server | undefined;
  readonly #conns = new Set<Socket>();
  address!: Endpoint;

  private constructor(opts: FakeTurnOptions) {
    this.opts = { proto: 'udp', realm: 'fake.realm', users: { alice: 'secret' }, ...opts };
  }

  /** Starts a server on 127.0.0.1 (random port). */
  static async start(opts: FakeTurnOptions = {}): Promise<FakeTurnServer> {
    const s = new FakeTurnServer(opts);
    if (s.opts.proto === 'udp') {
      const u = createSocket('udp4');
      u.on('message', (buf: Buffer, r: RemoteInfo) => {
        const from: Endpoint = { host: r.address, port: r.port, family: 4 };
        s.onPacket(buf, { key: `${r.address}:${r.port}`, from, send: (b) => u.send(b, r.port, r.address) });
      });
      u.bind(0, '127.0.0.1');
      await once(u, 'listening');
      s.udp = u;
      s.address = { host: '127.0.0.1', port: u.address().port, family: 4 };
    } else {
      const t = createServer((sock) => {
        s.#conns.add(sock);
        const splitter = new StunStreamSplitter();
        const from: Endpoint = { host: sock.remoteAddress ?? '', port: sock.remotePort ?? 0, family: 4 };
        const client: Client = { key: `tcp:${from.port}`, from, send: (b) => void (sock.writable && sock.write(b)) };
        sock.on('data', (chunk) => {
          try {
            for (const f of splitter.push(chunk)) {
              s.onPacket(f.kind === 'stun' ? f.data : encodeChannelData(f.channel, f.data), client);
            }
          } catch {
            sock.destroy();
          }
        });
        sock.on('error', () => undefined);
        sock.on('close', () => {
          s.#conns.delete(sock);
          const a = s.allocations.get(client.key);
          if (a) void s.drop(a);
        });
      });
      t.listen(0, '127.0.0.1');
      await once(t, 'listening');
      s.tcp = t;
      const a = t.address();
      s.address = { host: '127.0.0.1', port: typeof a === 'object' && a ? a.port : 0, family: 4 };
    }
    return s;
  }

  /** Requests of `method` received so far. */
  count(method: number, cls: number = CLASS.REQUEST): number {
    return this.requests.filter((m) => m.method === method && m.cls === cls).length;
  }

  /** The only allocation (throws when there is not exactly one). */
  only(): Allocation {
    if (this.allocations.size !== 1) throw new Error(`expected 1 allocation, have ${this.allocations.size}`);
    return [...this.allocations.values()][0] as Allocation;
  }

  private key(user: string): Buffer {
    return longTermKey(user, this.opts.realm, this.opts.users[user] ?? '');
  }

  private onPacket(buf: Buffer, client: Client): void {
    if (buf.length >= 4 && (buf[0] as number) >= 0x40 && (buf[0] as number) <= 0x4f) {
      const a = this.allocations.get(client.key);
      let cd;
      try {
        cd = decodeChannelData(buf);
      } catch {
        return;
      }
      const peer = a?.channels.get(cd.channel);
      if (a && peer) a.relay.send(cd.data, peer.port, peer.host);
      return;
    }
    let msg: DecodedStunMessage;
    try {
      msg = decodeStun(buf);
    } catch {
      return;
    }
    this.requests.push(msg);
    if (msg.cls === CLASS.INDICATION && msg.method === METHOD.SEND) {
      const a = this.allocations.get(client.key);
      const peer = getAttr(msg, ATTR.XOR_PEER_ADDRESS);
      const data = getAttr(msg, ATTR.DATA);
      if (a && peer && data && a.perms.has(peer.host)) a.relay.send(data, peer.port, peer.host);
      return;
    }
    if (msg.cls !== CLASS.REQUEST) return;
    const ms = this.opts.delay?.(msg) ?? 0;
    if (ms > 0) setTimeout(() => this.onRequest(msg, client), ms);
    else this.onRequest(msg, client);
  }

  private onRequest(msg: DecodedStunMessage, client: Client): void {
    const user = getAttr(msg, ATTR.USERNAME);
    const signed = user !== undefined && msg.offsets.integrity !== undefined;
    const response = (cls: 2 | 3, attributes: StunAttribute[], o: { sign?: boolean } = {}): Buffer =>
      encodeStun(
        { method: msg.method, cls, transactionId: msg.transactionId, attributes },
        { ...((o.sign ?? signed) && user !== undefined ? { integrity: { key: this.key(user) } } : {}), fingerprint: true },
      );
    const hooked = this.opts.hook?.({ msg, from: client.from, send: client.send, response });
    if (hooked === 'drop') return;
    if (hooked !== undefined) {
      for (const b of Array.isArray(hooked) ? hooked : [hooked]) client.send(b);
      return;
    }
    const err = (code: number, extra: StunAttribute[] = [], sign = signed): Buffer =>
      response(3, [{ type: ATTR.ERROR_CODE, value: { code, reason: '' } }, ...extra], { sign });
    const challenge = [
      { type: ATTR.REALM, value: this.opts.realm },
      { type: ATTR.NONCE, value: this.nonce },
    ] as StunAttribute[];
    if (!signed) return client.send(err(401, challenge, false));
    if (!(user in this.opts.users) || !verifyIntegrity(msg, this.key(user))) return client.send(err(401, challenge, false));
    if (getAttr(msg, ATTR.NONCE) !== this.nonce || this.#stale < (this.opts.staleNonces ?? 0)) {
      this.#stale++;
      this.nonce = `nonce-${++this.#nonceCount}`;
      return client.send(err(438, [{ type: ATTR.REALM, value: this.opts.realm }, { type: ATTR.NONCE, value: this.nonce }], false));
    }
    const out = this.handle(msg, client, response, err);
    if (out) client.send(out);
  }

  private handle(msg: DecodedStunMessage, client: Client, response: FakeRequest['response'], err: (code: number) => Buffer): Buffer | undefined {
    const a = this.allocations.get(client.key);
    const lifetimeOf = (): number => {
      const asked = getAttr(msg, ATTR.LIFETIME);
      return asked === 0 ? 0 : (this.opts.lifetime ?? asked ?? 600);
    };
    switch (msg.method) {
      case METHOD.ALLOCATE: {
        if (a) return err(437);
        const relay = createSocket('udp4');
        relay.bind(0, '127.0.0.1');
        const alloc: Allocation = {
          key: client.key, client, relay, relayed: { host: '127.0.0.1', port: 0, family: 4 },
          perms: new Map(), channels: new Map(), byPeer: new Map(), expiry: undefined,
        };
        this.allocations.set(client.key, alloc);
        relay.on('message', (data: Buffer, r: RemoteInfo) => this.fromPeer(alloc, data, { host: r.address, port: r.port, family: 4 }));
        this.afterBind(alloc, relay, response, lifetimeOf());
        return undefined;
      }
      case METHOD.REFRESH: {
        if (!a) return err(437);
        const lt = lifetimeOf();
        if (lt === 0) {
          this.deleted++;
          void this.drop(a);
        } else this.arm(a, lt);
        return response(2, [{ type: ATTR.LIFETIME, value: lt }]);
      }
      case METHOD.CREATE_PERMISSION: {
        if (!a) return err(437);
        for (const p of msg.attributes) if (p.type === ATTR.XOR_PEER_ADDRESS) a.perms.set((p.value as Endpoint).host, Date.now());
        return response(2, []);
      }
      case METHOD.CHANNEL_BIND: {
        if (!a) return err(437);
        const ch = getAttr(msg, ATTR.CHANNEL_NUMBER);
        const peer = getAttr(msg, ATTR.XOR_PEER_ADDRESS);
        if (ch === undefined || peer === undefined) return err(400);
        const k = `${peer.host}:${peer.port}`;
        const old = a.byPeer.get(k);
        if ((old !== undefined && old !== ch) || (a.channels.has(ch) && `${a.channels.get(ch)?.host}:${a.channels.get(ch)?.port}` !== k)) return err(400);
        a.channels.set(ch, peer);
        a.byPeer.set(k, ch);
        a.perms.set(peer.host, Date.now());
        return response(2, []);
      }
      default:
        return err(400);
    }
  }

  private afterBind(a: Allocation, relay: UdpSocket, response: FakeRequest['response'], lifetime: number): void {
    // dgram binds asynchronously: answer once the relay port is known.
    relay.once('listening', () => {
      a.relayed = { host: '127.0.0.1', port: relay.address().port, family: 4 };
      this.arm(a, lifetime);
      a.client.send(
        response(2, [
          { type: ATTR.XOR_RELAYED_ADDRESS, value: a.relayed },
          { type: ATTR.XOR_MAPPED_ADDRESS, value: a.client.from },
          { type: ATTR.LIFETIME, value: lifetime },
        ]),
      );
    });
  }

  private arm(a: Allocation, lifetime: number): void {
    if (a.expiry) clearTimeout(a.expiry);
    if (this.opts.expire === false) return;
    a.expiry = setTimeout(() => {
      this.expired++;
      void this.drop(a);
    }, Math.min(lifetime * 1000, 2 ** 31 - 1));
  }

  private fromPeer(a: Allocation, data: Buffer, peer: Endpoint): void {
    if (!a.perms.has(peer.host)) return;
    const ch = a.byPeer.get(`${peer.host}:${peer.port}`);
    if (ch !== undefined) {
      a.client.send(encodeChannelData(ch, data, { pad: this.opts.proto === 'tcp' }));
      return;
    }
    a.client.send(this.dataIndication(peer, data));
  }

  /** A Data indication from `peer` carrying `data`. */
  dataIndication(peer: Endpoint, data: Uint8Array): Buffer {
    return encodeStun({
      method: METHOD.DATA, cls: CLASS.INDICATION, transactionId: Buffer.alloc(12, 7),
      attributes: [{ type: ATTR.XOR_PEER_ADDRESS, value: peer }, { type: ATTR.DATA, value: data }],
    });
  }

  /** Deletes an allocation (closes its relay socket). */
  drop(a: Allocation): Promise<void> {
    if (a.expiry) clearTimeout(a.expiry);
    this.allocations.delete(a.key);
    return new Promise<void>((r) => {
      try {
        a.relay.close(() => r());
      } catch {
        r(); // already closed
      }
    });
  }

  /** Stops the server, its relays and connections; resolves when every socket is closed. */
  async close(): Promise<void> {
    const waits: Promise<unknown>[] = [...this.allocations.values()].map((a) => this.drop(a));
    for (const c of this.#conns) {
      waits.push(c.destroyed ? Promise.resolve() : once(c, 'close'));
      c.destroy();
    }
    if (this.udp) {
      const u = this.udp;
      this.udp = undefined;
      waits.push(new Promise<void>((r) => u.close(() => r())));
    }
    if (this.tcp) {
      const t = this.tcp;
      this.tcp = undefined;
      waits.push(new Promise<void>((r) => t.close(() => r())));
    }
    await Promise.all(waits);
  }
}
