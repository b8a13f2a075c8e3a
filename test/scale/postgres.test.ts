import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import type { DatabaseConfig } from '../../src/config.ts';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { MediaRepo } from '../../src/media/media-repo.ts';
import { migrationProvider } from '../../src/db/migrations.ts';
import { adminQuery, createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { databaseContract, record, uniqueName } from './database.contract.ts';
import { until } from './scale-helpers.ts';

/** The database contract on PostgreSQL, and what only PostgreSQL has: pool, timeouts, migration lock. */
const pg = (
  url: string,
  overrides: Partial<Extract<DatabaseConfig, { kind: 'postgres' }>> = {},
): DatabaseConfig => ({
  kind: 'postgres',
  url,
  poolSize: 10,
  statementTimeoutMs: 15_000,
  ...overrides,
});

describe.skipIf(!pgAvailable())('PostgreSQL', () => {
  databaseContract('postgres', async () => {
    const database = await createTestDatabase();
    return { config: pg(database.url), cleanup: () => database.drop() };
  });

  describe('PostgreSQL only', () => {
    const handles: DatabaseHandle[] = [];
    const databases: TestDatabase[] = [];
    const fresh = async () => {
      const database = await createTestDatabase();
      databases.push(database);
      return database;
    };
    const open = async (config: DatabaseConfig) => {
      const handle = await openDatabase(config);
      handles.push(handle);
      return handle;
    };
    afterAll(async () => {
      for (const handle of handles) await handle.close().catch(() => undefined);
      for (const database of databases) await database.drop();
    });

    it('migrates a fresh database once when two instances start at the same time', async () => {
      const database = await fresh();
      const [a, b, c] = await Promise.all([
        open(pg(database.url, { poolSize: 2 })),
        open(pg(database.url, { poolSize: 2 })),
        open(pg(database.url, { poolSize: 2 })),
      ]);
      const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
        a.db,
      );
      expect(rows.map((r) => r.name)).toEqual(Object.keys(await migrationProvider.getMigrations()).sort());
      // All three work on the same schema.
      const owner = uniqueName('shared');
      const item = record(owner);
      await new MediaRepo(b.db, b.dialect).insert(item, null);
      expect(await new MediaRepo(c.db, c.dialect).get(item.id)).toEqual(item);
    });

    it('applies the configured statement timeout to every pooled connection', async () => {
      const database = await fresh();
      const handle = await open(pg(database.url, { poolSize: 3, statementTimeoutMs: 150 }));
      const shown = await Promise.all(
        Array.from({ length: 3 }, () =>
          sql<{ statement_timeout: string }>`show statement_timeout`.execute(handle.db),
        ),
      );
      expect(shown.map((r) => r.rows[0]?.statement_timeout)).toEqual(['150ms', '150ms', '150ms']);
      const started = Date.now();
      await expect(sql`select pg_sleep(5)`.execute(handle.db)).rejects.toThrow(/statement timeout/);
      expect(Date.now() - started).toBeLessThan(4000);
      // The connection is fine afterwards.
      await expect(handle.ping()).resolves.toBeUndefined();

      const unlimited = await open(pg(database.url, { poolSize: 1, statementTimeoutMs: 0 }));
      const { rows } = await sql<{ statement_timeout: string }>`show statement_timeout`.execute(unlimited.db);
      expect(rows[0]?.statement_timeout).toBe('0');
    });

    it('opens at most the configured number of connections', async () => {
      const database = await fresh();
      const poolSize = 3;
      const handle = await open(pg(database.url, { poolSize }));
      const connections = async () =>
        Number(
          (
            await adminQuery<{ n: string }>('select count(*) as n from pg_stat_activity where datname = $1', [
              database.name,
            ])
          )[0]?.n,
        );
      let most = 0;
      const sleeps = Promise.all(
        Array.from({ length: 8 }, () => sql`select pg_sleep(0.3)`.execute(handle.db)),
      );
      await until(async () => {
        most = Math.max(most, await connections());
        return most >= poolSize;
      }, 3000);
      for (let i = 0; i < 5; i++) most = Math.max(most, await connections());
      await sleeps;
      expect(most).toBe(poolSize);
    });

    it('fails to open, with the cause, when the server cannot be reached', async () => {
      const url = new URL((await fresh()).url);
      url.port = '9';
      await expect(openDatabase(pg(url.toString()))).rejects.toThrow();
    });
  });
});
