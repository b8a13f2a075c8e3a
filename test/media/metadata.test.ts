import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { thumbHashToApproximateAspectRatio, thumbHashToRGBA } from 'thumbhash';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { captureLogs, LEVEL } from '../helpers/logs.ts';
import { createTestDatabase, pgAvailable } from '../helpers/postgres.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { s3Env } from '../scale/scale-helpers.ts';
import {
  fixture,
  imageBytes,
  startThumbApp,
  type MediaItem,
  type ThumbApp,
} from '../thumbnails/thumb-helpers.ts';
import { tusUpload } from '../tus/tus-helpers.ts';
import { CREATED, ffmpegAvailable, mediaFile } from '../video/media-files.ts';

/**
 * The item's takenAt, placeholder, media and exif (API.md "Media metadata (additions)"), black-box
 * over HTTP: real camera JPEGs (test/fixtures/images) and real files made by ffmpeg.
 */
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-metadata-test-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const file = async (name: string) => fs.readFile(await mediaFile(dir, name));

/** Decodes a placeholder as a client would, checking it is a real ThumbHash of that shape. */
function decodedPlaceholder(item: MediaItem): { w: number; h: number; aspect: number } {
  expect(item.placeholder).toMatch(/^[A-Za-z0-9+/]+=*$/);
  const hash = Buffer.from(item.placeholder!, 'base64');
  const { w, h, rgba } = thumbHashToRGBA(hash);
  expect(rgba.length).toBe(w * h * 4);
  return { w, h, aspect: thumbHashToApproximateAspectRatio(hash) };
}

describe('camera data of images', () => {
  let app: ThumbApp;
  beforeAll(async () => {
    app = await startThumbApp();
  });
  afterAll(async () => {
    await app.close();
  });

  test('a Canon photo: its camera, exposure and time; no GPS tags, so gps is null', async () => {
    const item = await app.uploadFile(await fixture('Canon_40D.jpg'), 'canon.jpg');
    // DateTimeOriginal 2008:05:30 15:56:01 with no OffsetTimeOriginal: read as UTC.
    expect(item.takenAt).toBe('2008-05-30T15:56:01.000Z');
    expect(item.exif).toEqual({
      make: 'Canon',
      model: 'Canon EOS 40D',
      lens: null,
      exposureTime: 0.00625,
      fNumber: 7.1,
      iso: 100,
      focalLength: 135,
      gps: null,
    });
    expect(item.media).toBeNull();
    const { aspect } = decodedPlaceholder(item);
    expect(aspect).toBeCloseTo(item.image!.width / item.image!.height, 0);
  });

  test('a Nikon photo with GPS: latitude and longitude in signed degrees, no altitude tag', async () => {
    const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'nikon.jpg');
    expect(item.takenAt).toBe('2008-10-22T16:43:21.000Z');
    expect(item.exif).toEqual({
      make: 'NIKON',
      model: 'COOLPIX P6000',
      lens: null,
      exposureTime: 0.00813669,
      fNumber: 3.7,
      iso: 64,
      focalLength: 8.1,
      gps: {
        latitude: expect.closeTo(43.468365, 6),
        longitude: expect.closeTo(11.881635, 6),
        altitude: null,
      },
    });
    decodedPlaceholder(item);
  });

  test('an image without camera data: takenAt and exif null, a placeholder all the same', async () => {
    const item = await app.uploadFile(await fixture('image01137.jpg'), 'plain.jpg');
    expect({ takenAt: item.takenAt, exif: item.exif, media: item.media }).toEqual({
      takenAt: null,
      exif: null,
      media: null,
    });
    decodedPlaceholder(item);
  });

  test('the placeholder of a photo turned by its EXIF orientation is upright', async () => {
    const item = await app.uploadFile(await fixture('portrait_6.jpg'), 'portrait.jpg');
    expect(item.image!.height).toBeGreaterThan(item.image!.width);
    const { w, h } = decodedPlaceholder(item);
    expect(h).toBeGreaterThan(w);
  });

  test('a resumable upload (read in one pass as it arrives) gets the same fields', async () => {
    const data = await fixture('DSCN0025.jpg');
    const { mediaId } = await tusUpload(app, data, { metadata: { filename: 'nikon.jpg' } });
    const res = await app.request('GET', `/api/media/${mediaId}`);
    const item = (await res.json()) as MediaItem;
    expect(item.takenAt).toBe('2008-10-22T16:43:21.000Z');
    expect(item.exif).toMatchObject({ make: 'NIKON', gps: { latitude: expect.closeTo(43.468365, 6) } });
    decodedPlaceholder(item);
  });

  test('thumbnails carry none of it: no EXIF, XMP or GPS in any format', async () => {
    const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'nikon.jpg');
    for (const [accept, type] of [
      ['image/webp', 'image/webp'],
      ['image/avif', 'image/avif'],
      ['image/jpeg', 'image/jpeg'],
    ]) {
      const bytes = await imageBytes(await app.thumbnail(item.id, { headers: { accept: accept! } }), type);
      const meta = await sharp(bytes).metadata();
      expect({ exif: meta.exif, xmp: meta.xmp, iptc: meta.iptc }, type).toEqual({
        exif: undefined,
        xmp: undefined,
        iptc: undefined,
      });
      expect(bytes.includes('NIKON'), type).toBe(false);
      expect(bytes.includes('COOLPIX'), type).toBe(false);
    }
  });
});

