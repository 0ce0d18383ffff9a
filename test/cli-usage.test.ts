/**
 * Bad usage of the `p2pd` CLI, every command (src/cli/main.ts, src/node/cli.ts): exit 2 before
 * anything starts, one line naming what was wrong, and with --json an `error` event line on
 * stdout like the CLI's other JSON errors. Loopback only.
 */
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { run } from '../src/cli/main.js';
import { brokerArg, addrArg } from '../src/node/cli-parse.js';
import { wantsJson } from '../src/node/cli-out.js';
import { UsageError } from '../src/util/cli-args.js';
import { capture, errorLine, jsonLines, startCliNode } from './helpers/cli.js';

const HELP = '(p2pd --help for usage)';

describe('--broker', () => {
  it('a bad URL names the option, the value and the expected form; exit 2 for node, connect and ping', async () => {
    for (const argv of [['node', '--loopback', '--broker', 'garbage'], ['connect', 'p2pdwhatever', '--broker', 'garbage'], ['ping', '--broker=garbage', 'p2pdwhatever']]) {
      const c = capture();
      expect(await run(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err()).toBe(`p2pd: bad --broker "garbage": not a URL; expected a URL like mqtt://HOST:PORT (mqtt, mqtts, ws or wss)\n${HELP}\n`);
      expect(c.err()).not.toMatch(/peer address/);
      expect(c.out()).toBe('');
    }
  });

  it('says why a URL is refused (scheme, credentials)', async () => {
    const c = capture();
    expect(await run(['node', '--broker', 'http://127.0.0.1:1883'], c.io)).toBe(2);
    expect(c.err()).toMatch(/^p2pd: bad --broker "http:\/\/127\.0\.0\.1:1883": unsupported broker scheme "http:"; expected a URL like mqtt:\/\/HOST:PORT/);
    const d = capture();
    expect(await run(['node', '--broker', 'mqtt://user:pw@127.0.0.1:1883'], d.io)).toBe(2);
    expect(d.err()).toMatch(/^p2pd: bad --broker .*: broker URL must not carry credentials; expected/);
  });

  it('connect / ping with a bad --broker connect to nothing, even to a good address', async () => {
    const n = await startCliNode();
    for (const cmd of ['connect', 'ping']) {
      const c = capture();
      expect(await run([cmd, n.addr, '--loopback', '--broker', 'mqtt//127.0.0.1'], c.io)).toBe(2);
      expect(c.err()).toMatch(/^p2pd: bad --broker "mqtt\/\/127\.0\.0\.1": /);
    }
    expect(jsonLines(n.c.out()).filter((x) => x.event === 'peer')).toEqual([]);
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('brokerArg accepts what the node accepts', () => {
    for (const ok of ['mqtt://127.0.0.1:1883', 'mqtt://[::1]:1883', 'mqtts://broker.example:8883', 'ws://h:80/mqtt', 'wss://h/mqtt']) expect(brokerArg(ok)).toBe(ok);
    for (const bad of ['', 'garbage', '127.0.0.1:1883', 'http://h', 'mqtt://u:p@h', 'mqtt://h:99999', 'mqtt://h x']) expect(() => brokerArg(bad), bad).toThrow(UsageError);
  });
});

describe('a malformed ADDR (connect, ping)', () => {
  it('is bad usage: exit 2, one line naming the field, and the pointer to --help', async () => {
    for (const [addr, field] of [['p2pdnope', 'length'], ['hello', 'encoding'], ['p2pd0OIl', 'encoding']] as const) {
      for (const cmd of ['connect', 'ping']) {
        const c = capture();
        expect(await run([cmd, addr, '--loopback'], c.io), `${cmd} ${addr}`).toBe(2);
        const lines = c.err().split('\n');
        expect(lines).toHaveLength(3);
        expect(lines[0]).toMatch(new RegExp(`^p2pd: invalid peer address \\(${field}\\): .*whole address`));
        expect(lines[1]).toBe(HELP);
        expect(c.out()).toBe('');
      }
    }
  });

  it('a tampered address fails its check (a field is named), still bad usage', async () => {
    const n = await startCliNode();
    n.c.stop();
    expect(await n.running).toBe(0);
    const i = n.addr.length - 10;
    const tampered = n.addr.slice(0, i) + (n.addr[i] === '2' ? '3' : '2') + n.addr.slice(i + 1);
    expect(() => addrArg(tampered)).toThrow(/^invalid peer address \([a-z-]+\): /);
    const c = capture();
    expect(await run(['ping', tampered, '--loopback'], c.io)).toBe(2);
    expect(c.err()).toMatch(/^p2pd: invalid peer address \([a-z-]+\): /);
  });

  it('--help still wins over a malformed address', async () => {
    const c = capture();
    expect(await run(['ping', 'nonsense', '--help'], c.io)).toBe(0);
    expect(c.out()).toMatch(/^node commands:/);
  });
});

/** Bad usage of every command that takes --json. */
const USAGE_ARGV: string[][] = [
  [],
  ['frobnicate'],
  ['interfaces', '--bogus'],
  ['nat'],
  ['nat', '--stun', '127.0.0.1', '--tcp'],
  ['nat', '--stun', '127.0.0.1', '--timeout', 'soon'],
  ['nat', '--bogus'],
  ['stun'],
  ['stun', '--stun', 'bad host!'],
  ['stun', '--stun', '127.0.0.1', '--bind', 'xx'],
  ['stun', '--stun', '127.0.0.1', '--iface', 'lo', '--bind', '127.0.0.1'],
  ['node', '--bogus'],
  ['node', '--port', '99999'],
  ['node', '--broker', 'garbage'],
  ['node', '--stun', 'bad host!'],
  ['node', '--turn', 'u:p@1.2.3'],
  ['serve', '--mqtt-max-per-host', '0'],
  ['connect'],
  ['connect', 'p2pdnope'],
  ['connect', 'a', 'b'],
  ['ping', 'hello', '--count', '3'],
  ['ping', 'p2pdnope', '--stun', '1.2.3.4:99999'],
  ['ping', 'p2pdnope', '--count', 'many'],
  ['serve', '--host', 'localhost'],
  ['serve', '--mqtt-port', '-1'],
];
const USAGE_CASES = USAGE_ARGV.map((argv) => [argv.join(' ') || '(no arguments)', argv] as const);

describe('--json and bad usage', () => {
  it.each(USAGE_CASES)('p2pd %s --json: one error line on stdout, the message on stderr, exit 2', async (_, argv) => {
    for (const args of [[...argv, '--json'], argv[0] === undefined ? ['--json'] : [argv[0], '--json', ...argv.slice(1)]]) {
      const c = capture();
      expect(await run(args, c.io), args.join(' ')).toBe(2);
      const e = errorLine(c);
      expect(e).toMatchObject({ event: 'error', name: 'UsageError', code: 'ERR_INVALID_ARG', exit: 2 });
      expect(typeof e.error).toBe('string');
      expect(c.err().split('\n')[0]).toBe(`p2pd: ${e.error as string}`);
      expect(c.err()).not.toMatch(/^options:/m); // not the whole usage text
    }
  });

  it.each(USAGE_CASES)('p2pd %s without --json: plain text on stderr only, exit 2', async (_, argv) => {
    const c = capture();
    expect(await run(argv, c.io)).toBe(2);
    expect(c.out()).toBe('');
    expect(c.err()).not.toBe('');
    expect(c.err()).not.toMatch(/^\{/m);
  });

  it('an option value that happens to be "--json" does not ask for JSON', async () => {
    expect(wantsJson(['--identity', '--json'], ['--identity'])).toBe(false);
    expect(wantsJson(['--identity=x', '--json'], ['--identity'])).toBe(true);
    expect(wantsJson(['--bogus', '--json'], ['--identity'])).toBe(true);
    const c = capture();
    expect(await run(['node', '--identity', '--json', '--bogus'], c.io)).toBe(2);
    expect(c.out()).toBe('');
    expect(c.err()).toBe(`p2pd: unknown option --bogus\n${HELP}\n`);
  });

  it('`--stun --json` is a missing server, not a host name to look up (exit 2)', async () => {
    for (const cmd of ['stun', 'nat']) {
      const c = capture();
      expect(await run([cmd, '--stun', '--json'], c.io)).toBe(2);
      expect(c.err()).toBe('p2pd: bad --stun "--json": expected HOST[:PORT] (an IP address or a host name)\n');
    }
  });
});

describe('--json and failures', () => {
  it('stun with no answer: an error line with the code on stdout, exit 1', async () => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    try {
      const c = capture();
      expect(await run(['stun', '--stun', `127.0.0.1:${s.address().port}`, '--timeout', '300', '-q', '--json'], c.io)).toBe(1);
      const e = errorLine(c);
      expect(e).toMatchObject({ event: 'error', exit: 1 });
      expect(e.code).toMatch(/^(ERR_TIMEOUT|ABORT_ERR)$/);
      expect(c.err()).toBe(`p2pd: ${e.error as string}\n`);
      expect(e.error).toMatch(/\[(ERR_TIMEOUT|ABORT_ERR)\]$/);
    } finally {
      s.close();
    }
  });

  it('ping to a well-formed address nobody answers at: an error line, exit 1', async () => {
    const n = await startCliNode();
    n.c.stop();
    expect(await n.running).toBe(0);
    const c = capture();
    expect(await run(['ping', n.addr, '--loopback', '--strategy', 'direct', '--timeout', '3000', '--count', '1', '--json'], c.io)).toBe(1);
    const e = errorLine(c);
    expect(e).toMatchObject({ event: 'error', exit: 1 });
    expect(e.code).toMatch(/^ERR_/);
    expect(c.err()).toBe(`p2pd: ${e.error as string}\n`);
  });
});
