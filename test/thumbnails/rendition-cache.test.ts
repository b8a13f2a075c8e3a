import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ImageProcessor } from '../../src/images/image-processor.ts';
import { mediaImageSource } from '../../src/media/image-source.ts';
import { Thumbnails } from '../../src/media/thumbnails.ts';
import { ManualClock } from '../helpers/clock.ts';
import { FIXTURES } from '../helpers/common.ts';
import { createTestDatabase, pgAvailable } from '../helpers/postgres.ts';
import { fixture, imageBytes, startThumbApp, type MediaItem, type ThumbApp } from './thumb-helpers.ts';

/**
 * Thumbnails and renditions share one cache held under STOWAGE_RENDITION_CACHE_BYTES on disk, the
 * least recently used going first, while every request keeps being answered. Over HTTP, on SQLite
 * and on PostgreSQL (the index of the cache is a table).
 */
const MINUTE = 60_000;
const QUERY = 'w=120&format=jpeg';

function cacheSuite(
  dialect: string,
  target: () => Promise<{ env: Record<string, string>; drop(): Promise<void> }>,
) {
  describe(`the rendition cache budget (${dialect})`, () => {
    let app: ThumbApp;
    let drop: () => Promise<void> = () => Promise.resolve();
    const clock = new ManualClock();
    /** The size of one QUERY rendition of DSCN0025.jpg, as the same processor renders it. */
    let unit: number;
    let budget: number;

    beforeAll(async () => {
      const rendered = await new ImageProcessor().render(path.join(FIXTURES, 'DSCN0025.jpg'), 'image/jpeg', {
        width: 120,
        height: undefined,
        fit: 'inside',
        format: 'jpeg',
        quality: 80,
      });
      unit = rendered.length;
      // Room for three renditions of that size and half of a fourth.
      budget = 3 * unit + Math.floor(unit / 2);
      const database = await target();
      drop = () => database.drop();
      app = await startThumbApp(
        { ...database.env, STOWAGE_RENDITION_CACHE_BYTES: String(budget) },
        { clock },
      );
    });
    afterAll(async () => {
      await app?.close();
      await drop();
    });

    /** Every stored thumbnail and rendition: key → bytes. */
    async function onDisk(): Promise<Map<string, number>> {
      const dir = path.join(app.dir, 'blobs', 'thumbs');
      const files = new Map<string, number>();
      const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        files.set(path.relative(dir, file), (await fs.stat(file)).size);
      }
      return files;
    }

    async function expectWithinBudget(): Promise<void> {
      const files = await onDisk();
      const total = [...files.values()].reduce((a, b) => a + b, 0);
      expect(total).toBeLessThanOrEqual(budget);
      // The index counts exactly what is on disk.
      expect(await app.services.renditionCache.totalBytes()).toBe(total);
    }

    async function clear(): Promise<void> {
      for (const item of await app.mediaList()) await app.request('DELETE', `/api/media/${item.id}`);
      await app.services.renditionCache.reconcile();
      expect(await onDisk()).toEqual(new Map());
    }

    const render = (item: MediaItem, query = QUERY) =>
      app.request('GET', `/api/media/${item.id}/render?${query}`);

    test('the least recently used rendition is the one evicted, and comes back when asked for', async () => {
      await clear();
      const photo = await fixture('DSCN0025.jpg');
      const [a, b, c, d] = await Promise.all(
        ['a', 'b', 'c', 'd'].map((n) => app.uploadFile(photo, `${n}.jpg`)),
      );
      const stored = async () =>
        [a!, b!, c!, d!].filter((item) => [...files.keys()].some((key) => key.startsWith(`${item.id}/`)));
      let files = await onDisk();
      for (const item of [a!, b!, c!]) {
        expect((await imageBytes(await render(item), 'image/jpeg')).length).toBe(unit);
        clock.advance(2 * MINUTE);
      }
      // a is used again (from memory: its last use is still written), so b is now the oldest.
      await imageBytes(await render(a!), 'image/jpeg');
      clock.advance(2 * MINUTE);
      await imageBytes(await render(d!), 'image/jpeg');
      files = await onDisk();
      expect((await stored()).map((item) => item.filename)).toEqual(['a.jpg', 'c.jpg', 'd.jpg']);
      await expectWithinBudget();
      clock.advance(2 * MINUTE);
      // b is rendered again, and c (last used before a and d) makes room for it.
      await imageBytes(await render(b!), 'image/jpeg');
      files = await onDisk();
      expect((await stored()).map((item) => item.filename)).toEqual(['a.jpg', 'b.jpg', 'd.jpg']);
      await expectWithinBudget();
    });

    test('many distinct thumbnails and renditions: every request succeeds, the disk stays within budget', async () => {
      await clear();
      const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'many.jpg');
      for (let i = 0; i < 24; i++) {
        clock.advance(MINUTE);
        const res =
          i % 6 === 5
            ? await app.thumbnail(item.id, { query: `size=${[256, 512][i % 2]}` })
            : await render(
                item,
                `w=${100 + i * 4}&fit=${['inside', 'contain', 'cover'][i % 3]}&format=jpeg&h=90`,
              );
        await imageBytes(res, res.headers.get('content-type') ?? '');
        await expectWithinBudget();
      }
      // The same renditions asked for again, evicted or not: still answered, still within budget.
      for (let i = 0; i < 24; i += 5) {
        await imageBytes(
          await render(
            item,
            `w=${100 + i * 4}&fit=${['inside', 'contain', 'cover'][i % 3]}&format=jpeg&h=90`,
          ),
          'image/jpeg',
        );
        await expectWithinBudget();
      }
    });

    test('a rendition larger than the whole budget is served but not stored', async () => {
      const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'large.jpg');
      const data = await imageBytes(await render(item, 'w=1200&h=1200&fit=cover&format=png'), 'image/png');
      expect(data.length).toBeGreaterThan(budget);
      expect(await app.storedThumbnails(item.id)).toEqual([]);
      await expectWithinBudget();
    });

    test('a thumbnail stored before the index existed is counted when next served', async () => {
      await clear();
      const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'old.jpg');
      const { storage, images } = app.services;
      // As an older version left it: the file, and no row.
      const old = await images.thumbnail(path.join(FIXTURES, 'DSCN0025.jpg'), 'image/jpeg', 256, 'webp');
      const writer = storage.createWriter(`thumbs/${item.id}/256.webp`);
      await pipeline(async function* () {
        yield old;
      }, writer.stream);
      await writer.commit();
      expect(await app.services.renditionCache.totalBytes()).toBe(0);
      const served = await imageBytes(await app.thumbnail(item.id));
      expect(served.equals(old)).toBe(true);
      expect(await app.services.renditionCache.totalBytes()).toBe(old.length);
      await expectWithinBudget();
    });

    test('a rendition evicted between finding it and reading it is rendered again, never an error', async () => {
      await clear();
      const { storage, images, renditionCache, media } = app.services;
      // Nothing kept in memory, so the second request goes to storage.
      const thumbnails = new Thumbnails({
        storage,
        images,
        source: mediaImageSource(storage, path.join(app.dir, 'tmp'), null),
        cache: renditionCache,
        memoryBudgetBytes: 1,
      });
      const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'race.jpg');
      const record = (await media.find(item.id))!;
      const spec = { width: 120, height: undefined, fit: 'inside', format: 'jpeg', quality: 80 } as const;
      const first = await thumbnails.render(record, spec);
      expect(await onDisk()).toEqual(new Map([[`${item.id}/r-120x0-inside-q80.jpeg`, unit]]));
      // Another request's eviction lands between this one's stat and its read.
      const read = storage.read.bind(storage);
      storage.read = async (...args: Parameters<typeof read>) => {
        delete (storage as { read?: unknown }).read;
        await renditionCache.makeRoom(budget);
        expect(await onDisk()).toEqual(new Map());
        return read(...args);
      };
      const second = await thumbnails.render(record, spec);
      expect(second.bytes?.equals(first.bytes!)).toBe(true);
      expect(await onDisk()).toEqual(new Map([[`${item.id}/r-120x0-inside-q80.jpeg`, unit]]));
      await expectWithinBudget();
    });

    test("the sweeper drops the rows of items that are gone (a delete's rows and blobs are removed with it)", async () => {
      const { db } = app.services.database;
      await db
        .insertInto('renditions')
        .values({ key: 'thumbs/gone/256.webp', media_id: 'gone', bytes: 10, last_used_at: clock.now() })
        .execute();
      const outcome = await app.services.sweeper.sweep();
      expect(outcome['rendition cache']).toBe(1);
      expect(
        await db.selectFrom('renditions').select('key').where('media_id', '=', 'gone').execute(),
      ).toEqual([]);
      await expectWithinBudget();
    });
  });
}

cacheSuite('SQLite', () => Promise.resolve({ env: {}, drop: () => Promise.resolve() }));

describe.skipIf(!pgAvailable())('on PostgreSQL', () => {
  cacheSuite('PostgreSQL', async () => {
    const database = await createTestDatabase();
    return { env: { STOWAGE_DATABASE_URL: database.url }, drop: () => database.drop() };
  });
});
