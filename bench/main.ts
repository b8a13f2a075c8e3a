/**
 * `npm run bench [-- --quick|--full] [--only 1,5]`: every figure of BENCHMARKS.md, each as a ratio
 * against a baseline measured in the same run, A and B alternating over several rounds. Prints
 * the table, writes it into this mode's section of BENCHMARKS.md (not for --only) and the raw
 * rounds to bench/results/. All servers listen on 127.0.0.1 and are started and stopped here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { consoleFigures } from './figures/console.ts';
import { listFigures } from './figures/list.ts';
import { loginFigures } from './figures/login.ts';
import { mediaMetadataFigures } from './figures/media-metadata.ts';
import { requestFigures } from './figures/requests.ts';
import { s3Figures } from './figures/s3.ts';
import { scanFigures } from './figures/scan.ts';
import { soak, soakReport, type SoakResult } from './figures/soak.ts';
import { renderFigures, thumbnailFigures } from './figures/thumbnail.ts';
import { transferFigures } from './figures/transfer.ts';
import { createScratch, log, ROOT, SETTINGS, type Context, type Mode } from './lib/context.ts';
import { writePhoto, writeRandomFile } from './lib/files.ts';
import { describeMachine, loadAverage } from './lib/machine.ts';
import { killAllNow, runOk } from './lib/proc.ts';
import { unexpectedExitCount } from './lib/servers.ts';
import { definitions, table, writeSection } from './lib/report.ts';
import { fmtSize, GiB } from './lib/rss.ts';
import type { Figure } from './lib/stats.ts';

interface Group {
  name: string;
  figures: string[];
  run: (ctx: Context) => Promise<Figure[]>;
}

const GROUPS: Group[] = [
  {
    name: 'uploads and downloads',
    figures: ['1', '2', '2b', '2c', '2d', '2e', '2f', '3', '4'],
    run: transferFigures,
  },
  { name: 'scanning', figures: ['9'], run: scanFigures },
  { name: 'S3 storage', figures: ['10', '10b', '11', '11b'], run: s3Figures },
  { name: 'requests per second', figures: ['5', '7b'], run: requestFigures },
  { name: 'first thumbnail', figures: ['7a'], run: thumbnailFigures },
  { name: 'first rendition', figures: ['7d'], run: renderFigures },
  { name: 'list latency', figures: ['6'], run: listFigures },
  { name: 'login storm', figures: ['8'], run: loginFigures },
  { name: 'media metadata', figures: ['7c', '12'], run: mediaMetadataFigures },
  { name: 'web console', figures: ['13', '13b'], run: consoleFigures },
];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    full: { type: 'boolean' },
    only: { type: 'string' },
    soak: { type: 'string' },
  },
});
if (args.quick && args.full) throw new Error('--quick or --full, not both');
const mode: Mode = args.full ? 'full' : 'quick';
const settings = SETTINGS[mode];
const only = args.only?.split(',').map((s) => s.trim());
// `--only 7` selects 7a and 7b (but `--only 1` not 10 or 11).
const selects = (o: string, f: string) => f === o || (f.startsWith(o) && /^[a-z]+$/.test(f.slice(o.length)));
const groups = GROUPS.filter((g) => !only || g.figures.some((f) => only.some((o) => selects(o, f))));

const startedAt = new Date();
const tmp = createScratch();
const steps: (() => Promise<void> | void)[] = [];

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of steps.splice(0).reverse()) await Promise.resolve(step()).catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('exit', () => {
  killAllNow();
  fs.rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping every server this run started and removing ${tmp}`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function prepare(): Promise<Context> {
  const filesDir = path.join(tmp, 'files');
  fs.mkdirSync(filesDir, { mode: 0o755 });
  // The test files (main, its document twin, small, largest), two stored copies of the largest, headroom.
  const need = 2 * settings.fileBytes + settings.smallBytes + 3 * settings.largestBytes + 1 * GiB;
  const free = fs.statfsSync(tmp).bavail * fs.statfsSync(tmp).bsize;
  if (free < need)
    throw new Error(`${tmp} has ${fmtSize(free)} free; this mode needs about ${fmtSize(need)}`);

  log(`generating test files in ${filesDir}`);
  const files = {
    main: path.join(filesDir, 'main.mp4'),
    small: path.join(filesDir, 'small.mp4'),
    largest: path.join(filesDir, 'largest.mp4'),
    jpeg: path.join(filesDir, 'photo-12mp.jpg'),
    document: path.join(filesDir, 'main.pdf'),
  };
  const transfers = groups.some((g) => g.run === transferFigures);
  writeRandomFile(files.main, settings.fileBytes);
  writeRandomFile(files.small, settings.smallBytes);
  if (settings.largestBytes === settings.fileBytes) files.largest = files.main;
  else if (transfers) writeRandomFile(files.largest, settings.largestBytes);
  if (transfers) writeRandomFile(files.document, settings.fileBytes, 'document');
  await writePhoto(files.jpeg);

  const user = {
    name: 'bench',
    password: crypto.randomBytes(18).toString('base64url'),
    usersFile: path.join(tmp, 'users'),
  };
  await runOk(
    process.execPath,
    [path.join(ROOT, 'src/cli/main.ts'), 'users', 'add', user.name, '--password-stdin'],
    {
      env: { ...process.env, STOWAGE_USERS_FILE: user.usersFile, STOWAGE_DATA_DIR: tmp },
      input: `${user.password}\n`,
    },
  );
  return { settings, tmp, files, user, defer: (step) => steps.push(step), log };
}

/**
 * Runs one group; whatever it started is stopped before the next group. Its clean-up steps sit on
 * the same stack as everything else, so Ctrl-C in the middle of a group stops them too. A group
 * whose server was stopped from outside (on a shared machine, someone's broad `pkill`) runs once more.
 */
