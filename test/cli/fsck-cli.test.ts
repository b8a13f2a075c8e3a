import fs from 'node:fs/promises';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, test } from 'vitest';
import { originalKey, renditionKey } from '../../src/storage/key-layout.ts';
import { newId } from '../../src/util/ids.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { createTestBucket, s3Available, s3Client, type TestBucket } from '../helpers/s3.ts';
import { distinctPdf, login, newDataDir, problemLines, startServer, stowage, upload } from './ops-helpers.ts';

/**
 * `stowage fsck` finds each kind of damage it claims to, on local disk and on S3, with SQLite and
 * with PostgreSQL: the real server stores the items, the test damages the storage behind its back,
 * the real CLI reports.
 */

/** The storage as the test reaches it directly, to damage it. */
interface RawStorage {
  read(key: string): Promise<Buffer>;
  write(key: string, data: Buffer): Promise<void>;
  remove(key: string): Promise<void>;
  has(key: string): Promise<boolean>;
}

function localStorage(blobs: string): RawStorage {
  const file = (key: string) => path.join(blobs, ...key.split('/'));
  return {
    read: (key) => fs.readFile(file(key)),
    async write(key, data) {
      await fs.mkdir(path.dirname(file(key)), { recursive: true });
      await fs.rm(file(key), { force: true });
      await fs.writeFile(file(key), data);
    },
    remove: (key) => fs.rm(file(key)),
    has: (key) =>
      fs.access(file(key)).then(
        () => true,
        () => false,
      ),
  };
}

