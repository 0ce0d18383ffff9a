import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, P2pdError } from '../src/errors.js';
import { UsageError, choiceArg, intArg, scanArgs, type ArgToken } from '../src/util/cli-args.js';

const SPEC = { flags: ['--json', '-q', '--no-x'], options: ['--port', '--stun', '-o'] } as const;
type Tok = ArgToken<(typeof SPEC.flags)[number], (typeof SPEC.options)[number]>;
const scan = (...argv: string[]): Tok[] => [...scanArgs(argv, SPEC)];

function usage(f: () => unknown): UsageError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('scanArgs', () => {
  it('yields flags, options and positionals in command-line order', () => {
    expect(scan('nat', '--json', '--port', '80', '--stun=a:1', 'x', '-q', '-o', 'v')).toEqual([
      { kind: 'positional', value: 'nat' },
      { kind: 'flag', name: '--json' },
      { kind: 'option', name: '--port', value: '80' },
      { kind: 'option', name: '--stun', value: 'a:1' },
      { kind: 'positional', value: 'x' },
      { kind: 'flag', name: '-q' },
      { kind: 'option', name: '-o', value: 'v' },
    ]);
    expect(scan()).toEqual([]);
  });

  it('takes the next item as the value even when it starts with "-"; "--k=" is an empty value; "=" splits once', () => {
    expect(scan('--stun', '-4')).toEqual([{ kind: 'option', name: '--stun', value: '-4' }]);
    expect(scan('--stun=')).toEqual([{ kind: 'option', name: '--stun', value: '' }]);
    expect(scan('--stun=a=b')).toEqual([{ kind: 'option', name: '--stun', value: 'a=b' }]);
  });

  it('rejects unknown options, missing values and values on flags with a clear UsageError', () => {
    expect(usage(() => scan('--bogus')).message).toBe('unknown option --bogus');
    expect(usage(() => scan('--bogus=1')).message).toBe('unknown option --bogus=1');
    expect(usage(() => scan('-x')).message).toBe('unknown option -x');
    expect(usage(() => scan('-o=1')).message).toBe('unknown option -o=1'); // "=" only splits long options
    expect(usage(() => scan('-')).message).toBe('unknown option -');
    expect(usage(() => scan('--port')).message).toBe('--port needs a value');
    expect(usage(() => scan('--port', '')).message).toBe('--port needs a value');
    expect(usage(() => scan('--json=yes')).message).toBe('--json takes no value');
  });

  it('is lazy: items before a bad one are handed out first', () => {
    const seen: Tok[] = [];
    expect(() => {
      for (const t of scanArgs(['--json', 'cmd', '--bogus', '--port', '1'], SPEC)) seen.push(t);
    }).toThrow(UsageError);
    expect(seen).toEqual([{ kind: 'flag', name: '--json' }, { kind: 'positional', value: 'cmd' }]);
  });

  it('UsageError is a typed p2pd error', () => {
    const e = usage(() => scan('--nope'));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e).toBeInstanceOf(P2pdError);
    expect(e.code).toBe('ERR_INVALID_ARG');
    expect(e.name).toBe('UsageError');
  });
});

describe('intArg / choiceArg', () => {
  it('intArg accepts integers in range only', () => {
    expect(intArg('0', '--port', 0, 65535)).toBe(0);
    expect(intArg('65535', '--port', 0, 65535)).toBe(65535);
    for (const bad of ['-1', '65536', '1.5', 'many', 'NaN', 'Infinity']) {
      expect(usage(() => intArg(bad, '--port', 0, 65535)).message).toBe('--port must be an integer 0-65535');
    }
  });

  it('choiceArg accepts the listed values only', () => {
    expect(choiceArg('b', ['a', 'b'] as const, 'mode')).toBe('b');
    expect(usage(() => choiceArg('c', ['a', 'b'], 'mode')).message).toBe('unknown mode "c" (a, b)');
  });
});
