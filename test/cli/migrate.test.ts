import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, describe, expect, test } from 'vitest';
import { createTestApp, PASSWORDS } from '../helpers/app.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { createTestBucket, s3Available, s3Client, type TestBucket } from '../helpers/s3.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { tempDir } from '../helpers/temp.ts';
import { MiB, multipart, pdf, pdfOfSize, png } from '../media/media-helpers.ts';
import { CLI, cleanEnv, runCli, type CliResult } from './cli-helpers.ts';
import { TABLES } from '../../src/db/tables.ts';

/**
 * `stowage migrate`, as a person runs it: a source filled by a real server on SQLite and local
 * disk, the CLI as its own process, and afterwards a server process on the target (PostgreSQL,
 * S3) that must serve everything as before.
 */

interface Item {
  id: string;
  filename: string;
  sha256: string;
  visibility: string;
}

interface Source {
  dir: string;
  items: Item[];
  /** Every item as GET /api/media/list answered it, per user. */
  lists: Record<'alice' | 'bob', unknown[]>;
  bytes: Map<string, Buffer>;
  linkUrl: string;
  publicId: string;
  aliceRefresh: string;
}

/** A data directory with `count` items of alice's and two of bob's, tags, a public item and a link. */
async function makeSource(
  count: number,
  options: { env?: Record<string, string>; large?: boolean } = {},
): Promise<Source> {
  const dir = tempDir('stowage-migrate-src-');
  // The thumbnails stored are exactly the two asked for below: none is rendered ahead.
  const t = await createTestApp({ STOWAGE_DATA_DIR: dir, STOWAGE_THUMBNAILS_AHEAD: 'off', ...options.env });
  const items: Item[] = [];
  const bytes = new Map<string, Buffer>();
  try {
    const tokens = { alice: (await t.login('alice')).accessToken, bob: (await t.login('bob')).accessToken };
    const aliceRefresh = (await t.login('alice')).refreshToken;
    const upload = async (user: 'alice' | 'bob', filename: string, data: Buffer, fields = {}) => {
      const { body, contentType } = multipart([
        ...Object.entries(fields).map(([name, value]) => ({ name, value: String(value) })),
        { name: 'file', filename, data },
      ]);
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/media/upload',
        headers: { ...t.auth(tokens[user]), 'content-type': contentType },
        payload: body,
      });
      if (res.statusCode !== 201) throw new Error(`upload failed: ${res.statusCode} ${res.body}`);
      const item = res.json<Item>();
      items.push(item);
      bytes.set(item.id, data);
      return item;
    };
    for (let i = 0; i < count; i++) {
      if (i % 3 === 0) await upload('alice', `photo-${i}.png`, await png(8 + i, 6), { tags: `beach,n${i}` });
      else await upload('alice', `doc-${i}.pdf`, pdf(i * 100, `doc ${i}`), { tags: 'work' });
    }
    const shown = await upload('bob', 'shown.png', await png(20, 10), { visibility: 'public' });
    const linked = await upload('bob', 'linked.pdf', pdf(5000, 'linked'));
    // Larger than one part (8 MiB): stored in the bucket by a multipart upload.
    if (options.large) await upload('bob', 'large.pdf', pdfOfSize(13 * MiB + 17));
    const link = await t.app.inject({
      method: 'POST',
      url: `/api/media/${linked.id}/links`,
      headers: t.auth(tokens.bob),
      payload: { expiresIn: 3600 },
    });
    expect(link.statusCode).toBe(201);
    // Thumbnails stored beside the originals, which migrate carries along.
    for (const id of [shown.id, items[0]!.id]) {
      const owner = id === shown.id ? 'bob' : 'alice';
      const thumb = await t.app.inject({ url: `/api/media/${id}/thumbnail`, headers: t.auth(tokens[owner]) });
      expect(thumb.statusCode).toBe(200);
    }
    const list = async (user: 'alice' | 'bob') => {
      const res = await t.app.inject({ url: '/api/media/list?limit=100', headers: t.auth(tokens[user]) });
      return res.json<{ items: unknown[] }>().items;
    };
    return {
      dir,
      items,
      lists: { alice: await list('alice'), bob: await list('bob') },
      bytes,
      linkUrl: link.json<{ url: string }>().url,
      publicId: shown.id,
      aliceRefresh,
    };
  } finally {
    await t.close();
  }
}