describe.runIf(ffmpegAvailable())('video and audio', () => {
  let app: ThumbApp;
  beforeAll(async () => {
    app = await startThumbApp();
  });
  afterAll(async () => {
    await app.close();
  });

  test('an MP4: every media field, its creation time, a placeholder and a poster thumbnail', async () => {
    const item = await app.uploadFile(await file('clip.mp4'), 'clip.mp4');
    expect(item).toMatchObject({
      mimeType: 'video/mp4',
      image: null,
      exif: null,
      takenAt: CREATED,
      media: {
        durationMs: expect.toSatisfy((ms: number) => ms >= 3000 && ms <= 3100),
        width: 320,
        height: 240,
        videoCodec: 'h264',
        audioCodec: 'aac',
        frameRate: 25,
        bitrate: expect.toSatisfy((bps: number) => Number.isInteger(bps) && bps > 0),
      },
      urls: { thumbnail: `/api/media/${item.id}/thumbnail` },
    });
    expect(decodedPlaceholder(item).aspect).toBeCloseTo(320 / 240, 0);
    const thumb = await sharp(
      await imageBytes(await app.thumbnail(item.id, { query: 'size=256' })),
    ).metadata();
    expect({ width: thumb.width, height: thumb.height, exif: thumb.exif }).toEqual({
      width: 256,
      height: 192,
      exif: undefined,
    });
    // Cached like an image's thumbnail.
    expect(await app.storedThumbnails(item.id)).toEqual(['256.webp']);
  });

  test('a rotated video is shown upright: displayed size, placeholder and poster', async () => {
    const item = await app.uploadFile(await file('rotated.mp4'), 'rotated.mp4');
    expect(item.media).toMatchObject({ width: 240, height: 320 });
    const { w, h } = decodedPlaceholder(item);
    expect(h).toBeGreaterThan(w);
    const thumb = await sharp(
      await imageBytes(await app.thumbnail(item.id, { query: 'size=256' })),
    ).metadata();
    expect({ width: thumb.width, height: thumb.height }).toEqual({ width: 192, height: 256 });
  });

  test('WebM (VP9 + Opus) and audio files', async () => {
    const webm = await app.uploadFile(await file('clip.webm'), 'clip.webm');
    expect(webm.media).toMatchObject({ videoCodec: 'vp9', audioCodec: 'opus', width: 320, height: 240 });
    expect(webm.urls.thumbnail).not.toBeNull();
    for (const [name, codec] of [
      ['audio.m4a', 'aac'],
      ['audio.mp3', 'mp3'],
    ] as const) {
      const item = await app.uploadFile(await file(name), name);
      expect(item, name).toMatchObject({
        media: { audioCodec: codec, videoCodec: null, width: null, height: null, frameRate: null },
        placeholder: null,
        exif: null,
        urls: { thumbnail: null },
      });
      expect((await app.thumbnail(item.id)).status, name).toBe(404);
    }
  });

  test('a truncated MP4 and an unreadable one are stored with media null and no thumbnail', async () => {
    for (const name of ['truncated.mp4', 'broken.mp4']) {
      const data = await file(name);
      const res = await app.uploadRaw(data, name);
      expect(res.status, name).toBe(201);
      const item = (await res.json()) as MediaItem;
      expect(item, name).toMatchObject({
        mimeType: 'video/mp4',
        size: data.length,
        media: null,
        placeholder: null,
        takenAt: null,
        urls: { thumbnail: null },
      });
      expect((await app.thumbnail(item.id)).status, name).toBe(404);
      // Stored all the same, byte for byte.
      const content = await app.request('GET', `/api/media/${item.id}/content`);
      expect(Buffer.from(await content.arrayBuffer()).equals(data), name).toBe(true);
    }
  });
});