async function runGroup(ctx: Context, group: Group, attempt = 1): Promise<Figure[]> {
  const mark = steps.length;
  const exitsBefore = unexpectedExitCount();
  log(`— ${group.name} (figure ${group.figures.join(', ')})${attempt > 1 ? `, attempt ${attempt}` : ''}`);
  let failure: string;
  try {
    return await group.run(ctx);
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
    log(`${group.name} failed: ${failure}`);
  } finally {
    for (const step of steps.splice(mark).reverse()) await Promise.resolve(step()).catch(() => undefined);
  }
  if (attempt === 1 && unexpectedExitCount() > exitsBefore) return runGroup(ctx, group, 2);
  const empty = { label: '', unit: '', values: [] };
  return [{ id: group.figures.join('/'), title: group.name, how: '', a: empty, b: empty, error: failure }];
}

/** `--soak MINUTES`: only the soak, written to its own section of BENCHMARKS.md. */
async function runSoak(minutes: number): Promise<void> {
  if (!(minutes >= 3)) throw new Error('--soak takes the minutes to run, at least 3');
  const ctx = await prepare();
  const loadBefore = loadAverage();
  const results: SoakResult[] = [];
  log(`soak: ${minutes} minutes`);
  results.push(await soak(ctx, minutes));
  const report = soakReport(results);
  console.log(`\n${report}`);
  const body = [
    `### Soak (\`npm run bench -- --soak ${minutes}\`), ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `Load average (1/5/15 min) at start ${loadBefore}, at end ${loadAverage()}.`,
    '',
    report,
  ].join('\n');
  writeSection(path.join(ROOT, 'BENCHMARKS.md'), 'soak', body);
}

async function main(): Promise<void> {
  if (args.soak !== undefined) return runSoak(Number(args.soak));
  log(`${mode} mode: ${settings.rounds} rounds, ${fmtSize(settings.fileBytes)} files, scratch ${tmp}`);
  const loadBefore = loadAverage();
  const machine = await describeMachine(tmp);
  const ctx = await prepare();
  const figures: Figure[] = [];
  for (const group of groups) figures.push(...(await runGroup(ctx, group)));
  // The table in the issue's order (1, 2, 3, 3b, 4a, …), whatever order the groups ran in.
  figures.sort((x, y) => parseInt(x.id) - parseInt(y.id) || x.id.localeCompare(y.id));
  const seconds = (Date.now() - startedAt.getTime()) / 1000;
  const duration = `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;

  const rendered = table(figures);
  console.log(
    `\n${rendered}\n\n${mode} mode, ${duration}; load average 1/5/15 min at start ${loadBefore}, at end ${loadAverage()}`,
  );

  const heading =
    mode === 'full' ? 'Full run (`npm run bench -- --full`)' : 'Quick run (`npm run bench -- --quick`)';
  const body = [
    `### ${heading}, ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `${settings.rounds} rounds per figure, ${fmtSize(settings.fileBytes)} transfer file, ` +
      `${settings.listItems.toLocaleString('en')} list items, ${settings.loadSeconds} s per load run; ` +
      `took ${duration}. ` +
      `Load average (1/5/15 min) at start ${loadBefore}, at end ${loadAverage()}.`,
    '',
    ...machine.map((m) => `- ${m}`),
    '',
    rendered,
    '',
    'What A and B are:',
    '',
    definitions(figures.filter((f) => !f.error)),
  ].join('\n');
  // A partial run (--only) would replace a complete table with a few rows: it only prints.
  if (only) log('--only: BENCHMARKS.md left as it is');
  else writeSection(path.join(ROOT, 'BENCHMARKS.md'), mode, body);
  const results = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(results, { recursive: true });
  const raw = path.join(results, `${mode}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(raw, JSON.stringify({ mode, settings, startedAt, machine, figures }, null, 2));
  log(`every round's values in ${path.relative(ROOT, raw)}`);
}

try {
  await main();
} finally {
  await cleanup();
}