/**
 * sha256 of every file under `dir`, by relative path: to show that the source was not written.
 * SQLite's read-only connection leaves its shared-memory index and an empty write-ahead log
 * beside the database (a read-only connection cannot remove them), which only coordinate readers
 * and writers: the log must be empty, and the index is left out.
 */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    // The server's own records of its live instances may come and go; the data may not.
    if (file.includes('.instances') || file.endsWith('.db-shm')) continue;
    if (file.endsWith('.db-wal')) {
      expect((await fs.stat(file)).size, 'the source database was written').toBe(0);
      continue;
    }
    out[path.relative(dir, file)] = createHash('sha256')
      .update(await fs.readFile(file))
      .digest('hex');
  }
  return out;
}

/** The keys of every stored file of `source` (originals and thumbnails), sorted. */
async function sourceKeys(source: { dir: string }): Promise<string[]> {
  const blobs = path.join(source.dir, 'blobs');
  const keys: string[] = [];
  for (const top of ['media', 'thumbs']) {
    const entries = await fs.readdir(path.join(blobs, top), { recursive: true, withFileTypes: true });
    for (const entry of entries)
      if (entry.isFile()) keys.push(path.relative(blobs, path.join(entry.parentPath, entry.name)));
  }
  return keys.sort();
}

function s3Env(bucket: TestBucket): Record<string, string> {
  return {
    STOWAGE_S3_ENDPOINT: bucket.endpoint,
    STOWAGE_S3_BUCKET: bucket.bucket,
    STOWAGE_S3_REGION: bucket.region,
    STOWAGE_S3_ACCESS_KEY_ID: bucket.accessKeyId,
    STOWAGE_S3_SECRET_ACCESS_KEY: bucket.secretAccessKey,
    STOWAGE_S3_FORCE_PATH_STYLE: 'true',
  };
}

function migrate(
  source: { dir: string },
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return runCli(['migrate', ...args], {
    cwd: source.dir,
    env: cleanEnv({ STOWAGE_DATA_DIR: source.dir, ...env }),
  });
}

/** The number of rows of each table in the SQLite database of `source`. */
async function sqliteCounts(source: { dir: string }, tables: string[]): Promise<Record<string, number>> {
  const { default: Sqlite } = await import('better-sqlite3');
  const sqlite = new Sqlite(path.join(source.dir, 'stowage.db'), { readonly: true });
  try {
    const counts: Record<string, number> = {};
    for (const table of tables)
      counts[table] = (sqlite.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n;
    return counts;
  } finally {
    sqlite.close();
  }
}

/** Runs migrate until it reports the test pause, then kills it with SIGKILL. */
function migrateUntilPaused(
  source: { dir: string },
  args: string[],
  env: Record<string, string>,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'migrate', ...args], {
      cwd: source.dir,
      env: cleanEnv({ STOWAGE_DATA_DIR: source.dir, ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('paused after')) child.kill('SIGKILL');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      if (signal === 'SIGKILL') resolve(output);
      else reject(new Error(`migrate ended without pausing:\n${output}`));
    });
  });
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

async function rowCounts(url: string): Promise<Record<string, number>> {
  const tables = ['sessions', 'refresh_tokens', 'media', 'media_tags', 'links', 'usage', 'reservations'];
  const counts: Record<string, number> = {};
  for (const table of tables)
    counts[table] = Number((await query<{ n: string }>(url, `select count(*) as n from ${table}`))[0]!.n);
  return counts;
}

async function objectKeys(bucket: TestBucket): Promise<string[]> {
  const client = s3Client(bucket);
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket.bucket, ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    return keys.sort();
  } finally {
    client.destroy();
  }
}

/**
 * A server process on the target with only the keys and the users file of the source: what
 * serves the items must be the target database and, with `bucket`, the bucket.
 */
async function startTarget(
  source: Source,
  db: TestDatabase,
  bucket: TestBucket | undefined,
): Promise<ServerProcess> {
  let dir = source.dir;
  if (bucket) {
    dir = tempDir('stowage-migrate-dst-');
    await fs.cp(path.join(source.dir, 'keys'), path.join(dir, 'keys'), { recursive: true });
    await fs.copyFile(path.join(source.dir, 'users'), path.join(dir, 'users'));
  }
  return startServerProcess({
    cwd: dir,
    env: {
      STOWAGE_DATA_DIR: dir,
      STOWAGE_DATABASE_URL: db.url,
      ...(bucket ? { STOWAGE_STORAGE: 's3', ...s3Env(bucket) } : {}),
    },
    name: 'target server',
  });
}

