import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, DecodeError, InvalidArgumentError } from '../src/errors.js';
import { Identity, IdentityFileError, idFromPublicKey, InsecureKeyFileError, parseNodeId } from '../src/crypto/index.js';

const posix = process.platform !== 'win32';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pd-identity-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Identity', () => {
  it('has a 32-byte public key and id = sha256(public key)', () => {
    const id = Identity.generate();
    expect(id.publicKey.length).toBe(32);
    expect(id.id.length).toBe(32);
    expect(id.id).toEqual(createHash('sha256').update(id.publicKey).digest());
    expect(id.idHex).toBe(id.id.toString('hex'));
    expect(idFromPublicKey(id.publicKey)).toEqual(id.id);
    expect(String(id)).toContain(id.idHex);
    expect(JSON.stringify(id)).not.toMatch(/privateKey|"d"/);
    expect(Identity.generate().idHex).not.toBe(id.idHex);
  });

  it('signs and verifies; verify never throws on garbage', () => {
    const a = Identity.generate();
    const b = Identity.generate();
    const msg = Buffer.from('hello');
    const sig = a.sign(msg);
    expect(sig.length).toBe(64);
    expect(a.verify(msg, sig)).toBe(true);
    expect(Identity.verify(a.publicKey, msg, sig)).toBe(true);
    expect(Identity.verify(b.publicKey, msg, sig)).toBe(false);
    expect(Identity.verify(a.publicKey, Buffer.from('hellO'), sig)).toBe(false);
    const bad = Buffer.from(sig);
    bad[10] ^= 1;
    expect(Identity.verify(a.publicKey, msg, bad)).toBe(false);
    expect(Identity.verify(a.publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(Identity.verify(Buffer.alloc(31), msg, sig)).toBe(false);
    expect(Identity.verify(Buffer.alloc(32, 0xff), msg, sig)).toBe(false);
    expect(Identity.verify(null as unknown as Buffer, msg, sig)).toBe(false);
  });

  it('fromPrivateKey is deterministic (RFC 8032 test 1)', () => {
    const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    const id = Identity.fromPrivateKey(seed);
    expect(id.publicKey.toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(id.sign(Buffer.alloc(0)).toString('hex')).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    expect(() => Identity.fromPrivateKey(Buffer.alloc(31))).toThrow(InvalidArgumentError);
  });

  it('parseNodeId accepts 32 bytes or 64 hex chars only', () => {
    const id = Identity.generate();
    expect(parseNodeId(id.idHex)).toEqual(id.id);
    expect(parseNodeId(id.id)).toEqual(id.id);
    expect(() => parseNodeId('abc')).toThrow(InvalidArgumentError);
    expect(() => parseNodeId(Buffer.alloc(31))).toThrow(InvalidArgumentError);
  });

  it('saves with mode 0600 and loads back the same identity', async () => {
    const id = Identity.generate();
    const path = join(dir, 'id1.json');
    await id.save(path);
    if (posix) expect((await stat(path)).mode & 0o777).toBe(0o600);
    const loaded = await Identity.load(path);
    expect(loaded.equals(id)).toBe(true);
    expect(loaded.idHex).toBe(id.idHex);
    const msg = Buffer.from('x');
    expect(id.verify(msg, loaded.sign(msg))).toBe(true);
    const doc = JSON.parse(await readFile(path, 'utf8'));
    expect(doc).toMatchObject({ type: 'p2pd-identity', version: 1, keyType: 'ed25519', id: id.idHex });
    // No temp files left behind.
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('save/load/loadOrGenerate take a signal: aborted, nothing is written or returned', async () => {
    const path = join(dir, 'id-abort.json');
    const a = Identity.generate();
    await expect(a.save(path, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(Identity.loadOrGenerate(path, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(dir)).filter((f) => f.includes('id-abort'))).toEqual([]); // no temporary file left
    await a.save(path, { signal: new AbortController().signal });
    await expect(Identity.load(path, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect((await Identity.load(path, { signal: new AbortController().signal })).equals(a)).toBe(true);
  });

  it('refuses to overwrite unless told to', async () => {
    const path = join(dir, 'id2.json');
    const a = Identity.generate();
    const b = Identity.generate();
    await a.save(path);
    await expect(b.save(path)).rejects.toBeInstanceOf(IdentityFileError);
    await expect(b.save(path)).rejects.toMatchObject({ code: 'ERR_IDENTITY_FILE' });
    expect((await Identity.load(path)).equals(a)).toBe(true);
    await b.save(path, { overwrite: true });
    expect((await Identity.load(path)).equals(b)).toBe(true);
    if (posix) expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it.skipIf(!posix)('refuses group/other-accessible key files unless allowed', async () => {
    const path = join(dir, 'id3.json');
    const a = Identity.generate();
    await a.save(path);
    await chmod(path, 0o644);
    const err = await Identity.load(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsecureKeyFileError);
    expect(err).toMatchObject({ code: 'ERR_INSECURE_KEY_FILE', mode: 0o644 });
    expect((await Identity.load(path, { allowInsecurePermissions: true })).equals(a)).toBe(true);
  });

  it('missing file → IdentityFileError; loadOrGenerate creates it once', async () => {
    const path = join(dir, 'missing.json');
    await expect(Identity.load(path)).rejects.toBeInstanceOf(IdentityFileError);
    const a = await Identity.loadOrGenerate(path);
    const b = await Identity.loadOrGenerate(path);
    expect(a.equals(b)).toBe(true);
  });

  it('corrupt files → DecodeError', async () => {
    const good = Identity.generate();
    const path0 = join(dir, 'good.json');
    await good.save(path0);
    const doc = JSON.parse(await readFile(path0, 'utf8')) as Record<string, unknown>;
    const other = JSON.parse(
      await (async () => {
        const p = join(dir, 'other.json');
        await Identity.generate().save(p);
        return readFile(p, 'utf8');
      })(),
    ) as Record<string, unknown>;
    const cases: (string | Buffer)[] = [
      '',
      'not json',
      '[]',
      'null',
      '42',
      JSON.stringify({ ...doc, type: 'other' }),
      JSON.stringify({ ...doc, version: 2 }),
      JSON.stringify({ ...doc, keyType: 'rsa' }),
      JSON.stringify({ ...doc, privateKey: 'AAAA' }),
      JSON.stringify({ ...doc, privateKey: 42 }),
      JSON.stringify({ ...doc, privateKey: String(doc.privateKey).replace(/=$/, '') }),
      JSON.stringify({ ...doc, privateKey: '!' + String(doc.privateKey).slice(1) }),
      JSON.stringify({ ...doc, publicKey: other.publicKey }),
      JSON.stringify({ ...doc, id: other.id }),
      JSON.stringify({ ...doc, publicKey: undefined }),
      Buffer.from([0xff, 0xfe, 0x00, 0x01]),
      JSON.stringify(doc).slice(0, 40),
    ];
    for (const [i, c] of cases.entries()) {
      const path = join(dir, `corrupt${i}.json`);
      await writeFile(path, c, { mode: 0o600 });
      const err = await Identity.load(path).catch((e: unknown) => e);
      expect(err, `case ${i}`).toBeInstanceOf(DecodeError);
    }
    // Oversized file.
    const big = join(dir, 'big.json');
    await writeFile(big, Buffer.alloc(20_000, 0x20), { mode: 0o600 });
    await expect(Identity.load(big)).rejects.toBeInstanceOf(DecodeError);
    // A directory is not a key file.
    await expect(Identity.load(dir)).rejects.toBeInstanceOf(IdentityFileError);
  });
});
