import sharp from 'sharp';
import { thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';
import { describe, expect, test } from 'vitest';
import { ImageProcessor } from '../../src/images/image-processor.ts';
import { errorCode, fixture, jpegWithStrayBytes, useScratchDir, truncated } from './image-fixtures.ts';

const images = new ImageProcessor({ heifDecoders: [] });

const scratch = useScratchDir();

describe('ImageProcessor.probe on real photos', () => {
  test('reports the size of a plain photo', async () => {
    expect(await images.probe(fixture('DSCN0025.jpg'), 'image/jpeg')).toEqual({ width: 640, height: 480 });
    expect(await images.probe(fixture('Canon_40D.jpg'), 'image/jpeg')).toEqual({ width: 100, height: 68 });
  });

  test('reports the size as displayed when EXIF says to rotate (orientation 6)', async () => {
    const stored = await sharp(fixture('portrait_6.jpg')).metadata();
    expect([stored.width, stored.height, stored.orientation]).toEqual([600, 450, 6]);
    expect(await images.probe(fixture('portrait_6.jpg'), 'image/jpeg')).toEqual({ width: 450, height: 600 });
  });

  test('accepts a JPEG with invalid metadata but complete pixels, at its real size', async () => {
    // Its XMP claims 5454x3647; the image itself is an intact 88x64 picture.
    expect(await images.probe(fixture('image01137.jpg'), 'image/jpeg')).toEqual({ width: 88, height: 64 });
  });

  test('reports the displayed size of an AVIF rotated by its HEIF irot property', async () => {
    expect(await images.probe(fixture('portrait_irot.avif'), 'image/avif')).toEqual({
      width: 225,
      height: 300,
    });
  });
});

describe('ImageProcessor.probe on broken files', () => {
  test.each([0.9, 0.5, 0.1])(
    'refuses a JPEG cut off at %d of its length, though its header is intact',
    async (fraction) => {
      const path = await scratch().file(`cut-${fraction}.jpg`, await truncated('DSCN0025.jpg', fraction));
      expect((await sharp(path).metadata()).width).toBe(640);
      expect(await errorCode(images.probe(path, 'image/jpeg'))).toBe('INVALID_FILE');
    },
  );

  test('refuses a truncated progressive JPEG, PNG, WebP and GIF', async () => {
    const source = sharp(fixture('DSCN0025.jpg'));
    const encoded = {
      jpeg: await source.clone().jpeg({ progressive: true }).toBuffer(),
      png: await source.clone().png().toBuffer(),
      webp: await source.clone().webp().toBuffer(),
      gif: await source.clone().gif().toBuffer(),
    };
    for (const [format, data] of Object.entries(encoded)) {
      const path = await scratch().file(`cut.${format}`, data.subarray(0, Math.floor(data.length * 0.7)));
      expect(await errorCode(images.probe(path, `image/${format}`)), format).toBe('INVALID_FILE');
    }
  });

  test('accepts a photo whose decoder only warns, as browsers show it', async () => {
    const path = await scratch().file('stray-bytes.jpg', await jpegWithStrayBytes('DSCN0025.jpg'));
    expect(await images.probe(path, 'image/jpeg')).toEqual({ width: 640, height: 480 });
    const thumbnail = await images.thumbnail(path, 'image/jpeg', 256, 'webp');
    expect((await sharp(thumbnail).metadata()).width).toBe(256);
  });

  test('refuses a file whose content is another format than its type says', async () => {
    const png = await sharp(fixture('DSCN0025.jpg')).png().toBuffer();
    const path = await scratch().file('really-a-png.jpg', png);
    expect(await errorCode(images.probe(path, 'image/jpeg'))).toBe('INVALID_FILE');
    expect(await images.probe(path, 'image/png')).toEqual({ width: 640, height: 480 });
  });

  test('refuses an SVG even when it is passed off as an image type it handles', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    const path = await scratch().file('drawing.svg', svg);
    expect(await errorCode(images.probe(path, 'image/svg+xml'))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await errorCode(images.probe(path, 'image/png'))).toBe('INVALID_FILE');
  });

  test('refuses bytes that are no image at all', async () => {
    const path = await scratch().file('noise.jpg', Buffer.from('this is not a JPEG, just text'));
    expect(await errorCode(images.probe(path, 'image/jpeg'))).toBe('INVALID_FILE');
  });

  test('treats a missing input file as a server error, not as a bad upload', async () => {
    expect(await errorCode(images.probe(`${scratch().path}/gone.jpg`, 'image/jpeg'))).toMatch(
      /not an AppError.*ENOENT/,
    );
  });
});

describe('ImageProcessor.probe with a placeholder', () => {
  /** The placeholder's decoded picture, and its mean colour. */
  function decoded(placeholder: string | null | undefined) {
    expect(placeholder).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const hash = Buffer.from(placeholder!, 'base64');
    const { w, h, rgba } = thumbHashToRGBA(hash);
    return { w, h, rgba, average: thumbHashToAverageRGBA(hash) };
  }

  test('grey, 16-bit, transparent and colour images each give a decodable ThumbHash of their colour', async () => {
    const red = { r: 220, g: 30, b: 30 };
    const cases: [
      string,
      Buffer,
      'image/png' | 'image/jpeg',
      (avg: ReturnType<typeof decoded>['average']) => void,
    ][] = [
      [
        'grey',
        await sharp({ create: { width: 300, height: 200, channels: 3, background: '#808080' } })
          .greyscale()
          .png()
          .toBuffer(),
        'image/png',
        (avg) => expect(Math.abs(avg.r - avg.b)).toBeLessThan(0.05),
      ],
      [
        '16-bit',
        await sharp({ create: { width: 300, height: 200, channels: 3, background: red } })
          .png()
          .toColourspace('rgb16')
          .toBuffer(),
        'image/png',
        (avg) => expect(avg.r).toBeGreaterThan(avg.g + 0.4),
      ],
      [
        'transparent',
        await sharp({ create: { width: 200, height: 200, channels: 4, background: { ...red, alpha: 0 } } })
          .png()
          .toBuffer(),
        'image/png',
        (avg) => expect(avg.a).toBeLessThan(0.1),
      ],
      [
        'colour',
        await sharp({ create: { width: 4000, height: 3000, channels: 3, background: red } })
          .jpeg()
          .toBuffer(),
        'image/jpeg',
        (avg) => expect(avg.r).toBeGreaterThan(avg.g + 0.4),
      ],
    ];
    for (const [name, bytes, type, check] of cases) {
      const path = await scratch().file(`placeholder-${name}`, bytes);
      const probe = await images.probe(path, type, { placeholder: true });
      const { w, h, average } = decoded(probe.placeholder);
      expect(w * h, name).toBeGreaterThan(0);
      check(average);
    }
  });

  test('is upright for a photo turned by EXIF, and absent unless asked for', async () => {
    const probe = await images.probe(fixture('portrait_6.jpg'), 'image/jpeg', { placeholder: true });
    expect(probe).toMatchObject({ width: 450, height: 600 });
    const { w, h } = decoded(probe.placeholder);
    expect(h).toBeGreaterThan(w);
    expect(await images.probe(fixture('portrait_6.jpg'), 'image/jpeg')).not.toHaveProperty('placeholder');
  });
});
