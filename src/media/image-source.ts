import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { originalKey } from '../storage/key-layout.ts';
import { newId } from '../util/ids.ts';
import { AppError } from '../errors.ts';
import type { VideoTools } from '../video/video-tools.ts';
import type { MediaRecord } from './media-repo.ts';

/** A local image file that thumbnails and renditions of an item are rendered from. */
export interface SourceImage {
  file: string;
  mimeType: string;
}

/**
 * Lends `use` the local image an item's thumbnails and renditions are rendered from, for as long
 * as `use` runs (a spooled copy is removed afterwards); null when the item has none. This is the
 * one place that decides what a derived image shows, e.g. an image's original or a video's poster.
 */
export type ImageSource = <T>(
  item: MediaRecord,
  use: (image: SourceImage) => Promise<T>,
) => Promise<T | null>;

/**
 * Whether the item has an image to render: images, and videos in which ffprobe found a picture
 * (their poster frame). Decides the item's `urls.thumbnail` and which items the routes serve.
 */
export function hasSourceImage(item: MediaRecord): boolean {
  return item.kind === 'image' || (item.kind === 'video' && item.media?.width != null);
}

/**
 * Images render from their original, videos from their upright poster frame (a JPEG extracted by
 * ffmpeg about one second in, or the first frame of a shorter video). The original is the stored
 * file itself on local disk, a spooled copy on object storage (sharp and ffmpeg read local files).
 * Audio and documents have no image (null). A video without ffmpeg on the server is
 * UNSUPPORTED_MEDIA_TYPE; one ffmpeg cannot take a frame from, INVALID_FILE.
 */
export function mediaImageSource(
  storage: BlobStore,
  spoolDir: string,
  video: VideoTools | null,
): ImageSource {
  return async <T>(item: MediaRecord, use: (image: SourceImage) => Promise<T>): Promise<T | null> => {
    if (!hasSourceImage(item)) return null;
    if (item.kind === 'video' && !video) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Video posters are not available on this server.');
    }
    const original = originalKey(item.id);
    let file = storage.localPath(original);
    let spool: string | undefined;
    try {
      if (!file) {
        spool = path.join(spoolDir, `${newId()}.thumb`);
        await pipeline(
          await storage.read(original),
          fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }),
        );
        file = spool;
      }
      const local = file;
      const job =
        item.kind === 'video' && video
          ? video.withPoster(local, item.media?.durationMs ?? null, (poster) =>
              use({ file: poster, mimeType: 'image/jpeg' }),
            )
          : use({ file: local, mimeType: item.mimeType });
      return await job.catch(async (error: unknown) => {
        // The original deleted under the request (the item with it): 404 like content, not a 500.
        if ((await storage.stat(original).catch(() => undefined)) === null) {
          throw new BlobNotFoundError(original);
        }
        throw error;
      });
    } finally {
      if (spool) await fsp.rm(spool, { force: true });
    }
  };
}
