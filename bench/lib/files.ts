import crypto from 'node:crypto';
import fs from 'node:fs';
import sharp from 'sharp';
import { MiB } from './rss.ts';

/**
 * An MP4 `ftyp` box: enough for Stowage's type sniffing to accept the file as video/mp4 (random
 * bytes alone have no type and would be refused with 415). Everything after it is random, so no
 * compression anywhere (HTTP, disk, clamd) can flatter a number.
 */
function mp4Header(): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32BE(32, 0);
  head.write('ftypisom', 4, 'latin1');
  head.writeUInt32BE(0x200, 12);
  head.write('isomiso2avc1mp41', 16, 'latin1');
  return head;
}

/** A PDF's first line: the same random file typed as a document (no ffprobe when it is stored). */
function pdfHeader(): Buffer {
  return Buffer.from('%PDF-1.7\n', 'latin1');
}

export function writeRandomFile(file: string, bytes: number, kind: 'video' | 'document' = 'video'): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    const header = kind === 'video' ? mp4Header() : pdfHeader();
    fs.writeSync(fd, header);
    const chunk = Buffer.alloc(8 * MiB);
    for (let written = header.length; written < bytes;) {
      const n = Math.min(chunk.length, bytes - written);
      crypto.randomFillSync(chunk, 0, n);
      written += fs.writeSync(fd, chunk, 0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A 12-megapixel (4000×3000) JPEG with photo-like content: smooth colour gradients plus sensor-like
 * noise, quality 90, so decoding costs what a camera photo's does (a flat image would decode
 * unrealistically fast).
 */
export async function writePhoto(file: string): Promise<void> {
  const width = 4000;
  const height = 3000;
  const gradient = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      gradient[i] = (x * 255) / width;
      gradient[i + 1] = (y * 255) / height;
      gradient[i + 2] = 128 + 100 * Math.sin((x + y) / 300);
    }
  }
  const noise = await sharp({
    create: {
      width,
      height,
      channels: 3,
      background: '#808080',
      noise: { type: 'gaussian', mean: 128, sigma: 12 },
    },
  })
    .raw()
    .toBuffer();
  for (let i = 0; i < gradient.length; i++)
    gradient[i] = Math.max(0, Math.min(255, gradient[i]! + noise[i]! - 128));
  await sharp(gradient, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toFile(file);
}