function bucketStorage(bucket: TestBucket): RawStorage {
  const client = s3Client(bucket);
  const Bucket = bucket.bucket;
  afterAll(() => client.destroy());
  return {
    async read(key) {
      const res = await client.send(new GetObjectCommand({ Bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    },
    write: async (key, data) =>
      void (await client.send(new PutObjectCommand({ Bucket, Key: key, Body: data }))),
    remove: async (key) => void (await client.send(new DeleteObjectCommand({ Bucket, Key: key }))),
    has: (key) =>
      client.send(new GetObjectCommand({ Bucket, Key: key })).then(
        () => true,
        () => false,
      ),
  };
}

interface Setup {
  env: Record<string, string>;
  storage: RawStorage;
  /** Keys beside ours that belong to someone else (tus's objects in a bucket): never reported. */
  notOurs: string[];
  cleanup: () => Promise<void>;
}

const setups: { name: string; available: () => boolean; make: (dataDir: string) => Promise<Setup> }[] = [
  {
    name: 'SQLite and local disk',
    available: () => true,
    make: async (dataDir) => ({
      env: {},
      storage: localStorage(path.join(dataDir, 'blobs')),
      notOurs: [],
      cleanup: async () => undefined,
    }),
  },
  {
    name: 'PostgreSQL and local disk',
    available: pgAvailable,
    make: async (dataDir) => {
      const database: TestDatabase = await createTestDatabase();
      return {
        env: { STOWAGE_DATABASE_URL: database.url },
        storage: localStorage(path.join(dataDir, 'blobs')),
        notOurs: [],
        cleanup: () => database.drop(),
      };
    },
  },
  {
    name: 'SQLite and S3',
    available: s3Available,
    make: async () => {
      const bucket = await createTestBucket();
      return {
        env: {
          STOWAGE_STORAGE: 's3',
          STOWAGE_S3_ENDPOINT: bucket.endpoint,
          STOWAGE_S3_BUCKET: bucket.bucket,
          STOWAGE_S3_REGION: bucket.region,
          STOWAGE_S3_ACCESS_KEY_ID: bucket.accessKeyId,
          STOWAGE_S3_SECRET_ACCESS_KEY: bucket.secretAccessKey,
          STOWAGE_S3_FORCE_PATH_STYLE: 'true',
        },
        storage: bucketStorage(bucket),
        notOurs: [`${newId()}.info`, `${newId()}.part`],
        cleanup: () => bucket.drop(),
      };
    },
  },
];

for (const setup of setups) {
  describe.runIf(setup.available())(`fsck on ${setup.name}`, () => {
    test(
      'finds each kind of damage; --repair removes stray files and never an item',
      { timeout: 90_000 },
      async () => {
        const { project, dataDir } = await newDataDir();
        const { env: extra, storage, notOurs, cleanup } = await setup.make(dataDir);
        const env = { STOWAGE_DATA_DIR: dataDir, ...extra };
        try {
          const server = await startServer(project, env);
          const ids: string[] = [];
          try {
            const token = await login(server.base);
            for (let i = 0; i < 4; i++) ids.push(await upload(server.base, token, distinctPdf()));
          } finally {
            await server.kill('SIGTERM');
          }
          const [gone, truncated, flipped, kept] = ids as [string, string, string, string];
          const fsck = (...args: string[]) => stowage(['fsck', '--min-age', '0', ...args], project, env);

          // Undamaged, with a rendition of an existing item: clean.
          await storage.write(renditionKey(kept, '256.webp'), Buffer.from('a rendition'));
          const clean = await fsck('--verify');
          expect(clean.stdout).toBe('');
          expect(clean.stderr).toContain('4 items');
          expect(clean.code).toBe(0);

          await storage.remove(originalKey(gone));
          const whole = await storage.read(originalKey(truncated));
          await storage.write(originalKey(truncated), whole.subarray(0, whole.length - 7));
          const bytes = await storage.read(originalKey(flipped));
          bytes[20] = bytes[20]! ^ 0x01;
          await storage.write(originalKey(flipped), bytes);
          const strayId = newId();
          const strays = [
            originalKey(strayId),
            renditionKey(newId(), '512.webp'),
            `media/${kept.slice(0, 2)}/x/y`,
          ];
          for (const key of strays) await storage.write(key, Buffer.from('stray'));
          for (const key of notOurs) await storage.write(key, Buffer.from('an unfinished upload'));

          const damage = [
            `missing-file ${originalKey(gone)} item=${gone}`,
            `size-mismatch ${originalKey(truncated)} item=${truncated} expected=${whole.length} found=${whole.length - 7}`,
            ...strays.map((key) => `stray-file ${key}`),
          ];
          const found = await fsck();
          expect(problemLines(found.stdout)).toEqual([...damage].sort());
          expect(found.code).toBe(1);

          // --verify reads every file: the flipped byte shows.
          const verified = await fsck('--verify');
          expect(problemLines(verified.stdout)).toEqual(
            [...damage, `sha256-mismatch ${originalKey(flipped)} item=${flipped}`].sort(),
          );
          expect(verified.code).toBe(1);

          const repaired = await fsck('--repair');
          expect(problemLines(repaired.stdout)).toEqual(
            [...damage.slice(0, 2), ...strays.map((key) => `stray-file ${key} removed`)].sort(),
          );
          expect(repaired.code).toBe(1);
          for (const key of strays) expect(await storage.has(key)).toBe(false);
          for (const key of notOurs) expect(await storage.has(key)).toBe(true);
          // The items stay, the missing one included (it is reported again), and so does the rendition.
          expect(await storage.has(renditionKey(kept, '256.webp'))).toBe(true);
          const after = await fsck();
          expect(problemLines(after.stdout)).toEqual([...damage.slice(0, 2)].sort());
          expect(after.stderr).toContain('4 items');
          expect(after.code).toBe(1);
        } finally {
          await cleanup();
        }
      },
    );
  });
}

describe.runIf(s3Available())('fsck on a large bucket', () => {
  test('reads the listing page by page and looks ids up in batches', { timeout: 120_000 }, async () => {
    const { project, dataDir } = await newDataDir();
    const setup = await setups[2]!.make(dataDir);
    try {
      // More than one listing page (1000 keys) and more than one batch of ids (500).
      const keys = Array.from({ length: 1100 }, () => renditionKey(newId(), '256.webp'));
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((key) => setup.storage.write(key, Buffer.from('x'))));
      }
      const env = { STOWAGE_DATA_DIR: dataDir, ...setup.env };
      // The database a server creates at its start (and no items).
      await (await startServer(project, env)).kill('SIGTERM');
      const result = await stowage(['fsck', '--min-age', '0'], project, env);
      expect(result.stderr).toContain('0 items and 1100 files checked');
      expect(problemLines(result.stdout)).toEqual(keys.map((key) => `stray-file ${key}`).sort());
      expect(result.code).toBe(1);
    } finally {
      await setup.cleanup();
    }
  });
});

describe('fsck on a running server', () => {
  test(
    'leaves out files younger than --min-age (an upload stores its file just before its row)',
    { timeout: 60_000 },
    async () => {
      const { project, dataDir } = await newDataDir();
      const env = { STOWAGE_DATA_DIR: dataDir };
      const storage = localStorage(path.join(dataDir, 'blobs'));
      const server = await startServer(project, env);
      try {
        const token = await login(server.base);
        await upload(server.base, token, distinctPdf());
        const young = originalKey(newId());
        await storage.write(young, Buffer.from('being stored'));
        const old = originalKey(newId());
        await storage.write(old, Buffer.from('left behind'));
        const longAgo = new Date(Date.now() - 2 * 3600_000);
        await fs.utimes(path.join(dataDir, 'blobs', ...old.split('/')), longAgo, longAgo);

        const result = await stowage(['fsck', '--repair'], project, env);
        expect(problemLines(result.stdout)).toEqual([`stray-file ${old} removed`]);
        // The young stray, and the item's own file just stored.
        expect(result.stderr).toContain('2 files younger than --min-age left out');
        expect(await storage.has(young)).toBe(true);
        expect(result.code).toBe(1);
      } finally {
        await server.kill('SIGTERM');
      }
    },
  );

  test('refuses unknown options with exit 2, and a data directory without a database', async () => {
    const { project, dataDir } = await newDataDir();
    const result = await stowage(['fsck', '--fix'], project, { STOWAGE_DATA_DIR: dataDir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--fix');
    // No database yet: said, and none is created.
    const none = await stowage(['fsck'], project, { STOWAGE_DATA_DIR: dataDir });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no database at');
    expect(await fs.readdir(dataDir)).toEqual(['users']);
  });
});
