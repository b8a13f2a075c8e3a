/**
 * `stowage migrate --to-database URL [--to-storage s3]`: copies the database of the current
 * settings (the source) into PostgreSQL and, with --to-storage s3, the items' files from local disk
 * into the bucket of the STOWAGE_S3_* settings. The source is only read. Progress is kept in the
 * target (table migration_progress), so a run that was interrupted, even by kill -9, continues
 * where the last one stopped when started again, and a target holding anything else is refused.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs, parseEnv } from 'node:util';
import { sql, type Kysely, type Transaction } from 'kysely';
import {
  ConfigError,
  loadConfig,
  loadMigrateConfig,
  type DatabaseConfig,
  type MigrateConfig,
  type StorageConfig,
} from '../config.ts';
import { openDatabase, type DatabaseHandle } from '../db/database.ts';
import { assertCurrentSchema, openReadOnlyDatabase, type ReadOnlyDatabase } from '../db/read-only.ts';
import { TABLES } from '../db/tables.ts';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { createBlobStore } from '../storage/create.ts';
import { originalKey, ORIGINALS_PREFIX, renditionsPrefix } from '../storage/key-layout.ts';
import { LocalBlobReader } from '../storage/local-reader.ts';

export interface MigrateIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

export const MIGRATE_USAGE = `usage:
  stowage migrate --to-database postgres://USER:PASS@HOST/DB [--to-storage s3] [--batch-size N]

Copies the database of the current settings (STOWAGE_DATABASE_URL, else SQLite in the data
directory) into the PostgreSQL database URL, after creating its tables. With --to-storage s3 the
items' files are copied from local disk into the bucket of the STOWAGE_S3_* settings (keep
STOWAGE_STORAGE=local, the source, while migrating); without it the files stay where they are.
Each file is checked against its recorded sha256. The source is only read. Run again after an
interruption: it continues. A target that already holds other data is refused.
`;

/** A refusal or failure to report as one line; `code` is the exit status (2 for usage errors). */
class MigrateError extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.code = code;
  }
}

/** Rows per batch (and per transaction), and files per recorded step. */
const DEFAULT_BATCH = 500;
/** Files copied at once: object storage answers each PUT after a round trip. */
const FILE_CONCURRENCY = 4;
/** PostgreSQL takes at most 65535 parameters per statement. */
const MAX_PARAMETERS = 30_000;
const PROGRESS_TABLE = 'migration_progress';

interface Options {
  toDatabase: string;
  toS3: boolean;
  batchSize: number;
}

function parse(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        'to-database': { type: 'string' },
        'to-storage': { type: 'string' },
        'batch-size': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new MigrateError((error as Error).message.split('\n')[0] ?? 'invalid arguments', 2);
  }
  if (values.help === true) return 'help';
  const toDatabase = values['to-database'];
  if (toDatabase === undefined) throw new MigrateError('--to-database URL is required', 2);
  if (!/^postgres(ql)?:\/\//.test(toDatabase))
    throw new MigrateError('--to-database must be a postgres:// URL', 2);
  const storage = values['to-storage'];
  if (storage !== undefined && storage !== 's3')
    throw new MigrateError(`--to-storage: only "s3" is supported, got ${JSON.stringify(storage)}`, 2);
  const batchRaw = values['batch-size'] ?? String(DEFAULT_BATCH);
  const batchSize = Number(batchRaw);
  if (!/^\d+$/.test(batchRaw) || batchSize < 1 || batchSize > 10_000)
    throw new MigrateError('--batch-size must be a whole number from 1 to 10000', 2);
  return { toDatabase, toS3: storage === 's3', batchSize };
}

/** Runs the command and returns the exit status: 0 done, 1 failed or refused, 2 usage. */
export async function runMigrate(argv: string[], io: MigrateIo): Promise<number> {
  try {
    const options = parse(argv);
    if (options === 'help') {
      io.stdout.write(MIGRATE_USAGE);
      return 0;
    }
    await migrate(options, io);
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems)
        io.stderr.write(`stowage migrate: invalid configuration: ${problem}\n`);
      return 1;
    }
    if (error instanceof MigrateError) {
      io.stderr.write(`stowage migrate: ${error.message}\n`);
      if (error.code === 2) io.stderr.write('run "stowage migrate --help" for usage\n');
      return error.code;
    }
    const e = error as Error;
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
    io.stderr.write(`stowage migrate: failed: ${e.message}${cause}\n`);
    return 1;
  }
}

