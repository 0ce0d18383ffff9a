/**
 * Describing bad input in error messages.
 * @module
 */

/**
 * Short, never-throwing description of a value for an error message: a string is quoted
 * (JSON) and cut to `max` characters, `null` is `'null'`, anything else is its `typeof`.
 * Never echoes objects, so secrets or huge inputs do not end up in messages.
 */
export function describeInput(x: unknown, max = 80): string {
  return typeof x === 'string' ? JSON.stringify(x.slice(0, max)) : x === null ? 'null' : typeof x;
}
