/**
 * `stowage backup DIR`: a consistent copy of a running server's SQLite database, keys, users file
 * and original files. The database is copied with SQLite's online backup API in one step (never a
 * file copy of a live database); the files are taken afterwards, for exactly the rows of that
 * snapshot. Originals are immutable once stored, so a hard link (same file system) is as good as
 * a copy. Everything is written to DIR.partial, renamed to DIR once complete.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type SqliteDatabase from 'better-sqlite3';
import type { Config } from '../config.ts';
import { isNotFound } from '../storage/blob-store.ts';
import { originalKey } from '../storage/key-layout.ts';
import { LocalBlobStore } from '../storage/local.ts';
import { systemClock } from '../util/clock.ts';
import type { CliIo } from './main.ts';
import {
  digestFile,
  FORMAT,
  MANIFEST,
  VERSION,
  type FileEntry,
  type ItemEntry,
  type Manifest,
} from './backup-manifest.ts';
import { CommandError, loadServerConfig, parseCommand, runCommand } from './ops-command.ts';

export const BACKUP_USAGE = `usage: stowage backup [--copy] DIR

Copies the database (SQLite), the keys, the users file and every item's original file into DIR
(which must be empty or absent) while the server runs, with a manifest of sizes and sha256.
Files are hard-linked when DIR is on the same file system as the storage, else copied; --copy
always copies. Renditions are not copied: they are made again from the originals on demand.
`;

/** Only for SQLite and local disk; PostgreSQL and S3 have better tools of their own. */
export function refuseUnsupported(config: Config, command: string): void {
  const advice: string[] = [];
  if (config.database.kind !== 'sqlite') {
    advice.push(
      'the database is PostgreSQL: back it up and restore it with its own tools (pg_dump and pg_restore, or continuous archiving for point-in-time recovery)',
    );
  }
  if (config.storage.kind !== 'local') {
    advice.push(
      'the files are on S3: protect them with the bucket’s versioning and replication (or the provider’s backups)',
    );
  }
  if (advice.length > 0) {
    throw new CommandError(
      `${command} works on SQLite with local storage only; ${advice.join('; ')} (docs/deployment.md, "Backups")`,
      2,
    );
  }
}

const IN_PROGRESS = '.stowage-backup-in-progress';
const PAGE = 500;

export function backupCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand(io, BACKUP_USAGE, async () => {
    const { values, args } = parseCommand('backup', argv, {
      copy: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout.write(BACKUP_USAGE);
      return 0;
    }
    if (args.length !== 1) throw new CommandError('backup needs one argument, DIR', 2);
    const config = loadServerConfig(io);
    refuseUnsupported(config, 'backup');
    return backup(path.resolve(io.cwd, args[0]!), config, io, { copy: values.copy === true });
  });
}

interface BackupOptions {
  /** Copies even where a hard link would do: a backup that shares no file with the live store. */
  copy: boolean;
}

