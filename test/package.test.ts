/**
 * The package as a user installs it: compiled JavaScript and declarations under `dist/`, the
 * `exports` map, the `p2pd` command. The build goes to a temporary directory laid out like an
 * installed package (`node_modules/p2pd`), so the checkout's own `dist/` is never touched; a
 * consumer project there type-checks against the declarations (`strict`, NodeNext, library
 * checks on) and runs with plain `node`, no tsx.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const pkgJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  files: string[];
  exports: Record<string, unknown>;
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};

let dir = '';
let pkg = '';

/** A TypeScript consumer: type-checked only (`tsc --noEmit`). */
const CONSUMER_TS = `
import { initP2pd, pipeOpen, Identity, connectSecure, listenSecure, startP2pNode, P2pdError, TimeoutError, SUB_ALL } from 'p2pd';
import type { Pipe, Message, Interface, Interfaces, SecurePipe } from 'p2pd';
const ifs: Interfaces = await initP2pd();
const first: Interface | undefined = [...ifs][0];
const lo: Interface = ifs.byName('lo');
const srv = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', onMessage: (m: Message) => void m.pipe.send(m.data) });
const c: Pipe = await pipeOpen('tcp', { host: '127.0.0.1', port: srv.local.port });
await c.send('hi');
const m: Message = await c.recv({ timeout: 1000, sub: SUB_ALL });
const text: string = m.data.toString();
try { await c.recv({ timeout: 50 }); } catch (e) { if (e instanceof TimeoutError) { const code: string = e.code; void code; } else if (e instanceof P2pdError) throw e; }
const sp: SecurePipe = await connectSecure({ host: '127.0.0.1', port: 1 }, { identity: Identity.generate(), signal: AbortSignal.timeout(10) });
void [first, lo, text, sp, startP2pNode, listenSecure];
`;

