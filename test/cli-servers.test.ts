/**
 * `--stun HOST[:PORT]` and `--turn USER:PASS@HOST[:PORT]` on the `p2pd` command line
 * (src/node/cli-servers.ts, src/node/cli-parse.ts, src/cli/args.ts): a malformed server is bad
 * usage (exit 2) found while the command line is read, naming the option, the value and the
 * expected form; a host name is resolved before the command starts (the node commands as
 * `nat` / `stun` do), and one that does not resolve is a failure (exit 1). Name resolution is
 * mocked (no DNS query leaves the process): `localhost` is resolved for real (/etc/hosts),
 * every other name is "not found". Loopback only.
 */
import { describe, expect, it, vi } from 'vitest';

const lookups = vi.hoisted(() => [] as string[]);
vi.mock('node:dns/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:dns/promises')>();
  const lookup = async (host: string, opts?: object): Promise<unknown> => {
    lookups.push(host);
    if (host === 'localhost') return actual.lookup(host, opts ?? {});
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND', hostname: host });
  };
  return { ...actual, lookup, default: { ...actual, lookup } };
});

import { run } from '../src/cli/main.js';
import { METHOD, startStunServer } from '../src/nat/stun/index.js';
import { stunArg, turnArg } from '../src/node/cli-parse.js';
import { isHostName, serverSpec } from '../src/node/cli-servers.js';
import { UsageError } from '../src/util/cli-args.js';
import { FakeTurnServer } from './turn-fake-server.js';
import { capture, errorLine, jsonLines, startCliNode, waitFor } from './helpers/cli.js';

const HELP = '(p2pd --help for usage)';

describe('server specs, checked while the command line is read', () => {
  it('isHostName: labels of letters, digits and inner hyphens; not all-digit at the end', () => {
    for (const ok of ['localhost', 'stun.example.org', 'stun.example.org.', 'a-b.c1', 'x', '1a.example']) expect(isHostName(ok), ok).toBe(true);
    for (const bad of ['', '.', 'a..b', '-x', 'x-', 'bad host!', 'a_b', '1.2.3', '127.1', '999.1.1.1', 'h:1', '[::1]', 'x'.repeat(64), `${'a.'.repeat(127)}a`]) {
      expect(isHostName(bad), bad).toBe(false);
    }
  });

  it('stunArg: what the node takes stays as typed; a name gets its port (default 3478); anything else is bad usage', () => {
    for (const lit of ['127.0.0.1', '127.0.0.1:3478', '::1', '[::1]:3479', 'fe80::1%lo']) expect(stunArg(lit)).toEqual({ literal: lit });
    expect(stunArg('localhost')).toEqual({ name: 'localhost', port: 3478 });
    expect(stunArg('stun.example.org:19302')).toEqual({ name: 'stun.example.org', port: 19302 });
    for (const bad of ['garbage!', 'bad host', '1.2.3', '10.0.0.1:99999', 'h:0', 'h:', ':3478', '[::1', '--json', 'h:1:2', 'mqtt://h']) {
      expect(() => stunArg(bad), bad).toThrow(UsageError);
      expect(() => stunArg(bad)).toThrow(`bad --stun ${JSON.stringify(bad)}: expected HOST[:PORT] (an IP address or a host name)`);
    }
  });

  it('turnArg: USER:PASS@HOST[:PORT]; the password may hold "@" and ":"; an error never shows the credentials', () => {
    expect(turnArg('alice:secret@127.0.0.1:3478')).toEqual({ username: 'alice', password: 'secret', server: { literal: '127.0.0.1:3478' } });
    expect(turnArg('alice:se@c:r@t@localhost')).toEqual({ username: 'alice', password: 'se@c:r@t', server: { name: 'localhost', port: 3478 } });
    expect(turnArg('a@realm:pw@[::1]:5349')).toEqual({ username: 'a@realm', password: 'pw', server: { literal: '[::1]:5349' } });
    for (const bad of ['alice:hunter2@garbage!', 'alice:hunter2@1.2.3.4:99999', 'alice:hunter2@1.2.3']) {
      const e = (() => { try { turnArg(bad); } catch (x) { return x as Error; } throw new Error(`accepted ${bad}`); })();
      expect(e).toBeInstanceOf(UsageError);
      expect(e.message).toMatch(/^bad --turn server "[^"]+": expected USER:PASS@HOST\[:PORT\] \(an IP address or a host name\)$/);
      expect(e.message).not.toMatch(/alice|hunter2/);
    }
    for (const bad of ['alice@127.0.0.1', ':pw@127.0.0.1', 'alice:@127.0.0.1', 'alice:pw@', 'alice:pw', '127.0.0.1']) {
      expect(() => turnArg(bad), bad).toThrow('bad --turn: expected USER:PASS@HOST[:PORT]');
    }
  });

  it('serverSpec keeps what the given literal parser accepts, whatever it looks like', () => {
    expect(serverSpec('anything', () => undefined, 1)).toEqual({ literal: 'anything' });
    expect(serverSpec('h:80', () => { throw new Error('no'); }, 1)).toEqual({ name: 'h', port: 80 });
    expect(serverSpec('h', () => { throw new Error('no'); }, 1)).toEqual({ name: 'h', port: 1 });
  });
});

