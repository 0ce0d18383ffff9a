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

/**
 * A reason text sent by a peer, for an error message: a string cut to `max` characters, a
 * number or boolean as text, anything else only its `typeof` (never `String()` of an object
 * from the network, which can throw or run nothing useful).
 */
export function peerReason(x: unknown, max = 200): string {
  if (typeof x === 'string') return x.slice(0, max);
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  return `(${x === null ? 'null' : typeof x})`;
}
