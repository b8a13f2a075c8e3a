import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import type { DatabaseConfig } from '../config.ts';
import type { Database } from './schema.ts';
import { migrationProvider } from './migrations.ts';
import type { Db } from './database.ts';

export interface ReadOnlyDatabase {
  db: Db;
  dialect: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

/**
 * Opens a database only to read it (the source of `stowage migrate`): SQLite opened read-only, so
 * not even a checkpoint touches the file; PostgreSQL with every transaction read-only. Unlike
 * openDatabase, it never runs migrations: see assertCurrentSchema.
 */
export async function openReadOnlyDatabase(config: DatabaseConfig): Promise<ReadOnlyDatabase> {
  if (config.kind === 'sqlite') {
    const { default: SqliteDatabase } = await import('better-sqlite3');
    const sqlite = new SqliteDatabase(config.file, { readonly: true, fileMustExist: true });
    sqlite.pragma('busy_timeout = 5000');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    return { db, dialect: 'sqlite', close: () => db.destroy() };
  }
  const { default: pg } = await import('pg');
  // As in openDatabase: bigint columns as numbers (our values stay far below 2^53).
  pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
  const pool = new pg.Pool({
    connectionString: config.url,
    max: 1,
    options: '-c default_transaction_read_only=on',
  });
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, dialect: 'postgres', close: () => db.destroy() };
}

/**
 * Throws unless the database has exactly the migrations of this version applied: a copy is made
 * column for column, so source and target must have the same tables and columns.
 */
export async function assertCurrentSchema(db: Db): Promise<void> {
  const expected = Object.keys(await migrationProvider.getMigrations()).sort();
  let applied: string[];
  try {
    const rows = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
    applied = rows.rows.map((r) => r.name).sort();
  } catch (error) {
    throw new Error('the source holds no Stowage database (no kysely_migration table)', { cause: error });
  }
  const missing = expected.filter((name) => !applied.includes(name));
  const unknown = applied.filter((name) => !expected.includes(name));
  if (unknown.length > 0) {
    throw new Error(
      `the source database was migrated by a newer Stowage (${unknown.join(', ')}); run the migrate of that version`,
    );
  }
  if (missing.length > 0) {
    throw new Error(
      `the source database lacks migrations ${missing.join(', ')}: start the server of this version on it once (it upgrades the schema), stop it, then migrate`,
    );
  }
}