/** Where a database or storage is, without credentials: recorded in the target as the source. */
function describeDatabase(config: DatabaseConfig): string {
  if (config.kind === 'sqlite') return `sqlite:${realpathSync(config.file)}`;
  const url = new URL(config.url);
  return `postgres://${url.hostname}:${url.port || '5432'}${url.pathname}`;
}

function describeStorage(config: StorageConfig): string {
  if (config.kind === 'local') return `local:${path.resolve(config.dir)}`;
  return `s3:${config.endpoint ?? 'aws'}/${config.bucket}`;
}

/** What a run copies from where to where; a run resumes only a migration with the same one. */
interface Identity {
  database: string;
  storage: string;
  toStorage: string;
}

type Row = Record<string, unknown>;
/** The target, seen without the schema's types: tables are copied by name, columns as they are. */
type AnyDb = Kysely<Record<string, Row>>;

async function migrate(options: Options, io: MigrateIo): Promise<void> {
  const dotenv = path.join(io.cwd, '.env');
  // As for the server: the real environment wins over .env in the working directory.
  const env = existsSync(dotenv) ? { ...parseEnv(readFileSync(dotenv, 'utf8')), ...io.env } : io.env;
  const config = loadConfig(env, io.cwd);
  const settings = loadMigrateConfig(env, options.toS3);
  const targetConfig: DatabaseConfig = {
    kind: 'postgres',
    url: options.toDatabase,
    poolSize: 2,
    statementTimeoutMs: 0,
  };
  if (options.toS3 && config.storage.kind === 's3') {
    throw new MigrateError(
      'the files are already on S3 (STOWAGE_STORAGE=s3): copy the bucket with your provider\'s tools (e.g. rclone or "aws s3 sync") and run migrate without --to-storage',
    );
  }
  if (config.database.kind === 'sqlite' && !existsSync(config.database.file)) {
    throw new MigrateError(`no source database at ${config.database.file} (check STOWAGE_DATA_DIR)`);
  }
  const identity: Identity = {
    database: describeDatabase(config.database),
    storage: describeStorage(config.storage),
    toStorage: options.toS3 ? describeStorage(settings.s3) : 'unchanged',
  };
  if (identity.database === describeDatabase(targetConfig)) {
    throw new MigrateError('the target database is the source database');
  }

  const out = (line: string): boolean => io.stdout.write(line + '\n');
  const closers: (() => Promise<void> | void)[] = [];
  try {
    const source = await openReadOnlyDatabase(config.database);
    closers.push(() => source.close());
    await assertCurrentSchema(source.db);
    const target = await openDatabase(targetConfig).catch((error: unknown) => {
      throw new MigrateError(`cannot open the target database: ${(error as Error).message}`);
    });
    closers.push(() => target.close());
    let files: { from: LocalBlobReader; to: BlobStore } | undefined;
    if (options.toS3 && config.storage.kind === 'local') {
      const to = await createBlobStore(settings.s3);
      closers.push(() => to.close?.());
      await to.ping().catch((error: unknown) => {
        throw new MigrateError(
          `cannot reach the target bucket ${settings.s3.bucket}: ${(error as Error).message}`,
        );
      });
      files = { from: new LocalBlobReader(config.storage.dir), to };
    }
    const progress = await Progress.open(target, identity, files?.to);
    if (progress.done !== undefined) {
      out(`nothing to do: this migration finished at ${progress.done}`);
      return;
    }
    out(`migrating ${identity.database} → ${describeDatabase(targetConfig)}`);
    if (files) out(`files: ${identity.storage} → ${identity.toStorage}`);
    else out(`files: not copied (they stay in ${identity.storage})`);
    const copier = new Copier(source, target.db as unknown as AnyDb, progress, settings, options, out);
    const summary = await copier.run(files);
    await progress.finish();
    out(
      `done: ${summary.rows} rows in ${TABLES.length} tables` +
        (files
          ? `, ${summary.files} files copied (${mib(summary.bytes)}) with ${summary.renditions} thumbnails, ${summary.skipped} already in place`
          : '') +
        '; the target is complete',
    );
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The target's record of the migration, in its own table beside the schema's: which source it
 * is copied from (so that only that one may resume it), each table's last copied key, the last
 * item whose file batch finished, and when it all finished.
 */
class Progress {
  readonly #db: AnyDb;
  readonly #values: Map<string, string>;
  readonly done: string | undefined;

  private constructor(db: AnyDb, values: Map<string, string>) {
    this.#db = db;
    this.#values = values;
    this.done = values.get('done');
  }

  static async open(
    target: DatabaseHandle,
    identity: Identity,
    bucket: BlobStore | undefined,
  ): Promise<Progress> {
    const db = target.db as unknown as AnyDb;
    const read = async (): Promise<Map<string, string>> => {
      const exists = await sql<{
        found: string | null;
      }>`select to_regclass(${PROGRESS_TABLE}) as found`.execute(db);
      if (exists.rows[0]?.found == null) return new Map();
      const rows = await db.selectFrom(PROGRESS_TABLE).select(['name', 'value']).execute();
      return new Map(rows.map((r) => [String(r.name), String(r.value)]));
    };
    let values = await read();
    const recorded = values.get('source');
    if (recorded === undefined) {
      for (const table of TABLES) {
        const any = await db
          .selectFrom(table)
          .select(sql`1`.as('one'))
          .limit(1)
          .execute();
        if (any.length > 0) {
          throw new MigrateError(
            `the target database already holds data (table ${table} is not empty) and no migration from this source: migrate copies into an empty database only`,
          );
        }
      }
      if (bucket) {
        for await (const { key } of bucket.list(ORIGINALS_PREFIX)) {
          throw new MigrateError(
            `the target bucket already holds files (e.g. ${key}) and the target database no migration from this source: use an empty bucket`,
          );
        }
      }
      // Created only now, so that a refused target is left as it was found.
      await sql`create table if not exists ${sql.table(PROGRESS_TABLE)} (name text primary key, value text not null)`.execute(
        db,
      );
      await db
        .insertInto(PROGRESS_TABLE)
        .values({ name: 'source', value: JSON.stringify(identity) })
        .onConflict((oc) => oc.doNothing())
        .execute();
      values = await read();
    }
    const current = values.get('source');
    if (current !== JSON.stringify(identity)) {
      const other = JSON.parse(current ?? '{}') as Partial<Identity>;
      throw new MigrateError(
        `the target database holds a migration from another source (${other.database}, files ${other.storage} → ${other.toStorage}); this one is ${identity.database}, files ${identity.storage} → ${identity.toStorage}`,
      );
    }
    return new Progress(db, values);
  }

  get(name: string): string | undefined {
    return this.#values.get(name);
  }

  /** Recorded with `db` (the batch's transaction), so a batch and its record commit together. */
  async set(db: AnyDb | Transaction<Record<string, Row>>, name: string, value: string): Promise<void> {
    await db
      .insertInto(PROGRESS_TABLE)
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doUpdateSet({ value }))
      .execute();
    this.#values.set(name, value);
  }

  async finish(): Promise<void> {
    await this.set(this.#db, 'done', new Date().toISOString());
  }
}

interface Summary {
  rows: number;
  files: number;
  /** Thumbnails copied along with their items' files. */
  renditions: number;
  bytes: number;
  skipped: number;
}

interface ItemFile {
  id: string;
  owner: string;
  filename: string;
  size: number;
  sha256: string;
}

class Copier {
  readonly #source: ReadOnlyDatabase;
  readonly #target: AnyDb;
  readonly #progress: Progress;
  readonly #pause: MigrateConfig['testPause'];
  readonly #batch: number;
  readonly #out: (line: string) => void;
  #rowsThisRun = 0;
  #filesThisRun = 0;

  constructor(
    source: ReadOnlyDatabase,
    target: AnyDb,
    progress: Progress,
    settings: MigrateConfig,
    options: Options,
    out: (line: string) => void,
  ) {
    this.#source = source;
    this.#target = target;
    this.#progress = progress;
    this.#pause = settings.testPause;
    this.#batch = options.batchSize;
    this.#out = out;
  }

  /**
   * Everything is read in one read transaction of the source: a snapshot, so that the usage
   * counters agree with the items copied even if a server still writes (what it writes after
   * this began is not copied).
   */
  async run(files: { from: LocalBlobReader; to: BlobStore } | undefined): Promise<Summary> {
    const snapshot = this.#source.db.transaction();
    const begun =
      this.#source.dialect === 'postgres'
        ? snapshot.setIsolationLevel('repeatable read').setAccessMode('read only')
        : snapshot;
    return begun.execute(async (trx) => {
      const src = trx as unknown as AnyDb;
      let rows = 0;
      for (const table of TABLES) rows += await this.#copyTable(src, table);
      await this.#syncSequences();
      const summary: Summary = { rows, files: 0, renditions: 0, bytes: 0, skipped: 0 };
      if (files) await this.#copyFiles(src, files.from, files.to, summary);
      return summary;
    });
  }

  async #copyTable(src: AnyDb, table: string): Promise<number> {
    const { key, columns } = await this.#describe(table);
    const limit = Math.max(1, Math.min(this.#batch, Math.floor(MAX_PARAMETERS / columns)));
    const totalRow = await src
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    const total = Number(totalRow.n);
    const recorded = this.#progress.get(`table:${table}`);
    let last = recorded === undefined ? undefined : (JSON.parse(recorded) as unknown[]);
    const keyRefs = sql.join(key.map((c) => sql.ref(c)));
    let copied = 0;
    if (last !== undefined) {
      const before = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}
        where (${keyRefs}) <= (${sql.join(last)})`.execute(src);
      copied = Number(before.rows[0]?.n ?? 0);
    }
    for (;;) {
      const after = last === undefined ? sql`` : sql`where (${keyRefs}) > (${sql.join(last)})`;
      const { rows } = await sql<Row>`select * from ${sql.table(table)} ${after}
        order by ${keyRefs} limit ${limit}`.execute(src);
      if (rows.length === 0) break;
      const lastRow = rows[rows.length - 1]!;
      last = key.map((c) => lastRow[c]);
      const lastKey = JSON.stringify(last);
      await this.#target.transaction().execute(async (trx) => {
        // Nothing is overwritten: a row already there came from this source.
        await trx
          .insertInto(table)
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute();
        await this.#progress.set(trx, `table:${table}`, lastKey);
        this.#rowsThisRun += rows.length;
        if (this.#pause?.stage === 'rows' && this.#rowsThisRun >= this.#pause.after)
          await this.#pauseForTest(`${this.#rowsThisRun} rows`);
      });
      copied += rows.length;
      this.#out(`rows: ${table} ${copied}/${total}`);
    }
    if (total === 0) this.#out(`rows: ${table} 0/0`);
    return copied;
  }

  /** The table's primary key (for keyset paging) and its number of columns, from the target. */
  async #describe(table: string): Promise<{ key: string[]; columns: number }> {
    const key = await sql<{ column_name: string }>`
      select k.column_name from information_schema.table_constraints c
      join information_schema.key_column_usage k
        on k.constraint_name = c.constraint_name and k.table_schema = c.table_schema and k.table_name = c.table_name
      where c.constraint_type = 'PRIMARY KEY' and c.table_schema = current_schema() and c.table_name = ${table}
      order by k.ordinal_position`.execute(this.#target);
    if (key.rows.length === 0) throw new Error(`table ${table} has no primary key to copy it in batches by`);
    const columns = await sql<{ n: number }>`select count(*) as n from information_schema.columns
      where table_schema = current_schema() and table_name = ${table}`.execute(this.#target);
    return { key: key.rows.map((r) => r.column_name), columns: Number(columns.rows[0]?.n ?? 1) };
  }

  /**
   * A column filled from a sequence (serial, or an identity by default) would hand out values
   * already copied: its sequence is moved past the largest one.
   */
  async #syncSequences(): Promise<void> {
    const { rows } = await sql<{ table_name: string; column_name: string }>`
      select table_name, column_name from information_schema.columns
      where table_schema = current_schema() and table_name in (${sql.join([...TABLES])})
        and (column_default like 'nextval(%' or is_identity = 'YES')`.execute(this.#target);
    for (const { table_name: table, column_name: column } of rows) {
      const ref = sql.ref(column);
      await sql`select setval(pg_get_serial_sequence(${table}, ${column}), coalesce(max(${ref}), 1),
        max(${ref}) is not null) from ${sql.table(table)}`.execute(this.#target);
    }
  }

  /**
   * Each item's original, in the order of the items' ids, a batch at a time; the last id of a
   * finished batch is recorded. On a later run a recorded file whose object has the right size is
   * skipped; any other is copied again (the same key: nothing is duplicated).
   */
  async #copyFiles(src: AnyDb, from: LocalBlobReader, to: BlobStore, summary: Summary): Promise<void> {
    const totals = await src
      .selectFrom('media')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('size').as('bytes')])
      .executeTakeFirstOrThrow();
    const total = Number(totals.n);
    const totalBytes = Number(totals.bytes ?? 0);
    const recorded = this.#progress.get('files');
    // Rows up to the recorded id come first in this order; compared by the database, not here,
    // since its collation decides the order.
    let inRecorded = recorded !== undefined;
    let last: string | undefined;
    let seen = 0;
    let seenBytes = 0;
    for (;;) {
      let query = src
        .selectFrom('media')
        .select(['id', 'owner', 'filename', 'size', 'sha256'])
        .orderBy('id')
        .limit(this.#batch);
      if (last !== undefined) query = query.where('id', '>', last);
      const items = (await query.execute()) as unknown as ItemFile[];
      if (items.length === 0) break;
      const plan = items.map((item) => {
        const wasRecorded = inRecorded;
        if (item.id === recorded) inRecorded = false;
        return { item, wasRecorded };
      });
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < plan.length) {
          const { item, wasRecorded } = plan[next++]!;
          const key = originalKey(item.id);
          if (wasRecorded && (await to.stat(key))?.size === Number(item.size)) {
            summary.skipped++;
            continue;
          }
          await copyFile(from, to, item);
          summary.files++;
          summary.bytes += Number(item.size);
          // Its thumbnails too, so that none has to be rendered again; they have no recorded
          // hash, so only their size is checked.
          for (const rendition of await from.list(renditionsPrefix(item.id))) {
            await copyBlob(from, to, rendition.key, { size: rendition.size }, describe(item));
            summary.renditions++;
          }
          this.#filesThisRun++;
          if (this.#pause?.stage === 'files' && this.#filesThisRun === this.#pause.after)
            await this.#pauseForTest(`${this.#filesThisRun} files`);
        }
      };
      await Promise.all(Array.from({ length: Math.min(FILE_CONCURRENCY, plan.length) }, worker));
      last = items[items.length - 1]!.id;
      await this.#progress.set(this.#target, 'files', last);
      seen += items.length;
      seenBytes += items.reduce((sum, item) => sum + Number(item.size), 0);
      this.#out(`files: ${seen}/${total} items, ${mib(seenBytes)}/${mib(totalBytes)}`);
    }
  }

  async #pauseForTest(what: string): Promise<never> {
    this.#out(`paused after ${what} (STOWAGE_MIGRATE_TEST_PAUSE, for tests)`);
    // A timer keeps the process alive until it is killed.
    return new Promise<never>(() => setInterval(() => undefined, 60_000));
  }
}