/** sort=takenAt black-box, on a database from `database()` (SQLite unless it gives a URL). */
function takenAtSuite(
  dialect: string,
  database: () => Promise<{ env: Record<string, string>; drop(): Promise<void> }>,
) {
  describe.runIf(ffmpegAvailable())(`sort=takenAt (${dialect})`, () => {
    let app: ThumbApp;
    let drop: () => Promise<void> = () => Promise.resolve();
    beforeAll(async () => {
      const db = await database();
      drop = () => db.drop();
      app = await startThumbApp(db.env);
    });
    afterAll(async () => {
      await app?.close();
      await drop();
    });

    async function pages(sort: string, limit: number): Promise<string[]> {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 20; page++) {
        const query = `sort=${sort}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await app.request('GET', `/api/media/list?${query}`);
        expect(res.status).toBe(200);
        const body = (await res.json()) as { items: MediaItem[]; nextCursor: string | null };
        seen.push(...body.items.map((i) => i.id));
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      return seen;
    }

    test('orders by when items were taken, those without a time last either way, ties by id, across pages', async () => {
      const canon = await app.uploadFile(await fixture('Canon_40D.jpg'), 'a.jpg');
      const nikon = await app.uploadFile(await fixture('DSCN0025.jpg'), 'b.jpg');
      const nikonAgain = await app.uploadFile(await fixture('DSCN0025.jpg'), 'c.jpg');
      const video = await app.uploadFile(await file('clip.mp4'), 'd.mp4');
      const untimed = [
        await app.uploadFile(await fixture('image01137.jpg'), 'e.jpg'),
        await app.uploadFile(await file('audio.mp3'), 'f.mp3'),
        await app.uploadFile(await file('broken.mp4'), 'g.mp4'),
      ];
      const byId = (a: MediaItem, b: MediaItem) => (a.id < b.id ? -1 : 1);
      const sameTime = [nikon, nikonAgain].sort(byId);
      const nulls = [...untimed].sort(byId);
      const ascending = [canon, ...sameTime, video, ...nulls].map((i) => i.id);
      const descending = [video, ...sameTime.reverse(), canon, ...nulls.reverse()].map((i) => i.id);
      for (const limit of [1, 2, 3, 100]) {
        expect(await pages('takenAt', limit), `takenAt by ${limit}`).toEqual(ascending);
        expect(await pages('-takenAt', limit), `-takenAt by ${limit}`).toEqual(descending);
      }
      // A cursor is only good for the order it came from.
      const first = await app.request('GET', '/api/media/list?sort=takenAt&limit=5');
      const { nextCursor } = (await first.json()) as { nextCursor: string };
      const other = await app.request(
        'GET',
        `/api/media/list?sort=-takenAt&cursor=${encodeURIComponent(nextCursor)}`,
      );
      expect(other.status).toBe(400);
    });
  });
}

takenAtSuite('SQLite', () => Promise.resolve({ env: {}, drop: () => Promise.resolve() }));
describe.runIf(pgAvailable())('on PostgreSQL', () => {
  takenAtSuite('PostgreSQL', async () => {
    const database = await createTestDatabase();
    return { env: { STOWAGE_DATABASE_URL: database.url }, drop: () => database.drop() };
  });
});

describe.runIf(ffmpegAvailable())('without working ffmpeg', () => {
  test('missing: videos are stored with media null and no poster, and the server says so once', async () => {
    const logs = captureLogs();
    const app = await startThumbApp(
      { STOWAGE_FFPROBE_PATH: '/nonexistent/ffprobe', STOWAGE_LOG_LEVEL: 'info' },
      { logger: logs.logger },
    );
    try {
      const item = await app.uploadFile(await file('clip.mp4'), 'clip.mp4');
      expect(item).toMatchObject({
        media: null,
        placeholder: null,
        takenAt: null,
        urls: { thumbnail: null },
      });
      expect((await app.thumbnail(item.id)).status).toBe(404);
      // Images are unaffected.
      const photo = await app.uploadFile(await fixture('Canon_40D.jpg'), 'canon.jpg');
      expect(photo.exif).toMatchObject({ make: 'Canon' });
      const warnings = logs.lines().filter((l) => l.level === LEVEL.warn && /ffprobe/.test(l.msg));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toMatch(/not found.*media null/);
    } finally {
      await app.close();
    }
  });

  test('hanging: ffprobe is killed at the time limit and the upload is 201 with media null', async () => {
    const script = path.join(dir, 'hanging-ffprobe');
    // exec: the shell becomes the sleeping process, as a hung ffprobe is one process.
    await fs.writeFile(
      script,
      '#!/bin/sh\n[ "$1" = "-version" ] && { echo fake; exit 0; }\nexec sleep 600\n',
      {
        mode: 0o755,
      },
    );
    const app = await startThumbApp({ STOWAGE_FFPROBE_PATH: script, STOWAGE_MEDIA_TOOL_TIMEOUT: '1' });
    try {
      const res = await app.uploadRaw(await file('clip.mp4'), 'clip.mp4');
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ media: null, placeholder: null, urls: { thumbnail: null } });
    } finally {
      await app.close();
    }
  });
});

describe('STOWAGE_MEDIA_METADATA=off', () => {
  test('stores images with their size only: no camera data, no placeholder', async () => {
    const app = await startThumbApp({ STOWAGE_MEDIA_METADATA: 'off' });
    try {
      const item = await app.uploadFile(await fixture('Canon_40D.jpg'), 'canon.jpg');
      expect(item).toMatchObject({
        takenAt: null,
        exif: null,
        placeholder: null,
        image: { width: 100, height: 68 },
      });
    } finally {
      await app.close();
    }
  });
});

describe.runIf(ffmpegAvailable() && s3Available())('on S3 storage', () => {
  let s3: TestBucket;
  let app: ThumbApp;
  beforeAll(async () => {
    s3 = await createTestBucket();
    app = await startThumbApp(s3Env(s3));
  });
  afterAll(async () => {
    await app?.close();
    await s3?.drop();
  });

  test('videos and photos are read from a spool of the upload, posters from a copy of the object', async () => {
    const video = await app.uploadFile(await file('rotated.mp4'), 'rotated.mp4');
    expect(video).toMatchObject({ media: { width: 240, height: 320, videoCodec: 'h264' } });
    decodedPlaceholder(video);
    const thumb = await sharp(
      await imageBytes(await app.thumbnail(video.id, { query: 'size=256' })),
    ).metadata();
    expect({ width: thumb.width, height: thumb.height }).toEqual({ width: 192, height: 256 });
    const photo = await app.uploadFile(await fixture('DSCN0025.jpg'), 'nikon.jpg');
    expect(photo).toMatchObject({ takenAt: '2008-10-22T16:43:21.000Z', exif: { make: 'NIKON' } });
    // A resumable upload on S3 takes the streaming path, with its own spool.
    const { mediaId } = await tusUpload(app, await file('audio.m4a'), { metadata: { filename: 'a.m4a' } });
    const audio = (await (await app.request('GET', `/api/media/${mediaId}`)).json()) as MediaItem;
    expect(audio.media).toMatchObject({ audioCodec: 'aac', width: null });
    // Nothing is left in the spool.
    const spool = await fs.readdir(path.join(app.config.dataDir, 'tmp'), { recursive: true });
    expect(spool.filter((name) => /\.(spool|thumb)$/.test(name))).toEqual([]);
  });
});
