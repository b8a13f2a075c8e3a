/**
 * `stowage fsck [--verify] [--repair]`: compares the items in the database with the files in
 * storage (local disk or S3), on a running or a stopped server.
 *
 * Memory stays bounded whatever the size of the store: items are read in pages of PAGE rows (by
 * id, the primary key's order) and each one's file is looked up (stat; a HEAD on S3), and the
 * storage listing is streamed (S3: one page of 1000 keys at a time) and checked against the
 * database in batches of PAGE ids. At most PAGE rows, PAGE listed keys and one listing page are
 * held at once, never the store's whole list of keys.
 */
import { openDatabase, type Db } from '../db/database.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { isNotFound } from '../storage/blob-store.ts';
import { createBlobStore } from '../storage/create.ts';
import {
  idOfOriginalKey,
  idOfRenditionKey,
  originalKey,
  ORIGINALS_PREFIX,
  RENDITIONS_PREFIX,
} from '../storage/key-layout.ts';
import { ORPHAN_AGE_MS } from '../media/sweeper.ts';
import { systemClock } from '../util/clock.ts';
import { digest } from './backup-manifest.ts';
import { exists } from './backup.ts';
import type { CliIo } from './main.ts';
import { CommandError, loadServerConfig, parseCommand, runCommand } from './ops-command.ts';

export const FSCK_USAGE = `usage: stowage fsck [--verify] [--repair] [--min-age SECONDS]

Checks the items in the database against the stored files and prints one line per problem:
  missing-file KEY item=ID       an item whose file is not in storage
  size-mismatch KEY item=ID ...  a file whose size is not the item's
  sha256-mismatch KEY item=ID    (--verify: every file is read) a file whose bytes changed
  stray-file KEY                 a file that belongs to no item (outside the uploads area)
--repair removes stray files; it never removes an item (restore missing files from a backup).
Files younger than --min-age (default ${ORPHAN_AGE_MS / 1000} s) may belong to an upload being
finished and are left out; use --min-age 0 on a stopped server.
Exit status: 0 when clean, 1 when a problem was found.
`;

const PAGE = 500;
/** Files looked up (or read, with --verify) at once. */
const CONCURRENCY = 8;

export function fsckCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand(io, FSCK_USAGE, async () => {
    const { values, args } = parseCommand('fsck', argv, {
      verify: { type: 'boolean' },
      repair: { type: 'boolean' },
      'min-age': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout.write(FSCK_USAGE);
      return 0;
    }
    if (args.length > 0) throw new CommandError('fsck takes no arguments', 2);
    const minAge = values['min-age'] === undefined ? ORPHAN_AGE_MS / 1000 : Number(values['min-age']);
    if (!Number.isSafeInteger(minAge) || minAge < 0) {
      throw new CommandError('--min-age must be a whole number of seconds', 2);
    }
    const config = loadServerConfig(io);
    // Opening would create an empty database: say instead that there is none to check.
    if (config.database.kind === 'sqlite' && !(await exists(config.database.file))) {
      throw new CommandError(`no database at ${config.database.file}: nothing to check`);
    }
    const database = await openDatabase(config.database);
    try {
      const store = await createBlobStore(config.storage);
      try {
        const fsck = new Fsck(database.db, store, io, {
          verify: values.verify === true,
          repair: values.repair === true,
          youngerThan: systemClock.now() - minAge * 1000,
          // Every file of a local store is ours (tus keeps its uploads elsewhere); in a bucket, tus's
          // objects sit beside ours, so only our prefixes are looked at.
          prefixes: config.storage.kind === 'local' ? [''] : [ORIGINALS_PREFIX, RENDITIONS_PREFIX],
        });
        return await fsck.run(
          config.storage.kind === 'local' ? config.storage.dir : `s3://${config.storage.bucket}`,
        );
      } finally {
        await store.close?.();
      }
    } finally {
      await database.close();
    }
  });
}

interface FsckOptions {
  verify: boolean;
  repair: boolean;
  /** Files last changed after this time (ms) are not judged. */
  youngerThan: number;
  prefixes: string[];
}

class Fsck {
  readonly #db: Db;
  readonly #store: BlobStore;
  readonly #io: CliIo;
  readonly #options: FsckOptions;
  readonly #counts = { items: 0, files: 0, young: 0, problems: 0, removed: 0 };

