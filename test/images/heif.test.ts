import { chmod, readdir, readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.ts';
import { HeifDecoder, listsHevcDecoder } from '../../src/images/heif-decoder.ts';
import { ImageProcessor } from '../../src/images/image-processor.ts';
import { difference, errorCode, fixture, scratchDir, type ScratchDir } from './image-fixtures.ts';
import { required } from '../helpers/requirements.ts';

let scratch: ScratchDir;

beforeAll(async () => {
  scratch = await scratchDir();
});

afterAll(async () => {
  await scratch.remove();
});

const withTool = await ImageProcessor.create();
required(
  withTool.heifDecoder !== null,
  'an HEVC-capable heif-dec or heif-convert',
  'apt-get install libheif-examples (.ci/run does)',
);

async function size(image: Buffer): Promise<[number, number]> {
  const { width, height } = await sharp(image).metadata();
  return [width, height];
}

/** The sample HEIC with most of its coded image data cut off: the header parses, decoding fails. */
async function cutPayload(): Promise<string> {
  const data = await readFile(fixture('samplefilehub.heif'));
  return scratch.file('cut-payload.heic', data.subarray(0, data.length - 20_000));
}

describe('HEIC without the libheif tool', () => {
  const images = new ImageProcessor();

  test('probe reports the displayed size from the header, without decoding', async () => {
    expect(await images.probe(fixture('samplefilehub.heif'), 'image/heic')).toEqual({
      width: 640,
      height: 426,
    });
    // Stored 300x225 with an irot of 90°: the header already states the size as displayed.
    expect(await images.probe(fixture('portrait_irot.heic'), 'image/heic')).toEqual({
      width: 225,
      height: 300,
    });
  });

  test('thumbnail says this server cannot render HEIC', async () => {
    const error = await images
      .thumbnail(fixture('samplefilehub.heif'), 'image/heic', 256, 'webp')
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((error as AppError).message).toBe(
      'Thumbnails are not available for HEIC/HEIF images on this server.',
    );
  });

  test('a HEIC whose container is cut short is still refused', async () => {
    const data = await readFile(fixture('samplefilehub.heif'));
    const path = await scratch.file('cut-container.heic', data.subarray(0, 3000));
    expect(await errorCode(images.probe(path, 'image/heic'))).toBe('INVALID_FILE');
  });

  test('create() finds no decoder when none of the commands exists', async () => {
    const none = await ImageProcessor.create({ heifDecoders: ['/nonexistent/heif-dec'] });
    expect(none.heifDecoder).toBeNull();
    expect(await errorCode(none.thumbnail(fixture('samplefilehub.heif'), 'image/heic', 256, 'webp'))).toBe(
      'UNSUPPORTED_MEDIA_TYPE',
    );
  });
});

describe.skipIf(withTool.heifDecoder === null)('HEIC with the libheif tool', () => {
  test('probe decodes the photo and reports its size', async () => {
    expect(await withTool.probe(fixture('samplefilehub.heif'), 'image/heic')).toEqual({
      width: 640,
      height: 426,
    });
  });

  test('probe refuses a HEIC whose image data is cut off', async () => {
    expect(await errorCode(withTool.probe(await cutPayload(), 'image/heic'))).toBe('INVALID_FILE');
  });

  test.each(['webp', 'avif', 'jpeg'] as const)('renders a %s thumbnail without metadata', async (format) => {
    const thumbnail = await withTool.thumbnail(fixture('samplefilehub.heif'), 'image/heic', 256, format);
    const metadata = await sharp(thumbnail).metadata();
    expect(metadata.format).toBe(format === 'avif' ? 'heif' : format);
    expect([metadata.width, metadata.height]).toEqual([256, 170]);
    expect([metadata.exif, metadata.xmp]).toEqual([undefined, undefined]);
  });

  test('turns a HEIC upright once, ignoring the stale EXIF orientation libheif copies', async () => {
    expect(await withTool.probe(fixture('portrait_irot.heic'), 'image/heic')).toEqual({
      width: 225,
      height: 300,
    });
    const thumbnail = await withTool.thumbnail(fixture('portrait_irot.heic'), 'image/heic', 256, 'webp');
    // 225x300 scaled into 256; turned a second time it would come out 256x192.
    expect(await size(thumbnail)).toEqual([192, 256]);
    const upright = await withTool.thumbnail(fixture('portrait_6.jpg'), 'image/jpeg', 256, 'webp');
    expect(await difference(thumbnail, upright)).toBeLessThan(12);
  });

  test('renders the primary image of a file holding several, not the first', async () => {
    const header = await sharp(fixture('two_images.heic')).metadata();
    expect([header.pages, header.pagePrimary]).toEqual([2, 1]);
    expect(await withTool.probe(fixture('two_images.heic'), 'image/heic')).toEqual({
      width: 160,
      height: 120,
    });
    const thumbnail = await withTool.thumbnail(fixture('two_images.heic'), 'image/heic', 256, 'jpeg');
    expect(await size(thumbnail)).toEqual([160, 120]);
  });

  test('leaves no decoded file behind, after success or failure', async () => {
    const temp = await scratchDir();
    try {
      const images = await ImageProcessor.create({ tempDir: temp.path });
      await images.thumbnail(fixture('two_images.heic'), 'image/heic', 256, 'webp');
      expect(await errorCode(images.thumbnail(await cutPayload(), 'image/heic', 256, 'webp'))).toBe(
        'INVALID_FILE',
      );
      expect(await readdir(temp.path)).toEqual([]);
    } finally {
      await temp.remove();
    }
  });
});

describe('HeifDecoder process handling', () => {
  test('kills a decoder that hangs, answers INVALID_FILE and removes its files', async () => {
    const temp = await scratchDir();
    try {
      const hanging = await temp.file('hanging-decoder', Buffer.from('#!/bin/sh\nexec /bin/sleep 30\n'));
      await chmod(hanging, 0o755);
      const images = new ImageProcessor(
        {},
        new HeifDecoder({ command: hanging, tempDir: temp.path, timeoutMs: 300 }),
      );
      const start = performance.now();
      expect(
        await errorCode(images.thumbnail(fixture('samplefilehub.heif'), 'image/heic', 256, 'webp')),
      ).toBe('INVALID_FILE');
      const elapsed = performance.now() - start;
      // Not a quick exit for some other reason: it ran until the timeout, and not much longer.
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(5000);
      expect(await readdir(temp.path)).toEqual(['hanging-decoder']);
    } finally {
      await temp.remove();
    }
  });

  test('answers INVALID_FILE when the decoder exits 0 without writing the image', async () => {
    // libheif 1.15 does this when libpng rejects the image's ICC profile.
    const temp = await scratchDir();
    try {
      const silent = await temp.file(
        'silent-decoder',
        Buffer.from('#!/bin/sh\necho "could not write image" >&2\n'),
      );
      await chmod(silent, 0o755);
      const images = new ImageProcessor(
        {},
        new HeifDecoder({ command: silent, tempDir: temp.path, timeoutMs: 5000 }),
      );
      expect(await errorCode(images.probe(fixture('samplefilehub.heif'), 'image/heic'))).toBe('INVALID_FILE');
      expect(await readdir(temp.path)).toEqual(['silent-decoder']);
    } finally {
      await temp.remove();
    }
  });

  test('recognises an HEVC decoder in --list-decoders output', () => {
    const libheif115 =
      'HEIC decoders:\n- libde265 = libde265 HEVC decoder, version 1.0.11\nAVIF decoders:\n- dav1d = dav1d\n';
    const withoutPlugin =
      'AVC decoders:\nAVIF decoders:\n- dav1d = dav1d v1.5.1\nHEIC decoders:\nJPEG decoders:\n- libjpeg = libjpeg-turbo\n';
    expect(listsHevcDecoder(libheif115)).toBe(true);
    expect(listsHevcDecoder(withoutPlugin)).toBe(false);
    expect(listsHevcDecoder('')).toBe(false);
  });
});
