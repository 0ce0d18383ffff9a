/**
 * Collecting unhandled rejections around one call, for suites that check that failing calls
 * nobody awaits do not become unhandled rejections.
 * @module
 */

/** Runs (and awaits) `fn`, then collects the unhandled rejections of the next `ms`. */
export async function unhandledDuring(fn: () => unknown, ms = 100): Promise<unknown[]> {
  const seen: unknown[] = [];
  const on = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', on);
  try {
    await fn();
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    process.off('unhandledRejection', on);
  }
  return seen;
}
