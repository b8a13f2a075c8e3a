import path from 'node:path';
import { sql } from 'kysely';
import { expect, test } from 'vitest';
import { openDatabase } from '../../src/db/database.ts';
import { TABLES } from '../../src/db/tables.ts';
import { tempDir } from '../helpers/temp.ts';

/**
 * `stowage migrate` copies the tables of TABLES and nothing else; the type check ties TABLES to
 * `Database`, and this ties it to what the migrations actually create, so a table created by a
 * migration but missing from either is found.
 */
test('TABLES names every table the migrations create, once', async () => {
  const file = path.join(tempDir('stowage-tables-'), 'stowage.db');
  const handle = await openDatabase({ kind: 'sqlite', file });
  try {
    const { rows } = await sql<{ name: string }>`
      select name from sqlite_master
      where type = 'table' and name not like 'sqlite_%' and name not like 'kysely_%'`.execute(handle.db);
    expect([...TABLES].sort()).toEqual(rows.map((r) => r.name).sort());
    expect(new Set(TABLES).size).toBe(TABLES.length);
  } finally {
    await handle.close();
  }
});
