/**
 * Hostile-input audit of the lower layers' servers (raw node:net sockets as the attacker, on
 * loopback): a TCP STUN server held by connections that trickle bytes or never read their
 * answers, a TCP server whose accept queue overflows in pull mode, and a SecureServer whose
 * handshake slots are all taken by one address.
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectSecure, Identity, listenSecure } from '../src/crypto/index.js';
import { CLASS, encodeStun, METHOD, newTransactionId, startStunServer, stunGetMapping, type StunServer } from '../src/nat/stun/index.js';
import { pipeOpen, type TcpServer } from '../src/pipes/index.js';
import { SourceShare, sourceOf } from '../src/pipes/source-share.js';
import { guardUnhandled, useCleanup, waitFor, within } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

const HOST = '127.0.0.1';

/** A raw TCP connection from `localAddress` (default 127.0.0.1), tracked for cleanup. */
async function attacker(port: number, localAddress = HOST): Promise<Socket> {
  const s = cleanup.socket(netConnect({ host: HOST, port, localAddress }));
  s.on('error', () => undefined);
  await once(s, 'connect');
  return s;
}

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

function bindingRequest(): Buffer {
  return encodeStun({ method: METHOD.BINDING, cls: CLASS.REQUEST, transactionId: newTransactionId(), attributes: [] });
}

async function stunTcp(opts: Parameters<typeof startStunServer>[0] = {}): Promise<StunServer> {
  return cleanup.track(await startStunServer({ addresses: [HOST], ports: [0], protos: ['tcp'], ...opts }));
}

describe('TCP STUN server', () => {
  it('a connection that trickles one byte at a time is closed after tcpIdleTimeout (no slot held forever)', async () => {
    const s = await stunTcp({ tcpIdleTimeout: 300, maxConnections: 2 });
    const socks = [await attacker(s.primary.port), await attacker(s.primary.port)];
    // The header of a 2 kB request, then its body one byte every 50 ms: never a whole
    // request, but never idle for the socket either.
    const req = Buffer.concat([bindingRequest(), Buffer.alloc(2028)]);
    req.writeUInt16BE(2028, 2);
    let i = 0;
    const drip = setInterval(() => {
      for (const c of socks) if (!c.destroyed) c.write(req.subarray(i, i + 1));
      i++;
    }, 50);
    cleanup.add(() => clearInterval(drip));
    await within(Promise.all(socks.map(closed)), 3000, 'the trickling connections closed');
    expect(s.stats.tcpDropped).toBeGreaterThanOrEqual(2);
    // The slots are free again for an honest client.
    const m = await stunGetMapping({ server: s.primary, proto: 'tcp', timeout: 2000 });
    expect(m.proto).toBe('tcp');
  });

  it('one address holding every connection slot with live requests does not lock out another address', async () => {
    const s = await stunTcp({ maxConnections: 2 });
    const hogs = [await attacker(s.primary.port, '127.0.0.2'), await attacker(s.primary.port, '127.0.0.2')];
    for (const h of hogs) h.resume();
    const keep = setInterval(() => {
      for (const h of hogs) if (!h.destroyed) h.write(bindingRequest()); // active, never idle
    }, 50);
    cleanup.add(() => clearInterval(keep));
    await waitFor(() => s.stats.success >= 2, 'the attacker is served');
    // An honest client from another address still gets an answer (the attacker's oldest goes).
    const m = await stunGetMapping({ server: s.primary, proto: 'tcp', timeout: 2000 });
    expect(m.mapped.host).toBe(HOST);
    await within(closed(hogs[0] as Socket), 3000, "the attacker's oldest connection dropped");
    expect(hogs[1]?.destroyed).toBe(false);
  });

  it('a client that pipelines requests and never reads is dropped; answers are not buffered without bound', async () => {
    const s = await stunTcp({ rateLimit: false });
    const c = await attacker(s.primary.port);
    c.pause(); // never read the answers
    const batch = Buffer.concat(Array.from({ length: 10_000 }, bindingRequest)); // 200 kB → ~600 kB of answers
    const srv = (s.endpoints.length === 1 ? (s as unknown as { socks: { pipe: TcpServer }[] }).socks[0]?.pipe : undefined) as TcpServer;
    let most = 0;
    for (let k = 0; k < 60 && !c.destroyed; k++) {
      c.write(batch);
      await new Promise((r) => setTimeout(r, 50));
      for (const p of srv.connections) most = Math.max(most, p.socket.writableLength);
    }
    await within(closed(c), 3000, 'the non-reading client dropped');
    expect(s.stats.tcpDropped).toBe(1);
    expect(most).toBeLessThan(1024 * 1024);
  }, 20_000);
});

