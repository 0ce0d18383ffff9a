/**
 * Loads the pipe layer under test: `src/pipes` (compiled beside the benchmark) and, when
 * `P2PD_DIST` is set (by run.ts from `P2PD_SRC`), a compiled candidate copy as well, so that
 * both run interleaved in the same processes: modes ending in `@alt` use the copy.
 * @module
 */
import { pathToFileURL } from 'node:url';
import type * as Pipes from '../../src/pipes/index.js';

/** The pipe layer's exports. */
export type Lib = typeof Pipes;

/** `src/pipes` of this repository. */
export const p2pd: Lib = (await import('../../src/pipes/index.js')) as Lib;

const altPath = process.env['P2PD_DIST'];
/** The candidate copy, if any. */
export const alt: Lib | undefined = altPath ? ((await import(pathToFileURL(altPath).href)) as Lib) : undefined;

/** Suffix of modes that use the candidate copy. */
export const ALT = '@alt';

/** The libraries to serve, with their mode suffix (`''` and, if loaded, `'@alt'`). */
export function libs(): [string, Lib][] {
  return alt ? [['', p2pd], [ALT, alt]] : [['', p2pd]];
}

/** The library a mode uses. */
export function libFor(mode: string): Lib {
  if (mode.endsWith(ALT)) {
    if (!alt) throw new Error(`mode ${mode} needs P2PD_DIST`);
    return alt;
  }
  return p2pd;
}

/** A mode without its `@alt` suffix. */
export function base(mode: string): string {
  return mode.endsWith(ALT) ? mode.slice(0, -ALT.length) : mode;
}
