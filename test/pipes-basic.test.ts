/**
 * Pipe basics: TCP and UDP × IPv4/IPv6 × client/server echo, local/remote endpoints and the
 * ways of binding (address, port, interface name, "host:port" string, wildcard by family).
 */
import { describe, expect, it } from 'vitest';
import { InterfaceNotFoundError, InvalidArgumentError } from '../src/errors.js';
import { SUB_ALL, pipeOpen, type Framing, type Pipe, type TcpPipe } from '../src/pipes/index.js';
import { LO_IFACE, LOOPBACKS, freeTcpPort, guardUnhandled, hostPort, rawUdp, rejection, useCleanup } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

/** Receives from `pipe` until `n` bytes arrived (raw TCP may split or merge chunks). */
async function recvBytes(pipe: Pipe, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const m = await pipe.recv({ timeout: 5_000 });
    parts.push(m.data);
    got += m.data.length;
  }
  return Buffer.concat(parts);
}

describe.each(LOOPBACKS)('TCP over $name', ({ host, family, wildcard }) => {
  describe.each(['raw', 'length', 'line'] as Framing[])('framing %s', (framing) => {
    it('echoes client → server → client', async () => {
      const server = cleanup.track(
        await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing, onMessage: (m) => m.pipe.send(m.data) }),
      );
      const client = cleanup.track(await pipeOpen('tcp', hostPort(host, server.local.port), { framing }));
      const msgs = ['hello', 'wörld', 'x'.repeat(1000)];
      for (const s of msgs) await client.send(s);
      if (framing === 'raw') {
        const got = await recvBytes(client, Buffer.byteLength(msgs.join('')));
        expect(got.toString()).toBe(msgs.join(''));
      } else {
        for (const s of msgs) {
          const m = await client.recv({ timeout: 5_000 });
          expect(m.data.toString()).toBe(s);
          expect(m.pipe).toBe(client);
          expect(m.from).toEqual(client.remote);
        }
      }
      expect(client.stats.messagesOut).toBe(3);
      expect(client.stats.bytesOut).toBe(Buffer.byteLength(msgs.join('')));
    });

    it('echoes server → client → server (accepted pipe sends first)', async () => {
      const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing }));
      const client = cleanup.track(
        await pipeOpen('tcp', { host, port: server.local.port }, { framing, onMessage: (m) => m.pipe.send(m.data) }),
      );
      const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
      await conn.send('ping from server');
      const got = framing === 'raw' ? await recvBytes(conn, 16) : (await conn.recv({ timeout: 5_000 })).data;
      expect(got.toString()).toBe('ping from server');
      expect(conn.stats.messagesIn).toBeGreaterThanOrEqual(1);
      expect(conn.stats.bytesIn).toBe(16);
      expect(client.stats.bytesIn).toBe(16);
    });
  });

  it('reports local and remote endpoints of server, client and accepted pipe', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    expect(server.isServer).toBe(true);
    expect(server.proto).toBe('tcp');
    expect(server.framing).toBe('raw');
    expect(server.remote).toBeUndefined();
    expect(server.local.host).toBe(host);
    expect(server.local.family).toBe(family);
    expect(server.local.port).toBeGreaterThan(0);
    expect(server.local.port).toBe((server.server.address() as { port: number }).port);

    const client = cleanup.track(await pipeOpen('tcp', hostPort(host, server.local.port)));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(client.isServer).toBe(false);
    expect(client.remote).toEqual({ host, port: server.local.port, family });
    expect(client.local.host).toBe(host);
    expect(client.local.family).toBe(family);
    expect(client.local.port).toBeGreaterThan(0);
    expect(conn.isServer).toBe(false);
    expect(conn.local).toEqual({ host, port: server.local.port, family });
    expect(conn.remote).toEqual(client.local);
    expect(server.connections.has(conn)).toBe(true);
  });

  it('binds a client to a specific address and port', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 } }));
    const port = await freeTcpPort(host);
    const client = cleanup.track(await pipeOpen('tcp', hostPort(host, server.local.port), { bind: { host, port } }));
    expect(client.local).toEqual({ host, port, family });
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.remote).toEqual({ host, port, family });
  });

  it(`binds server and client to the interface by name ({ iface: '${LO_IFACE}' })`, async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { iface: LO_IFACE }, family }));
    expect(server.local.host).toBe(host);
    expect(server.local.family).toBe(family);
    const client = cleanup.track(await pipeOpen('tcp', server.local, { bind: { iface: LO_IFACE } }));
    expect(client.local.host).toBe(host);
    await client.send('via iface');
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect((await recvBytes(conn, 9)).toString()).toBe('via iface');
  });

  it("binds with the 'host:port' string form", async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: hostPort(host, 0) }));
    expect(server.local.host).toBe(host);
    expect(server.local.port).toBeGreaterThan(0);
    const client = cleanup.track(await pipeOpen('tcp', hostPort(host, server.local.port), { bind: hostPort(host, 0) }));
    expect(client.local.host).toBe(host);
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.remote).toEqual(client.local);
  });

  it('listens on the wildcard address of the family when nothing is bound', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { family }));
    expect(server.local.host).toBe(wildcard);
    expect(server.local.family).toBe(family);
    const client = cleanup.track(await pipeOpen('tcp', hostPort(host, server.local.port), { framing: 'raw' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    expect(conn.local.host).toBe(host);
    expect(client.remote?.port).toBe(server.local.port);
  });
});

