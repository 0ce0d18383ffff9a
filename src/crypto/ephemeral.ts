/**
 * X25519 key generation, and the pool of pre-generated ephemeral key pairs that takes key
 * generation off a handshake's critical path.
 *
 * A Noise handshake needs one fresh ephemeral key pair per connection (~45 µs of main-thread
 * CPU). {@link takeEphemeralKeyPair} hands out a pair generated ahead of time in the libuv
 * thread pool (`crypto.generateKeyPair`); when the pool runs low it is refilled, in a batch,
 * after the current turn of the event loop (when the process typically waits for the peer),
 * so the next handshake finds its key ready. When the pool is empty (a burst of handshakes) it generates
 * one synchronously: never slower than before, never waiting. A caller for whom the next turn
 * is on the critical path can hold the refill back ({@link holdEphemeralRefill}): the
 * initiator does while its message 1 waits for the TCP connect to complete.
 *
 * Invariant: every pair is handed out **at most once** (it leaves the pool before it is
 * returned) and pairs are never recycled; a pair generated for a handshake that failed is
 * simply dropped with it. Pooled pairs are plain fresh keys: pre-generation changes when a key
 * is made, not what it is.
 * @module
 */
import { generateKeyPair, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { HandshakeError } from '../errors.js';

/** X25519 public key / shared secret length. */
const KEY_LEN = 32;

/** An X25519 key pair: the raw 32-byte public key and the private key as a `KeyObject`. */
export interface X25519KeyPair {
  /** Raw 32-byte public key. */
  readonly publicKey: Buffer;
  /** The private key, kept inside OpenSSL. */
  readonly privateKey: KeyObject;
}

/** The encoding asked of the key generator; see {@link generateX25519Sync} for why up front. */
const KEYGEN_OPTS = { publicKeyEncoding: { type: 'spki', format: 'jwk' } } as never;

function fromJwk(publicKey: { x?: unknown }, privateKey: KeyObject): X25519KeyPair {
  const raw = Buffer.from(String(publicKey.x), 'base64url');
  if (raw.length !== KEY_LEN) throw new HandshakeError('unexpected X25519 public key encoding');
  return { publicKey: raw, privateKey };
}

/**
 * Generates a fresh X25519 key pair synchronously.
 *
 * The generator encodes the public key itself (JWK): on Node 20, exporting a freshly
 * generated public `KeyObject` with `export({ format: 'jwk' })` can deadlock the process when a
 * GC finalizes an earlier key-generation job at the same moment (seen within seconds in a loop
 * of handshakes). Asking for the encoding up front avoids that and is faster.
 */
export function generateX25519Sync(): X25519KeyPair {
  const kp = generateKeyPairSync('x25519', KEYGEN_OPTS) as unknown as { publicKey: { x?: string }; privateKey: KeyObject };
  return fromJwk(kp.publicKey, kp.privateKey);
}

/**
 * Most pre-generated pairs kept ready: one for the next handshake and a spare for bursts of
 * two (both ends of a connection in one process, a reconnect racing an accept).
 */
const POOL_MAX = 2;
/**
 * A refill starts when the pool, counting generations under way, is down to this many. With
 * one generation at a time, it runs on a core the handshake is not using (on a 2-core machine
 * a batch of jobs would compete with the handshake's own critical path), while its main-thread
 * share (~15–30 µs: job setup, then the result) falls where the process waits for the peer.
 */
const LOW_WATER = 1;
/** Generations under way at most. */
const MAX_INFLIGHT = 1;
const pool: X25519KeyPair[] = [];
/** Thread-pool generations under way. */
let inflight = 0;
/** Bumped by {@link resetEphemeralPool}: results of generations started before are dropped. */
let epoch = 0;
/** A refill scheduled for after the current turn of the event loop. */
let scheduled: NodeJS.Immediate | undefined;
let enabled = true;
/** {@link holdEphemeralRefill} calls not yet released; while > 0 refills wait. */
let holds = 0;

/** Counters of the ephemeral key pool (for tests and benchmarks). */
export interface EphemeralPoolStats {
  /** Pairs handed out from the pool. */
  pooled: number;
  /** Pairs generated synchronously because the pool was empty. */
  sync: number;
  /** Pairs generated in the thread pool. */
  async: number;
}

/** Counters since the process started (or {@link resetEphemeralPool}). */
export const ephemeralPoolStats: EphemeralPoolStats = { pooled: 0, sync: 0, async: 0 };

/**
 * Starts the refill after the current turn of the event loop: starting generations costs the
 * main thread part of what a synchronous generation does (job setup, then the results), so it
 * must not sit between a handshake message and its answer; after this turn the process is
 * typically waiting for the peer. Unreferenced: it never keeps a process alive.
 */
function scheduleRefill(): void {
  if (holds > 0 || scheduled !== undefined || !enabled || pool.length + inflight > LOW_WATER) return;
  scheduled = setImmediate(runRefill);
  scheduled.unref();
}

function runRefill(): void {
  scheduled = undefined;
  if (!enabled) return;
  const e = epoch;
  for (let n = Math.min(POOL_MAX - pool.length - inflight, MAX_INFLIGHT - inflight); n > 0; n--) {
    inflight++;
    generateKeyPair('x25519', KEYGEN_OPTS, (err: Error | null, publicKey: unknown, privateKey: unknown) => {
      if (e !== epoch) return; // started before a reset
      inflight--;
      if (err || !enabled) return; // a failed pre-generation is retried by a later take
      try {
        pool.push(fromJwk(publicKey as { x?: unknown }, privateKey as KeyObject));
        ephemeralPoolStats.async++;
      } catch {
        return; // retried by a later take
      }
      scheduleRefill();
    });
  }
}

/**
 * A fresh X25519 key pair for exactly one handshake: pre-generated when available, generated
 * synchronously otherwise. Refills the pool in the thread pool when it runs low.
 * The caller owns the pair; it is never handed out again.
 */
export function takeEphemeralKeyPair(): X25519KeyPair {
  const kp = pool.shift();
  let out: X25519KeyPair;
  if (kp !== undefined) {
    ephemeralPoolStats.pooled++;
    out = kp;
  } else {
    ephemeralPoolStats.sync++;
    out = generateX25519Sync();
  }
  scheduleRefill();
  return out;
}

/**
 * Holds refills back until {@link releaseEphemeralRefill}: for a caller that takes a key at a
 * moment when the event loop's next turn is on its critical path (an initiator building
 * message 1 before its TCP connect completes: the refill's main-thread share would delay the
 * message) and knows a better moment (once message 1 is out). Every hold must be released.
 */
export function holdEphemeralRefill(): void {
  holds++;
}

/** Releases one {@link holdEphemeralRefill}; the refill then starts after the current turn if the pool is low. */
export function releaseEphemeralRefill(): void {
  if (holds > 0) holds--;
  scheduleRefill();
}

/**
 * Empties the pool and sets whether it refills (`enabled = false`: every pair is generated
 * synchronously on demand, as if there were no pool). Resets the counters. For tests and
 * benchmarks.
 */
export function resetEphemeralPool(opts: { enabled?: boolean } = {}): void {
  pool.length = 0;
  inflight = 0;
  epoch++;
  if (scheduled !== undefined) clearImmediate(scheduled);
  scheduled = undefined;
  enabled = opts.enabled ?? true;
  ephemeralPoolStats.pooled = 0;
  ephemeralPoolStats.sync = 0;
  ephemeralPoolStats.async = 0;
}
