import exifr from 'exifr';

/** The item's `exif` field: fields missing from the file are null. */
export interface CameraData {
  make: string | null;
  model: string | null;
  lens: string | null;
  /** Seconds. */
  exposureTime: number | null;
  fNumber: number | null;
  iso: number | null;
  /** Millimetres, as the lens states it (not the 35 mm equivalent). */
  focalLength: number | null;
  gps: { latitude: number; longitude: number; altitude: number | null } | null;
}

export interface CameraReading {
  /** DateTimeOriginal with OffsetTimeOriginal, ms since the epoch; without an offset read as UTC. */
  takenAt: number | null;
  /** Null when the file has no camera data at all. */
  exif: CameraData | null;
}

const NOTHING: CameraReading = { takenAt: null, exif: null };

const TAGS = [
  'Make',
  'Model',
  'LensModel',
  'ExposureTime',
  'FNumber',
  'ISO',
  'FocalLength',
  'DateTimeOriginal',
  'OffsetTimeOriginal',
  'GPSLatitude',
  'GPSLatitudeRef',
  'GPSLongitude',
  'GPSLongitudeRef',
  'GPSAltitude',
  'GPSAltitudeRef',
];

/**
 * One options object for every parse: exifr caches the Options it builds from an options object in
 * a Map keyed by that object, for ever, so a fresh literal per call kept one Options (with its
 * Sets) per upload — the JS heap grew by about 8 KB an image (issue 9's soak, after the merges).
 * Raw values: exifr would read dates in the server's time zone and translate enums to text.
 */
export const EXIFR_OPTIONS = Object.freeze({
  tiff: true,
  exif: true,
  gps: true,
  ifd1: false,
  xmp: false,
  icc: false,
  iptc: false,
  jfif: false,
  ihdr: false,
  reviveValues: false,
  translateValues: false,
  translateKeys: true,
  pick: TAGS,
});

/**
 * Camera data of an image file, through exifr (JPEG, TIFF, HEIC/AVIF, PNG, WebP). exifr reads the
 * file in small chunks up to the metadata segments, never the whole image. A file without usable
 * metadata (or that exifr cannot parse) reads as no data: it never fails an upload.
 */
export async function readCameraData(path: string): Promise<CameraReading> {
  let tags: Record<string, unknown> | undefined;
  try {
    tags = (await exifr.parse(path, EXIFR_OPTIONS)) as Record<string, unknown> | undefined;
  } catch {
    return NOTHING;
  }
  if (!tags || Object.keys(tags).length === 0) return NOTHING;
  const exif: CameraData = {
    make: text(tags.Make),
    model: text(tags.Model),
    lens: text(tags.LensModel),
    exposureTime: num(tags.ExposureTime),
    fNumber: num(tags.FNumber),
    iso: num(Array.isArray(tags.ISO) ? (tags.ISO as unknown[])[0] : tags.ISO),
    focalLength: num(tags.FocalLength),
    gps: gpsOf(tags),
  };
  const takenAt = dateOf(tags.DateTimeOriginal, tags.OffsetTimeOriginal);
  const empty = Object.values(exif).every((value) => value === null);
  return { takenAt, exif: empty ? null : exif };
}

/** "2008:05:30 15:56:01" with "+02:00" → that instant; without an offset, taken as UTC. */
export function dateOf(value: unknown, offset: unknown): number | null {
  const match = /^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?/.exec(text(value) ?? '');
  if (!match) return null;
  const [, y, mo, d, h, mi, s, fraction] = match;
  const zone = /^[+-]\d{2}:\d{2}$/.test(text(offset) ?? '') ? text(offset)! : 'Z';
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${fraction ?? ''}${zone}`);
  // Cameras without a set clock write 0000:00:00 00:00:00, which no calendar holds.
  return Number.isFinite(ms) ? ms : null;
}

function gpsOf(tags: Record<string, unknown>): CameraData['gps'] {
  const latitude = degrees(tags.GPSLatitude, tags.GPSLatitudeRef, 'S');
  const longitude = degrees(tags.GPSLongitude, tags.GPSLongitudeRef, 'W');
  if (latitude === null || longitude === null) return null;
  const altitude = num(tags.GPSAltitude);
  // A one-byte field, which exifr gives as a Uint8Array: 1 means below sea level.
  const ref = tags.GPSAltitudeRef;
  const below = (typeof ref === 'number' ? ref : (ref as ArrayLike<number> | undefined)?.[0]) === 1;
  return { latitude, longitude, altitude: altitude === null ? null : below ? -altitude : altitude };
}

/** [degrees, minutes, seconds] and N/S or E/W → signed decimal degrees. */
function degrees(dms: unknown, ref: unknown, negative: string): number | null {
  if (
    !Array.isArray(dms) ||
    dms.length !== 3 ||
    !dms.every((v) => typeof v === 'number' && Number.isFinite(v))
  )
    return null;
  const [d, m, s] = dms as [number, number, number];
  const value = d + m / 60 + s / 3600;
  if (Math.abs(value) > 180) return null;
  return text(ref)?.toUpperCase() === negative ? -value : value;
}

function text(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  // Fixed-size EXIF fields are padded with NULs and spaces.
  const trimmed = value.replace(/\0+$/, '').trim();
  return trimmed === '' ? null : trimmed;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}
