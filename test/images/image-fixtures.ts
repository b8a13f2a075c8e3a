import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll } from 'vitest';
import { AppError } from '../../src/errors.ts';

/** Real photos (see test/fixtures/images/README.md) and files generated from them per test run. */

export { FIXTURES } from '../helpers/common.ts';
import { FIXTURES } from '../helpers/common.ts';

export function fixture(name: string): string {
  return join(FIXTURES, name);
}

export interface ScratchDir {
  path: string;
  file(name: string, data: Buffer): Promise<string>;
  remove(): Promise<void>;
}

export async function scratchDir(): Promise<ScratchDir> {
  const path = await mkdtemp(join(tmpdir(), 'stowage-images-test-'));
  return {
    path,
    file: async (name, data) => {
      const file = join(path, name);
      await writeFile(file, data);
      return file;
    },
    remove: () => rm(path, { recursive: true, force: true }),
  };
}

/** The calling test file's scratch directory: made before its tests, removed after them. */
export function useScratchDir(): () => ScratchDir {
  let scratch: ScratchDir | undefined;
  beforeAll(async () => {
    scratch = await scratchDir();
  });
  afterAll(async () => {
    await scratch?.remove();
  });
  return () => {
    if (!scratch) throw new Error('the scratch directory is made in beforeAll');
    return scratch;
  };
}

/** The first `fraction` of a real file, as an interrupted upload leaves it. */
export async function truncated(name: string, fraction: number): Promise<Buffer> {
  const data = await readFile(fixture(name));
  return data.subarray(0, Math.floor(data.length * fraction));
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A well-formed PNG whose header says `width`×`height` and whose pixel data is `idat`. */
export function png(
  width: number,
  height: number,
  bitDepth: number,
  colourType: number,
  idat: Buffer,
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * A real decompression bomb: a complete black-and-white PNG of width×height that decodes fine but
 * is tens of kilobytes on disk (rows of zeros deflate about 1000:1).
 */
export function pngBomb(width: number, height: number): Buffer {
  const rowBytes = 1 + Math.ceil(width / 8);
  return png(width, height, 1, 0, deflateSync(Buffer.alloc(rowBytes * height), { level: 9 }));
}

/**
 * Where the JPEG segment with this marker starts, found by walking the segments: searching the
 * bytes would also find the markers of the thumbnail JPEG inside the EXIF block.
 */
function segment(data: Buffer, marker: number): number {
  let at = 2;
  while (data[at] === 0xff && data[at + 1] !== marker) at += 2 + data.readUInt16BE(at + 2);
  if (data[at + 1] !== marker) throw new Error(`no JPEG segment 0xff${marker.toString(16)}`);
  return at;
}

/** A real JPEG whose frame header (SOF0) is rewritten to claim width×height. */
export async function jpegClaiming(name: string, width: number, height: number): Promise<Buffer> {
  const data = Buffer.from(await readFile(fixture(name)));
  const sof = segment(data, 0xc0);
  data.writeUInt16BE(height, sof + 5);
  data.writeUInt16BE(width, sof + 7);
  return data;
}

/**
 * A real JPEG with junk bytes before its scan: libjpeg warns "extraneous bytes before marker"
 * and then decodes every pixel, as browsers do. Some cameras and editors write files like this.
 */
export async function jpegWithStrayBytes(name: string): Promise<Buffer> {
  const data = await readFile(fixture(name));
  const sos = segment(data, 0xda);
  return Buffer.concat([data.subarray(0, sos), Buffer.from([1, 2, 3, 4]), data.subarray(sos)]);
}

/** An animation with `frames` distinct solid-colour frames of width×height. */
export async function animation(
  format: 'gif' | 'webp',
  frames: number,
  width: number,
  height: number,
): Promise<Buffer> {
  const frameBytes = width * height * 3;
  const pixels = Buffer.alloc(frameBytes * frames);
  for (let i = 0; i < frames; i++) pixels.fill((i * 37) % 256, i * frameBytes, (i + 1) * frameBytes);
  const image = sharp(pixels, { raw: { width, height: height * frames, channels: 3, pageHeight: height } });
  return format === 'gif' ? image.gif().toBuffer() : image.webp({ lossless: true }).toBuffer();
}

/** A photo-like JPEG of width×height, made by scaling up a real photo. */
export function largeJpeg(width: number, height: number): Promise<Buffer> {
  return sharp(fixture('DSCN0025.jpg'))
    .resize(width, height, { fit: 'fill' })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** How far apart two renditions look: mean absolute difference of 32×32 greyscale versions, 0–255. */
export async function difference(a: Buffer, b: Buffer): Promise<number> {
  const small = (image: Buffer) => sharp(image).resize(32, 32, { fit: 'fill' }).greyscale().raw().toBuffer();
  const [x, y] = await Promise.all([small(a), small(b)]);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.abs(x[i]! - y[i]!);
  return sum / x.length;
}

/** The AppError code a promise rejects with, or the unexpected outcome as text. */
export async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return error instanceof AppError ? error.code : `not an AppError: ${String(error)}`;
  }
}

/** Whether an EXIF block (as sharp returns it) points to a GPS directory (tag 0x8825 in IFD0). */
export function hasGpsDirectory(exif: Buffer): boolean {
  const tiff = exif.subarray(exif.indexOf('Exif\0\0') + 6);
  const little = tiff.toString('latin1', 0, 2) === 'II';
  const u16 = (at: number) => (little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number) => (little ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  const ifd0 = u32(4);
  for (let entry = 0; entry < u16(ifd0); entry++) {
    if (u16(ifd0 + 2 + entry * 12) === 0x8825) return true;
  }
  return false;
}
