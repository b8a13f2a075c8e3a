import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GiB, MiB } from './rss.ts';

export type Mode = 'quick' | 'full';

export interface Settings {
  mode: Mode;
  /** Rounds of A/B alternation for every figure. */
  rounds: number;
  /** The file of figures 1, 2, 3 and 9. */
  fileBytes: number;
  /** The small end of figure 4's flatness check. */
  smallBytes: number;
  /** The large end of figure 4's flatness check (the 4 GiB of the issue in full mode). */
  largestBytes: number;
  /** Items of the large dataset of figure 6 (the small one has 1,000). */
  listItems: number;
  /** Duration of each load-generator run, seconds. */
  loadSeconds: number;
}

export const SETTINGS: Record<Mode, Settings> = {
  quick: {
    mode: 'quick',
    rounds: 3,
    fileBytes: 256 * MiB,
    smallBytes: 100 * MiB,
    largestBytes: 256 * MiB,
    listItems: 100_000,
    loadSeconds: 5,
  },
  full: {
    mode: 'full',
    rounds: 5,
    fileBytes: 1 * GiB,
    smallBytes: 100 * MiB,
    largestBytes: 4 * GiB,
    listItems: 1_000_000,
    loadSeconds: 10,
  },
};

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BENCH = path.join(ROOT, 'bench');

/** Everything a figure group needs: settings, the scratch directory, the test files, the user. */
export interface Context {
  settings: Settings;
  /** Scratch directory, removed at the end. */
  tmp: string;
  files: {
    main: string;
    small: string;
    largest: string;
    jpeg: string;
    /** main's size, typed as a PDF (transfer figures only). */
    document: string;
  };
  user: { name: string; password: string; usersFile: string };
  /** Registers a clean-up step; they run in reverse order at the end, also after a failure. */
  defer(step: () => Promise<void> | void): void;
  log(message: string): void;
}

export function createScratch(): string {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stowage-bench-'));
  // nginx, started as root, may serve as an unprivileged user: it must reach the test files.
  fs.chmodSync(tmp, 0o755);
  return tmp;
}

export function log(message: string): void {
  const time = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[bench ${time}] ${message}\n`);
}