/** The same calls at run time, in plain JavaScript, printing what happened as JSON. */
const CONSUMER_JS = `
import { initP2pd, pipeOpen, Identity, connectSecure, listenSecure, P2pdError, TimeoutError } from 'p2pd';
const out = {};
out.interfaces = [...(await initP2pd())].length;
const srv = await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', onMessage: (m) => void m.pipe.send(m.data) });
const c = await pipeOpen('tcp', { host: '127.0.0.1', port: srv.local.port });
await c.send('hi');
out.echo = (await c.recv({ timeout: 5000 })).data.toString();
try { await c.recv({ timeout: 20 }); } catch (e) { out.timeout = { typed: e instanceof TimeoutError && e instanceof P2pdError, code: e.code }; }
await c.close();
await srv.close();
const ss = await listenSecure('127.0.0.1:0', { identity: Identity.generate(), onMessage: (m) => void m.pipe.send(m.data) });
const sp = await connectSecure({ host: '127.0.0.1', port: ss.local.port }, { identity: Identity.generate() });
await sp.send('secret');
out.secureEcho = (await sp.recv({ timeout: 5000 })).data.toString();
await sp.close();
await ss.close();
console.log(JSON.stringify(out));
`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'p2pd-package-'));
  pkg = path.join(dir, 'node_modules', 'p2pd');
  mkdirSync(pkg, { recursive: true });
  // Every dependency of the checkout, linked: the package's own (mqtt, aedes) and @types/node.
  for (const name of readdirSync(path.join(ROOT, 'node_modules'))) {
    if (name.startsWith('.') || name === 'p2pd' || name === 'tsx') continue; // no tsx: the launcher must not fall back to the sources
    symlinkSync(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name));
  }
  await run(process.execPath, [TSC, '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(pkg, 'dist')], { cwd: ROOT, timeout: 150_000 });
  for (const f of ['package.json', 'README.md', 'LICENSE']) cpSync(path.join(ROOT, f), path.join(pkg, f));
  cpSync(path.join(ROOT, 'bin'), path.join(pkg, 'bin'), { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the installed package', () => {
  it('package.json: ESM, Node >= 20, exports with types into dist/, a build before packing', () => {
    expect(pkgJson.name).toBe('p2pd');
    expect(pkgJson.files).toEqual(expect.arrayContaining(['dist', 'bin', 'README.md']));
    expect(pkgJson.exports['.']).toEqual({ types: './dist/index.d.ts', import: './dist/index.js' });
    expect(pkgJson.bin['p2pd']).toBe('./bin/p2pd.mjs');
    // `npm pack` / `npm publish` from a clean clone (no dist/ yet) must build first.
    expect(pkgJson.scripts['prepack']).toBe('npm run build');
    // Runtime dependencies are only what the library imports.
    expect(Object.keys(pkgJson.dependencies).sort()).toEqual(['aedes', 'mqtt']);
  });

  it('npm pack ships dist, bin, README and LICENSE, and no sources, tests or benchmarks', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkg, timeout: 60_000 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/p2pd.mjs', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js']) expect(files).toContain(f);
    expect(files.filter((f) => /^(src|test|bench|examples|node_modules)\//.test(f))).toEqual([]);
  }, 90_000);

  it('a strict TypeScript consumer type-checks against the declarations (library checks on)', async () => {
    writeFileSync(path.join(dir, 'app.ts'), CONSUMER_TS);
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
        files: ['app.ts'],
      }),
    );
    const r = await run(process.execPath, [TSC, '-p', dir], { cwd: dir, timeout: 120_000 }).catch((e: { stdout?: string; message: string }) => ({ stdout: `${e.stdout ?? ''}${e.message}` }));
    expect(r.stdout).toBe('');
  }, 150_000);

  it("the README's TypeScript examples type-check against the package", async () => {
    // Each ```ts block of the README becomes a module of its own; the blocks' imports from
    // 'p2pd' are merged into one (some blocks continue an earlier one), and the two placeholders
    // the prose leaves to the reader are declared.
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    const names = new Set(['pipeOpen', 'Daemon']);
    const importRe = /^import \{([^}]*)\} from 'p2pd';\n/gm;
    for (const b of blocks) for (const m of b.matchAll(importRe)) for (const n of m[1]!.split(',')) if (n.trim()) names.add(n.trim());
    const head = `import { ${[...names].join(', ')} } from 'p2pd';\ndeclare const peerAddr: string;\ndeclare const expectedPeerIdHex: string;\n`;
    const files = blocks.map((b, i) => {
      const f = `readme-${i + 1}.ts`;
      writeFileSync(path.join(dir, f), head + b.replace(importRe, ''));
      return f;
    });
    writeFileSync(
      path.join(dir, 'tsconfig.readme.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
        files,
      }),
    );
    const r = await run(process.execPath, [TSC, '-p', path.join(dir, 'tsconfig.readme.json')], { cwd: dir, timeout: 120_000 }).catch((e: { stdout?: string; message: string }) => ({ stdout: `${e.stdout ?? ''}${e.message}` }));
    expect(r.stdout).toBe('');
  }, 150_000);

  it('plain node imports the package and it works: pipes, typed errors, secure pipes', async () => {
    writeFileSync(path.join(dir, 'app.mjs'), CONSUMER_JS);
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: dir, timeout: 30_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(out['interfaces']).toBeGreaterThan(0);
    expect(out['echo']).toBe('hi');
    expect(out['timeout']).toEqual({ typed: true, code: 'ERR_TIMEOUT' });
    expect(out['secureEcho']).toBe('secret');
  }, 60_000);

  it('the p2pd command of the installed package runs the compiled CLI', async () => {
    const { stdout } = await run(process.execPath, [path.join(pkg, 'bin', 'p2pd.mjs'), 'interfaces', '--json'], { cwd: dir, timeout: 30_000 });
    const out = JSON.parse(stdout) as { interfaces: { name: string; loopback: boolean }[] };
    expect(out.interfaces.some((i) => i.name === 'lo' && i.loopback)).toBe(true);
  }, 60_000);
});
