import fs from 'node:fs/promises';
import path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { expect } from 'vitest';
import type { TestAppOptions } from '../helpers/app.ts';
import { startTusApp, type MediaItem, type TusApp, type User } from '../tus/tus-helpers.ts';

export { expectError, fixture, KiB, sha256, type MediaItem } from '../tus/tus-helpers.ts';

/** A listening app for the thumbnail tests: uploads through the multipart API, reads over HTTP. */
export interface ThumbApp extends TusApp {
  /** Uploads through POST /api/media/upload and returns the item (201 expected). */
  uploadFile(
    data: Buffer,
    filename: string,
    options?: { as?: User; fields?: Record<string, string> },
  ): Promise<MediaItem>;
  /** A multipart upload's raw response. */
  uploadRaw(
    data: Buffer,
    filename: string,
    options?: { as?: User; fields?: Record<string, string> },
  ): Promise<Response>;
  /** GET (or HEAD) /api/media/ID/thumbnail with a query string and headers, as alice unless `as` says otherwise. */
  thumbnail(
    id: string,
    options?: { query?: string; headers?: Record<string, string>; as?: User | null; method?: string },
  ): Promise<Response>;
  /** The renditions stored for an item, by file name. */
  storedThumbnails(id: string): Promise<string[]>;
}

/**
 * The thumbnail suites study the render a request waits for, so no thumbnail is rendered ahead of
 * its request unless `env` turns STOWAGE_THUMBNAILS_AHEAD on (thumbnails-ahead.test.ts does).
 */
export async function startThumbApp(
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<ThumbApp> {
  const app = await startTusApp({ STOWAGE_THUMBNAILS_AHEAD: 'off', ...env }, options);
  const thumbApp: ThumbApp = {
    ...app,
    async uploadRaw(data, filename, options = {}) {
      const form = new FormData();
      for (const [name, value] of Object.entries(options.fields ?? {})) form.append(name, value);
      form.append('file', new Blob([new Uint8Array(data)]), filename);
      return fetch(`${app.base}/api/media/upload`, {
        method: 'POST',
        headers: app.bearer(options.as ?? 'alice'),
        body: form,
      });
    },
    async uploadFile(data, filename, options = {}) {
      const res = await thumbApp.uploadRaw(data, filename, options);
      const text = await res.text();
      expect({ status: res.status, text }).toMatchObject({ status: 201 });
      return JSON.parse(text) as MediaItem;
    },
    thumbnail(id, options = {}) {
      const query = options.query === undefined ? '' : `?${options.query}`;
      return app.request(options.method ?? 'GET', `/api/media/${id}/thumbnail${query}`, {
        as: options.as === undefined ? 'alice' : options.as,
        ...(options.headers ? { headers: options.headers } : {}),
      });
    },
    async storedThumbnails(id) {
      return (await fs.readdir(path.join(app.dir, 'blobs', 'thumbs', id)).catch(() => [])).sort();
    },
  };
  return thumbApp;
}

/** The response's bytes, after checking it is a 200 of the given type. */
export async function imageBytes(res: Response, type = 'image/webp'): Promise<Buffer> {
  const data = Buffer.from(await res.arrayBuffer());
  expect({ status: res.status, type: res.headers.get('content-type') }).toEqual({ status: 200, type });
  return data;
}

/** How far apart two images look: mean absolute difference of 32×32 greyscale versions, 0–255. */
export async function difference(a: Buffer | Sharp, b: Buffer | Sharp): Promise<number> {
  const small = (image: Buffer | Sharp) =>
    (Buffer.isBuffer(image) ? sharp(image) : image)
      .resize(32, 32, { fit: 'fill' })
      .greyscale()
      .raw()
      .toBuffer();
  const [x, y] = await Promise.all([small(a), small(b)]);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.abs(x[i]! - y[i]!);
  return sum / x.length;
}
