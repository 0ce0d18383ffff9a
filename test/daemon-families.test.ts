/**
 * Daemon address families and scopes: `listenLoopback` serves TCP and UDP on 127.0.0.1 and ::1
 * with one handler; `listenLocal` binds exactly the LAN-scoped addresses its documentation
 * names (private, ULA, CGNAT, link-local) and never loopback or global ones. Every message
 * exchanged here goes to 127.0.0.1 or ::1; the LAN addresses are only bound (binding sends
 * nothing), and the fake interface list below uses addresses this host does not own, so those
 * binds fail locally and are reported in `Daemon.skipped`.
 *
 * Also: a TCP connect the kernel refuses locally (source 127.0.0.1, non-loopback destination)
 * rejects with the typed `UnreachableError` — no packet leaves the host.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BindError, ConnectionRefusedError, Daemon, UnreachableError, pipeOpen, type Message, type Pipe } from '../src/index.js';
import { getInterfaces, Interface, type InterfaceAddress } from '../src/interfaces/interfaces.js';
import { ipScope, type AddressScope } from '../src/interfaces/scope.js';
import type { Family } from '../src/interfaces/endpoint.js';

/** When set, `getInterfaces()` (as the daemon sees it) returns this list instead of the host's. */
const fake = vi.hoisted(() => ({ list: undefined as unknown[] | undefined }));
vi.mock('../src/interfaces/interfaces.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/interfaces/interfaces.js')>();
  return {
    ...real,
    getInterfaces: async (...args: Parameters<typeof real.getInterfaces>) =>
      (fake.list as Awaited<ReturnType<typeof real.getInterfaces>> | undefined) ?? real.getInterfaces(...args),
  };
});

const daemons: Daemon[] = [];
afterEach(async () => {
  fake.list = undefined;
  await Promise.all(daemons.splice(0).map((d) => d.close()));
});
function track(d: Daemon): Daemon {
  daemons.push(d);
  return d;
}

/** The scopes `listenLocal` is documented to bind. */
const LAN_SCOPES: ReadonlySet<AddressScope> = new Set(['private', 'ula', 'cgnat', 'link-local']);

/** `host` (with `%zone`) of a `host:port` / `[host]:port` string. */
function hostOf(addr: string): string {
  return addr.startsWith('[') ? addr.slice(1, addr.indexOf(']')) : addr.slice(0, addr.lastIndexOf(':'));
}
/** `host` (with `%zone`) of a pipe's local endpoint. */
function pipeHost(p: Pipe): string {
  return p.local.scopeId ? `${p.local.host}%${p.local.scopeId}` : p.local.host;
}

function addr(address: string, prefixLength: number, scopeId?: number): InterfaceAddress {
  const family: Family = address.includes(':') ? 6 : 4;
  return { address, family, prefixLength, netmask: family === 4 ? '255.255.255.0' : 'ffff:ffff:ffff:ffff::', scope: ipScope(address), ...(scopeId !== undefined ? { scopeId } : {}) };
}

describe('Daemon.listenLoopback', () => {
  it('serves TCP and UDP on both 127.0.0.1 and ::1, on one port, with the one handler', async () => {
    const seen: string[] = [];
    const d = track(
      new Daemon(
        async (m: Message) => {
          // For TCP `m.pipe` is the accepted connection; its local address is the listening one.
          seen.push(`${m.pipe.proto}/${m.from.family}/${m.pipe.local.host}:${m.pipe.local.port}/${m.data.toString()}`);
          await m.pipe.send(`echo:${m.data.toString()}`, m.from);
        },
        { framing: 'length' },
      ),
    );
    const pipes = await d.listenLoopback(['tcp', 'udp'], 0);
    expect(pipes.map((p) => `${p.proto} ${p.local.host}`).sort()).toEqual(['tcp 127.0.0.1', 'tcp ::1', 'udp 127.0.0.1', 'udp ::1']);
    expect(new Set(pipes.map((p) => p.local.port)).size).toBe(1);
    expect(d.skipped).toEqual([]);
    for (const p of pipes) {
      const tag = `${p.proto}${p.local.family}`;
      await using c = await pipeOpen(p.proto, p.local, { framing: 'length', timeout: 2000 });
      expect(c.remote?.host).toBe(p.local.host);
      await c.send(tag);
      expect((await c.recv({ timeout: 2000 })).data.toString()).toBe(`echo:${tag}`);
    }
    const port = pipes[0]!.local.port;
    expect(seen.sort()).toEqual([`tcp/4/127.0.0.1:${port}/tcp4`, `tcp/6/::1:${port}/tcp6`, `udp/4/127.0.0.1:${port}/udp4`, `udp/6/::1:${port}/udp6`]);
  });

  it('with one protocol it opens that protocol on both families only', async () => {
    const d = track(new Daemon((m) => m.pipe.send(m.data, m.from)));
    const pipes = await d.listenLoopback('udp', 0);
    expect(pipes.map((p) => `${p.proto} ${p.local.family}`).sort()).toEqual(['udp 4', 'udp 6']);
    for (const p of pipes) {
      await using c = await pipeOpen('udp', p.local, { timeout: 2000 });
      await c.send('x');
      expect((await c.recv({ timeout: 2000 })).data.toString()).toBe('x');
    }
  });
});

