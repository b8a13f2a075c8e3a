import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { originalKey } from '../storage/key-layout.ts';
import { newId } from '../util/ids.ts';
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
 * Images render from their original: the stored file itself on local disk, a spooled copy on
 * object storage (sharp decodes from a local file). Other kinds have no image.
 */
export function originalImageSource(storage: BlobStore, spoolDir: string): ImageSource {
  return async <T>(item: MediaRecord, use: (image: SourceImage) => Promise<T>): Promise<T | null> => {
    if (item.kind !== 'image') return null;
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
      return await use({ file, mimeType: item.mimeType }).catch(async (error: unknown) => {
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
