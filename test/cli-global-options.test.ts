/**
 * Options before the command (`p2pd --json connect ADDR`, `p2pd -v ping ADDR`, `p2pd --help
 * connect`): accepted for every command, as after it (src/cli/main.ts). Loopback only.
 */
import { describe, expect, it } from 'vitest';
import { ARG_SPEC } from '../src/cli/args.js';
import { commandIndex, run } from '../src/cli/main.js';
import { NODE_ARG_SPEC } from '../src/node/cli-parse.js';
import { capture, errorLine, jsonLines, startCliNode } from './helpers/cli.js';

describe('commandIndex', () => {
  it('is the first positional, skipping the values of options of any command', () => {
    expect(commandIndex(['connect', 'X'])).toBe(0);
    expect(commandIndex(['--json', 'connect', 'X'])).toBe(1);
    expect(commandIndex(['--json', '-v', '--broker', 'mqtt://h:1', 'ping', 'X'])).toBe(4);
    expect(commandIndex(['--stun', 'nat', 'stun'])).toBe(2); // "nat" is --stun's value
    expect(commandIndex(['--stun=h', 'nat'])).toBe(1);
    expect(commandIndex(['--bogus', 'node'])).toBe(1);
    expect(commandIndex(['--json'])).toBe(1);
    expect(commandIndex([])).toBe(0);
  });

  it('is unambiguous: no option is a flag of one command and takes a value in another', () => {
    const flags = new Set<string>([...ARG_SPEC.flags, ...NODE_ARG_SPEC.flags]);
    expect([...ARG_SPEC.options, ...NODE_ARG_SPEC.options].filter((o) => flags.has(o))).toEqual([]);
  });
});

describe('options before a node command', () => {
  it('p2pd --json connect ADDR (malformed): the JSON error of connect, not "unknown command" (exit 2)', async () => {
    const c = capture();
    expect(await run(['--json', 'connect', 'p2pdnope'], c.io)).toBe(2);
    expect(errorLine(c)).toMatchObject({ event: 'error', name: 'UsageError', exit: 2, error: expect.stringMatching(/^invalid peer address \(length\)/) });
  });

  it('p2pd --json -v ping ADDR: JSON lines and the strategy race, as with the options after ADDR', async () => {
    const n = await startCliNode();
    const c = capture();
    expect(await run(['--json', '-v', '--count', '1', 'ping', n.addr, '--loopback'], c.io)).toBe(0);
    const ev = jsonLines(c.out());
    expect(ev.map((x) => x.event)).toEqual(expect.arrayContaining(['strategy-start', 'strategy-win', 'connected', 'ping', 'summary']));
    expect(ev.at(-1)).toMatchObject({ event: 'summary', sent: 1, received: 1 });
    expect(c.err()).toBe('');
    n.c.stop();
    expect(await n.running).toBe(0);
  });

  it('p2pd --help connect / -h ping: the node usage (exit 0); -V node: the version', async () => {
    for (const argv of [['--help', 'connect'], ['-h', 'ping', 'p2pdnope'], ['--json', '--help', 'serve']]) {
      const c = capture();
      expect(await run(argv, c.io), argv.join(' ')).toBe(0);
      expect(c.out()).toMatch(/^node commands:/);
    }
    const v = capture();
    expect(await run(['-V', 'node', '--loopback'], v.io)).toBe(0);
    expect(v.out()).toMatch(/^p2pd \d+\.\d+\.\d+\n$/);
  });

  it('a bad option before the command is the same usage error as after it', async () => {
    for (const [before, after] of [[['--bogus', 'node'], ['node', '--bogus']], [['--port', '99999', 'node'], ['node', '--port', '99999']]]) {
      const b = capture();
      const a = capture();
      expect(await run(before, b.io)).toBe(2);
      expect(await run(after, a.io)).toBe(2);
      expect(b.err()).toBe(a.err());
    }
  });
});

describe('options before nat / stun / interfaces', () => {
  it('--json before the command gives the JSON error line too', async () => {
    const c = capture();
    expect(await run(['--json', 'stun', '--stun', 'bad host!'], c.io)).toBe(2);
    expect(errorLine(c)).toMatchObject({ name: 'UsageError', exit: 2, error: 'bad --stun "bad host!": expected HOST[:PORT] (an IP address or a host name)' });
  });

  it('-v / --verbose (a node-command option) is named as such, wherever it is', async () => {
    for (const argv of [['-v', 'nat'], ['stun', '--verbose'], ['--verbose', 'interfaces']]) {
      const c = capture();
      expect(await run(argv, c.io)).toBe(2);
      expect(c.err().split('\n')[0]).toMatch(/^p2pd: (-v|--verbose) is an option of the node commands \(node, connect, ping, serve\)/);
    }
  });
});
