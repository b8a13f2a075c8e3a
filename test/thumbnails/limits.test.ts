import { deflateSync } from 'node:zlib';
import { png as pngOf } from '../images/image-fixtures.ts';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { patchHeaders } from '../tus/tus-helpers.ts';
import { expectError, fixture, imageBytes, startThumbApp, type ThumbApp } from './thumb-helpers.ts';

/** Images built to hurt the server: pixel floods, broken files, and more renders than it runs at once. */

const CHEAP_SIZES = Array.from({ length: 40 }, (_, i) => 16 + i);
/** Two renditions that take seconds each: full-size AVIF of a 4000×3000 photo. */
const SLOW_SIZES = [4096, 4095];

let app: ThumbApp;

beforeAll(async () => {
  app = await startThumbApp({
    STOWAGE_THUMBNAIL_SIZES: [256, 512, 1024, ...SLOW_SIZES, ...CHEAP_SIZES].join(','),
  });
});
afterAll(async () => {
  await app?.close();
});

/** A well-formed PNG of width×height, black and white, whose rows of zeros deflate ~1000:1. */
function png(width: number, height: number, rows = height): Buffer {
  return pngOf(
    width,
    height,
    1,
    0,
    deflateSync(Buffer.alloc((1 + Math.ceil(width / 8)) * rows), { level: 9 }),
  );
}

async function stored(): Promise<{ items: number; blobs: string[]; uploads: string[] }> {
  return {
    items: (await app.mediaList()).length,
    blobs: await app.blobFiles(),
    uploads: await app.uploadFiles(),
  };
}

async function stillServing(): Promise<void> {
  expect((await fetch(`${app.base}/healthz`)).status).toBe(200);
  const item = await app.uploadFile(await fixture('Canon_40D.jpg'), 'fine.jpg');
  await imageBytes(await app.thumbnail(item.id));
  expect((await app.request('DELETE', `/api/media/${item.id}`)).status).toBe(204);
}

describe('images past the decoding limits', () => {
  test.each([
    ['a header claiming 60000×60000 pixels', () => png(60_000, 60_000, 1)],
    ['a complete 20000×20000 decompression bomb', () => png(20_000, 20_000)],
  ])('%s → 422 INVALID_FILE, nothing stored, the server keeps serving', async (_name, make) => {
    const flood = make();
    expect(flood.length).toBeLessThan(100_000);
    const before = await stored();
    const res = await app.uploadRaw(flood, 'flood.png');
    await expectError(res, 422, 'INVALID_FILE');
    expect(await stored()).toEqual(before);
    await stillServing();
  });

  test('a pixel flood through a resumable upload → 422 on the completing PATCH, upload removed', async () => {
    const flood = png(60_000, 60_000, 1);
    const before = await stored();
    const uploadPath = await app.create(flood.length, { metadata: { filename: 'flood.png' } });
    const res = await app.request('PATCH', uploadPath, { headers: patchHeaders(0), body: flood });
    await expectError(res, 422, 'INVALID_FILE');
    expect(await stored()).toEqual(before);
    expect(await app.reservations()).toEqual([]);
  });
});

describe('broken files', () => {
  test.each([
    ['cut off half-way', 0.5],
    ['cut off after its headers', 0.02],
  ])('a JPEG %s → 422 INVALID_FILE, nothing stored', async (_name, fraction) => {
    const photo = await fixture('DSCN0025.jpg');
    const before = await stored();
    const res = await app.uploadRaw(photo.subarray(0, Math.floor(photo.length * fraction)), 'broken.jpg');
    await expectError(res, 422, 'INVALID_FILE');
    expect(await stored()).toEqual(before);
    await stillServing();
  });
});

describe('the render cap', () => {
  test('past the queue bound, renders are refused with 503 and Retry-After, never a 500', async () => {
    const large = await sharp(await fixture('DSCN0025.jpg'))
      .resize(4000, 3000, { fit: 'fill' })
      .jpeg({ quality: 90 })
      .toBuffer();
    const item = await app.uploadFile(large, 'large.jpg');
    const { images } = app.services;
    const render = images.thumbnail.bind(images);
    let started = 0;
    let bothStarted!: () => void;
    const slowOnesRunning = new Promise<void>((resolve) => (bothStarted = resolve));
    // Instrumentation only: counts renders handed to the real processor (which takes a slot at once).
    images.thumbnail = (...args: Parameters<typeof render>) => {
      const rendering = render(...args);
      if (++started === 2) bothStarted();
      return rendering;
    };
    try {
      // Two full-size AVIF renders (seconds each) take the processor's slots…
      const slow = SLOW_SIZES.map((size) =>
        app.thumbnail(item.id, { query: `size=${size}`, headers: { accept: 'image/avif' } }),
      );
      await slowOnesRunning;
      // …so a burst of first requests for other renditions fills the queue and overflows it.
      const burst = await Promise.all(
        CHEAP_SIZES.map((size) => app.thumbnail(item.id, { query: `size=${size}` })),
      );
      const statuses = burst.map((res) => res.status);
      expect(statuses.filter((s) => s !== 200 && s !== 503)).toEqual([]);
      const refused = burst.filter((res) => res.status === 503);
      expect(refused.length).toBeGreaterThan(0);
      for (const res of refused) {
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
        await expectError(res, 503, 'UNAVAILABLE');
      }
      for (const res of burst.filter((r) => r.status === 200)) await imageBytes(res);
      for (const res of await Promise.all(slow)) await imageBytes(res, 'image/avif');
      // Refused renditions were not stored half-made, and render once asked again.
      const again = CHEAP_SIZES.filter((_, i) => statuses[i] === 503);
      expect(await app.storedThumbnails(item.id)).toHaveLength(2 + CHEAP_SIZES.length - again.length);
      const retried = await app.thumbnail(item.id, { query: `size=${again[0]}` });
      expect((await sharp(await imageBytes(retried)).metadata()).width).toBe(again[0]);
    } finally {
      delete (images as { thumbnail?: unknown }).thumbnail;
    }
  });
});
