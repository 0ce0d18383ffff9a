/**
 * The node's use of the hole punching module (`src/node/punch/`): loaded on demand, so that a
 * failure to load it costs the punch and relay strategies only, never the node.
 * @module
 */
import type * as Punch from './punch/index.js';

/** What the node uses from `src/node/punch/`. */
export type PunchModule = Pick<typeof Punch, 'punch' | 'openReliable' | 'keepAlive' | 'tcpPunch' | 'tcpMapping'>;

let cached: Promise<PunchModule | null> | undefined;

/** Loads `src/node/punch/index.js`; `null` if it cannot be loaded or lacks the expected exports. */
export function loadPunch(): Promise<PunchModule | null> {
  cached ??= (async () => {
    try {
      const m = (await import('./punch/index.js')) as Partial<PunchModule>;
      return typeof m.punch === 'function' && typeof m.openReliable === 'function' && typeof m.tcpPunch === 'function' && typeof m.tcpMapping === 'function' ? (m as PunchModule) : null;
    } catch {
      return null;
    }
  })();
  return cached;
}
