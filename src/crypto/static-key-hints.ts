/**
 * Responder-side guesses of a connecting peer's Noise static key, by remote host.
 *
 * In XX the responder learns the initiator's static key only in message 3, and then needs
 * `DH(e, rs)` (`se`) before it can finish. A peer that reconnects from the same host usually
 * sends the same static key as last time, so after writing message 2 (while the initiator
 * works on its answer) the responder can compute that DH with the remembered key
 * (`SecureHandshake.prepare(hint)`); message 3 then costs one DH less on the critical path.
 * The guess is only a hint: the key received is what counts.
 *
 * The policy keeps wasted work bounded: a host whose last guess missed (several peers behind
 * one address, a peer with a new key) gets no guess until a handshake from it shows the
 * remembered key again. Hosts are remembered in a bounded LRU map.
 * @module
 */

/** Hosts remembered at most (least recently used dropped first). */
export const STATIC_KEY_HINT_HOSTS = 256;

interface Hint {
  key: Buffer;
  /** Guess with `key` next time (false after a miss, until the key is seen again). */
  use: boolean;
}

const hints = new Map<string, Hint>();

/** Counters of responder guesses since the process started or {@link clearStaticKeyHints}. */
export interface StaticKeyHintStats {
  /** Handshakes whose guess was right (one DH saved on the critical path). */
  hits: number;
  /** Handshakes whose guess was wrong (one DH computed for nothing, while idle). */
  misses: number;
}

/** Responder guess counters (tests, benchmarks). */
export const staticKeyHintStats: StaticKeyHintStats = { hits: 0, misses: 0 };

/** The static key to guess for a handshake from `host`, or `undefined` for no guess. */
export function staticKeyHint(host: string | undefined): Buffer | undefined {
  if (host === undefined) return undefined;
  const h = hints.get(host);
  return h !== undefined && h.use ? h.key : undefined;
}

/**
 * Records the static key a completed handshake from `host` authenticated, and how the guess
 * fared (`'hit'`, `'miss'`, or `'none'` if no guess was made).
 */
export function noteStaticKey(host: string | undefined, key: Buffer, outcome: 'none' | 'hit' | 'miss'): void {
  if (host === undefined) return;
  if (outcome === 'hit') staticKeyHintStats.hits++;
  else if (outcome === 'miss') staticKeyHintStats.misses++;
  const prev = hints.get(host);
  const use = outcome === 'hit' || (outcome === 'none' && (prev === undefined || prev.use || prev.key.equals(key)));
  hints.delete(host);
  hints.set(host, { key, use });
  if (hints.size > STATIC_KEY_HINT_HOSTS) {
    const oldest = hints.keys().next().value;
    if (oldest !== undefined) hints.delete(oldest);
  }
}

/** Forgets every hint and resets {@link staticKeyHintStats} (tests, benchmarks). */
export function clearStaticKeyHints(): void {
  hints.clear();
  staticKeyHintStats.hits = 0;
  staticKeyHintStats.misses = 0;
}