async function backup(target: string, config: Config, io: CliIo, options: BackupOptions): Promise<number> {
  if (config.database.kind !== 'sqlite' || config.storage.kind !== 'local') return 2;
  await assertEmptyOrAbsent(target);
  const storeRoot = path.resolve(config.storage.dir);
  if (target === storeRoot || target.startsWith(storeRoot + path.sep)) {
    throw new CommandError(`the backup cannot go inside the storage folder ${storeRoot}`);
  }
  const dbFile = config.database.file;
  if (!(await exists(dbFile))) throw new CommandError(`no database at ${dbFile}: nothing to back up`);

  const partial = `${target}.partial`;
  if (await exists(partial)) {
    // Left by an interrupted backup (it carries our marker): ours to remove. Anything else is not.
    if (!(await exists(path.join(partial, IN_PROGRESS)))) {
      throw new CommandError(`${partial} exists and is not an unfinished backup; move it away first`);
    }
    await fs.rm(partial, { recursive: true, force: true });
  }
  await fs.mkdir(partial, { recursive: true, mode: 0o700 });
  await fs.writeFile(path.join(partial, IN_PROGRESS), '', { mode: 0o600 });

  try {
    return await backupInto(partial, target, config, io, options);
  } catch (error) {
    // Nothing half-made stays behind (it may be what filled the disk).
    await fs.rm(partial, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

async function backupInto(
  partial: string,
  target: string,
  config: Config,
  io: CliIo,
  options: BackupOptions,
): Promise<number> {
  if (config.database.kind !== 'sqlite' || config.storage.kind !== 'local') return 2;
  const say = (line: string) => io.stdout.write(`${line}\n`);
  const complain = (line: string) => io.stderr.write(`${line}\n`);
  const dbFile = config.database.file;
  const { default: Sqlite } = await import('better-sqlite3');
  const live = new Sqlite(dbFile, { fileMustExist: true });
  const store = await LocalBlobStore.create(config.storage.dir);
  let problems = 0;
  try {
    live.pragma('busy_timeout = 5000');
    const copyFile = path.join(partial, 'stowage.db');
    // One step for all pages: the copy is one read transaction, a snapshot no write can split
    // (the server's writes go on meanwhile, WAL readers do not block them).
    await live.backup(copyFile, { progress: () => 0x7fffffff });
    await fs.chmod(copyFile, 0o600);
    say(`database: snapshot of ${dbFile} taken`);

    const copy = new Sqlite(copyFile);
    const itemsFile = path.join(partial, '.items.jsonl');
    const itemsOut = createWriteStream(itemsFile, { mode: 0o600 });
    const dropped: Manifest['dropped'] = [];
    const counts = { items: 0, linked: 0, copied: 0, bytes: 0 };
    let canLink = !options.copy && (await fs.stat(store.root)).dev === (await fs.stat(partial)).dev;
    try {
      const page = copy.prepare<
        [string, number],
        { id: string; size: number; sha256: string; owner: string }
      >('SELECT id, size, sha256, owner FROM media WHERE id > ? ORDER BY id LIMIT ?');
      const stillLive = live.prepare<[string], { id: string }>('SELECT id FROM media WHERE id = ?');
      for (let after = ''; ;) {
        const rows = page.all(after, PAGE);
        if (rows.length === 0) break;
        after = rows[rows.length - 1]!.id;
        for (const row of rows) {
          const key = originalKey(row.id);
          const relative = `blobs/${key}`;
          const destination = path.join(partial, 'blobs', ...key.split('/'));
          await fs.mkdir(path.dirname(destination), { recursive: true, mode: 0o700 });
          let taken: { size: number; sha256: string; linked: boolean } | null;
          try {
            taken = await takeFile(store.localPath(key), destination, canLink);
          } catch (error) {
            if (!isNotFound(error)) throw error;
            taken = null;
          }
          if (taken === null) {
            // Gone since the snapshot: deleted meanwhile (fine), or missing from the store (damage).
            const deleted = stillLive.get(row.id) === undefined;
            const reason = deleted ? 'deleted after the snapshot' : 'file missing from the storage';
            dropItem(copy, row);
            dropped.push({ id: row.id, key, reason });
            (deleted ? say : complain)(`dropped ${key} item=${row.id}: ${reason}`);
            if (!deleted) problems++;
            continue;
          }
          if (!taken.linked) canLink = false;
          if (taken.size !== row.size) {
            complain(`size-mismatch ${key} item=${row.id} expected=${row.size} found=${taken.size}`);
            problems++;
          } else if (taken.sha256 !== row.sha256) {
            complain(`sha256-mismatch ${key} item=${row.id}`);
            problems++;
          }
          const entry: ItemEntry = {
            id: row.id,
            key,
            path: relative,
            size: taken.size,
            sha256: taken.sha256,
          };
          if (!itemsOut.write(JSON.stringify(entry) + '\n')) {
            await new Promise((resolve) => itemsOut.once('drain', resolve));
          }
          counts.items++;
          counts.bytes += taken.size;
          if (taken.linked) counts.linked++;
          else counts.copied++;
        }
      }
      // A single self-contained file: no -wal beside it.
      copy.pragma('wal_checkpoint(TRUNCATE)');
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
      await new Promise<void>((resolve, reject) =>
        itemsOut.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    }

    const manifest: Omit<Manifest, 'items'> = {
      format: FORMAT,
      version: VERSION,
      createdAt: new Date(systemClock.now()).toISOString(),
      database: await entryOf(partial, 'stowage.db'),
      // Fixed names: the configured files may be anywhere, under any name (restore puts each
      // where the restoring settings say).
      jwtKey: await copyAside(config.jwtKeyFile, partial, 'keys/jwt-ed25519.pem'),
      linkKey: await copyAside(config.linkKeyFile, partial, 'keys/link-hmac.key'),
      usersFile: await copyAside(config.usersFile, partial, 'users'),
      renditions: 'not included: they are derived from the originals and made again on demand',
      dropped,
    };
    await writeManifest(path.join(partial, MANIFEST), manifest, itemsFile);
    await fs.rm(itemsFile);
    await fs.rm(path.join(partial, IN_PROGRESS));
    await fsyncDir(partial);
    await fs.rename(partial, target);
    say(
      `backup complete in ${target}: ${counts.items} items, ${counts.bytes} bytes ` +
        `(${counts.linked} hard-linked, ${counts.copied} copied), ${dropped.length} dropped; renditions not included`,
    );
    if (problems > 0)
      complain(`backup: ${problems} problem${problems === 1 ? '' : 's'} with stored files (above)`);
    return problems > 0 ? 1 : 0;
  } finally {
    live.close();
    await store.close();
  }
}

/**
 * Hard-links (when allowed) or copies `source` to `destination`, and returns the size and sha256 of
 * what the backup now holds. Throws a not-found error when `source` is gone.
 */
async function takeFile(
  source: string,
  destination: string,
  tryLink: boolean,
): Promise<{ size: number; sha256: string; linked: boolean }> {
  if (tryLink) {
    try {
      await fs.link(source, destination);
      return { ...(await digestFile(destination)), linked: true };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another file system, or one without hard links: copy instead (and from now on).
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw error;
    }
  }
  // Opened first, so that a file deleted meanwhile is a clean not-found before anything is written.
  const handle = await fs.open(source, 'r');
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    // flush: the bytes are on disk before the folder is renamed to look complete.
    const out = createWriteStream(destination, { flags: 'wx', mode: 0o600, flush: true });
    await pipeline(handle.createReadStream({ highWaterMark: 1024 * 1024 }), tap, out);
  } catch (error) {
    await fs.rm(destination, { force: true });
    throw error;
  }
  return { size, sha256: hash.digest('hex'), linked: false };
}

/** Removes an item the backup cannot hold from the copied database, with its dependent rows. */
function dropItem(copy: SqliteDatabase.Database, row: { id: string; size: number; owner: string }): void {
  // Every table that refers to items by media_id (tags, links, and those later migrations add).
  const tables = copy
    .prepare<[], { name: string }>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .all()
    .map((t) => t.name)
    .filter((name) =>
      copy
        .prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${name.replace(/'/g, "''")}')`)
        .all()
        .some((c) => c.name === 'media_id'),
    );
  copy.transaction(() => {
    for (const table of tables)
      copy.prepare(`DELETE FROM "${table.replace(/"/g, '""')}" WHERE media_id = ?`).run(row.id);
    copy.prepare('DELETE FROM media WHERE id = ?').run(row.id);
    copy
      .prepare('UPDATE usage SET bytes = bytes - ?, files = files - 1 WHERE username = ?')
      .run(row.size, row.owner);
  })();
}

async function copyAside(source: string, dir: string, relative: string): Promise<FileEntry | null> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(source);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
  const destination = path.join(dir, ...relative.split('/'));
  await fs.mkdir(path.dirname(destination), { recursive: true, mode: 0o700 });
  await fs.writeFile(destination, bytes, { mode: 0o600, flag: 'wx' });
  return entryOf(dir, relative);
}

async function entryOf(dir: string, relative: string): Promise<FileEntry> {
  return { path: relative, ...(await digestFile(path.join(dir, ...relative.split('/')))) };
}

/** The manifest, with the items streamed from the list written while copying (no array of them). */
async function writeManifest(file: string, head: Omit<Manifest, 'items'>, itemsFile: string): Promise<void> {
  const out = await fs.open(file, 'wx', 0o600);
  try {
    const opening = JSON.stringify(head, null, 2);
    await out.write(`${opening.slice(0, -2)},\n  "items": [`);
    let first = true;
    let rest = '';
    for await (const chunk of createReadStream(itemsFile, { encoding: 'utf8' })) {
      const lines = (rest + (chunk as string)).split('\n');
      rest = lines.pop() ?? '';
      const text = lines.map((line) => `${first ? ((first = false), '') : ','}\n    ${line}`).join('');
      if (text) await out.write(text);
    }
    await out.write(first ? ']\n}\n' : '\n  ]\n}\n');
    await out.sync();
  } finally {
    await out.close();
  }
}

export async function assertEmptyOrAbsent(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new CommandError(`${dir} is not a directory`);
    throw error;
  }
  if (entries.length > 0) throw new CommandError(`${dir} is not empty`);
}

export async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
