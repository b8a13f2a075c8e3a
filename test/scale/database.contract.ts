import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseConfig } from '../../src/config.ts';
import { openDatabase, type DatabaseHandle, type Db } from '../../src/db/database.ts';
import { SessionService } from '../../src/auth/sessions.ts';
import {
  MediaRepo,
  SORTS,
  type LinkRecord,
  type MediaRecord,
  type SortKey,
} from '../../src/media/media-repo.ts';
import { migrationProvider } from '../../src/db/migrations.ts';
import { LocalInvalidationBus } from '../../src/util/invalidation-bus.ts';
import { isAppError } from '../../src/errors.ts';
import { until } from './scale-helpers.ts';

/**
 * One contract for the database layer — openDatabase() with its migrations, MediaRepo and
 * SessionService — run against SQLite (sqlite.test.ts) and PostgreSQL (postgres.test.ts): the same
 * Kysely code must behave the same on both. Tests keep apart by owner and user names, so they
 * share one database per run.
 */
export interface DatabaseUnderTest {
  /** A new, empty database. */
  config: DatabaseConfig;
  /** Removes it. */
  cleanup(): Promise<void>;
}

/** Every index the migrations create, by table: the same set on both dialects. */
const EXPECTED_INDEXES = [
  'audit_log_action_at',
  'audit_log_actor_at',
  'audit_log_at',
  'links_expires',
  'links_media',
  'media_created',
  'media_deleted',
  'media_metadata_version',
  'media_owner_created',
  'media_owner_deleted',
  'media_owner_filename',
  'media_owner_kind_created',
  'media_owner_sha256',
  'media_owner_size',
  'media_owner_taken',
  'media_tags_owner_tag',
  'refresh_tokens_session',
  'reservations_expires',
  'sessions_username',
];

