/**
 * Daemons: one handler serving TCP and UDP, IPv4 and IPv6, on one port; subclassing; port
 * conflicts; listenAll over every interface; close releases everything.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BindError, Daemon, InvalidArgumentError, StateError, getInterfaces, pipeOpen, type Message, type Pipe } from '../src/index.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
});
function track<T extends Daemon>(d: T): T {
  daemons.push(d);
  return d;
}

async function roundTrip(server: Pipe, text: string): Promise<string> {
  await using c = await pipeOpen(server.proto, server.local, { framing: 'length', timeout: 2000 });
  await c.send(text);
  return (await c.recv({ timeout: 2000 })).data.toString();
}

describe('Daemon', () => {
  it('serves TCP and UDP on the same port, IPv4 and IPv6, with one handler', async () => {
    const seen: string[] = [];
    const d = track(
      new Daemon(
        async (m) => {
          seen.push(`${m.pipe.proto}/${m.from.family}`);
          await m.pipe.send(`echo:${m.data.toString()}`, m.from);
        },
        { framing: 'length' },
      ),
    );
    const pipes = await d.listenLoopback(['tcp', 'udp'], 0);
    expect(pipes.length).toBeGreaterThanOrEqual(2);
    const ports = new Set(pipes.map((p) => p.local.port));
    expect(ports.size).toBe(1); // port 0 → the first socket's port is reused by every other
    const protos = new Set(pipes.map((p) => p.proto));
    expect(protos).toEqual(new Set(['tcp', 'udp']));
    for (const p of pipes) expect(await roundTrip(p, `hi-${p.proto}`)).toBe(`echo:hi-${p.proto}`);
    expect(seen.length).toBe(pipes.length);
    expect(seen).toContain('tcp/4');
    expect(seen).toContain('udp/4');
  });

  it('a subclass overriding onMessage is the handler', async () => {
    class Upper extends Daemon {
      override async onMessage(m: Message): Promise<void> {
        await m.pipe.send(m.data.toString().toUpperCase(), m.from);
      }
    }
    const d = track(new Upper(undefined, { framing: 'length' }));
    const tcp = await d.listen({ proto: 'tcp', host: '127.0.0.1', port: 0 });
    const udp = await d.listen({ proto: 'udp', host: '127.0.0.1', port: tcp.local.port });
    expect(udp.local.port).toBe(tcp.local.port);
    expect(await roundTrip(tcp, 'abc')).toBe('ABC');
    expect(await roundTrip(udp, 'xyz')).toBe('XYZ');
  });

  it('a port conflict rejects with BindError naming the address, and rolls back the call', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const d = track(new Daemon(() => undefined));
      const err = await d.listen({ proto: 'tcp', host: '127.0.0.1', port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BindError);
      expect((err as BindError).code).toBe('ERR_ADDRESS_IN_USE');
      expect((err as BindError).address).toBe(`127.0.0.1:${port}`);
      // UDP on the same port is free: TCP and UDP ports are separate
      const udp = await d.listen({ proto: 'udp', host: '127.0.0.1', port });
      expect(udp.local.port).toBe(port);
      // listenLoopback with tcp on the taken port fails as a whole and keeps nothing it opened
      const before = d.pipes.length;
      await expect(d.listenLoopback(['udp', 'tcp'], port)).rejects.toBeInstanceOf(BindError);
      expect(d.pipes.length).toBe(before);
    } finally {
      blocker.close();
    }
  });

  it('listenAll listens on every interface address, v4 and v6, and close() releases every port', async () => {
    const d = new Daemon((m) => m.pipe.send(m.data, m.from));
    const pipes = await d.listenAll(['udp', 'tcp'], 0);
    expect(pipes.length).toBeGreaterThanOrEqual(2);
    const hosts = pipes.map((p) => p.local.host);
    expect(hosts).toContain('127.0.0.1');
    // Every address of every up interface (v4 and v6, link-local with its zone), both protocols,
    // unless the daemon recorded it as skipped.
    const skipped = new Set(d.skipped.map((x) => x.address));
    for (const iface of await getInterfaces()) {
      if (!iface.up) continue;
      for (const a of iface.addresses) {
        for (const proto of ['udp', 'tcp'] as const) {
          const got = pipes.find((p) => p.proto === proto && p.local.host === a.address);
          if (!got) {
            expect([...skipped].some((x) => x.includes(a.address)), `${proto} ${a.address} neither listened on nor skipped`).toBe(true);
            continue;
          }
          if (a.scope === 'link-local' && a.family === 6) expect(got.local.scopeId).toBeDefined();
        }
      }
    }
    expect(new Set(pipes.map((p) => p.local.port)).size).toBe(1); // one port everywhere
    const port = pipes[0]!.local.port;
    await d.close();
    for (const p of pipes) expect(p.closed).toBe(true);
    // the port is free again
    const again = await pipeOpen('udp', undefined, { bind: { host: '127.0.0.1', port } });
    expect(again.local.port).toBe(port);
    await again.close();
  });

  it('rejects a non-function handler and listening after close', async () => {
    expect(() => new Daemon(42 as never)).toThrow(InvalidArgumentError);
    const d = new Daemon(() => undefined);
    await d.close();
    await expect(d.listen({ proto: 'udp', host: '127.0.0.1' })).rejects.toBeInstanceOf(StateError); // ERR_STATE, as for closed nodes and swarm peers
  });

  it('close() while a listen() is still opening: that socket is closed too, and the listen rejects', async () => {
    const d = new Daemon(() => undefined);
    const pending = d.listen({ proto: 'tcp', host: '127.0.0.1', port: 0 });
    await d.close();
    await expect(pending).rejects.toBeInstanceOf(StateError);
    expect(d.pipes).toHaveLength(0);
  });

  it('listenAll that can bind no address at all rejects with BindError (ERR_BIND) instead of listening nowhere', async () => {
    class NoRights extends Daemon {
      override listen(spec: { host?: string; port?: number }): Promise<Pipe> {
        return Promise.reject(new BindError('ERR_BIND', `${spec.host}:${spec.port}`, 'bind: EACCES (permission denied)'));
      }
    }
    const d = track(new NoRights(() => undefined));
    const err = await d.listenAll(['tcp', 'udp'], 80).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BindError);
    expect((err as BindError).code).toBe('ERR_BIND');
    expect((err as BindError).message).toMatch(/could not listen on any of \d+ addresses.*EACCES/);
    expect(d.skipped.length).toBeGreaterThanOrEqual(2);
  });

  it('a throwing handler does not crash the daemon; it keeps serving', async () => {
    let n = 0;
    const d = track(
      new Daemon(
        async (m) => {
          if (n++ === 0) throw new Error('boom');
          await m.pipe.send('ok', m.from);
        },
        { framing: 'length' },
      ),
    );
    const [udp] = await d.listenLoopback(['udp'], 0);
    const errors: Error[] = [];
    udp!.onError((e) => errors.push(e));
    await using c = await pipeOpen('udp', udp!.local);
    await c.send('first');
    await expect(c.recv({ timeout: 300 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    await c.send('second');
    expect((await c.recv({ timeout: 2000 })).data.toString()).toBe('ok');
    expect(errors.map((e) => e.message)).toEqual(['boom']);
  });
});