function ownerOf(source: Source, item: Item): 'alice' | 'bob' {
  return source.lists.alice.some((i) => (i as Item).id === item.id) ? 'alice' : 'bob';
}

/** Everything of `source` is served by `server` as it was: items, bytes, tags, links, sessions. */
async function expectServedAsBefore(server: ServerProcess, source: Source): Promise<void> {
  const call = (url: string, init: RequestInit = {}) => fetch(`${server.base}${url}`, init);
  const json = async (res: Response) => (await res.json()) as Record<string, unknown>;
  const refreshed = await call('/api/auth/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken: source.aliceRefresh }),
  });
  // The session of the source goes on: its refresh token is honoured.
  expect(refreshed.status).toBe(200);
  const tokens: Record<string, string> = {
    alice: String((await json(refreshed)).accessToken),
    bob: String(
      (
        await json(
          await call('/api/auth/login', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ username: 'bob', password: PASSWORDS.bob }),
          }),
        )
      ).accessToken,
    ),
  };
  for (const user of ['alice', 'bob'] as const) {
    const res = await call('/api/media/list?limit=100', {
      headers: { authorization: `Bearer ${tokens[user]}` },
    });
    expect((await json(res)).items).toEqual(source.lists[user]);
  }
  for (const item of source.items) {
    const res = await call(`/api/media/${item.id}/content`, {
      headers: { authorization: `Bearer ${tokens[ownerOf(source, item)]}` },
    });
    expect(res.status, item.filename).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(source.bytes.get(item.id)!), item.filename).toBe(true);
  }
  const shown = await call(`/api/media/${source.publicId}/content`);
  expect(shown.status).toBe(200);
  const linked = await call(source.linkUrl);
  expect(linked.status).toBe(200);
  expect((await linked.text()).includes('linked')).toBe(true);
  const thumb = await call(`/api/media/${source.publicId}/thumbnail`);
  expect(thumb.status).toBe(200);
  const me = await call('/api/users/me', { headers: { authorization: `Bearer ${tokens.alice}` } });
  const aliceItems = source.lists.alice as { size: number }[];
  expect((await json(me)).usage).toEqual({
    files: aliceItems.length,
    bytes: aliceItems.reduce((sum, i) => sum + i.size, 0),
  });
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function newDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  return db;
}

async function newBucket(): Promise<TestBucket> {
  const bucket = await createTestBucket();
  cleanups.push(() => bucket.drop());
  return bucket;
}