export function databaseContract(
  dialect: 'sqlite' | 'postgres',
  fresh: () => Promise<DatabaseUnderTest>,
): void {
  let target: DatabaseUnderTest;
  let handle: DatabaseHandle;
  let repo: MediaRepo;
  const extraHandles: DatabaseHandle[] = [];

  beforeAll(async () => {
    target = await fresh();
    handle = await openDatabase(target.config);
    repo = new MediaRepo(handle.db, handle.dialect);
  });
  afterAll(async () => {
    for (const h of extraHandles) await h.close().catch(() => undefined);
    await handle?.close();
    await target?.cleanup();
  });

  describe(`database contract (${dialect})`, () => {
    describe('migrations', () => {
      it('create every table and index, and reports its dialect', async () => {
        expect(handle.dialect).toBe(dialect);
        for (const table of [
          'sessions',
          'refresh_tokens',
          'media',
          'media_tags',
          'usage',
          'reservations',
          'links',
          'audit_log',
        ] as const) {
          const rows = await handle.db.selectFrom(table).selectAll().limit(1).execute();
          expect(rows).toEqual(expect.any(Array));
        }
        expect(await indexNames(handle.db, dialect)).toEqual(EXPECTED_INDEXES);
        await expect(handle.ping()).resolves.toBeUndefined();
      });

      it('are a no-op when run again, keeping the data', async () => {
        const owner = uniqueName('rerun');
        await repo.insert(record(owner, { filename: 'kept.jpg' }), null);
        const before = await migrationNames(handle.db);
        expect(before).toEqual(Object.keys(await migrationProvider.getMigrations()).sort());
        expect(before.slice(0, 5)).toEqual([
          '0001_sessions',
          '0002_media',
          '0003_reservation_claims',
          '0004_media_sha256_index',
          '0005_links',
        ]);

        const again = await openDatabase(target.config);
        extraHandles.push(again);
        expect(await migrationNames(again.db)).toEqual(before);
        const items = await new MediaRepo(again.db, again.dialect).list({
          owner,
          limit: 10,
          sort: 'filename',
        });
        expect(items.map((i) => i.filename)).toEqual(['kept.jpg']);
        expect(await indexNames(again.db, dialect)).toEqual(EXPECTED_INDEXES);
      });
    });

    describe('media items', () => {
      it('stores an item and reads it back unchanged', async () => {
        const owner = uniqueName('get');
        const item = record(owner, {
          filename: 'Straße – ünïcode.jpg',
          tags: ['beach', 'sommer'],
          width: 4000,
          height: 3000,
          size: 3_000_000_000,
          visibility: 'public',
          takenAt: Date.UTC(2008, 9, 22, 16, 43, 21),
          placeholder: 'HBkSHYSIeHiPiHh8eJd4eTN0EEQG',
          exif: {
            make: 'NIKON',
            model: 'COOLPIX P6000',
            lens: null,
            exposureTime: 0.00813669,
            fNumber: 3.7,
            iso: 64,
            focalLength: 8.1,
            gps: { latitude: 43.468365, longitude: 11.881634999972222, altitude: null },
          },
        });
        await repo.insert(item, null);
        expect(await repo.get(item.id)).toEqual(item);
        const video = record(owner, {
          mimeType: 'video/mp4',
          kind: 'video',
          takenAt: null,
          metadataVersion: 0,
          media: {
            durationMs: 10_023,
            width: 1080,
            height: 1920,
            videoCodec: 'hevc',
            audioCodec: null,
            frameRate: 29.97,
            bitrate: 12_000_000,
          },
        });
        await repo.insert(video, null);
        expect(await repo.get(video.id)).toEqual(video);
        // The backfill's to-do list, and what it writes back.
        const pending = await repo.metadataPending(1, ['video'], '', 100);
        expect(pending.map((r) => r.id)).toContain(video.id);
        expect(pending.every((r) => r.metadataVersion < 1 && r.kind === 'video')).toBe(true);
        const filled = { ...video, takenAt: 1, placeholder: 'AAAA', exif: null, metadataVersion: 1 };
        expect(await repo.setMetadata(video.id, filled)).toBe(true);
        expect(await repo.get(video.id)).toEqual(filled);
        expect((await repo.metadataPending(1, ['video'], '', 100)).map((r) => r.id)).not.toContain(video.id);
        expect(await repo.setMetadata('no-such-id', filled)).toBe(false);
        expect(await repo.get('no-such-id')).toBeUndefined();
        expect(await repo.existing([item.id, 'no-such-id'])).toEqual(new Set([item.id]));
        expect(await repo.usedBytes(owner)).toBe(3_000_000_000 + video.size);
      });

      it('updates fields and tags together', async () => {
        const owner = uniqueName('update');
        const item = record(owner, { tags: ['old'] });
        await repo.insert(item, null);
        const updated = await repo.update(item.id, {
          filename: 'renamed.jpg',
          visibility: 'public',
          tags: ['new'],
        });
        expect(updated).toMatchObject({ filename: 'renamed.jpg', visibility: 'public', tags: ['new'] });
        expect(await repo.get(item.id)).toEqual(updated);
        expect(await ids(repo.list({ owner, limit: 10, sort: 'filename', tag: 'new' })), 'new tag').toEqual([
          item.id,
        ]);
        expect(await ids(repo.list({ owner, limit: 10, sort: 'filename', tag: 'old' })), 'old tag').toEqual(
          [],
        );
        expect(await repo.update('no-such-id', { filename: 'x' })).toBeUndefined();
      });

      it('pages through every sort order with keyset cursors, ties included, each item exactly once', async () => {
        const owner = uniqueName('pages');
        const base = Date.now() - 100_000;
        // Ties in every sort value: sizes repeat, names repeat, three items share one creation time,
        // takenAt repeats and is missing from four items (which come last in both orders).
        const taken = Date.UTC(2008, 4, 30);
        const specs: [string, number, number, number | null][] = [
          ['charlie.jpg', 300, base + 1, taken + 5],
          ['alpha.jpg', 100, base + 2, null],
          ['bravo.jpg', 200, base + 2, taken],
          ['bravo.jpg', 100, base + 2, taken + 5],
          ['delta.jpg', 300, base + 3, null],
          ['alpha.jpg', 200, base + 4, taken - 1000],
          ['echo.jpg', 100, base + 5, null],
          ['bravo.jpg', 300, base + 5, taken + 5],
          ['foxtrot.jpg', 50, base + 6, 0],
          ['alpha.jpg', 300, base + 7, null],
          ['golf.jpg', 200, base + 7, taken],
        ];
        const items = specs.map(([filename, size, createdAt, takenAt]) =>
          record(owner, { filename, size, createdAt, takenAt }),
        );
        for (const item of items) await repo.insert(item, null);
        await repo.insert(record(uniqueName('other')), null); // someone else's item never shows

        for (const sort of Object.keys(SORTS) as SortKey[]) {
          const { column, desc } = SORTS[sort];
          const valueOf = (r: MediaRecord) =>
            column === 'created_at'
              ? r.createdAt
              : column === 'size'
                ? r.size
                : column === 'taken_at'
                  ? r.takenAt
                  : r.filename;
          const whole = await repo.list({ owner, limit: 100, sort });
          expect(whole, sort).toHaveLength(items.length);
          expect(new Set(whole.map((r) => r.id)), sort).toEqual(new Set(items.map((r) => r.id)));
          // Ordered by the sort value in the requested direction, ties by id in the same direction.
          for (let i = 1; i < whole.length; i++) {
            const [a, b] = [valueOf(whole[i - 1]!), valueOf(whole[i]!)];
            const [idA, idB] = [whole[i - 1]!.id, whole[i]!.id];
            if (a === null) {
              expect(b, `${sort}: nothing after the items without a value but more of them`).toBeNull();
              expect(desc ? idA > idB : idA < idB, sort).toBe(true);
            } else if (typeof a === 'number' && b !== null) {
              expect(desc ? a >= (b as number) : a <= (b as number), sort).toBe(true);
              if (a === b) expect(desc ? idA > idB : idA < idB, sort).toBe(true);
            }
          }
          if (column === 'taken_at') {
            expect(
              whole.slice(-4).map((r) => r.takenAt),
              sort,
            ).toEqual([null, null, null, null]);
            expect(whole[0]!.takenAt, sort).toBe(desc ? taken + 5 : 0);
          }
          for (const limit of [1, 2, 3, 4]) {
            const seen: MediaRecord[] = [];
            let after: { value: string | number | null; id: string } | undefined;
            for (let page = 0; page < 20; page++) {
              const rows = await repo.list({ owner, limit, sort, ...(after ? { after } : {}) });
              seen.push(...rows);
              if (rows.length < limit) break;
              const last = rows.at(-1)!;
              after = { value: valueOf(last), id: last.id };
            }
            expect(
              seen.map((r) => r.id),
              `${sort} in pages of ${limit}`,
            ).toEqual(whole.map((r) => r.id));
          }
        }
      });

      it('keeps paging correct while items are added between pages', async () => {
        const owner = uniqueName('growing');
        const first = Array.from({ length: 6 }, (_, i) =>
          record(owner, { filename: `file-${i}.jpg`, createdAt: Date.now() - 10_000 + i }),
        );
        for (const item of first) await repo.insert(item, null);
        const seen: string[] = [];
        let after: { value: number; id: string } | undefined;
        for (let page = 0; page < 10; page++) {
          const rows = await repo.list({ owner, limit: 2, sort: '-createdAt', ...(after ? { after } : {}) });
          seen.push(...rows.map((r) => r.id));
          if (rows.length < 2) break;
          // A newer item arrives while the client pages through.
          await repo.insert(record(owner, { createdAt: Date.now() + page }), null);
          const last = rows.at(-1)!;
          after = { value: last.createdAt, id: last.id };
        }
        const originals = seen.filter((id) => first.some((r) => r.id === id));
        expect(originals).toEqual([...first].reverse().map((r) => r.id));
        expect(new Set(seen).size).toBe(seen.length);
      });

      it('filters by kind, by tag, and by a filename substring, case-insensitively and with % and _ literal', async () => {
        const owner = uniqueName('filters');
        const named = (filename: string, extra: Partial<MediaRecord> = {}) =>
          record(owner, { filename, ...extra });
        const items = {
          percent: named('100%.jpg', { tags: ['beach'] }),
          hundred: named('1000.jpg', { tags: ['beach', 'dog'] }),
          underscore: named('a_b.pdf', { kind: 'document', mimeType: 'application/pdf' }),
          axb: named('axb.pdf', { kind: 'document', mimeType: 'application/pdf', tags: ['Beach'] }),
          holiday: named('Holiday IN Rome.JPG', { tags: ['dog'] }),
          backslash: named('back\\slash.jpg'),
        };
        for (const item of Object.values(items)) await repo.insert(item, null);
        // Another owner's item with the same tag and name is never found.
        await repo.insert(record(uniqueName('other'), { filename: '100%.jpg', tags: ['beach'] }), null);
        const find = async (filter: { tag?: string; q?: string; kind?: 'document' | 'image' }) =>
          new Set(await ids(repo.list({ owner, limit: 100, sort: 'filename', ...filter })));
        const idsOf = (...list: MediaRecord[]) => new Set(list.map((r) => r.id));

        expect(await find({ q: '%' })).toEqual(idsOf(items.percent));
        expect(await find({ q: '_' })).toEqual(idsOf(items.underscore));
        expect(await find({ q: '\\' })).toEqual(idsOf(items.backslash));
        expect(await find({ q: '0%' })).toEqual(idsOf(items.percent));
        expect(await find({ q: 'holiday in' })).toEqual(idsOf(items.holiday));
        expect(await find({ q: 'ROME.jpg' })).toEqual(idsOf(items.holiday));
        expect(await find({ q: '.PDF' })).toEqual(idsOf(items.underscore, items.axb));
        expect(await find({ q: 'nothing-like-this' })).toEqual(new Set());
        expect(await find({ tag: 'beach' })).toEqual(idsOf(items.percent, items.hundred));
        expect(await find({ tag: 'dog' })).toEqual(idsOf(items.hundred, items.holiday));
        expect(await find({ tag: 'dog', q: '1000' })).toEqual(idsOf(items.hundred));
        expect(await find({ kind: 'document' })).toEqual(idsOf(items.underscore, items.axb));
        expect(await find({ kind: 'document', tag: 'Beach' })).toEqual(idsOf(items.axb));
      });

      it('deletes an item with its tags and gives its bytes back', async () => {
        const owner = uniqueName('delete');
        const keep = record(owner, { size: 1000 });
        const gone = record(owner, { size: 2500, tags: ['t'] });
        await repo.insert(keep, 10_000);
        await repo.insert(gone, 10_000);
        expect(await repo.usedBytes(owner)).toBe(3500);
        expect(await usage(handle.db, owner)).toEqual({ bytes: 3500, files: 2 });

        expect(await repo.delete(gone.id)).toEqual(gone);
        expect(await repo.delete(gone.id)).toBeUndefined();
        expect(await repo.get(gone.id)).toBeUndefined();
        expect(await ids(repo.list({ owner, limit: 10, sort: 'size' }))).toEqual([keep.id]);
        expect(await ids(repo.list({ owner, limit: 10, sort: 'size', tag: 't' }))).toEqual([]);
        expect(await usage(handle.db, owner)).toEqual({ bytes: 1000, files: 1 });
        // The room is usable again.
        await repo.insert(record(owner, { size: 9000 }), 10_000);
        expect(await repo.usedBytes(owner)).toBe(10_000);
      });
    });

    describe('signed links', () => {
      const link = (mediaId: string, overrides: Partial<LinkRecord> = {}): LinkRecord => ({
        id: crypto.randomBytes(16).toString('base64url'),
        mediaId,
        createdAt: Date.now(),
        expiresAt: Date.now() + 3_600_000,
        ...overrides,
      });

      it("stores a link, lists an item's live ones newest first, and revokes one of that item only", async () => {
        const owner = uniqueName('links');
        const [item, other] = [record(owner), record(owner)];
        await repo.insert(item, null);
        await repo.insert(other, null);
        const now = Date.now();
        const older = link(item.id, { createdAt: now - 2000 });
        const newer = link(item.id, { createdAt: now - 1000 });
        const expired = link(item.id, { createdAt: now - 5000, expiresAt: now - 1 });
        const elsewhere = link(other.id);
        for (const l of [older, newer, expired, elsewhere]) await repo.insertLink(l);

        expect(await repo.getLink(older.id)).toEqual(older);
        expect(await repo.getLink(expired.id)).toEqual(expired); // the caller checks the time
        expect(await repo.getLink('no-such-link')).toBeUndefined();
        expect(await repo.listLinks(item.id, now)).toEqual([newer, older]);
        expect(await repo.listLinks(other.id, now)).toEqual([elsewhere]);

        // Another item's link is not revoked through this item; an expired one is not live.
        expect(await repo.deleteLink(item.id, elsewhere.id, now)).toBe(false);
        expect(await repo.getLink(elsewhere.id)).toEqual(elsewhere);
        expect(await repo.deleteLink(item.id, expired.id, now)).toBe(false);
        expect(await repo.deleteLink(item.id, older.id, now)).toBe(true);
        expect(await repo.deleteLink(item.id, older.id, now)).toBe(false);
        expect(await repo.getLink(older.id)).toBeUndefined();
        expect(await repo.listLinks(item.id, now)).toEqual([newer]);
      });

      it("deletes an item's links with the item", async () => {
        const owner = uniqueName('links-delete');
        const [item, kept] = [record(owner), record(owner)];
        await repo.insert(item, null);
        await repo.insert(kept, null);
        const [gone, stays] = [link(item.id), link(kept.id)];
        await repo.insertLink(gone);
        await repo.insertLink(stays);
        await repo.delete(item.id);
        expect(await repo.getLink(gone.id)).toBeUndefined();
        expect(await repo.getLink(stays.id)).toEqual(stays);
      });

      it('sweeps links that expired, and only those', async () => {
        const owner = uniqueName('links-sweep');
        const item = record(owner);
        await repo.insert(item, null);
        const now = Date.now();
        const dead = link(item.id, { expiresAt: now - 1000 });
        const endsNow = link(item.id, { expiresAt: now });
        const live = link(item.id, { expiresAt: now + 1000 });
        for (const l of [dead, endsNow, live]) await repo.insertLink(l);
        expect(await repo.deleteExpiredLinks(now)).toBeGreaterThanOrEqual(2);
        expect(await repo.getLink(dead.id)).toBeUndefined();
        expect(await repo.getLink(endsNow.id)).toBeUndefined();
        expect(await repo.getLink(live.id)).toEqual(live);
      });
    });

    describe('lookup by content hash', () => {
      it("finds each digest's newest item of one owner only, over several queries' worth of digests", async () => {
        const [owner, other] = [uniqueName('lookup'), uniqueName('lookup-other')];
        const digest = () => crypto.randomBytes(32).toString('hex');
        const [dup, single, late, othersOnly] = [digest(), digest(), digest(), digest()];
        const t0 = Date.now();
        const older = record(owner, { sha256: dup, createdAt: t0 - 2000 });
        const newer = record(owner, { sha256: dup, createdAt: t0 - 1000 });
        const alone = record(owner, { sha256: single });
        const last = record(owner, { sha256: late });
        for (const item of [newer, older, alone, last]) await repo.insert(item, null);
        // Another user's copies of the same bytes, one of them newer than the owner's.
        await repo.insert(record(other, { sha256: dup, createdAt: t0 }), null);
        await repo.insert(record(other, { sha256: othersOnly }), null);
        // Same creation time: the larger id wins, so the answer is stable.
        const tieA = record(owner, { sha256: digest(), createdAt: t0, id: 'tie-a' });
        const tieB = record(owner, { ...tieA, id: 'tie-b' });
        await repo.insert(tieA, null);
        await repo.insert(tieB, null);

        // 2500 digests (three queries' worth), the known ones spread across them, one repeated.
        const asked = Array.from({ length: 2500 }, digest);
        asked[3] = dup;
        asked[1200] = single;
        asked[2499] = late;
        asked[2000] = othersOnly;
        asked[1500] = tieA.sha256;
        asked[10] = dup;
        const found = await repo.newestBySha256(owner, asked);
        expect(Object.fromEntries(found)).toEqual({
          [dup]: newer.id,
          [single]: alone.id,
          [late]: last.id,
          [tieA.sha256]: 'tie-b',
        });
        expect(await repo.newestBySha256(owner, [])).toEqual(new Map());
      });
    });

    describe('quota', () => {
      it('refuses an insert that would pass the quota, with QUOTA_EXCEEDED', async () => {
        const owner = uniqueName('quota');
        await repo.insert(record(owner, { size: 600 }), 1000);
        const over = record(owner, { size: 401 });
        await expect(repo.insert(over, 1000)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'QUOTA_EXCEEDED',
        );
        expect(await repo.get(over.id)).toBeUndefined();
        await repo.insert(record(owner, { size: 400 }), 1000); // exactly up to the quota is fine
        expect(await usage(handle.db, owner)).toEqual({ bytes: 1000, files: 2 });
      });

      it('stays atomic under concurrency: parallel inserts never together pass the quota', async () => {
        const owner = uniqueName('race');
        const quota = 1000;
        const attempts = Array.from({ length: 10 }, () => record(owner, { size: 150 }));
        const results = await Promise.allSettled(attempts.map((r) => repo.insert(r, quota)));
        const stored = results.filter((r) => r.status === 'fulfilled').length;
        const refused = results.filter(
          (r) => r.status === 'rejected' && isAppError(r.reason) && r.reason.code === 'QUOTA_EXCEEDED',
        ).length;
        expect({ stored, refused }).toEqual({ stored: 6, refused: 4 });
        const rows = await repo.list({ owner, limit: 100, sort: 'size' });
        expect(rows.reduce((sum, r) => sum + r.size, 0)).toBe(900);
        expect(await usage(handle.db, owner)).toEqual({ bytes: 900, files: 6 });
      });

      it('stays atomic across users and reservations racing with inserts', async () => {
        const owner = uniqueName('race2');
        const quota = 1000;
        const work = [
          ...Array.from({ length: 5 }, () => () => repo.insert(record(owner, { size: 200 }), quota)),
          ...Array.from(
            { length: 5 },
            () => () => repo.reserve(crypto.randomUUID(), owner, 200, Date.now() + 60_000, quota),
          ),
          // Other users are not held up or counted.
          ...Array.from(
            { length: 5 },
            () => () => repo.insert(record(uniqueName('bystander'), { size: 900 }), quota),
          ),
        ];
        const results = await Promise.allSettled(work.map((run) => run()));
        const unexpected = results.filter(
          (r) => r.status === 'rejected' && !(isAppError(r.reason) && r.reason.code === 'QUOTA_EXCEEDED'),
        );
        expect(unexpected).toEqual([]);
        expect(results.slice(10).every((r) => r.status === 'fulfilled')).toBe(true);
        expect(results.slice(0, 10).filter((r) => r.status === 'fulfilled')).toHaveLength(5);
        expect(await repo.usedBytes(owner)).toBe(1000);
      });

      it('lets exactly one of many racing callers claim the completion of an upload', async () => {
        const owner = uniqueName('claim');
        const id = `claim-${crypto.randomUUID()}`;
        await repo.reserve(id, owner, 100, Date.now() + 60_000, null);
        const claims = await Promise.all(Array.from({ length: 8 }, () => repo.claimCompletion(id)));
        expect(claims.filter(Boolean)).toHaveLength(1);
        expect(await repo.claimCompletion(id)).toBe(false);
        // A claim whose holder died (older than the stale limit) can be taken over.
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(await repo.claimCompletion(id, 10)).toBe(true);
        // The claim keeps the quota hold: the reservation still counts while the file is stored.
        expect(await repo.usedBytes(owner)).toBe(100);
        expect(await repo.claimCompletion('no-such-upload')).toBe(false);
      });

      it('counts live reservations toward the quota until they are used, released or expire', async () => {
        const owner = uniqueName('reserve');
        const quota = 1000;
        await repo.reserve('res-long', owner, 500, Date.now() + 60_000, quota);
        await expect(repo.reserve('res-too-much', owner, 600, Date.now() + 60_000, quota)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'QUOTA_EXCEEDED',
        );
        await expect(repo.insert(record(owner, { size: 501 }), quota)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'QUOTA_EXCEEDED',
        );
        expect(await repo.usedBytes(owner)).toBe(500);
        expect(await repo.reservationOwner('res-long')).toBe(owner);

        // The upload that holds the reservation may use it: its own hold is not counted twice.
        await repo.insert(record(owner, { size: 500 }), quota, 'res-long');
        expect(await repo.reservationOwner('res-long')).toBeUndefined();
        expect(await repo.usedBytes(owner)).toBe(500);

        // Released: the room comes back at once.
        await repo.reserve('res-released', owner, 500, Date.now() + 60_000, quota);
        expect(await repo.usedBytes(owner)).toBe(1000);
        await repo.release('res-released');
        expect(await repo.usedBytes(owner)).toBe(500);

        // Expired: no longer counted (nor an owner record), and purged.
        await repo.reserve('res-short', owner, 500, Date.now() + 300, quota);
        expect(await repo.usedBytes(owner)).toBe(1000);
        await until(async () => (await repo.usedBytes(owner)) === 500, 2000);
        expect(await repo.reservationOwner('res-short')).toBeUndefined();
        await repo.reserve('res-after', owner, 500, Date.now() + 60_000, quota);
        await repo.purgeExpiredReservations();
        const left = await handle.db
          .selectFrom('reservations')
          .select('id')
          .where('username', '=', owner)
          .execute();
        expect(left.map((r) => r.id)).toEqual(['res-after']);
      });
    });

    describe('sessions', () => {
      const service = () =>
        new SessionService(handle.db, new LocalInvalidationBus(), { refreshTtlSeconds: 3600, cacheTtlMs: 0 });

      it('creates a session that is live, listed, and carries the client details', async () => {
        const sessions = service();
        const user = uniqueName('user');
        const { session, refreshToken } = await sessions.create(user, 'curl/8', '127.0.0.1');
        expect(refreshToken).toEqual(expect.any(String));
        expect(await sessions.getLive(session.id)).toMatchObject({
          id: session.id,
          username: user,
          userAgent: 'curl/8',
          ip: '127.0.0.1',
          expiresAt: session.expiresAt,
        });
        expect((await sessions.listLive(user)).map((s) => s.id)).toEqual([session.id]);
        expect(await sessions.getLive('no-such-session')).toBeNull();
      });

      it('rotates a refresh token: the new one works, the old one is refused and ends the session', async () => {
        const sessions = service();
        const user = uniqueName('user');
        const { session, refreshToken } = await sessions.create(user, null, null);
        const rotated = await sessions.rotate(refreshToken);
        expect(rotated.session.id).toBe(session.id);
        expect(rotated.refreshToken).not.toBe(refreshToken);
        const again = await sessions.rotate(rotated.refreshToken);
        expect(again.session.id).toBe(session.id);

        // Reuse of an already-used token: refused, and the whole session (with its newest token) ends.
        await expect(sessions.rotate(refreshToken)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'UNAUTHENTICATED',
        );
        expect(await sessions.getLive(session.id)).toBeNull();
        await expect(sessions.rotate(again.refreshToken)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'UNAUTHENTICATED',
        );
        await expect(sessions.rotate('never-issued')).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'UNAUTHENTICATED',
        );
        expect(await sessions.listLive(user)).toEqual([]);
      });

      it('lets only one of two simultaneous rotations of one token succeed', async () => {
        const sessions = service();
        const { session, refreshToken } = await sessions.create(uniqueName('user'), null, null);
        const results = await Promise.allSettled([
          sessions.rotate(refreshToken),
          sessions.rotate(refreshToken),
        ]);
        expect(results.filter((r) => r.status === 'fulfilled').length).toBeLessThanOrEqual(1);
        expect(results.some((r) => r.status === 'rejected')).toBe(true);
        expect(await sessions.getLive(session.id)).toBeNull();
      });

      it("revokes one session of the user's, not another user's, and lists only live ones", async () => {
        const sessions = service();
        const [alice, bob] = [uniqueName('alice'), uniqueName('bob')];
        const a1 = await sessions.create(alice, 'first', null);
        const a2 = await sessions.create(alice, 'second', null);
        const b1 = await sessions.create(bob, null, null);
        expect(new Set((await sessions.listLive(alice)).map((s) => s.id))).toEqual(
          new Set([a1.session.id, a2.session.id]),
        );

        expect(await sessions.revoke(bob, a1.session.id)).toBe(false);
        expect(await sessions.getLive(a1.session.id)).not.toBeNull();
        expect(await sessions.revoke(alice, a1.session.id)).toBe(true);
        expect(await sessions.revoke(alice, a1.session.id)).toBe(false);
        expect(await sessions.getLive(a1.session.id)).toBeNull();
        await expect(sessions.rotate(a1.refreshToken)).rejects.toSatisfy(
          (e) => isAppError(e) && e.code === 'UNAUTHENTICATED',
        );
        expect((await sessions.listLive(alice)).map((s) => s.id)).toEqual([a2.session.id]);

        await sessions.revokeAllForUser(alice);
        expect(await sessions.listLive(alice)).toEqual([]);
        expect(await sessions.getLive(a2.session.id)).toBeNull();
        expect(await sessions.getLive(b1.session.id)).not.toBeNull();
      });

      it('purges sessions that ended long ago, with their refresh tokens', async () => {
        const sessions = service();
        const user = uniqueName('old');
        const { session } = await sessions.create(user, null, null);
        await sessions.revokeAllForUser(user);
        await handle.db
          .updateTable('sessions')
          .set({ revoked_at: Date.now() - 8 * 86_400_000 })
          .where('id', '=', session.id)
          .execute();
        await sessions.purgeExpired();
        expect(
          await handle.db.selectFrom('sessions').select('id').where('id', '=', session.id).execute(),
        ).toEqual([]);
        expect(
          await handle.db
            .selectFrom('refresh_tokens')
            .select('token_hash')
            .where('session_id', '=', session.id)
            .execute(),
        ).toEqual([]);
      });
    });
  });
}

