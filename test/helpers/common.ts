import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import type { PASSWORDS } from './app.ts';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'images');

export type User = keyof typeof PASSWORDS;

/** A media item as the API returns it. */
export interface MediaItem {
  id: string;
  filename: string;
  mimeType: string;
  size: number;
  sha256: string;
  owner: string;
  visibility: 'private' | 'public';
  tags: string[];
  image: { width: number; height: number } | null;
  createdAt: string;
  updatedAt: string;
  urls: { content: string; thumbnail: string | null };
  takenAt: string | null;
  placeholder: string | null;
  media: {
    durationMs: number | null;
    width: number | null;
    height: number | null;
    videoCodec: string | null;
    audioCodec: string | null;
    frameRate: number | null;
    bitrate: number | null;
  } | null;
  exif: {
    make: string | null;
    model: string | null;
    lens: string | null;
    exposureTime: number | null;
    fNumber: number | null;
    iso: number | null;
    focalLength: number | null;
    gps: { latitude: number; longitude: number; altitude: number | null } | null;
  } | null;
}

export function sha256(data: Buffer | Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** `size` bytes of a PDF: a real header, then random filler (random, so no two chunks repeat). */
export function pdfOfSize(size: number): Buffer {
  const data = crypto.randomBytes(size);
  Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1').copy(data);
  return data;
}

/** Polls `check` until it holds; fails after `withinMs`. */
export async function until(
  check: () => Promise<boolean> | boolean,
  withinMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A node:http response read to its end. */
export function readResponse(response: IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('error', reject);
    response.on('end', () =>
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        body: Buffer.concat(chunks).toString(),
      }),
    );
  });
}