describe.runIf(pgAvailable())('stowage migrate to PostgreSQL', () => {
  test('database only: the files stay; a server on the target and the same data dir serves all', async () => {
    const source = await makeSource(4);
    const db = await newDatabase();
    const before = await fingerprint(source.dir);
    const run = await migrate(source, ['--to-database', db.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/files: not copied/);
    expect(run.stdout).toMatch(
      new RegExp(`done: \\d+ rows in ${TABLES.length} tables; the target is complete`),
    );
    expect(await fingerprint(source.dir)).toEqual(before);
    const server = await startTarget(source, db, undefined);
    try {
      await expectServedAsBefore(server, source);
    } finally {
      await server.kill('SIGTERM');
    }
    // A second run has nothing to do.
    const again = await migrate(source, ['--to-database', db.url]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing to do/);
  }, 90_000);

  test('refuses a target that holds data of its own, and one migrated from another source', async () => {
    const first = await makeSource(1);
    const second = await makeSource(1);
    const db = await newDatabase();
    expect((await migrate(first, ['--to-database', db.url])).code).toBe(0);
    const counts = await rowCounts(db.url);

    const other = await migrate(second, ['--to-database', db.url]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/holds a migration from another source/);

    // Without the migration's record, the same data is someone else's.
    await query(db.url, 'drop table migration_progress');
    const foreign = await migrate(first, ['--to-database', db.url]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/already holds data \(table sessions is not empty\)/);
    expect(await rowCounts(db.url)).toEqual(counts);
    // Left as it was found: not even the record of a migration was added.
    const [found] = await query<{ t: string | null }>(
      db.url,
      `select to_regclass('migration_progress') as t`,
    );
    expect(found!.t).toBeNull();
  }, 90_000);

  test('from PostgreSQL to another PostgreSQL database; never into the source itself', async () => {
    const from = await newDatabase();
    const source = await makeSource(3, { env: { STOWAGE_DATABASE_URL: from.url } });
    const db = await newDatabase();
    const env = { STOWAGE_DATABASE_URL: from.url };
    const same = await migrate(source, ['--to-database', from.url], env);
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/the target database is the source database/);
    const run = await migrate(source, ['--to-database', db.url], env);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const counts = await rowCounts(db.url);
    expect(counts).toEqual(await rowCounts(from.url));
    expect(counts.media).toBe(5);
    const server = await startTarget(source, db, undefined);
    try {
      await expectServedAsBefore(server, source);
    } finally {
      await server.kill('SIGTERM');
    }
  }, 90_000);

  test('refuses a source whose schema is of another version', async () => {
    const source = await makeSource(1);
    const { default: Sqlite } = await import('better-sqlite3');
    const sqlite = new Sqlite(path.join(source.dir, 'stowage.db'));
    sqlite
      .prepare('insert into kysely_migration (name, timestamp) values (?, ?)')
      .run('9999_future', new Date().toISOString());
    sqlite.close();
    const db = await newDatabase();
    const run = await migrate(source, ['--to-database', db.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/migrated by a newer Stowage \(9999_future\)/);
    expect((await rowCounts(db.url).catch(() => ({ media: 0 }))).media).toBe(0);
  }, 60_000);

  test('usage errors: no target, a target that is not PostgreSQL, another storage kind', async () => {
    const dir = tempDir('stowage-migrate-usage-');
    const none = await migrate({ dir }, []);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--to-database URL is required/);
    const sqlite = await migrate({ dir }, ['--to-database', 'sqlite:x.db']);
    expect(sqlite.code).toBe(2);
    const gcs = await migrate({ dir }, ['--to-database', 'postgres://x/y', '--to-storage', 'gcs']);
    expect(gcs.code).toBe(2);
    const noBucket = await migrate({ dir }, ['--to-database', 'postgres://x/y', '--to-storage', 's3']);
    expect(noBucket.code).toBe(1);
    expect(noBucket.stderr).toContain('STOWAGE_S3_BUCKET: required for migrate --to-storage s3');
    const nothing = await migrate({ dir }, ['--to-database', 'postgres://127.0.0.1/none']);
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toMatch(/no source database/);
  });
});

