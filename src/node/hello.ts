/**
 * Small shared pieces of the node: the hello a connecting side puts in its handshake
 * payload, connection ids, peer-supplied endpoint parsing and callback safety.
 * @module
 */
import { toEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import type { SecurePipe } from '../crypto/secure-pipe.js';
import type { Pipe } from '../pipes/pipe.js';
import { STRATEGIES, type NodePipe, type PipePath, type Strategy } from './types.js';

/** The hello a connecting side sends in its (authenticated) handshake payload. */
export interface Hello {
  /** Format version (1). */
  v: 1;
  /** Strategy that made the connection. */
  s: Strategy;
  /** Connection id of a reverse/punch/relay exchange. */
  c?: string;
}

/** Largest encoded hello accepted. */
export const MAX_HELLO = 256;

/** A connection id: 16 random bytes, hex. */
export const CONN_ID = /^[0-9a-f]{32}$/;

/** Encodes a hello for the handshake payload's extensions. */
export function encodeHello(h: Hello): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

/** Decodes a peer's hello; undefined when absent or malformed. */
export function decodeHello(b: Buffer): Hello | undefined {
  if (b.length === 0 || b.length > MAX_HELLO) return undefined;
  try {
    const o = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
    if (o.v !== 1 || typeof o.s !== 'string' || !(STRATEGIES as readonly string[]).includes(o.s)) return undefined;
    if (o.c !== undefined && (typeof o.c !== 'string' || !CONN_ID.test(o.c))) return undefined;
    return { v: 1, s: o.s as Strategy, ...(typeof o.c === 'string' ? { c: o.c } : {}) };
  } catch {
    return undefined;
  }
}

/** `e` as an Error. */
export function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Parses `host:port` text from a peer; undefined if malformed (or port 0). */
export function endpointFrom(v: unknown): Endpoint | undefined {
  if (typeof v !== 'string' || v.length > 64) return undefined;
  try {
    const e = toEndpoint(v);
    return e.port > 0 ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Parses a peer's list of `host:port` candidates (at most `max`), dropping malformed ones. */
export function endpointsFrom(v: unknown, max = 8): Endpoint[] {
  return Array.isArray(v) ? (v as unknown[]).slice(0, max).map(endpointFrom).filter((e): e is Endpoint => e !== undefined) : [];
}

/** Attaches `path` to a pipe, making it a {@link NodePipe}. */
export function asNodePipe(p: SecurePipe | Pipe, path: PipePath): NodePipe {
  Object.defineProperty(p, 'path', { value: path, enumerable: true, configurable: true });
  return p as NodePipe;
}

/** Runs a user callback; a throw becomes a process warning. */
export function safe(f: () => void): void {
  try {
    f();
  } catch (e) {
    process.emitWarning(`p2pd node: error in a callback: ${String(e)}`, { code: 'P2PD_CALLBACK_ERROR' });
  }
}