describe('p2pd node | connect | ping: a malformed --stun / --turn is bad usage (exit 2), before anything starts', () => {
  const CASES: [string[], string][] = [
    [['node', '--loopback', '--stun', 'garbage!'], 'bad --stun "garbage!": expected HOST[:PORT] (an IP address or a host name)'],
    [['connect', 'p2pdnope', '--stun', '1.2.3'], 'bad --stun "1.2.3": expected HOST[:PORT] (an IP address or a host name)'],
    [['ping', '--stun=10.0.0.1:99999', 'p2pdnope'], 'bad --stun "10.0.0.1:99999": expected HOST[:PORT] (an IP address or a host name)'],
    [['node', '--turn', 'u:p@bad!host'], 'bad --turn server "bad!host": expected USER:PASS@HOST[:PORT] (an IP address or a host name)'],
    [['connect', 'p2pdnope', '--turn', 'u:p@127.0.0.1:99999'], 'bad --turn server "127.0.0.1:99999": expected USER:PASS@HOST[:PORT] (an IP address or a host name)'],
    [['ping', 'p2pdnope', '--turn', 'nopassword@127.0.0.1'], 'bad --turn: expected USER:PASS@HOST[:PORT]'],
  ];
  it.each(CASES)('%j', async (argv, message) => {
    const c = capture();
    expect(await run(argv, c.io)).toBe(2);
    expect(c.err()).toBe(`p2pd: ${message}\n${HELP}\n`);
    expect(c.out()).toBe('');
    const j = capture();
    expect(await run([...argv, '--json'], j.io)).toBe(2);
    expect(errorLine(j)).toEqual({ event: 'error', error: message, name: 'UsageError', code: 'ERR_INVALID_ARG', exit: 2 });
  });

  it('no name was looked up for them', () => {
    expect(lookups.filter((h) => h !== 'localhost')).toEqual([]);
  });
});

describe('host names given to the node commands are resolved (as nat / stun resolve them)', () => {
  it('node --stun localhost:PORT: the node gets the STUN server (NAT detection answers)', async () => {
    const srv = await startStunServer({ addresses: ['127.0.0.1'], ports: [0], protos: ['udp', 'tcp'] });
    try {
      // Not --loopback (a loopback node asks no STUN server); --no-portmap: nothing leaves the host.
      const c = capture();
      const running = run(['node', '--no-portmap', '--json', '--stun', `localhost:${srv.primary.port}`], c.io);
      await waitFor(() => c.out().includes('"event":"address"'), 15_000);
      c.stop();
      expect(await running).toBe(0);
      const ev = jsonLines(c.out());
      expect(ev.find((x) => x.event === 'address')?.nat).toEqual(expect.any(String));
      expect(JSON.stringify(ev)).not.toMatch(/did not answer|STUN server/);
      expect(JSON.stringify(ev)).toMatch(/external udp endpoint 127\.0\.0\.1:\d+/);
    } finally {
      await srv.close();
    }
  });

  it('ping --turn USER:PASS@localhost:PORT: the relay goes through the TURN server at 127.0.0.1', async () => {
    const t = await FakeTurnServer.start({ proto: 'udp', users: { alice: 'se@cr:et' } });
    try {
      const turn = `alice:se@cr:et@localhost:${t.address.port}`;
      const n = await startCliNode(['--turn', turn]);
      const c = capture();
      const code = await run(['ping', n.addr, '--loopback', '--json', '--strategy', 'relay', '--count', '1', '--timeout', '10000', '--turn', turn], c.io);
      expect(code, c.out() + c.err()).toBe(0);
      expect(jsonLines(c.out())[0]).toMatchObject({ event: 'connected', path: { strategy: 'relay', transport: 'turn', server: `127.0.0.1:${t.address.port}` } });
      expect(t.count(METHOD.ALLOCATE)).toBeGreaterThan(0);
      n.c.stop();
      expect(await n.running).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('a name that does not resolve: exit 1, one line naming the option and the name, before the node starts', async () => {
    const c = capture();
    expect(await run(['node', '--loopback', '--stun', 'nosuch.example'], c.io)).toBe(1);
    expect(c.err()).toBe('p2pd: --stun "nosuch.example": host not found (ENOTFOUND) [ERR_NOT_FOUND]\n');
    expect(c.out()).toBe('');
    const n = await startCliNode();
    for (const [opt, value, name] of [['--stun', 'nosuch.example:3478', 'nosuch.example'], ['--turn', 'u:p@turn.nosuch.example', 'turn.nosuch.example']] as const) {
      const c = capture();
      expect(await run(['ping', n.addr, '--loopback', opt, value, '--json'], c.io)).toBe(1);
      expect(errorLine(c)).toEqual({ event: 'error', error: `${opt} "${name}": host not found (ENOTFOUND) [ERR_NOT_FOUND]`, name: 'HostNotFoundError', code: 'ERR_NOT_FOUND', exit: 1 });
    }
    expect(jsonLines(n.c.out()).filter((x) => x.event === 'peer')).toEqual([]);
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('nat / stun: the same "host not found" failure (exit 1), and the same bad-usage message (exit 2)', async () => {
    for (const cmd of ['nat', 'stun']) {
      const c = capture();
      expect(await run([cmd, '--stun', 'nosuch.example', '-q'], c.io)).toBe(1);
      expect(c.err()).toBe('p2pd: --stun "nosuch.example": host not found (ENOTFOUND) [ERR_NOT_FOUND]\n');
      const d = capture();
      expect(await run([cmd, '--stun', '1.2.3', '-q'], d.io)).toBe(2);
      expect(d.err().split('\n')[0]).toBe('p2pd: bad --stun "1.2.3": expected HOST[:PORT] (an IP address or a host name)');
      const e = capture();
      expect(await run([cmd, '-4', '--stun', 'nosuch.example', '-q', '--json'], e.io)).toBe(1);
      expect(errorLine(e)).toMatchObject({ error: '--stun "nosuch.example": host not found (ENOTFOUND, IPv4 only) [ERR_NOT_FOUND]', code: 'ERR_NOT_FOUND', exit: 1 });
    }
  });
});
