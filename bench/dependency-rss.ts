/**
 * `node bench/dependency-rss.ts`: what each runtime dependency costs in memory at start. For every
 * package of package.json's `dependencies`, a fresh Node process imports that one package alone,
 * runs full GCs and reports its RSS and V8 heap, minus the same for an empty process. A started,
 * idle Stowage (src/main.ts with its defaults) tells which packages are loaded at start (the others
 * are loaded on first use, or never by a deployment that does not configure them); for each of
 * those, the last column is how much less all of them take without it: what loading it on first
 * use would save, as opposed to what it costs alone (mostly V8 and module-loader overhead that the
 * first package pays for all). Three runs each, median. Prints Markdown for BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(import.meta.dirname, '..');
const RUNS = 3;
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

interface Sample {
  rssMiB: number;
  heapMiB: number;
  /** Packages (node_modules names) resolved while importing. */
  loaded: string[];
}

/**
 * The child: records every node_modules package resolved (module.registerHooks), imports the
 * targets, collects garbage twice and prints its memory. `--expose-gc` for global.gc().
 */
const CHILD = `
import { registerHooks } from 'node:module';
const loaded = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(result.url);
    if (m) loaded.add(m[1]);
    return result;
  },
});
for (const target of JSON.parse(process.argv[1])) await import(target);
// A server (src/main.ts) is given time to open its database and listen.
await new Promise((resolve) => setTimeout(resolve, Number(process.argv[2])));
globalThis.gc(); globalThis.gc();
await new Promise((resolve) => setTimeout(resolve, 50));
globalThis.gc();
const { rss, heapUsed } = process.memoryUsage();
console.log(JSON.stringify({ rssMiB: rss / 2 ** 20, heapMiB: heapUsed / 2 ** 20, loaded: [...loaded] }));
process.exit(0);
`;

function sample(targets: string[], server?: { env: Record<string, string>; cwd: string }): Sample {
  const runs: Sample[] = [];
  for (let i = 0; i < RUNS; i++) {
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--input-type=module', '-e', CHILD, JSON.stringify(targets), server ? '4000' : '0'],
      { cwd: server?.cwd ?? ROOT, encoding: 'utf8', env: { ...process.env, ...server?.env } },
    );
    runs.push(JSON.parse(out) as Sample);
  }
  runs.sort((a, b) => a.rssMiB - b.rssMiB);
  return runs[Math.floor(RUNS / 2)]!;
}

const mib = (x: number) => x.toFixed(1);
const empty = sample([]);
// A started server, as `node src/main.ts` runs it by default (SQLite, local storage, no Redis,
// no clamd), idle: which packages it has loaded, and its memory.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stowage-deps-'));
const port = String(40_000 + Math.floor(Math.random() * 20_000));
const env = {
  STOWAGE_DATA_DIR: dataDir,
  STOWAGE_HOST: '127.0.0.1',
  STOWAGE_PORT: port,
  STOWAGE_LOG_LEVEL: 'error',
};
const started = sample([pathToFileURL(path.join(ROOT, 'src/main.ts')).href], { env, cwd: dataDir });
fs.rmSync(dataDir, { recursive: true, force: true });
const deps = Object.keys(pkg.dependencies);
const atStart = deps.filter((name) => started.loaded.includes(name));

const rows: { name: string; alone: Sample; saved?: number }[] = [];
for (const name of deps) {
  process.stderr.write(`${name}\n`);
  rows.push({ name, alone: sample([name]) });
}
// What loading one start-up package later would save: all of them, minus all but that one.
const all = sample(atStart);
for (const row of rows) {
  if (!atStart.includes(row.name)) continue;
  process.stderr.write(`all but ${row.name}\n`);
  row.saved = all.rssMiB - sample(atStart.filter((name) => name !== row.name)).rssMiB;
}
rows.sort((a, b) => b.alone.rssMiB - a.alone.rssMiB);

console.log(
  `Empty Node ${process.version} process: RSS ${mib(empty.rssMiB)} MiB, V8 heap ${mib(empty.heapMiB)} MiB.`,
);
console.log(
  `Started idle server (src/main.ts, defaults): RSS ${mib(started.rssMiB)} MiB, V8 heap ${mib(started.heapMiB)} MiB, ` +
    `${started.loaded.length} packages loaded. Its ${atStart.length} direct dependencies loaded at start, ` +
    `imported together by name: RSS ${mib(all.rssMiB)} MiB.\n`,
);
console.log(
  '| package | RSS added alone (MiB) | V8 heap added alone (MiB) | loaded at start | RSS without it, of all loaded at start (MiB) |',
);
console.log('| --- | ---: | ---: | --- | ---: |');
for (const { name, alone, saved } of rows) {
  const start = atStart.includes(name) ? 'yes' : 'on first use';
  const without = saved === undefined ? '' : saved >= 0 ? `−${mib(saved)}` : `+${mib(-saved)}`;
  console.log(
    `| ${name} | ${mib(alone.rssMiB - empty.rssMiB)} | ${mib(alone.heapMiB - empty.heapMiB)} | ${start} | ${without} |`,
  );
}
