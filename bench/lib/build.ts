/**
 * Compiles the benchmark roles and the pipe layer with `tsc` (as `npm run build` would) into a
 * temporary directory, so the measured code is plain JavaScript as users run it. Running the
 * library through tsx instead costs extra: tsx transforms every file outside node_modules with
 * esbuild's keepNames, which wraps each closure creation in an `Object.defineProperty` call
 * (`__name`), and `send()` creates two closures per call. `BENCH_TSX=1` measures that way.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Role scripts (relative to bench/). */
export const ROLE_SCRIPTS = ['tcp-bulk.ts', 'tcp-echo.ts', 'udp-recv.ts', 'connect.ts', 'memory.ts', 'scale.ts'];

function tsc(cfgDir: string, cfg: object): void {
  const file = join(cfgDir, 'tsconfig.json');
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', file], { encoding: 'utf8' });
  // Type errors still emit (noEmitOnError is off); only report them.
  if (r.status !== 0) process.stderr.write(`tsc reported problems (code still emitted):\n${(r.stdout + r.stderr).split('\n').slice(0, 10).join('\n')}\n`);
}

const common = {
  noEmit: false,
  declaration: false,
  sourceMap: false,
  skipLibCheck: true,
  typeRoots: [join(ROOT, 'node_modules/@types')],
  types: ['node'],
};

/** A compiled tree; `remove()` deletes it. */
export interface Build {
  dir: string;
  /** Compiled role script path. */
  script(name: string): string;
  /** Compiled `pipes/index.js` of the alternative source tree, if one was given. */
  altPipes: string | undefined;
  remove(): void;
}

/**
 * Compiles bench/ (and, through its imports, src/) into a temp dir. With `altSrc` (a copy of
 * `src/`), also compiles that copy's pipe layer for `P2PD_DIST`.
 */
export function build(altSrc?: string): Build {
  const dir = mkdtempSync(join(os.tmpdir(), 'p2pd-bench-'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  tsc(dir, {
    extends: join(ROOT, 'tsconfig.json'),
    compilerOptions: { ...common, rootDir: ROOT, outDir: join(dir, 'out') },
    files: ROLE_SCRIPTS.map((s) => join(ROOT, 'bench', s)),
    include: [],
  });
  let altPipes: string | undefined;
  if (altSrc) {
    // Copy it beside a package.json of type module, so NodeNext emits ES modules as for src/.
    const src = join(dir, 'altsrc/src');
    cpSync(resolve(altSrc), src, { recursive: true });
    writeFileSync(join(dir, 'altsrc/package.json'), '{ "type": "module" }\n');
    const altDir = join(dir, 'alt');
    tsc(dir, {
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: { ...common, rootDir: src, outDir: altDir },
      files: [join(src, 'pipes/index.ts')],
      include: [],
    });
    altPipes = join(altDir, 'pipes/index.js');
    if (!existsSync(altPipes)) throw new Error(`compiling ${src} produced no pipes/index.js`);
  }
  for (const s of ROLE_SCRIPTS) {
    if (!existsSync(join(dir, 'out/bench', s.replace(/\.ts$/, '.js')))) throw new Error(`tsc produced no ${s}`);
  }
  return {
    dir,
    altPipes,
    script: (name) => join(dir, 'out/bench', name.replace(/\.ts$/, '.js')),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
