/**
 * Shared pieces of the peer scripts the lab tests run inside namespaces: `key=value`
 * arguments, JSON-lines output, deterministic payloads and the file rendezvous.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { prng } from '../punch-relay.js';

/** The script's `key=value` arguments. */
export const args: Record<string, string> = Object.fromEntries(process.argv.slice(2).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));

/** Prints one JSON line. */
export const out = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));

/** `n` pseudo-random bytes from `seed` (both peers can compute the other's payload). */
export function pattern(n: number, seed: number): Buffer {
  const rnd = prng(seed);
  const d = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) d[i] = (rnd() * 256) | 0;
  return d;
}

/** SHA-256 hex. */
export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Waits up to `ms` for the file at `path` (written in one go by the test) and returns its text. */
export async function waitFile(path: string, ms: number): Promise<string> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`no ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 20)); // written in one go; let it land
  return readFileSync(path, 'utf8');
}
