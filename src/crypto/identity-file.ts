/**
 * The identity key file on disk: atomic, private (`0600`) writes and permission-checked
 * reads, for {@link Identity.save} and {@link Identity.load}. Its contents (JSON, see
 * `identity.ts`) are produced and parsed by {@link Identity}; this module only moves the text.
 *
 * A write goes to a temporary file in the same directory, created with mode `0600`, fsynced,
 * then moved into place (atomic); it refuses to replace an existing file unless
 * `{ overwrite: true }`.
 *
 * A read **refuses** (throws {@link InsecureKeyFileError}) a key file that is readable or
 * writable by group/others, or owned by another user (other than root), like OpenSSH does;
 * pass `{ allowInsecurePermissions: true }` to skip that check. The check is skipped on
 * Windows, where POSIX modes mean nothing.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DecodeError, P2pdError, type P2pdErrorOptions } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import type { Identity } from './identity.js';

/** Key files larger than this are rejected without parsing. */
export const IDENTITY_FILE_MAX_SIZE = 16 * 1024;

/**
 * The identity key file could not be read or written (missing, exists, I/O error).
 * Code `ERR_IDENTITY_FILE` unless a subclass says otherwise. `cause` holds the system error.
 */
export class IdentityFileError extends P2pdError {
  /** The file concerned. */
  readonly path: string;
  constructor(path: string, message: string, options?: P2pdErrorOptions, code = 'ERR_IDENTITY_FILE') {
    super(code, message, options);
    this.path = path;
  }
}

/**
 * The identity key file is accessible to group/others or owned by someone else.
 * Code `ERR_INSECURE_KEY_FILE`.
 */
export class InsecureKeyFileError extends IdentityFileError {
  /** The file's permission bits (`mode & 0o777`). */
  readonly mode: number;
  constructor(path: string, mode: number, message: string) {
    super(path, message, undefined, 'ERR_INSECURE_KEY_FILE');
    this.mode = mode;
  }
}

/** Options of {@link Identity.save}. */
export interface IdentitySaveOptions {
  /** Replace an existing file; otherwise an existing file makes `save` fail. @default false */
  overwrite?: boolean;
  /** Checked before the file is touched and between the steps of the write (`AbortError`); a step under way (local I/O) completes. */
  signal?: AbortSignal;
}

/** Options of {@link Identity.load}. */
export interface IdentityLoadOptions {
  /** Accept a key file readable/writable by group or others. @default false */
  allowInsecurePermissions?: boolean;
  /** Checked before the file is opened and after it is read (`AbortError`). */
  signal?: AbortSignal;
}

/** The `code` of a system error (`ENOENT`, `EEXIST`, …), or `undefined`. */
export function sysCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/**
 * Writes the key file's `text` to `path` with mode `0600`, atomically (temporary file + fsync
 * + rename/link), then fsyncs the directory.
 * @throws {@link IdentityFileError} if the file exists (and `overwrite` is not set) or on I/O failure.
 */
export async function writeIdentityFile(path: string, text: string, opts: IdentitySaveOptions = {}): Promise<void> {
  throwIfAborted(opts.signal);
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      if (process.platform !== 'win32') await fh.chmod(0o600); // in case of an odd umask/ACL default
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new IdentityFileError(path, `cannot write identity file ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (opts.signal?.aborted) {
    await unlink(tmp).catch(() => undefined); // nothing was published
    throwIfAborted(opts.signal);
  }
  try {
    if (opts.overwrite) {
      await rename(tmp, path);
    } else {
      try {
        // link() fails atomically with EEXIST if the target exists.
        await link(tmp, path);
      } catch (e) {
        const code = sysCode(e);
        if (code === 'EEXIST') throw e;
        // Filesystems without hard links: check, then rename (small race window).
        const exists = await stat(path).then(
          () => true,
          (se: unknown) => sysCode(se) !== 'ENOENT',
        );
        if (exists) throw Object.assign(new Error(`file exists: ${path}`), { code: 'EEXIST' });
        await rename(tmp, path);
      }
    }
  } catch (e) {
    const msg =
      sysCode(e) === 'EEXIST'
        ? `identity file ${path} already exists (pass { overwrite: true } to replace it)`
        : `cannot write identity file ${path}: ${(e as Error).message}`;
    throw new IdentityFileError(path, msg, { cause: e });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDir(dir);
}

/**
 * Reads the key file at `path` as text, after checking that it is a regular file, private
 * (unless `allowInsecurePermissions`) and at most {@link IDENTITY_FILE_MAX_SIZE} bytes.
 * @throws {@link IdentityFileError} if the file cannot be read; {@link InsecureKeyFileError}
 *   if its permissions are too open; {@link DecodeError} if it is too large.
 */
export async function readIdentityFile(path: string, opts: IdentityLoadOptions = {}): Promise<string> {
  throwIfAborted(opts.signal);
  let text: string;
  try {
    // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused below.
    const fh = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new IdentityFileError(path, `identity file ${path} is not a regular file`);
      if (process.platform !== 'win32' && !opts.allowInsecurePermissions) {
        const mode = st.mode & 0o777;
        if ((mode & 0o077) !== 0) {
          throw new InsecureKeyFileError(
            path,
            mode,
            `identity file ${path} has permissions 0${mode.toString(8)}; it must not be accessible by group/others (chmod 600)`,
          );
        }
        const uid = process.getuid?.();
        if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
          throw new InsecureKeyFileError(path, mode, `identity file ${path} is owned by uid ${st.uid}, not by us (${uid})`);
        }
      }
      if (st.size > IDENTITY_FILE_MAX_SIZE) throw new DecodeError(`identity file ${path} is too large (${st.size} bytes)`);
      const buf = Buffer.alloc(IDENTITY_FILE_MAX_SIZE + 1);
      let n = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n > IDENTITY_FILE_MAX_SIZE) throw new DecodeError(`identity file ${path} is too large`);
      }
      text = buf.toString('utf8', 0, n);
      buf.fill(0);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof P2pdError) throw e;
    throw new IdentityFileError(path, `cannot read identity file ${path}: ${(e as Error).message}`, { cause: e });
  }
  throwIfAborted(opts.signal);
  return text;
}

/** fsync a directory so a rename survives a crash (best effort; not possible everywhere). */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* ignore */
  }
}