describe.each(LOOPBACKS)('UDP over $name', ({ host, family, wildcard }) => {
  it('echoes client → server → client, the server replying to msg.from', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    server.onMessage((m) => m.pipe.send(Buffer.concat([Buffer.from('echo:'), m.data]), m.from));
    server.unsubscribe(SUB_ALL);
    const client = cleanup.track(await pipeOpen('udp', hostPort(host, server.local.port)));
    await client.send('ping');
    const m = await client.recv({ timeout: 5_000 });
    expect(m.data.toString()).toBe('echo:ping');
    expect(m.from).toEqual({ host, port: server.local.port, family });
    expect(m.pipe).toBe(client);
    expect(server.stats).toMatchObject({ messagesIn: 1, bytesIn: 4, messagesOut: 1, bytesOut: 9 });
  });

  it('echoes server → client → server (client callback replies)', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    const client = cleanup.track(
      await pipeOpen('udp', hostPort(host, server.local.port), { bind: { host, port: 0 }, onMessage: (m) => m.pipe.send(m.data) }),
    );
    await server.send('hello client', client.local);
    const m = await server.recv({ timeout: 5_000 });
    expect(m.data.toString()).toBe('hello client');
    expect(m.from).toEqual(client.local);
  });

  it('reports endpoints: server on port 0 gets a port; remote undefined for servers', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    expect(server.isServer).toBe(true);
    expect(server.proto).toBe('udp');
    expect(server.framing).toBe('raw');
    expect(server.remote).toBeUndefined();
    expect(server.local).toEqual({ host, port: server.socket.address().port, family });
    expect(server.local.port).toBeGreaterThan(0);

    const client = cleanup.track(await pipeOpen('udp', hostPort(host, server.local.port)));
    expect(client.isServer).toBe(false);
    expect(client.remote).toEqual({ host, port: server.local.port, family });
    expect(client.local.host).toBe(wildcard); // unbound clients use the wildcard
    expect(client.local.port).toBeGreaterThan(0);
    await client.send('x');
    const m = await server.recv({ timeout: 5_000 });
    expect(m.from).toEqual({ host, port: client.local.port, family });
  });

  it('binds to a specific address, to the interface by name and with a host:port string', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { iface: LO_IFACE }, family }));
    expect(server.local.host).toBe(host);
    const peer = cleanup.socket(await rawUdp(host));
    const port = peer.address().port;
    peer.close();
    const a = cleanup.track(await pipeOpen('udp', server.local, { bind: { host, port } }));
    expect(a.local).toEqual({ host, port, family });
    const b = cleanup.track(await pipeOpen('udp', server.local, { bind: hostPort(host, 0) }));
    expect(b.local.host).toBe(host);
    const c = cleanup.track(await pipeOpen('udp', server.local, { bind: { iface: LO_IFACE } }));
    expect(c.local.host).toBe(host);
    for (const p of [a, b, c]) {
      await p.send(`from ${p.local.port}`);
      const m = await server.recv({ timeout: 5_000 });
      expect(m.from).toEqual(p.local);
      expect(m.data.toString()).toBe(`from ${p.local.port}`);
    }
  });

  it('interoperates with a plain dgram socket', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { bind: { host, port: 0 } }));
    const peer = cleanup.socket(await rawUdp(host));
    const reply = new Promise<Buffer>((resolve) => peer.once('message', (d: Buffer) => resolve(d)));
    peer.send(Buffer.from([0, 1, 2, 255]), server.local.port, host);
    const m = await server.recv({ timeout: 5_000 });
    expect([...m.data]).toEqual([0, 1, 2, 255]);
    await server.send(m.data.subarray(1), m.from);
    expect([...(await reply)]).toEqual([1, 2, 255]);
  });
});

