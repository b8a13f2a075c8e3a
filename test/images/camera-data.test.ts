import sharp from 'sharp';
import exifr from 'exifr';
import { describe, expect, test, vi } from 'vitest';
import { dateOf, EXIFR_OPTIONS, readCameraData } from '../../src/images/camera-data.ts';
import { fixture, useScratchDir } from './image-fixtures.ts';

/** Camera data through exifr, on the real camera JPEGs and on files written with chosen tags. */
const scratch = useScratchDir();

async function photoWith(exif: Record<string, Record<string, string>>): Promise<string> {
  const bytes = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
    .withExif(exif)
    .jpeg()
    .toBuffer();
  return scratch().file(`exif-${Object.keys(exif).join('-')}-${Math.random()}.jpg`, bytes);
}

describe('readCameraData', () => {
  test('an offset, a lens, the southern and western hemispheres and an altitude', async () => {
    const file = await photoWith({
      IFD0: { Make: 'Apple', Model: 'iPhone 15' },
      IFD2: {
        DateTimeOriginal: '2024:05:01 12:22:03',
        OffsetTimeOriginal: '+02:00',
        LensModel: 'iPhone 15 back camera 6.86mm f/1.78',
        ExposureTime: '1/120',
        FNumber: '178/100',
        ISOSpeedRatings: '50',
        FocalLength: '686/100',
      },
      IFD3: {
        GPSLatitudeRef: 'S',
        GPSLatitude: '33/1 51/1 3540/100',
        GPSLongitudeRef: 'W',
        GPSLongitude: '70/1 39/1 0/1',
        GPSAltitude: '125/10',
      },
    });
    expect(await readCameraData(file)).toEqual({
      // 12:22:03 at +02:00 is 10:22:03 UTC.
      takenAt: Date.parse('2024-05-01T10:22:03Z'),
      exif: {
        make: 'Apple',
        model: 'iPhone 15',
        lens: 'iPhone 15 back camera 6.86mm f/1.78',
        exposureTime: expect.closeTo(1 / 120, 6),
        fNumber: 1.78,
        iso: 50,
        focalLength: 6.86,
        gps: {
          latitude: expect.closeTo(-(33 + 51 / 60 + 35.4 / 3600), 6),
          longitude: expect.closeTo(-(70 + 39 / 60), 6),
          altitude: 12.5,
        },
      },
    });
  });

  test('the real camera files: no offset is read as UTC', async () => {
    expect((await readCameraData(fixture('Canon_40D.jpg'))).takenAt).toBe(Date.parse('2008-05-30T15:56:01Z'));
    expect(await readCameraData(fixture('image01137.jpg'))).toEqual({ takenAt: null, exif: null });
  });

  test('files exifr cannot parse, or that are not images at all, read as no data', async () => {
    const text = await scratch().file('not-an-image.jpg', Buffer.from('hello, not a JPEG'));
    expect(await readCameraData(text)).toEqual({ takenAt: null, exif: null });
    const png = await scratch().file(
      'plain.png',
      await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } })
        .png()
        .toBuffer(),
    );
    expect(await readCameraData(png)).toEqual({ takenAt: null, exif: null });
  });
});

describe('exifr options', () => {
  // exifr keeps the Options it builds in a Map keyed by the options object, never emptied: a new
  // object per parse grew the heap by one Options per upload (the 20-minute soak, 40 → 213 MiB).
  test('every parse hands exifr the same options object, so it builds and keeps one Options', async () => {
    // Options is exifr's own export, missing from its type declarations.
    const { Options } = exifr as unknown as { Options: { useCached(options: object): object } };
    const useCached = vi.spyOn(Options, 'useCached');
    try {
      await readCameraData(fixture('Canon_40D.jpg'));
      await readCameraData(fixture('DSCN0025.jpg'));
      const given = useCached.mock.calls.map(([options]) => options);
      expect(given.length).toBeGreaterThanOrEqual(2);
      for (const options of given) expect(options).toBe(EXIFR_OPTIONS);
      expect(new Set(useCached.mock.results.map((r): unknown => r.value)).size).toBe(1);
    } finally {
      useCached.mockRestore();
    }
  });
});

describe('dateOf', () => {
  test('reads EXIF dates with or without an offset or fraction; an unset clock is no date', () => {
    expect(dateOf('2008:05:30 15:56:01', undefined)).toBe(Date.parse('2008-05-30T15:56:01Z'));
    expect(dateOf('2008:05:30 15:56:01', '-05:00')).toBe(Date.parse('2008-05-30T20:56:01Z'));
    expect(dateOf('2008:05:30 15:56:01.25', '+00:00')).toBe(Date.parse('2008-05-30T15:56:01.250Z'));
    expect(dateOf('0000:00:00 00:00:00', undefined)).toBeNull();
    expect(dateOf('    :  :     :  :  ', undefined)).toBeNull();
    expect(dateOf(undefined, '+02:00')).toBeNull();
    // An offset that is not ±HH:MM is ignored rather than trusted.
    expect(dateOf('2008:05:30 15:56:01', 'local')).toBe(Date.parse('2008-05-30T15:56:01Z'));
  });
});
