#!/usr/bin/env node
// The `p2pd` command. Runs the compiled CLI (dist/cli/main.js, `npm run build`) when it
// exists, else the TypeScript sources through tsx (a development checkout).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/cli/main.js', import.meta.url);
let cli;
if (existsSync(fileURLToPath(dist))) {
  cli = await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await cli.main();