describe('IPv6 wildcard servers and IPv4 clients', () => {
  it('a TCP server on :: is IPv6-only by default: an IPv4 client is refused', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { family: 6 }));
    const err = await rejection(pipeOpen('tcp', { host: '127.0.0.1', port: server.local.port }));
    expect((err as { code?: string }).code).toBe('ERR_CONNECTION_REFUSED');
  });

  it('with ipv6Only: false a TCP server on :: accepts IPv4 clients and replies through msg.from', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { family: 6, ipv6Only: false, framing: 'line' }));
    server.onMessage((m) => server.send(`re ${m.data.toString()}`, m.from));
    const client = cleanup.track(await pipeOpen('tcp', { host: '127.0.0.1', port: server.local.port }, { framing: 'line' }));
    await client.send('v4');
    expect((await client.recv({ timeout: 5_000 })).data.toString()).toBe('re v4');
  });

  it('with ipv6Only: false a UDP socket on :: exchanges datagrams with IPv4 peers', async () => {
    const server = cleanup.track(await pipeOpen('udp', undefined, { family: 6, ipv6Only: false }));
    server.onMessage((m) => m.pipe.send(`re ${m.data.toString()}`, m.from));
    const client = cleanup.track(await pipeOpen('udp', { host: '127.0.0.1', port: server.local.port }));
    await client.send('v4');
    expect((await client.recv({ timeout: 5_000 })).data.toString()).toBe('re v4');
  });
});

describe('binding errors', () => {
  it('rejects an unknown interface name with InterfaceNotFoundError', async () => {
    const err = await rejection(pipeOpen('tcp', undefined, { bind: { iface: 'no-such-if0' } }));
    expect(err).toBeInstanceOf(InterfaceNotFoundError);
    expect((err as InterfaceNotFoundError).code).toBe('ERR_NO_INTERFACE');
  });

  it('rejects a bind address whose family differs from the destination', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const err = await rejection(pipeOpen('tcp', server.local, { bind: '[::1]:0' }));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const err2 = await rejection(pipeOpen('udp', '[::1]:9', { bind: { host: '127.0.0.1' } }));
    expect(err2).toBeInstanceOf(InvalidArgumentError);
  });

  it('a TCP client typed as TcpPipe has the socket accessor', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0' }));
    const client: TcpPipe = cleanup.track(await pipeOpen('tcp', server.local));
    expect(client.socket.remotePort).toBe(server.local.port);
  });
});