describe.runIf(pgAvailable() && s3Available())('stowage migrate to PostgreSQL and S3', () => {
  test('copies every row and file; a server on the target serves everything as before; the source is untouched', async () => {
    const source = await makeSource(6, { large: true });
    const db = await newDatabase();
    const bucket = await newBucket();
    const before = await fingerprint(source.dir);
    const run = await migrate(source, ['--to-database', db.url, '--to-storage', 's3'], s3Env(bucket));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/files: 9\/9 items/);
    expect(run.stdout).toMatch(
      /9 files copied \([\d.]+ MiB\) with 2 thumbnails, 0 already in place; the target is complete/,
    );
    expect(await fingerprint(source.dir)).toEqual(before);
    const counts = await rowCounts(db.url);
    expect(counts).toEqual(await sqliteCounts(source, Object.keys(counts)));
    expect(await objectKeys(bucket)).toEqual(await sourceKeys(source));
    const server = await startTarget(source, db, bucket);
    try {
      await expectServedAsBefore(server, source);
    } finally {
      await server.kill('SIGTERM');
    }
  }, 120_000);

  test('kill -9 while copying rows and again while copying files: the next run finishes, nothing twice', async () => {
    const source = await makeSource(10);
    const db = await newDatabase();
    const bucket = await newBucket();
    const args = ['--to-database', db.url, '--to-storage', 's3', '--batch-size', '3'];
    const env = s3Env(bucket);

    const inRows = await migrateUntilPaused(source, args, { ...env, STOWAGE_MIGRATE_TEST_PAUSE: 'rows:7' });
    expect(inRows).toMatch(/paused after \d+ rows/);
    const inFiles = await migrateUntilPaused(source, args, { ...env, STOWAGE_MIGRATE_TEST_PAUSE: 'files:5' });
    expect(inFiles).toMatch(/paused after 5 files/);
    // Interrupted after some batches were recorded.
    expect(inFiles).toMatch(/files: 3\/12 items/);
    expect((await objectKeys(bucket)).length).toBeGreaterThanOrEqual(5);

    const last = await migrate(source, args, env);
    expect(last.stderr).toBe('');
    expect(last.code).toBe(0);
    expect(last.stdout).toMatch(/already in place; the target is complete/);
    const skipped = Number(/, (\d+) already in place/.exec(last.stdout)![1]);
    expect(skipped).toBeGreaterThanOrEqual(3);

    const counts = await rowCounts(db.url);
    expect(counts).toEqual(await sqliteCounts(source, Object.keys(counts)));
    expect(await objectKeys(bucket)).toEqual(await sourceKeys(source));
    const server = await startTarget(source, db, bucket);
    try {
      await expectServedAsBefore(server, source);
    } finally {
      await server.kill('SIGTERM');
    }
  }, 180_000);

  test('a damaged or missing source file stops the run, naming the item; once put right, the next run finishes', async () => {
    const source = await makeSource(3);
    const db = await newDatabase();
    const bucket = await newBucket();
    const args = ['--to-database', db.url, '--to-storage', 's3', '--batch-size', '1'];
    const blob = (item: Item) => path.join(source.dir, 'blobs', 'media', item.id.slice(0, 2), item.id);
    const key = (item: Item) => `media/${item.id.slice(0, 2)}/${item.id}`;
    // Files are copied in the order of the ids (SQLite compares them bytewise, as here).
    const byId = [...source.items].sort((a, b) => (a.id < b.id ? -1 : 1));
    const damaged = byId[1]!;
    const good = await fs.readFile(blob(damaged));
    const bytes = Buffer.from(good);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
    await fs.writeFile(blob(damaged), bytes);
    const run = await migrate(source, args, s3Env(bucket));
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`item ${damaged.id} ("${damaged.filename}" of ${ownerOf(source, damaged)})`);
    expect(run.stderr).toMatch(/does not match its record/);
    expect(await objectKeys(bucket)).not.toContain(key(damaged));

    await fs.writeFile(blob(damaged), good);
    const missing = byId[3]!;
    const moved = `${blob(missing)}.aside`;
    await fs.rename(blob(missing), moved);
    const second = await migrate(source, args, s3Env(bucket));
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `item ${missing.id} ("${missing.filename}" of ${ownerOf(source, missing)})`,
    );
    expect(second.stderr).toMatch(/is missing from the source storage/);
    expect(await objectKeys(bucket)).not.toContain(key(missing));

    await fs.rename(moved, blob(missing));
    const last = await migrate(source, args, s3Env(bucket));
    expect(last.stderr).toBe('');
    expect(last.code).toBe(0);
    expect(await objectKeys(bucket)).toEqual(await sourceKeys(source));
  }, 90_000);

  test('refuses a bucket that already holds files at the first run', async () => {
    const source = await makeSource(1);
    const db = await newDatabase();
    const bucket = await newBucket();
    const client = s3Client(bucket);
    try {
      await client.send(
        new PutObjectCommand({ Bucket: bucket.bucket, Key: 'media/ab/abcdef', Body: 'someone else' }),
      );
    } finally {
      client.destroy();
    }
    const run = await migrate(source, ['--to-database', db.url, '--to-storage', 's3'], s3Env(bucket));
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/the target bucket already holds files \(e\.g\. media\/ab\/abcdef\)/);
    expect(await objectKeys(bucket)).toEqual(['media/ab/abcdef']);
    expect((await rowCounts(db.url)).media).toBe(0);
  }, 90_000);

  test('S3 to S3 is refused: the bucket is copied with the provider’s tools', async () => {
    const dir = tempDir('stowage-migrate-s3-');
    const db = await newDatabase();
    const bucket = await newBucket();
    const run = await migrate({ dir }, ['--to-database', db.url, '--to-storage', 's3'], {
      STOWAGE_STORAGE: 's3',
      ...s3Env(bucket),
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/already on S3/);
  });
});
