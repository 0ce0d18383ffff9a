/**
 * Node identity: an Ed25519 key pair (`node:crypto`). The node id is SHA-256 of the raw
 * 32-byte public key.
 *
 * ## Key file
 * {@link Identity.save} writes UTF-8 JSON:
 * ```json
 * { "type": "p2pd-identity", "version": 1, "keyType": "ed25519",
 *   "privateKey": "<base64, 32-byte Ed25519 seed>", "publicKey": "<base64, 32 bytes>",
 *   "id": "<hex, sha256(publicKey)>" }
 * ```
 * The file is created with mode `0600`, written to a temporary file in the same directory,
 * fsynced, then moved into place (atomic). It refuses to replace an existing file unless
 * `{ overwrite: true }`.
 *
 * {@link Identity.load} **refuses** (throws {@link InsecureKeyFileError}) a key file that is
 * readable or writable by group/others, or owned by another user (other than root), like
 * OpenSSH does; pass `{ allowInsecurePermissions: true }` to skip that check. The check is
 * skipped on Windows, where POSIX modes mean nothing. A malformed file (bad JSON, wrong
 * field, bad base64, key/public/id mismatch) throws {@link DecodeError}.
 *
 * This module makes and parses the file's contents; `identity-file.ts` does the file I/O.
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { DecodeError, InvalidArgumentError } from '../errors.js';
import { badSignal } from '../util/abort.js';
import {
  IdentityFileError,
  readIdentityFile,
  sysCode,
  writeIdentityFile,
  type IdentityLoadOptions,
  type IdentitySaveOptions,
  type InsecureKeyFileError,
} from './identity-file.js';

/** Length of a node id (SHA-256), bytes. */
export const ID_LENGTH = 32;
/** Length of an Ed25519 public key / seed, bytes. */
export const ED25519_KEY_LENGTH = 32;
/** Length of an Ed25519 signature, bytes. */
export const ED25519_SIGNATURE_LENGTH = 64;
/** `type` field of the identity key file. */
export const IDENTITY_FILE_TYPE = 'p2pd-identity';
/** `version` field of the identity key file. */
export const IDENTITY_FILE_VERSION = 1;

/** DER prefix of a PKCS#8 Ed25519 private key; followed by the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function bytes(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** The node id of an Ed25519 public key: SHA-256 of its 32 raw bytes. */
export function idFromPublicKey(publicKey: Uint8Array): Buffer {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_KEY_LENGTH) {
    throw new InvalidArgumentError('Ed25519 public key must be 32 bytes');
  }
  return createHash('sha256').update(publicKey).digest();
}

/**
 * Parses a node id given as 32 bytes or 64 hex characters; returns a copy as a Buffer.
 * @throws {@link InvalidArgumentError} on anything else.
 */
export function parseNodeId(id: Uint8Array | string): Buffer {
  if (typeof id === 'string') {
    if (!/^[0-9a-fA-F]{64}$/.test(id)) throw new InvalidArgumentError('node id must be 64 hex characters');
    return Buffer.from(id, 'hex');
  }
  if (id instanceof Uint8Array && id.length === ID_LENGTH) return Buffer.from(id);
  throw new InvalidArgumentError('node id must be 32 bytes or 64 hex characters');
}

function ed25519PublicRaw(key: KeyObject): Buffer {
  const x = key.export({ format: 'jwk' }).x;
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : Buffer.alloc(0);
  if (raw.length !== ED25519_KEY_LENGTH) throw new InvalidArgumentError('unexpected Ed25519 key encoding');
  return raw;
}

/** Imports a raw Ed25519 public key, or `undefined` if it is not one. */
function importEd25519Public(raw: Uint8Array): KeyObject | undefined {
  if (!(raw instanceof Uint8Array) || raw.length !== ED25519_KEY_LENGTH) return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: bytes(raw).toString('base64url') }, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/** Strict base64 (standard alphabet, padded) → bytes, or `undefined`. */
