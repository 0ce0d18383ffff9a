/**
 * A small command-line scanner shared by the `p2pd` commands (`src/cli/main.ts`,
 * `src/node/cli.ts`). It knows which options exist and which of them take a value; what the
 * values mean is left to the caller, which walks the tokens in command-line order:
 *
 * ```ts
 * for (const t of scanArgs(argv, { flags: ['--json'], options: ['--port'] })) {
 *   if (t.kind === 'positional') …; else if (t.name === '--port') port = intArg(t.value, t.name, 0, 65535);
 * }
 * ```
 *
 * Syntax: `--name`, `-x` (flags); `--name value`, `--name=value`, `-x value` (options; a value
 * may start with `-`, and `--name=` gives an empty value); anything not starting with `-` is a
 * positional. Unknown options, a value given to a flag and a missing value raise a
 * {@link UsageError}; so does a bad value in the helpers below.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** Bad command-line usage (the CLI exits with code 2). Code `ERR_INVALID_ARG`. */
export class UsageError extends InvalidArgumentError {}

/** The options a command accepts, spelled as on the command line (`'--json'`, `'-q'`). */
export interface ArgSpec<F extends string, O extends string> {
  /** Options without a value. */
  readonly flags: readonly F[];
  /** Options that take a value. */
  readonly options: readonly O[];
}

/** One command-line item, in order. */
export type ArgToken<F extends string, O extends string> =
  | { readonly kind: 'flag'; readonly name: F }
  | { readonly kind: 'option'; readonly name: O; readonly value: string }
  | { readonly kind: 'positional'; readonly value: string };

/**
 * Walks `argv` (without `node` and the script) and yields its flags, options and positionals
 * in order. Lazy: an error is raised when the scan reaches the offending item, after the
 * caller has handled (and possibly rejected) the items before it.
 *
 * @throws UsageError `unknown option X` (X as typed), `X needs a value`, `X takes no value`.
 */
export function* scanArgs<F extends string, O extends string>(
  argv: readonly string[],
  spec: ArgSpec<F, O>,
): Generator<ArgToken<F, O>, void, undefined> {
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] as string;
    if (!raw.startsWith('-')) {
      yield { kind: 'positional', value: raw };
      continue;
    }
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const name = eq > 0 ? raw.slice(0, eq) : raw;
    if ((spec.options as readonly string[]).includes(name)) {
      let value: string | undefined;
      if (eq > 0) value = raw.slice(eq + 1);
      else {
        value = argv[++i];
        if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
      }
      yield { kind: 'option', name: name as O, value };
    } else if ((spec.flags as readonly string[]).includes(name)) {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      yield { kind: 'flag', name: name as F };
    } else {
      throw new UsageError(`unknown option ${raw}`);
    }
  }
}

/**
 * Parses `value` of option `name` as an integer in `[min, max]`.
 * @throws UsageError `NAME must be an integer MIN-MAX`.
 */
export function intArg(value: string, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be an integer ${min}-${max}`);
  return n;
}

/**
 * Checks that `value` of option `name` is one of `choices`.
 * @throws UsageError `unknown WHAT "VALUE" (CHOICES)`.
 */
export function choiceArg<T extends string>(value: string, choices: readonly T[], what: string): T {
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`unknown ${what} ${JSON.stringify(value)} (${choices.join(', ')})`);
  return value as T;
}
