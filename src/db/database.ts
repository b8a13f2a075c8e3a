import fs from 'node:fs';
import path from 'node:path';
import {
  Kysely,
  PostgresDialect,
  SqliteDialect,
  sql,
  type PostgresPool,
  type PostgresPoolClient,
} from 'kysely';
import { Migrator } from 'kysely/migration';
import type { Pool, PoolClient } from 'pg';
import type { DatabaseConfig } from '../config.ts';
import { Breaker } from '../util/breaker.ts';
import { DependencyUnavailableError } from '../util/dependency-failure.ts';
import { withDeadline } from '../util/deadline.ts';
import type { Database } from './schema.ts';
import { migrationProvider } from './migrations.ts';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  dialect: 'sqlite' | 'postgres';
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /**
   * PostgreSQL: how long a query or a connection attempt may take on the client's side before it
   * fails. The server's statement timeout cannot help when the network drops the query before the
   * server sees it. Unset: no client-side query timeout and 10 s to connect (the CLI's long runs).
   */
  timeoutMs?: number;
  /** PostgreSQL: fails requests fast while the database is known to be unreachable. */
  breaker?: Breaker;
}

export async function openDatabase(
  config: DatabaseConfig,
  options: DatabaseOptions = {},
): Promise<DatabaseHandle> {
  let db: Db;
  let migrationDb: Db | undefined;
  let ping = async () => void (await sql`select 1`.execute(db));
  // Each driver is loaded only when it is the one configured.
  if (config.kind === 'sqlite') {
    const { default: SqliteDatabase } = await import('better-sqlite3');
    fs.mkdirSync(path.dirname(config.file), { recursive: true });
    const sqlite = new SqliteDatabase(config.file);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  } else {
    const { default: pg } = await import('pg');
    // PostgreSQL returns bigint (int8) as a string to avoid precision loss; our values (milliseconds,
    // byte counts) stay far below 2^53, so numbers are safe and keep one type across dialects.
    pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
    const poolOptions = {
      connectionString: config.url,
      statement_timeout: config.statementTimeoutMs || undefined,
      // Also bounds the wait for a free pooled connection when all are busy.
      connectionTimeoutMillis: options.timeoutMs ?? 10_000,
    };
    // Queries get a client-side deadline (guardClient): the server's statement timeout cannot help
    // when the network drops the query before the server sees it. pg's own query_timeout, a plain
    // timer, is only the backstop, for the readiness probe.
    const backstopMs = options.timeoutMs === undefined ? undefined : 2 * options.timeoutMs;
    const pool = new pg.Pool({ ...poolOptions, max: config.poolSize, query_timeout: backstopMs });
    // An idle client losing its connection emits 'error' on the pool; without a listener that
    // would crash the process. The next query gets a fresh connection.
    pool.on('error', () => undefined);
    const guarded = guardPool(pool, options.breaker ?? new Breaker('database'), options.timeoutMs);
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: guarded }) });
    // Migrations may legitimately run longer than a request's query (an index on a large table, or
    // waiting for another instance's migration lock), so they get a pool of their own, without
    // the client-side timeout, closed once they are done.
    const migrationPool = new pg.Pool({ ...poolOptions, max: 1 });
    migrationPool.on('error', () => undefined);
    migrationDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: migrationPool }) });
    // The readiness probe bypasses the breaker: it is what finds out that the database is back.
    // pool.query() destroys a client whose query failed, so a timed-out probe leaves nothing behind.
    ping = async () => void (await pool.query('select 1'));
  }
  const handle: DatabaseHandle = {
    db,
    dialect: config.kind,
    ping,
    async close() {
      await db.destroy();
    },
  };
  try {
    await migrate(migrationDb ?? db);
  } catch (error) {
    await db.destroy();
    throw error;
  } finally {
    await migrationDb?.destroy();
  }
  return handle;
}

/**
 * The pool as Kysely sees it: every query gets the client-side deadline, a client whose query timed
 * out or lost its connection is destroyed instead of going back to the pool (its connection still
 * carries the unanswered query), and connection failures open the breaker, which then fails
 * requests at once (503) until a readiness check finds the database again.
 */
function guardPool(pool: Pool, breaker: Breaker, timeoutMs: number | undefined): PostgresPool {
  return {
    options: {},
    connect: async () => {
      breaker.assertClosed();
      try {
        return guardClient(await pool.connect(), breaker, timeoutMs);
      } catch (error) {
        // Every pooled connection busy for the whole timeout is load, not an outage: 503, but the
        // breaker stays closed (pg-pool says so only in its message).
        if (error instanceof Error && error.message === POOL_EXHAUSTED) {
          throw new DependencyUnavailableError('database', error);
        }
        throw breaker.failure(error);
      }
    },
    end: () => pool.end(),
  };
}

const POOL_EXHAUSTED = 'timeout exceeded when trying to connect';

function guardClient(
  client: PoolClient,
  breaker: Breaker,
  timeoutMs: number | undefined,
): PostgresPoolClient {
  let broken = false;
  const query = async (text: string, values: readonly unknown[]) => {
    try {
      const pending = client.query(text, [...values]);
      return await (timeoutMs === undefined ? pending : withDeadline(pending, timeoutMs, 'database'));
    } catch (error) {
      const failure = breaker.failure(error);
      if (failure !== error) broken = true;
      throw failure;
    }
  };
  return {
    processID: (client as { processID?: number }).processID,
    // Kysely only passes a cursor when configured with one, which it is not.
    query: query as unknown as PostgresPoolClient['query'],
    release: (destroy?: boolean) => client.release(broken || destroy === true),
  };
}

/** Kysely's migrator takes a lock (a row lock on PostgreSQL), so two instances may start at once. */
async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed`, { cause: error });
  }
}