function strictBase64(s: unknown): Buffer | undefined {
  if (typeof s !== 'string' || s.length > 1024 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : undefined;
}

/**
 * Throws {@link InvalidArgumentError} unless `opts` is an object whose `signal` (if any) is an
 * `AbortSignal` and whose `flag` (if any) is a boolean: a string such as `'false'` from a
 * config file must not turn `allowInsecurePermissions` (or `overwrite`) on.
 */
function checkFileOptions(opts: object, flag: 'overwrite' | 'allowInsecurePermissions'): void {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError(`options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  const o = opts as { signal?: unknown } & Record<typeof flag, unknown>;
  if (o[flag] !== undefined && typeof o[flag] !== 'boolean') throw new InvalidArgumentError(`${flag} must be a boolean`);
  const bad = badSignal(o.signal);
  if (bad) throw bad;
}

/** An Ed25519 node identity. The private key never leaves the object except through {@link save}. */
export class Identity {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Buffer;
  /** Node id: SHA-256 of {@link publicKey} (32 bytes). */
  readonly id: Buffer;
  /** {@link id} as 64 lowercase hex characters. */
  readonly idHex: string;
  readonly #privateKey: KeyObject;

  private constructor(privateKey: KeyObject, publicKey: Buffer) {
    this.#privateKey = privateKey;
    this.publicKey = publicKey;
    this.id = idFromPublicKey(publicKey);
    this.idHex = this.id.toString('hex');
  }

  /** Generates a new random identity. */
  static generate(): Identity {
    // The public key is encoded by generateKeyPairSync itself: exporting a fresh KeyObject as
    // JWK can deadlock Node 20 (see generateX25519KeyPair in x25519.ts).
    const { privateKey, publicKey } = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'jwk' } } as never) as unknown as {
      publicKey: { x?: string };
      privateKey: KeyObject;
    };
    const raw = Buffer.from(String(publicKey.x), 'base64url');
    if (raw.length !== ED25519_KEY_LENGTH) throw new InvalidArgumentError('unexpected Ed25519 key encoding');
    return new Identity(privateKey, raw);
  }

  /**
   * Rebuilds an identity from its 32-byte Ed25519 private key (seed), e.g. for tests.
   * @throws {@link InvalidArgumentError} if `seed` is not 32 bytes.
   */
  static fromPrivateKey(seed: Uint8Array): Identity {
    if (!(seed instanceof Uint8Array) || seed.length !== ED25519_KEY_LENGTH) {
      throw new InvalidArgumentError('Ed25519 private key must be 32 bytes');
    }
    const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    return new Identity(privateKey, ed25519PublicRaw(createPublicKey(privateKey)));
  }

  /** Signs `data` with Ed25519; returns the 64-byte signature. */
  sign(data: Uint8Array): Buffer {
    return sign(null, data, this.#privateKey);
  }

  /** Verifies an Ed25519 signature made by this identity. */
  verify(data: Uint8Array, signature: Uint8Array): boolean {
    return Identity.verify(this.publicKey, data, signature);
  }

  /**
   * Verifies an Ed25519 `signature` of `data` under the raw 32-byte `publicKey`.
   * Never throws: malformed keys or signatures just give `false`.
   */
  static verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
    if (!(data instanceof Uint8Array) || !(signature instanceof Uint8Array)) return false;
    if (signature.length !== ED25519_SIGNATURE_LENGTH) return false;
    const key = importEd25519Public(publicKey);
    if (!key) return false;
    try {
      return verify(null, data, key, signature);
    } catch {
      return false;
    }
  }

  /** `true` if `other` has the same public key. */
  equals(other: Identity): boolean {
    return other instanceof Identity && other.publicKey.equals(this.publicKey);
  }

  /** Short human-readable form; never includes the private key. */
  toString(): string {
    return `Identity(${this.idHex})`;
  }

  /** JSON form: public parts only. */
  toJSON(): { id: string; publicKey: string } {
    return { id: this.idHex, publicKey: this.publicKey.toString('base64') };
  }

  /** The key file's contents (includes the private key). */
  #serialize(): string {
    const d = this.#privateKey.export({ format: 'jwk' }).d;
    const seed = typeof d === 'string' ? Buffer.from(d, 'base64url') : Buffer.alloc(0);
    if (seed.length !== ED25519_KEY_LENGTH) throw new InvalidArgumentError('unexpected Ed25519 key encoding');
    const text = JSON.stringify(
      {
        type: IDENTITY_FILE_TYPE,
        version: IDENTITY_FILE_VERSION,
        keyType: 'ed25519',
        privateKey: seed.toString('base64'),
        publicKey: this.publicKey.toString('base64'),
        id: this.idHex,
      },
      null,
      2,
    );
    seed.fill(0);
    return text + '\n';
  }

  /**
   * Writes the identity (including its private key) to `path` with mode `0600`, atomically
   * (temporary file + fsync + rename/link).
   * @throws {@link IdentityFileError} if the file exists (and `overwrite` is not set) or on I/O failure.
   */
  async save(path: string, opts: IdentitySaveOptions = {}): Promise<void> {
    if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty string');
    checkFileOptions(opts, 'overwrite');
    await writeIdentityFile(path, this.#serialize(), opts);
  }

  /**
   * Reads an identity saved by {@link save}.
   * @throws {@link IdentityFileError} if the file cannot be read; {@link InsecureKeyFileError}
   *   if its permissions are too open; {@link DecodeError} if its contents are malformed.
   */
  static async load(path: string, opts: IdentityLoadOptions = {}): Promise<Identity> {
    if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty string');
    checkFileOptions(opts, 'allowInsecurePermissions');
    return Identity.#parse(await readIdentityFile(path, opts), path);
  }

  /**
   * Loads the identity at `path`, or generates and saves a new one if the file does not exist.
   */
  static async loadOrGenerate(path: string, opts: IdentityLoadOptions = {}): Promise<Identity> {
    try {
      return await Identity.load(path, opts);
    } catch (e) {
      if (!(e instanceof IdentityFileError) || sysCode(e.cause) !== 'ENOENT') throw e;
    }
    const id = Identity.generate();
    try {
      await id.save(path, opts.signal ? { signal: opts.signal } : {});
      return id;
    } catch (e) {
      // Someone else created it meanwhile: use theirs.
      if (e instanceof IdentityFileError && sysCode(e.cause) === 'EEXIST') return Identity.load(path, opts);
      throw e;
    }
  }

  static #parse(text: string, path: string): Identity {
    const bad = (why: string): DecodeError => new DecodeError(`identity file ${path} is corrupt: ${why}`);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new DecodeError(`identity file ${path} is corrupt: not JSON`, { cause: e });
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not a JSON object');
    const o = doc as Record<string, unknown>;
    if (o.type !== IDENTITY_FILE_TYPE) throw bad(`type is not "${IDENTITY_FILE_TYPE}"`);
    if (o.version !== IDENTITY_FILE_VERSION) throw bad(`unsupported version ${JSON.stringify(o.version)}`);
    if (o.keyType !== 'ed25519') throw bad('keyType is not "ed25519"');
    const seed = strictBase64(o.privateKey);
    if (!seed || seed.length !== ED25519_KEY_LENGTH) throw bad('privateKey is not 32 bytes of base64');
    const pub = strictBase64(o.publicKey);
    if (!pub || pub.length !== ED25519_KEY_LENGTH) throw bad('publicKey is not 32 bytes of base64');
    let identity: Identity;
    try {
      identity = Identity.fromPrivateKey(seed);
    } catch (e) {
      throw new DecodeError(`identity file ${path} is corrupt: bad private key`, { cause: e });
    } finally {
      seed.fill(0);
    }
    if (!identity.publicKey.equals(pub)) throw bad('publicKey does not match privateKey');
    if (o.id !== undefined && o.id !== identity.idHex) throw bad('id does not match publicKey');
    return identity;
  }
}