/** An item's original, checked against the size and sha256 of its row. */
async function copyFile(from: LocalBlobReader, to: BlobStore, item: ItemFile): Promise<void> {
  await copyBlob(
    from,
    to,
    originalKey(item.id),
    { size: Number(item.size), sha256: item.sha256 },
    describe(item),
  );
}

function describe(item: ItemFile): string {
  return `item ${item.id} ("${item.filename}" of ${item.owner})`;
}

/**
 * Streams one blob into the target, hashing on the way; committed only when size (and sha256,
 * when known) are as expected, else nothing is left at the key and the run stops naming the item.
 */
async function copyBlob(
  from: LocalBlobReader,
  to: BlobStore,
  key: string,
  expected: { size: number; sha256?: string },
  name: string,
): Promise<void> {
  let input;
  try {
    input = await from.read(key);
  } catch (error) {
    if (error instanceof BlobNotFoundError)
      throw new MigrateError(`${name}: its file ${key} is missing from the source storage`);
    throw error;
  }
  const writer = to.createWriter(key);
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      input,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      writer.stream,
    );
    const sha256 = hash.digest('hex');
    if (size !== expected.size || (expected.sha256 !== undefined && sha256 !== expected.sha256)) {
      const recorded = expected.sha256 === undefined ? '' : `sha256 ${expected.sha256}, `;
      throw new MigrateError(
        `${name}: the source file ${key} does not match its record (sha256 ${sha256}, ${size} bytes; expected ${recorded}${expected.size} bytes): it is damaged — nothing of it was copied; put it right (from a backup) and run migrate again`,
      );
    }
    await writer.commit();
  } catch (error) {
    await writer.abort().catch(() => undefined);
    if (error instanceof MigrateError) throw error;
    throw new Error(`${name}: copying ${key} failed`, { cause: error });
  }
}
