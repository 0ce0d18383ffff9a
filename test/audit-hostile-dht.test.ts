/**
 * Hostile-input audit of the DHT lookup: a responder that answers every query with k fresh
 * contacts, each closer to the target than anything seen so far. (Over a plain, unauthenticated
 * transport a node can claim any id, so one host answering on many ports can keep doing this;
 * every contact then answers too.)
 */
import { describe, expect, it } from 'vitest';
import type { Contact } from '../src/dht/contact.js';
import { randomId, type DhtId } from '../src/dht/id.js';
import { iterativeLookup, MAX_LOOKUP_QUERIES } from '../src/dht/lookup.js';

/** `target ⊕ (2^200 − n)`: strictly closer to `target` for every larger `n`. */
function closerId(target: DhtId, n: number): DhtId {
  let d = (1n << 200n) - BigInt(n);
  const out = Uint8Array.from(target);
  for (let i = 31; i >= 0 && d > 0n; i--) {
    out[i] = (out[i] as number) ^ Number(d & 0xffn);
    d >>= 8n;
  }
  return out;
}

describe('DHT lookup against ever-closer made-up contacts', () => {
  it('ends by itself after a bounded number of queries', async () => {
    const target = randomId();
    let n = 0;
    const fresh = (): Contact[] => Array.from({ length: 20 }, () => ({ id: closerId(target, ++n), host: '127.0.0.1', port: 9, family: 4 as const }));
    let queries = 0;
    const res = await iterativeLookup(
      target,
      {
        selfId: randomId(),
        k: 20,
        alpha: 3,
        seeds: fresh(),
        query: async () => {
          queries++;
          await new Promise((r) => setImmediate(r)); // an answer takes a turn of the event loop
          return { contacts: fresh() };
        },
      },
      AbortSignal.timeout(5_000), // stands in for "no timeout": before the cap, this is what ended it
    );
    expect(queries).toBeLessThanOrEqual(MAX_LOOKUP_QUERIES);
    expect(res.messages).toBe(queries);
    expect(res.closest.length).toBe(20);
  }, 10_000);
});
