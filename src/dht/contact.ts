/**
 * DHT contacts: how to reach a node (`{ id, host, port, family, publicKey? }`).
 * @module
 */
import { createHash } from 'node:crypto';
import type { Family } from '../interfaces/endpoint.js';
import { ipFamily } from '../interfaces/scope.js';
import { ID_BYTES, idEquals, idToHex, type DhtId } from './id.js';

/** Length of an Ed25519 public key, bytes. */
export const PUBLIC_KEY_BYTES = 32;

/** Remembered (id → public key) pairs already checked by {@link contactProblem}. */
const VERIFIED_CACHE_LIMIT = 4096;
const verified = new Map<string, Uint8Array>();

function keyMatchesId(publicKey: Uint8Array, id: Uint8Array): boolean {
  const hex = idToHex(id);
  const known = verified.get(hex);
  if (known && idEquals(known, publicKey)) return true;
  const h = createHash('sha256').update(publicKey).digest();
  if (!idEquals(h, id)) return false;
  if (verified.size >= VERIFIED_CACHE_LIMIT) verified.delete(verified.keys().next().value as string);
  verified.set(hex, Uint8Array.from(publicKey));
  return true;
}

/** How to reach a DHT node. */
export interface Contact {
  /** The node's 32-byte id (SHA-256 of its Ed25519 public key). */
  readonly id: DhtId;
  /** IP address literal (no brackets, no zone). */
  readonly host: string;
  /** UDP/TCP port, 1–65535. */
  readonly port: number;
  /** Address family of `host`. */
  readonly family: Family;
  /** The node's raw 32-byte Ed25519 public key, when known; then `id` must be its SHA-256. */
  readonly publicKey?: Uint8Array;
}

/**
 * Checks a contact's shape: 32-byte id, IP literal whose family matches `family`, port
 * 1–65535, and (if present) a 32-byte public key whose SHA-256 equals `id`. Returns a
 * reason string if invalid, `undefined` if valid.
 */
export function contactProblem(c: Contact): string | undefined {
  if (c === null || typeof c !== 'object') return 'not a contact object';
  if (!(c.id instanceof Uint8Array) || c.id.length !== ID_BYTES) return 'bad id';
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 0xffff) return 'bad port';
  if (c.family !== 4 && c.family !== 6) return 'bad family';
  if (ipFamily(c.host) !== c.family || c.host.includes('%')) return 'bad host';
  if (c.publicKey !== undefined) {
    if (!(c.publicKey instanceof Uint8Array) || c.publicKey.length !== PUBLIC_KEY_BYTES) return 'bad public key';
    if (!keyMatchesId(c.publicKey, c.id)) return 'id is not SHA-256 of the public key';
  }
  return undefined;
}

/** True if {@link contactProblem} finds nothing wrong. */
export function isValidContact(c: Contact): boolean {
  return contactProblem(c) === undefined;
}

/** `host:port` (IPv6 in brackets) of a contact. */
export function contactAddress(c: Pick<Contact, 'host' | 'port' | 'family'>): string {
  return c.family === 6 ? `[${c.host}]:${c.port}` : `${c.host}:${c.port}`;
}

/** Human-readable form for logs: `ab12cd34@1.2.3.4:5`. */
export function formatContact(c: Contact): string {
  return `${idToHex(c.id).slice(0, 8)}@${contactAddress(c)}`;
}
