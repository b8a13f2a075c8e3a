import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import { ImageProcessor } from '../../src/images/image-processor.ts';
import {
  animation,
  difference,
  errorCode,
  fixture,
  hasGpsDirectory,
  useScratchDir,
} from './image-fixtures.ts';

const images = new ImageProcessor({ heifDecoders: [] });

const scratch = useScratchDir();

describe('ImageProcessor.thumbnail', () => {
  test('strips EXIF with the GPS position, and all other metadata', async () => {
    const original = await sharp(fixture('DSCN0025.jpg')).metadata();
    expect(hasGpsDirectory(original.exif!)).toBe(true);
    for (const format of ['webp', 'avif', 'jpeg'] as const) {
      const thumbnail = await sharp(
        await images.thumbnail(fixture('DSCN0025.jpg'), 'image/jpeg', 256, format),
      ).metadata();
      expect(thumbnail.exif, format).toBeUndefined();
      expect(thumbnail.xmp, format).toBeUndefined();
      expect(thumbnail.iptc, format).toBeUndefined();
      expect(thumbnail.icc, format).toBeUndefined();
    }
  });

  test('drops the XMP packet of a file that has one', async () => {
    expect((await sharp(fixture('image01137.jpg')).metadata()).xmp).toBeDefined();
    const thumbnail = await images.thumbnail(fixture('image01137.jpg'), 'image/jpeg', 256, 'webp');
    expect((await sharp(thumbnail).metadata()).xmp).toBeUndefined();
  });

  test('fits within size×size with the aspect ratio kept', async () => {
    for (const [size, width, height] of [
      [256, 256, 192],
      [512, 512, 384],
    ] as const) {
      const thumbnail = await sharp(
        await images.thumbnail(fixture('DSCN0025.jpg'), 'image/jpeg', size, 'webp'),
      ).metadata();
      expect([thumbnail.width, thumbnail.height]).toEqual([width, height]);
    }
  });

  test('comes out upright from a photo with EXIF orientation 6', async () => {
    const thumbnail = await images.thumbnail(fixture('portrait_6.jpg'), 'image/jpeg', 256, 'webp');
    const { width, height, orientation } = await sharp(thumbnail).metadata();
    // Stored as 600x450: upright means 450x600 scaled into 256, with no orientation left to apply.
    expect([width, height, orientation]).toEqual([192, 256, undefined]);
    // Same picture as the AVIF that is upright through its irot property; a wrong turn is far off.
    const upright = await sharp(fixture('portrait_irot.avif')).toBuffer();
    expect(await difference(thumbnail, upright)).toBeLessThan(12);
    expect(await difference(await sharp(thumbnail).rotate(180).toBuffer(), upright)).toBeGreaterThan(30);
  });

  test('never enlarges a small image', async () => {
    const thumbnail = await sharp(
      await images.thumbnail(fixture('Canon_40D.jpg'), 'image/jpeg', 256, 'webp'),
    ).metadata();
    expect([thumbnail.width, thumbnail.height]).toEqual([100, 68]);
  });

  test.each([
    ['webp', 'webp'],
    ['avif', 'heif'],
    ['jpeg', 'jpeg'],
  ] as const)('writes real %s bytes', async (format, decodedAs) => {
    const thumbnail = await images.thumbnail(fixture('DSCN0025.jpg'), 'image/jpeg', 256, format);
    const metadata = await sharp(thumbnail).metadata();
    expect(metadata.format).toBe(decodedAs);
    if (format === 'avif') expect(metadata.compression).toBe('av1');
    expect([metadata.width, metadata.height]).toEqual([256, 192]);
  });

  test.each(['gif', 'webp'] as const)('renders only the first frame of an animated %s', async (format) => {
    const path = await scratch().file(`animated.${format}`, await animation(format, 6, 40, 30));
    expect((await sharp(path).metadata()).pages).toBe(6);
    const thumbnail = await images.thumbnail(path, `image/${format}`, 256, 'webp');
    const metadata = await sharp(thumbnail).metadata();
    expect([metadata.width, metadata.height, metadata.pages ?? 1]).toEqual([40, 30, 1]);
    // Frame 0 is black in the generated animation; any other frame is lighter.
    expect((await sharp(thumbnail).stats()).channels[0]!.mean).toBeLessThan(2);
  });

  test('turns transparency white in JPEG instead of black', async () => {
    const transparent = await sharp({
      create: { width: 20, height: 20, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    const path = await scratch().file('transparent.png', transparent);
    const thumbnail = await images.thumbnail(path, 'image/png', 256, 'jpeg');
    expect((await sharp(thumbnail).stats()).channels.map((channel) => Math.round(channel.mean))).toEqual([
      255, 255, 255,
    ]);
  });

  test('refuses a type it does not render', async () => {
    expect(await errorCode(images.thumbnail(fixture('DSCN0025.jpg'), 'application/pdf', 256, 'webp'))).toBe(
      'UNSUPPORTED_MEDIA_TYPE',
    );
  });
});