describe('TCP server accept queue (pull mode)', () => {
  it('connections dropped from a full accept queue are reset, not left open where no one can reach them', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: `${HOST}:0`, maxAcceptQueue: 2 }));
    const socks: Socket[] = [];
    for (let i = 0; i < 5; i++) socks.push(await attacker(server.local.port));
    await waitFor(() => server.acceptOverflow === 3, 'three overflows');
    await within(Promise.all(socks.slice(0, 3).map(closed)), 3000, 'the dropped connections closed');
    await waitFor(() => server.connections.size === 2, 'only the queued connections stay');
    const a = cleanup.track(await server.accept({ timeout: 1000 }));
    expect(a.remote.port).toBe(socks[3]?.localPort);
    expect(socks[4]?.destroyed).toBe(false);
  });
});

describe('SecureServer handshake slots', () => {
  it('one address holding every slot with silent connections does not lock out another address', async () => {
    const A = Identity.generate();
    const srv = cleanup.track(await listenSecure(`${HOST}:0`, { identity: A, maxPendingHandshakes: 4, timeout: 10_000 }));
    const hogs: Socket[] = [];
    for (let i = 0; i < 4; i++) hogs.push(await attacker(srv.local.port, '127.0.0.2'));
    await waitFor(() => srv.pendingHandshakes === 4, 'the attacker holds every slot');
    // More from the attacker's address are still refused...
    const extra = cleanup.socket(netConnect({ host: HOST, port: srv.local.port, localAddress: '127.0.0.2' }));
    extra.on('error', () => undefined);
    await within(closed(extra), 3000, 'the extra attacker connection reset');
    expect(srv.stats.rejected).toBe(1);
    // ...but an honest client from another address gets a slot (the attacker's oldest is evicted).
    const p = cleanup.track(await connectSecure(srv.local, { identity: Identity.generate(), remoteId: A.id, timeout: 3000 }));
    expect(p.remoteIdHex).toBe(A.idHex);
    await within(closed(hogs[0] as Socket), 3000, "the attacker's oldest handshake evicted");
    expect(hogs.slice(1).every((h) => !h.destroyed)).toBe(true);
  });
});

describe('SourceShare', () => {
  it('charges IPv4 addresses whole and IPv6 sources by /64; evicts only from a source holding at least two more', () => {
    expect(sourceOf('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(sourceOf('2001:db8:1:2::5')).toBe(sourceOf('2001:db8:1:2:ffff::9'));
    expect(sourceOf('2001:db8:1:2::5')).not.toBe(sourceOf('2001:db8:1:3::5'));
    const share = new SourceShare<string>();
    share.add('a', 'a1');
    share.add('a', 'a2');
    share.add('b', 'b1');
    expect(share.victimFor('b')).toBeUndefined(); // 2 vs 1: no churn between near-equal shares
    expect(share.victimFor('a')).toBeUndefined();
    expect(share.victimFor('c')).toBe('a1'); // 2 vs 0: the oldest of the biggest share goes
    expect(share.size).toBe(2);
    expect(share.delete('a', 'a1')).toBe(false);
  });
});