let counter = 0;
/** A name no other test of this run uses (tests share one database). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${crypto.randomBytes(3).toString('hex')}`;
}

export function record(owner: string, overrides: Partial<MediaRecord> = {}): MediaRecord {
  const now = Date.now();
  return {
    id: crypto.randomBytes(16).toString('base64url'),
    owner,
    filename: 'photo.jpg',
    mimeType: 'image/jpeg',
    kind: 'image',
    size: 1234,
    sha256: crypto.randomBytes(32).toString('hex'),
    visibility: 'private',
    tags: [],
    width: null,
    height: null,
    createdAt: now,
    updatedAt: now,
    takenAt: null,
    placeholder: null,
    media: null,
    exif: null,
    metadataVersion: 1,
    ...overrides,
  };
}

async function ids(list: Promise<MediaRecord[]>): Promise<string[]> {
  return (await list).map((r) => r.id);
}

async function usage(db: Db, username: string): Promise<{ bytes: number; files: number }> {
  const row = await db
    .selectFrom('usage')
    .select(['bytes', 'files'])
    .where('username', '=', username)
    .executeTakeFirst();
  return { bytes: Number(row?.bytes ?? 0), files: Number(row?.files ?? 0) };
}

async function migrationNames(db: Db): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
  return rows.map((r) => r.name);
}

async function indexNames(db: Db, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const tables = [
    'sessions',
    'refresh_tokens',
    'media',
    'media_tags',
    'usage',
    'reservations',
    'links',
    'audit_log',
  ];
  const { rows } =
    dialect === 'sqlite'
      ? await sql<{
          name: string;
        }>`select name from sqlite_master where type = 'index' and sql is not null and tbl_name in (${sql.join(tables)})`.execute(
          db,
        )
      : await sql<{ name: string }>`
          select i.relname as name from pg_index x
          join pg_class i on i.oid = x.indexrelid
          join pg_class t on t.oid = x.indrelid
          join pg_namespace n on n.oid = t.relnamespace
          where not x.indisprimary and n.nspname = current_schema() and t.relname in (${sql.join(tables)})`.execute(
          db,
        );
  return rows.map((r) => r.name).sort();
}
