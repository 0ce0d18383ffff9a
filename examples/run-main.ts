/**
 * Shared by the examples (not an example itself): runs an example's `main` when its file is
 * the program that was started (`npx tsx examples/echo.ts`), not when a test imports it.
 *
 * The comparison goes through `pathToFileURL` and `realpath`: a hand-made
 * `` `file://${process.argv[1]}` `` differs from `import.meta.url` as soon as the path has a
 * space or another character URLs escape (or a symlink), and the example then silently does
 * nothing. A failure is printed as one line when it is a p2pd error (a server that does not
 * answer, a bad argument), with its stack otherwise (a bug), and the exit code is 1.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { P2pdError } from '../src/index.js';

/** Whether the module at `moduleUrl` (its `import.meta.url`) is the program that was started. */
export function isMain(moduleUrl: string): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(arg)).href;
  } catch {
    return false;
  }
}

/** The text printed for a failure: one line for a p2pd error, the stack for anything else. */
export function failureText(e: unknown): string {
  if (e instanceof P2pdError) return `${e.name}: ${e.message} [${e.code}]`;
  return e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
}

/** Runs `main` if the module at `moduleUrl` is the program started; a failure sets exit code 1. */
export function runMain(moduleUrl: string, main: () => Promise<unknown>): void {
  if (!isMain(moduleUrl)) return;
  main().catch((e: unknown) => {
    console.error(failureText(e));
    process.exitCode = 1;
  });
}
