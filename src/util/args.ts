/**
 * Argument checks shared by the public async APIs (the DHT, the swarm, the synced dict):
 * a bad argument is an {@link InvalidArgumentError}, never a `TypeError` from deep inside.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import { badTimeout } from './abort.js';

/**
 * Throws {@link InvalidArgumentError} unless `opts` is `undefined` or an options object whose
 * `signal` (if any) is an `AbortSignal` and whose `timeout` (if any) is a non-negative number
 * (`0` / `Infinity` = none).
 */
export function checkOptions(opts: unknown, what = 'options'): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError(`${what} must be an object, got ${opts === null ? 'null' : typeof opts}`);
  const { signal, timeout } = opts as { signal?: unknown; timeout?: unknown };
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError(`${what}.signal must be an AbortSignal`);
  const bad = badTimeout(timeout);
  if (bad) throw new InvalidArgumentError(`${what}.${bad.message}`);
}

/**
 * The `[key, value]` pairs of `entries`: a `Map`, an iterable of `[key, value]` pairs, or a
 * plain object (its own enumerable string keys). Keys and values are not checked here.
 * @throws InvalidArgumentError for anything else (a string, a number, `null`, a pair that is not a 2-element array).
 */
export function entryPairs<K, V>(entries: unknown, what = 'entries'): Array<readonly [K, V]> {
  if (entries === null || typeof entries !== 'object') {
    throw new InvalidArgumentError(`${what} must be a Map, an iterable of [key, value] pairs or an object, got ${entries === null ? 'null' : typeof entries}`);
  }
  if (entries instanceof Map) return [...(entries as Map<K, V>)];
  if (Symbol.iterator in entries) {
    const out: Array<readonly [K, V]> = [];
    for (const pair of entries as Iterable<unknown>) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new InvalidArgumentError(`${what} must hold [key, value] pairs`);
      out.push(pair as unknown as readonly [K, V]);
    }
    return out;
  }
  return Object.entries(entries) as unknown as Array<readonly [K, V]>;
}
