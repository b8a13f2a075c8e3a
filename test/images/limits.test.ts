import { deflateSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.ts';
import { ImageProcessor } from '../../src/images/image-processor.ts';
import {
  animation,
  errorCode,
  jpegClaiming,
  largeJpeg,
  png,
  pngBomb,
  useScratchDir,
} from './image-fixtures.ts';

const images = new ImageProcessor({ heifDecoders: [] });

const scratch = useScratchDir();

/** Runs `job` and reports how long it took and how much the process grew meanwhile. */
async function measured(
  job: () => Promise<string>,
): Promise<{ outcome: string; ms: number; grownMiB: number }> {
  const rss = process.memoryUsage.rss();
  const start = performance.now();
  const outcome = await job();
  return { outcome, ms: performance.now() - start, grownMiB: (process.memoryUsage.rss() - rss) / 2 ** 20 };
}

describe('pixel floods', () => {
  test('refuses a tiny PNG that declares 50000×50000, fast and without allocating the pixels', async () => {
    const path = await scratch().file(
      'flood.png',
      png(50_000, 50_000, 8, 2, deflateSync(Buffer.alloc(1000))),
    );
    for (const job of [
      () => errorCode(images.probe(path, 'image/png')),
      () => errorCode(images.thumbnail(path, 'image/png', 256, 'webp')),
    ]) {
      const { outcome, ms, grownMiB } = await measured(job);
      expect(outcome).toBe('INVALID_FILE');
      expect(ms).toBeLessThan(500);
      expect(grownMiB).toBeLessThan(50);
    }
  });

  test('refuses a real decompression bomb: a 17 kB PNG that decodes to 144 megapixels', async () => {
    const bomb = pngBomb(12_000, 12_000);
    expect(bomb.length).toBeLessThan(32 * 1024);
    const path = await scratch().file('bomb.png', bomb);
    const { outcome, ms } = await measured(() => errorCode(images.probe(path, 'image/png')));
    expect(outcome).toBe('INVALID_FILE');
    expect(ms).toBeLessThan(500);
  });

  test('refuses a JPEG whose header claims 60000×60000', async () => {
    const path = await scratch().file('flood.jpg', await jpegClaiming('DSCN0025.jpg', 60_000, 60_000));
    const { outcome, ms } = await measured(() => errorCode(images.probe(path, 'image/jpeg')));
    expect(outcome).toBe('INVALID_FILE');
    expect(ms).toBeLessThan(500);
  });

  test('draws the line at maxInputPixels, and says so', async () => {
    const path = await scratch().file('bomb-4mp.png', pngBomb(2000, 2000));
    expect(await images.probe(path, 'image/png')).toEqual({ width: 2000, height: 2000 });
    const strict = new ImageProcessor({ heifDecoders: [], maxInputPixels: 3_999_999 });
    const error = await strict.probe(path, 'image/png').catch((error: unknown) => error);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('INVALID_FILE');
    expect((error as AppError).details).toEqual({ maxPixels: 3_999_999 });
    expect(await errorCode(strict.thumbnail(path, 'image/png', 256, 'webp'))).toBe('INVALID_FILE');
  });
});

describe('frame limits', () => {
  test.each(['gif', 'webp'] as const)('bounds the frames of an animated %s', async (format) => {
    const path = await scratch().file(`frames.${format}`, await animation(format, 12, 8, 8));
    const bounded = new ImageProcessor({ heifDecoders: [], maxFrames: 11 });
    expect(await errorCode(bounded.probe(path, `image/${format}`))).toBe('INVALID_FILE');
    expect(await errorCode(bounded.thumbnail(path, `image/${format}`, 256, 'webp'))).toBe('INVALID_FILE');
    const enough = new ImageProcessor({ heifDecoders: [], maxFrames: 12 });
    expect(await enough.probe(path, `image/${format}`)).toEqual({ width: 8, height: 8 });
  });
});

describe('concurrency', () => {
  test('past concurrency + maxQueue simultaneous calls, the rest get UNAVAILABLE with Retry-After', async () => {
    const path = await scratch().file('large.jpg', await largeJpeg(3000, 2000));
    const capped = new ImageProcessor({ heifDecoders: [], concurrency: 2, maxQueue: 3 });
    const calls = Array.from({ length: 9 }, (_, i) =>
      i % 2 === 0 ? capped.thumbnail(path, 'image/jpeg', 1024, 'avif') : capped.probe(path, 'image/jpeg'),
    );
    const results = await Promise.allSettled(calls);
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.flatMap((result) =>
      result.status === 'rejected' ? [result.reason as unknown] : [],
    );
    expect(fulfilled).toHaveLength(5);
    expect(rejected).toHaveLength(4);
    for (const reason of rejected) {
      expect(reason).toBeInstanceOf(AppError);
      expect((reason as AppError).code).toBe('UNAVAILABLE');
      expect((reason as AppError).headers).toEqual({ 'Retry-After': '1' });
    }
    // Once the burst has drained, the processor serves again.
    expect(await capped.probe(path, 'image/jpeg')).toEqual({ width: 3000, height: 2000 });
  });
});