  constructor(db: Db, store: BlobStore, io: CliIo, options: FsckOptions) {
    this.#db = db;
    this.#store = store;
    this.#io = io;
    this.#options = options;
  }

  async run(where: string): Promise<number> {
    await this.#checkItems();
    for (const prefix of this.#options.prefixes) await this.#checkFiles(prefix);
    const c = this.#counts;
    const verified = this.#options.verify ? ' (sha256 verified)' : '';
    const removed = this.#options.repair ? `, ${count(c.removed, 'stray file')} removed` : '';
    const young = c.young > 0 ? `; ${count(c.young, 'file')} younger than --min-age left out` : '';
    this.#io.stderr.write(
      `fsck ${where}: ${count(c.items, 'item')} and ${count(c.files, 'file')} checked${verified}, ` +
        `${count(c.problems, 'problem')}${removed}${young}\n`,
    );
    return c.problems > 0 ? 1 : 0;
  }

  #report(line: string): void {
    this.#counts.problems++;
    this.#io.stdout.write(`${line}\n`);
  }

  /** Rows without files, and files of the wrong size (or, with --verify, the wrong bytes). */
  async #checkItems(): Promise<void> {
    for (let after: string | undefined; ;) {
      let query = this.#db.selectFrom('media').select(['id', 'size', 'sha256']).orderBy('id').limit(PAGE);
      if (after !== undefined) query = query.where('id', '>', after);
      const rows = await query.execute();
      if (rows.length === 0) return;
      after = rows[rows.length - 1]!.id;
      await forEachLimited(rows, CONCURRENCY, (row) => this.#checkItem(row));
      this.#counts.items += rows.length;
    }
  }

  async #checkItem(row: { id: string; size: number; sha256: string }): Promise<void> {
    const key = originalKey(row.id);
    const found = await this.#store.stat(key);
    if (found === null) {
      // An item deleted while we look is not damage.
      if (await this.#stillThere(row.id)) this.#report(`missing-file ${key} item=${row.id}`);
      return;
    }
    if (found.size !== row.size) {
      this.#report(`size-mismatch ${key} item=${row.id} expected=${row.size} found=${found.size}`);
      return;
    }
    if (!this.#options.verify) return;
    let sha256: string;
    try {
      ({ sha256 } = await digest(await this.#store.read(key)));
    } catch (error) {
      if (!isNotFound(error)) throw error;
      if (await this.#stillThere(row.id)) this.#report(`missing-file ${key} item=${row.id}`);
      return;
    }
    if (sha256 !== row.sha256) this.#report(`sha256-mismatch ${key} item=${row.id}`);
  }

  async #stillThere(id: string): Promise<boolean> {
    return (
      (await this.#db.selectFrom('media').select('id').where('id', '=', id).executeTakeFirst()) !== undefined
    );
  }

  /**
   * Files without rows: originals and renditions of ids that have no item, and anything of another
   * shape. Only files older than --min-age: an upload stores its file just before its row.
   */
  async #checkFiles(prefix: string): Promise<void> {
    let batch = new Map<string, string[]>();
    const flush = async () => {
      const ids = [...batch.keys()];
      const alive = new Set(
        ids.length === 0
          ? []
          : (await this.#db.selectFrom('media').select('id').where('id', 'in', ids).execute()).map(
              (r) => r.id,
            ),
      );
      for (const [id, keys] of batch) if (!alive.has(id)) for (const key of keys) await this.#stray(key);
      batch = new Map();
    };
    for await (const { key, lastModified } of this.#store.list(prefix)) {
      if (lastModified.getTime() > this.#options.youngerThan) {
        this.#counts.young++;
        continue;
      }
      this.#counts.files++;
      const original = idOfOriginalKey(key);
      // Exactly an original's key (the right shard too), or a rendition's: anything else is stray.
      const id = original !== undefined && originalKey(original) === key ? original : idOfRenditionKey(key);
      if (id === undefined) {
        await this.#stray(key);
        continue;
      }
      batch.set(id, [...(batch.get(id) ?? []), key]);
      if (batch.size >= PAGE) await flush();
    }
    await flush();
  }

  async #stray(key: string): Promise<void> {
    if (!this.#options.repair) {
      this.#report(`stray-file ${key}`);
      return;
    }
    await this.#store.delete(key);
    this.#counts.removed++;
    this.#report(`stray-file ${key} removed`);
  }
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Runs `work` on every element, at most `limit` at a time. */
async function forEachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
