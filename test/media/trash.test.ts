/**
 * The trash (STOWAGE_TRASH_DAYS above 0), over HTTP, on SQLite and PostgreSQL: a deleted item
 * leaves every read path but keeps its bytes and its quota until it is restored (byte-exact) or
 * purged by the sweeper. Time moves on a ManualClock, never by sleeping.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ManualClock } from '../helpers/clock.ts';
import { until } from '../helpers/common.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import {
  expectError,
  pdf,
  png,
  sha256,
  startMediaApp,
  type MediaApp,
  type MediaItem,
} from './media-helpers.ts';

const DAY = 86_400_000;
const DATABASES = [
  ['sqlite', true],
  ['postgres', pgAvailable()],
] as const;

/** The sweeper's periodic pass never fires by itself; tests call sweep() with the clock moved. */
const noTimer = () => ({ stop: () => undefined });

interface Trashed extends MediaItem {
  deletedAt: string;
}

const blobFile = (app: MediaApp, id: string) => path.join(app.dir, 'blobs', 'media', id.slice(0, 2), id);
const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

describe.each(DATABASES)('the trash on %s', (kind, available) => {
  const clock = new ManualClock(Date.now());
  let app: MediaApp;
  let database: TestDatabase | undefined;

  beforeAll(async () => {
    if (!available) return;
    const env: Record<string, string> = { STOWAGE_TRASH_DAYS: '7', STOWAGE_QUOTA_BYTES: String(64 * 1024) };
    if (kind === 'postgres') {
      database = await createTestDatabase();
      env.STOWAGE_DATABASE_URL = database.url;
    }
    app = await startMediaApp(env, { clock, sweepScheduler: noTimer });
    await app.services.sweeper.idle();
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  const trashList = async (as: 'alice' | 'bob' | 'root' = 'alice', query = '') => {
    const res = await app.api('GET', `/api/media/trash${query}`, { as });
    expect(res.status).toBe(200);
    return res.json<{ items: Trashed[]; nextCursor: string | null }>();
  };
  const usage = async (as: 'alice' | 'bob' = 'alice') =>
    (await app.api('GET', '/api/users/me', { as })).json<{ usage: { files: number; bytes: number } }>().usage;

  test.skipIf(!available)('delete → trash → restore gives the item back as it was, byte-exact', async () => {
    const data = pdf(2000, 'keep me');
    const item = await app.uploadFile(data, 'kept.pdf', 'alice', { tags: 'a,b' });
    clock.advance(1000);
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);

    const trash = await trashList();
    const entry = trash.items.find((t) => t.id === item.id);
    expect(entry).toEqual({ ...item, deletedAt: new Date(clock.now()).toISOString() });
    expect(await exists(blobFile(app, item.id))).toBe(true);

    const restored = await app.api('POST', `/api/media/${item.id}/restore`);
    expect(restored.status).toBe(200);
    expect(restored.json()).toEqual(item);
    expect((await trashList()).items.map((t) => t.id)).not.toContain(item.id);

    const content = await app.api('GET', `/api/media/${item.id}/content`);
    expect(content.status).toBe(200);
    expect(sha256(content.rawPayload)).toBe(sha256(data));
    expect(content.rawPayload.equals(data)).toBe(true);
    expect((await app.api('GET', `/api/media/${item.id}`)).json()).toEqual(item);
    const list = (await app.api('GET', '/api/media/list')).json<{ items: MediaItem[] }>();
    expect(list.items.map((i) => i.id)).toContain(item.id);
  });

  test.skipIf(!available)(
    'a trashed item is absent from every read path: item, list, lookup, content, thumbnail, links, PATCH',
    async () => {
      const image = await png(40, 30);
      const item = await app.uploadFile(image, 'gone.png', 'alice', { visibility: 'public' });
      const linkRes = await app.api('POST', `/api/media/${item.id}/links`, { body: { expiresIn: 600 } });
      expect(linkRes.status).toBe(201);
      const { url } = linkRes.json<{ url: string }>();
      const token = new URL(url, 'http://x').searchParams.get('token')!;
      // Looked up (and cached) on every path before it goes to the trash.
      expect((await app.api('GET', url, { as: null })).status).toBe(200);
      expect((await app.api('GET', `/api/media/${item.id}/thumbnail`, { as: null })).status).toBe(200);
      expect((await app.api('GET', `/api/media/${item.id}`)).status).toBe(200);

      expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);

      for (const [method, where] of [
        ['GET', `/api/media/${item.id}`],
        ['GET', `/api/media/${item.id}/content`],
        ['HEAD', `/api/media/${item.id}/content`],
        ['GET', `/api/media/${item.id}/thumbnail`],
        ['GET', `/api/media/${item.id}/links`],
        ['POST', `/api/media/${item.id}/links`],
        ['DELETE', `/api/media/${item.id}`],
      ] as const) {
        const res = await app.api(method, where);
        expect(res.status, `${method} ${where}`).toBe(404);
        if (method !== 'HEAD') expectError(res, 404, 'NOT_FOUND');
      }
      expectError(
        await app.api('PATCH', `/api/media/${item.id}`, { body: { filename: 'x.png' } }),
        404,
        'NOT_FOUND',
      );
      // It was public: anonymous readers no longer find it either.
      expect((await app.api('GET', `/api/media/${item.id}/content`, { as: null })).status).toBe(401);
      // Its link ended with the trashing, on content and thumbnail alike.
      expect((await app.api('GET', url, { as: null })).status).toBe(401);
      expect(
        (
          await app.api('GET', `/api/media/${item.id}/thumbnail?token=${encodeURIComponent(token)}`, {
            as: null,
          })
        ).status,
      ).toBe(401);
      const list = (await app.api('GET', '/api/media/list?limit=100')).json<{ items: MediaItem[] }>();
      expect(list.items.map((i) => i.id)).not.toContain(item.id);
      const lookup = await app.api('POST', '/api/media/lookup', { body: { sha256: [item.sha256] } });
      expect(lookup.json()).toEqual({ found: {} });
      // Admins do not see it in the owner's list either.
      const asAdmin = await app.api('GET', '/api/media/list?owner=alice&limit=100', { as: 'root' });
      expect(asAdmin.json<{ items: MediaItem[] }>().items.map((i) => i.id)).not.toContain(item.id);

      // Restored, the item is back, but its link stays ended (the contract: "links excepted").
      expect((await app.api('POST', `/api/media/${item.id}/restore`)).status).toBe(200);
      expect((await app.api('GET', url, { as: null })).status).toBe(401);
      expect((await app.api('GET', `/api/media/${item.id}/links`)).json()).toEqual({ items: [] });
      expect((await app.api('GET', `/api/media/${item.id}/thumbnail`, { as: null })).status).toBe(200);
      expect(
        (await app.api('POST', '/api/media/lookup', { body: { sha256: [item.sha256] } })).json(),
      ).toEqual({
        found: { [item.sha256]: item.id },
      });
      expect((await app.api('DELETE', `/api/media/${item.id}?permanent=true`)).status).toBe(204);
    },
  );

  test.skipIf(!available)('trashed bytes keep counting toward usage and the quota', async () => {
    const before = await usage('bob');
    const big = pdf(40 * 1024, 'big');
    const item = await app.uploadFile(big, 'big.pdf', 'bob');
    expect((await app.api('DELETE', `/api/media/${item.id}`, { as: 'bob' })).status).toBe(204);
    expect(await usage('bob')).toEqual({ files: before.files + 1, bytes: before.bytes + item.size });
    // 40 KiB in the trash + 40 KiB more would pass the 64 KiB quota.
    expectError(
      await app.upload([{ name: 'file', filename: 'more.pdf', data: pdf(40 * 1024, 'more') }], 'bob'),
      413,
      'QUOTA_EXCEEDED',
    );
    // Deleted for good, the bytes are given back.
    expect((await app.api('DELETE', `/api/media/${item.id}?permanent=true`, { as: 'bob' })).status).toBe(204);
    expect(await usage('bob')).toEqual(before);
    const again = await app.upload(
      [{ name: 'file', filename: 'more.pdf', data: pdf(40 * 1024, 'more') }],
      'bob',
    );
    expect(again.status).toBe(201);
    expect(
      (await app.api('DELETE', `/api/media/${again.json<MediaItem>().id}?permanent=true`, { as: 'bob' }))
        .status,
    ).toBe(204);
  });

  test.skipIf(!available)('permanent=true removes at once, in the trash or not', async () => {
    const live = await app.uploadFile(pdf(10, 'live'), 'live.pdf');
    const trashed = await app.uploadFile(pdf(10, 'trashed'), 'trashed.pdf');
    expect((await app.api('DELETE', `/api/media/${trashed.id}`)).status).toBe(204);
    for (const item of [live, trashed]) {
      expect((await app.api('DELETE', `/api/media/${item.id}?permanent=true`)).status).toBe(204);
      expect(await exists(blobFile(app, item.id))).toBe(false);
      expectError(await app.api('POST', `/api/media/${item.id}/restore`), 404, 'NOT_FOUND');
      expectError(await app.api('GET', `/api/media/${item.id}`), 404, 'NOT_FOUND');
    }
    expect((await trashList()).items.map((t) => t.id)).not.toEqual(expect.arrayContaining([live.id]));
    expect((await trashList()).items.map((t) => t.id)).not.toContain(trashed.id);
    expectError(await app.api('DELETE', `/api/media/${live.id}?permanent=maybe`), 400, 'VALIDATION_FAILED');
  });

  test.skipIf(!available)("only the owner's trash: others get 404, admins may restore", async () => {
    const item = await app.uploadFile(pdf(10, 'mine'), 'mine.pdf');
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect((await trashList('bob')).items.map((t) => t.id)).not.toContain(item.id);
    expect((await trashList('root')).items.map((t) => t.id)).not.toContain(item.id);
    expectError(await app.api('POST', `/api/media/${item.id}/restore`, { as: 'bob' }), 404, 'NOT_FOUND');
    expectError(
      await app.api('DELETE', `/api/media/${item.id}?permanent=true`, { as: 'bob' }),
      404,
      'NOT_FOUND',
    );
    expectError(await app.api('POST', `/api/media/${item.id}/restore`, { as: null }), 401, 'UNAUTHENTICATED');
    // A live item is not in the trash.
    const live = await app.uploadFile(pdf(10, 'live2'), 'live2.pdf');
    expectError(await app.api('POST', `/api/media/${live.id}/restore`), 404, 'NOT_FOUND');
    expect((await app.api('POST', `/api/media/${item.id}/restore`, { as: 'root' })).status).toBe(200);
    for (const id of [item.id, live.id])
      expect((await app.api('DELETE', `/api/media/${id}?permanent=true`)).status).toBe(204);
  });

  test.skipIf(!available)('the trash pages newest deletion first, each item exactly once', async () => {
    const items: MediaItem[] = [];
    for (let i = 0; i < 5; i++) items.push(await app.uploadFile(pdf(10, `page ${i}`), `p${i}.pdf`, 'bob'));
    // Two deletions at the same instant: ties are ordered by id, still exactly once.
    for (const [i, item] of items.entries()) {
      if (i !== 3) clock.advance(1000);
      expect((await app.api('DELETE', `/api/media/${item.id}`, { as: 'bob' })).status).toBe(204);
    }
    const seen: Trashed[] = [];
    let cursor: string | null = null;
    do {
      const page = await trashList('bob', `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.map((t) => t.id).sort()).toEqual(items.map((i) => i.id).sort());
    const times = seen.map((t) => Date.parse(t.deletedAt));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(seen[0]!.id).toBe(items[4]!.id);
    expectError(
      await app.api('GET', '/api/media/trash?cursor=garbage', { as: 'bob' }),
      400,
      'VALIDATION_FAILED',
    );
    const listCursor = (await app.api('GET', '/api/media/list?limit=1', { as: 'alice' })).json<{
      nextCursor: string | null;
    }>().nextCursor;
    if (listCursor) {
      expectError(
        await app.api('GET', `/api/media/trash?cursor=${encodeURIComponent(listCursor)}`),
        400,
        'VALIDATION_FAILED',
      );
    }
    for (const item of items)
      expect((await app.api('DELETE', `/api/media/${item.id}?permanent=true`, { as: 'bob' })).status).toBe(
        204,
      );
  });

  test.skipIf(!available)(
    'the sweeper purges what was trashed more than STOWAGE_TRASH_DAYS ago: blob, row and usage',
    async () => {
      const before = await usage();
      const old = await app.uploadFile(pdf(100, 'old'), 'old.pdf');
      const restored = await app.uploadFile(pdf(100, 'restored'), 'restored.pdf');
      expect((await app.api('DELETE', `/api/media/${old.id}`)).status).toBe(204);
      expect((await app.api('DELETE', `/api/media/${restored.id}`)).status).toBe(204);
      clock.advance(3 * DAY);
      const recent = await app.uploadFile(pdf(100, 'recent'), 'recent.pdf');
      expect((await app.api('DELETE', `/api/media/${recent.id}`)).status).toBe(204);
      clock.advance(4 * DAY - 1);
      await app.services.sweeper.sweep();
      expect((await trashList()).items.map((t) => t.id)).toEqual(
        expect.arrayContaining([old.id, restored.id, recent.id]),
      );
      expect((await app.api('POST', `/api/media/${restored.id}/restore`)).status).toBe(200);

      clock.advance(2);
      const outcome = await app.services.sweeper.sweep();
      expect(outcome.trash).toBe(1);
      const ids = (await trashList()).items.map((t) => t.id);
      expect(ids).not.toContain(old.id);
      expect(ids).toContain(recent.id);
      expect(await exists(blobFile(app, old.id))).toBe(false);
      expectError(await app.api('POST', `/api/media/${old.id}/restore`), 404, 'NOT_FOUND');
      expect((await app.api('GET', `/api/media/${restored.id}/content`)).status).toBe(200);
      expect(await usage()).toEqual({
        files: before.files + 2,
        bytes: before.bytes + restored.size + recent.size,
      });

      clock.advance(3 * DAY);
      expect((await app.services.sweeper.sweep()).trash).toBe(1);
      expect(await exists(blobFile(app, recent.id))).toBe(false);
      expect(await usage()).toEqual({ files: before.files + 1, bytes: before.bytes + restored.size });
      expect((await app.api('DELETE', `/api/media/${restored.id}?permanent=true`)).status).toBe(204);
    },
  );
});

describe('with the trash off (the default)', () => {
  let app: MediaApp;
  beforeAll(async () => {
    app = await startMediaApp({}, { sweepScheduler: noTimer });
  });
  afterAll(() => app?.close());

  test('DELETE removes at once, and there is nothing to restore', async () => {
    const item = await app.uploadFile(pdf(10, 'at once'), 'at-once.pdf');
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect(await exists(blobFile(app, item.id))).toBe(false);
    expect((await app.api('GET', '/api/media/trash')).json()).toEqual({ items: [], nextCursor: null });
    expectError(await app.api('POST', `/api/media/${item.id}/restore`), 404, 'NOT_FOUND');
    expect((await app.api('GET', '/api/users/me')).json<{ usage: unknown }>().usage).toEqual({
      files: 0,
      bytes: 0,
    });
  });
});

/**
 * Two instances on one database: an item trashed (or restored) through A is refused (or served)
 * by B within 1 s, although B had it in its access cache. Each instance keeps files on its own
 * disk here, so the item is uploaded through B; trashing and restoring touch no file.
 */
const WITHIN_MS = 1500; // the 1 s bound plus room for the polling requests themselves
const setups = [
  { name: 'PostgreSQL and Redis', redis: true, canRun: pgAvailable() && redisAvailable() },
  { name: 'one SQLite file, no Redis', redis: false, canRun: true },
];
for (const setup of setups) {
  describe.skipIf(!setup.canRun)(`the trash across instances: ${setup.name}`, () => {
    const DB = REDIS_DB.trashInstances;
    let tmp: string;
    let database: TestDatabase | undefined;
    let a: MediaApp;
    let b: MediaApp;

    beforeAll(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-trash-'));
      const env: Record<string, string> = {
        STOWAGE_TRASH_DAYS: '7',
        STOWAGE_JWT_KEY_FILE: path.join(tmp, 'keys', 'jwt-ed25519.pem'),
        STOWAGE_LINK_KEY_FILE: path.join(tmp, 'keys', 'link-hmac.key'),
      };
      if (setup.redis) {
        database = await createTestDatabase();
        env.STOWAGE_DATABASE_URL = database.url;
        env.STOWAGE_REDIS_URL = redisUrlFor(DB);
        await flushRedisDb(DB);
      } else {
        env.STOWAGE_DATABASE_URL = `sqlite:${path.join(tmp, 'stowage.db')}`;
      }
      a = await startMediaApp(env, { sweepScheduler: noTimer });
      b = await startMediaApp(env, { sweepScheduler: noTimer });
    }, 60_000);
    afterAll(async () => {
      await b?.close();
      await a?.close();
      await database?.drop();
      if (setup.redis) await flushRedisDb(DB).catch(() => undefined);
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    test('B stops serving a trashed item within 1 s, and serves it again once restored', async () => {
      const data = pdf(500, 'two instances');
      const item = await b.uploadFile(data, 'shared.pdf', 'alice', { visibility: 'public' });
      const onB = async (as: 'alice' | null) =>
        (await b.api('GET', `/api/media/${item.id}/content`, { as })).status;
      expect(await onB('alice')).toBe(200);
      expect(await onB(null)).toBe(200);
      expect((await a.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
      await until(
        async () => (await onB('alice')) === 404 && (await onB(null)) === 401,
        WITHIN_MS,
        'B refusing the trashed item',
      );
      expect((await a.api('POST', `/api/media/${item.id}/restore`)).status).toBe(200);
      await until(async () => (await onB(null)) === 200, WITHIN_MS, 'B serving the restored item');
      const content = await b.api('GET', `/api/media/${item.id}/content`);
      expect(content.rawPayload.equals(data)).toBe(true);
    });
  });
}
