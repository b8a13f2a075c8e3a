import crypto from 'node:crypto';
import pg from 'pg';
import { required } from './requirements.ts';

/**
 * PostgreSQL for the tests that need it: they run when STOWAGE_TEST_DATABASE_URL points at a
 * server (CI sets postgres://postgres@127.0.0.1:5432/test) and are skipped otherwise. Every test
 * run gets its own throwaway database, created through that URL's server and dropped after.
 */
const adminUrl = process.env.STOWAGE_TEST_DATABASE_URL?.trim() || undefined;

/** Whether PostgreSQL tests can run; says once (per test file) why not when they cannot. */
export function pgAvailable(): boolean {
  return required(
    adminUrl !== undefined,
    'PostgreSQL (STOWAGE_TEST_DATABASE_URL)',
    'set STOWAGE_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test (.ci/run does)',
  );
}

export interface TestDatabase {
  /** A postgres:// URL of the new, empty database. */
  url: string;
  name: string;
  /** Drops the database, ending any connection still open to it. */
  drop(): Promise<void>;
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  if (!adminUrl) throw new Error('STOWAGE_TEST_DATABASE_URL is not set');
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `stowage_t_${crypto.randomBytes(6).toString('hex')}`;
  await admin((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl!);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () =>
      admin(async (client) => void (await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}

/** Runs one query as the administrative connection (e.g. to look at pg_stat_activity). */
export function adminQuery<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  return admin(async (client) => (await client.query<R>(text, values)).rows);
}