describe('Daemon.listenLocal', () => {
  it('binds exactly the private, ULA, CGNAT and link-local addresses of up interfaces: no loopback, no global', async () => {
    fake.list = [
      new Interface({ name: 'lo', index: 1, mac: '00:00:00:00:00:00', up: true, loopback: true, addresses: [addr('127.0.0.1', 8), addr('::1', 128)] }),
      new Interface({
        name: 'lan0', index: 2, mac: '02:00:00:00:00:01', up: true, loopback: false,
        addresses: [
          addr('192.168.77.10', 24), addr('10.77.0.10', 8), addr('172.20.0.10', 16), addr('100.77.0.10', 10),
          addr('169.254.77.10', 16), addr('fd77::10', 64), addr('fe80::77', 64, 2), addr('203.0.113.10', 24), addr('2001:db8::10', 64),
        ],
      }),
      new Interface({ name: 'down0', index: 3, mac: '02:00:00:00:00:02', up: false, loopback: false, addresses: [addr('192.168.78.10', 24)] }),
    ];
    // The fixture covers every scope.
    expect(new Set((fake.list as Interface[]).flatMap((i) => i.addresses.map((a) => a.scope)))).toEqual(
      new Set(['loopback', 'private', 'cgnat', 'link-local', 'ula', 'global']),
    );
    const d = track(new Daemon(() => undefined));
    // None of these addresses is this host's: each bind fails locally and is recorded as skipped,
    // and since none could be bound the call rejects (it does not "succeed" listening nowhere).
    const err = await d.listenLocal(['tcp', 'udp'], 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BindError);
    expect((err as BindError).code).toBe('ERR_BIND');
    const pipes: Pipe[] = [];
    const attempted = [...pipes.map(pipeHost), ...d.skipped.map((s) => hostOf(s.address))].sort();
    const lan = ['192.168.77.10', '10.77.0.10', '172.20.0.10', '100.77.0.10', '169.254.77.10', 'fd77::10', 'fe80::77%lan0'];
    expect(attempted).toEqual([...lan, ...lan].sort()); // once per protocol
    for (const s of d.skipped) expect(s.error).toMatchObject({ code: 'ERR_BIND' });
  });

  it('on this host: only LAN-scoped pipes, and nothing answers on 127.0.0.1 or ::1 at their port', async () => {
    const ifaces = await getInterfaces();
    const expected = ifaces
      .filter((i) => i.up)
      .flatMap((i) => i.addresses.filter((a) => LAN_SCOPES.has(a.scope)).map((a) => (a.scope === 'link-local' && a.family === 6 ? `${a.address}%${i.name}` : a.address)));
    const d = track(new Daemon(() => undefined));
    const pipes = await d.listenLocal(['tcp', 'udp'], 0);
    const attempted = [...pipes.map(pipeHost), ...d.skipped.map((s) => hostOf(s.address))].sort();
    expect(attempted).toEqual([...expected, ...expected].sort());
    for (const p of pipes) expect(LAN_SCOPES.has(ipScope(p.local.host))).toBe(true);
    const tcp = pipes.find((p) => p.proto === 'tcp');
    if (tcp) {
      // Loopback is excluded: the daemon's port is closed there (the refusal comes from this host).
      for (const host of ['127.0.0.1', '::1']) {
        const e = await pipeOpen('tcp', { host, port: tcp.local.port }, { timeout: 2000 }).then(
          async (p) => {
            await p.close();
            return undefined;
          },
          (x: unknown) => x,
        );
        expect(e).toBeInstanceOf(ConnectionRefusedError);
      }
    }
  });
});

describe('pipeOpen: a locally refused route', () => {
  it('TCP from 127.0.0.1 to a non-loopback address rejects with UnreachableError; the kernel refuses it before any packet', async () => {
    // Linux refuses to route a packet with a loopback source out of a non-loopback device:
    // connect() fails with EINVAL during the route lookup, before a SYN exists. 203.0.113.0/24
    // is a documentation range.
    const e = await pipeOpen('tcp', '203.0.113.1:9', { bind: '127.0.0.1:0', timeout: 2000 }).then(
      async (p) => {
        await p.close();
        return undefined;
      },
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(UnreachableError);
    expect(e).toMatchObject({ code: 'ERR_UNREACHABLE' });
    expect(['EINVAL', 'ENETUNREACH', 'EHOSTUNREACH']).toContain((e as { cause?: { code?: string } }).cause?.code);
  });
});
