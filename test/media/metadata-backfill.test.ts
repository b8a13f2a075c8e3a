import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SweepScheduler } from '../../src/media/sweeper.ts';
import { METADATA_VERSION, MetadataReader } from '../../src/media/media-metadata.ts';
import { MetadataBackfill } from '../../src/media/metadata-backfill.ts';
import { pino } from 'pino';
import { ffmpegAvailable, mediaFile } from '../video/media-files.ts';
import { fixture, pdf, startMediaApp, type MediaApp, type MediaItem } from './media-helpers.ts';

/**
 * Items stored before their metadata was read (as after migration 0006, or while extraction was
 * off or ffmpeg missing) gain it from the background backfill: off the request path, one item at
 * a time, each row marked done as it is written so that a restart resumes instead of starting over.
 */
let dataDir: string;
beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-backfill-test-'));
});
afterAll(async () => {
  await fs.rm(dataDir, { recursive: true, force: true });
});

/** The periodic pass never fires by itself: the test runs passes with backfill.tick(). */
const byHand: SweepScheduler = () => ({ stop: () => undefined });

function start(env: Record<string, string>): Promise<MediaApp> {
  return startMediaApp({ STOWAGE_DATA_DIR: dataDir, ...env }, { backfillScheduler: byHand });
}

async function versions(app: MediaApp): Promise<Record<string, number>> {
  const rows = await app.services.database.db
    .selectFrom('media')
    .select(['id', 'metadata_version'])
    .execute();
  return Object.fromEntries(rows.map((r) => [r.id, Number(r.metadata_version)]));
}

async function item(app: MediaApp, id: string): Promise<MediaItem> {
  const res = await app.api('GET', `/api/media/${id}`);
  expect(res.status).toBe(200);
  return res.json<MediaItem>();
}

describe.runIf(ffmpegAvailable())('the metadata backfill', () => {
  test('fills in old items across restarts, each once, and leaves what it cannot do yet for later', async () => {
    // 1. Stored with extraction off: the rows are what migration 0006 leaves (version 0).
    let app = await start({ STOWAGE_MEDIA_METADATA: 'off' });
    const ids: Record<string, string> = {};
    try {
      ids.photo = (await app.uploadFile(await fixture('DSCN0025.jpg'), 'nikon.jpg')).id;
      const clip = await fs.readFile(await mediaFile(dataDir, 'clip.mp4'));
      ids.video = (await app.uploadFile(clip, 'clip.mp4')).id;
      ids.pdf = (await app.uploadFile(pdf(), 'notes.pdf')).id;
      expect(await item(app, ids.photo)).toMatchObject({ exif: null, placeholder: null, takenAt: null });
      expect(await item(app, ids.video)).toMatchObject({ media: null, urls: { thumbnail: null } });
      expect(await versions(app)).toMatchObject({ [ids.photo]: 0, [ids.video]: 0 });
      // Off means off: no backfill runs either.
      expect(await app.services.backfill.tick()).toBe(0);
    } finally {
      await app.close();
    }

    // 2. On, but without ffmpeg: the photo is done, the video waits for the tools.
    app = await start({ STOWAGE_FFMPEG_PATH: '/nonexistent/ffmpeg' });
    try {
      await app.services.backfill.idle();
      expect(await item(app, ids.photo)).toMatchObject({
        takenAt: '2008-10-22T16:43:21.000Z',
        exif: { make: 'NIKON', gps: { latitude: expect.closeTo(43.468365, 6) } },
        placeholder: expect.any(String),
        image: { width: 640, height: 480 },
      });
      expect(await item(app, ids.video)).toMatchObject({ media: null });
      expect(await versions(app)).toEqual({
        [ids.photo]: METADATA_VERSION,
        [ids.video]: 0,
        [ids.pdf]: METADATA_VERSION,
      });
    } finally {
      await app.close();
    }

    // 3. With ffmpeg: only the video is left to read, and it is read once.
    app = await start({});
    try {
      // The pass that begins at start.
      await app.services.backfill.idle();
      expect(await item(app, ids.video)).toMatchObject({
        media: { width: 320, height: 240, videoCodec: 'h264', audioCodec: 'aac' },
        placeholder: expect.any(String),
        urls: { thumbnail: `/api/media/${ids.video}/thumbnail` },
      });
      expect(Object.values(await versions(app))).toEqual([
        METADATA_VERSION,
        METADATA_VERSION,
        METADATA_VERSION,
      ]);
      expect(await app.services.backfill.tick(), 'nothing is read twice').toBe(0);
    } finally {
      await app.close();
    }
  });

  test('an item whose file is damaged is marked done without its fields, never retried forever', async () => {
    let app = await start({ STOWAGE_MEDIA_METADATA: 'off' });
    let id: string;
    try {
      const broken = await fs.readFile(await mediaFile(dataDir, 'broken.mp4'));
      id = (await app.uploadFile(broken, 'broken.mp4')).id;
      expect((await versions(app))[id]).toBe(0);
    } finally {
      await app.close();
    }
    app = await start({});
    try {
      await app.services.backfill.idle();
      expect(await item(app, id)).toMatchObject({
        media: null,
        placeholder: null,
        urls: { thumbnail: null },
      });
      expect((await versions(app))[id]).toBe(METADATA_VERSION);
      expect(await app.services.backfill.tick()).toBe(0);
    } finally {
      await app.close();
    }
  });

  test('stops between items when asked, and the next run does the rest', async () => {
    const app = await start({ STOWAGE_MEDIA_METADATA: 'off' });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++)
        ids.push((await app.uploadFile(await fixture('Canon_40D.jpg'), `${i}.jpg`)).id);
      const { repo, storage, images, video } = app.services;
      const backfill = () =>
        new MetadataBackfill({
          repo,
          storage,
          reader: new MetadataReader({ images, video, enabled: true }),
          spoolDir: app.config.dataDir,
          logger: pino({ level: 'silent' }),
          scheduler: byHand,
        });
      const first = backfill();
      const pass = first.tick();
      await first.stop();
      const doneBefore = await pass;
      expect(doneBefore).toBeLessThan(3);
      expect(await first.tick(), 'a stopped backfill runs no more passes').toBe(0);
      const second = backfill();
      expect(await second.tick()).toBe(3 - doneBefore);
      const after = await versions(app);
      expect(ids.map((id) => after[id])).toEqual([METADATA_VERSION, METADATA_VERSION, METADATA_VERSION]);
    } finally {
      await app.close();
    }
  });
});
