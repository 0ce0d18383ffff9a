/**
 * `SourceShare<T>`: fair use of a server's scarce slots (handshakes in progress, live
 * connections) among traffic sources. Items are filed under their source (an IPv4 address,
 * or an IPv6 /64: one host usually holds a whole one, see {@link sourceOf}); when the slots
 * are full and a newcomer arrives, {@link SourceShare.victimFor} names the oldest item of the
 * source holding the most, if that source holds at least two more than the newcomer's. So one
 * source cannot lock the others out by filling every slot (a slowloris from one address), and
 * sources with equal shares do not churn each other.
 * @module
 */
import { ipToBytes, unmapIPv4 } from '../interfaces/ip.js';

/** Bytes of an IPv6 address that name one source: a /64. IPv4 sources are whole addresses. */
export const SOURCE_PREFIX_BYTES_V6 = 8;

/** The source `host` is charged to: its IPv4 address (v4-mapped ones unmapped), or its IPv6 /64. */
export function sourceOf(host: string | undefined): string {
  if (host === undefined) return '';
  const h = unmapIPv4(host);
  if (!h.includes(':')) return h;
  try {
    return `${Buffer.from(ipToBytes(h)).subarray(0, SOURCE_PREFIX_BYTES_V6).toString('hex')}/64`;
  } catch {
    return h;
  }
}

/** Items filed by source, oldest first within each; see the module notes. */
export class SourceShare<T> {
  readonly #by = new Map<string, Set<T>>();
  #size = 0;

  /** Items held, all sources together. */
  get size(): number {
    return this.#size;
  }

  /** Items held by `source`. */
  count(source: string): number {
    return this.#by.get(source)?.size ?? 0;
  }

  /** Files `item` under `source` (newest). */
  add(source: string, item: T): void {
    let set = this.#by.get(source);
    if (set === undefined) this.#by.set(source, (set = new Set()));
    if (set.has(item)) return;
    set.add(item);
    this.#size++;
  }

  /** Removes `item` from `source`; returns whether it was there. */
  delete(source: string, item: T): boolean {
    const set = this.#by.get(source);
    if (set === undefined || !set.delete(item)) return false;
    this.#size--;
    if (set.size === 0) this.#by.delete(source);
    return true;
  }

  /**
   * For a newcomer from `source` when every slot is taken: removes and returns the oldest
   * item of the source holding the most, if it holds at least two more than `source`;
   * `undefined` (nothing removed) otherwise. The caller frees the victim's slot.
   */
  victimFor(source: string): T | undefined {
    const have = this.count(source);
    let hog: string | undefined;
    let most = 0;
    for (const [s, set] of this.#by) {
      if (set.size > most) {
        most = set.size;
        hog = s;
      }
    }
    if (hog === undefined || most < have + 2) return undefined;
    const victim = (this.#by.get(hog) as Set<T>).values().next().value as T;
    this.delete(hog, victim);
    return victim;
  }
}
