/**
 * Summarises V8 `.cpuprofile` files (from `BENCH_PROF=dir npm run bench`): self time by
 * function and by file, and total (inclusive) time of selected functions.
 *
 *   npx tsx bench/prof-summary.ts dir-or-file… [--top=30] [--grep=substring]
 * @module
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const argv = process.argv.slice(2);
const top = Number(argv.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
const grep = argv.find((a) => a.startsWith('--grep='))?.slice(7);
const files = argv
  .filter((a) => !a.startsWith('--'))
  .flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(p, f)) : [p]));

function short(url: string): string {
  const i = url.indexOf('/src/');
  if (i >= 0) return url.slice(i + 1);
  const j = url.indexOf('/bench/');
  if (j >= 0) return url.slice(j + 1);
  return url.replace(/^node:/, '') || '(native)';
}

for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fnSelf = new Map<string, number>();
  const fileSelf = new Map<string, number>();
  const fnTotal = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id) as Node;
    const key = `${n.callFrame.functionName || '(anon)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + t);
    const file = short(n.callFrame.url);
    fileSelf.set(file, (fileSelf.get(file) ?? 0) + t);
    // inclusive: each distinct frame on the stack once
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur) as Node;
      const k = `${c.callFrame.functionName || '(anon)'} ${short(c.callFrame.url)}:${c.callFrame.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      fnTotal.set(k, (fnTotal.get(k) ?? 0) + t);
    }
  }
  const pct = (t: number): string => `${((100 * t) / total).toFixed(1).padStart(5)} %`;
  console.log(`\n== ${f}: ${(total / 1000).toFixed(0)} ms sampled`);
  console.log('-- self time by function');
  for (const [k, t] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
  console.log('-- self time by file');
  for (const [k, t] of [...fileSelf].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${pct(t)}  ${k}`);
  if (grep) {
    console.log(`-- inclusive time, frames matching ${grep}`);
    for (const [k, t] of [...fnTotal].filter(([k]) => k.includes(grep)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
  }
}
