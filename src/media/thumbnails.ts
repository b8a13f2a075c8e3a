import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../storage/blob-store.ts';
import type { ImageProcessor } from '../images/image-processor.ts';
import type { ThumbnailFormat } from '../images/negotiate-format.ts';
import { blobKey } from './ingest.ts';
import type { MediaRecord } from './media-repo.ts';
import { thumbnailPrefix } from './media-service.ts';
import { newId } from './signing.ts';

/**
 * Renditions are rendered on first request and kept in storage beside the original. Concurrent
 * first requests for one rendition share a single render; the image processor caps how many
 * renders run at once and refuses (503) past its queue.
 */
export class Thumbnails {
  readonly #storage: BlobStore;
  readonly #images: ImageProcessor;
  readonly #spoolDir: string;
  readonly #inflight = new Map<string, Promise<{ key: string; size: number }>>();

  constructor(storage: BlobStore, images: ImageProcessor, spoolDir: string) {
    this.#storage = storage;
    this.#images = images;
    this.#spoolDir = spoolDir;
  }

  static key(id: string, size: number, format: ThumbnailFormat): string {
    return `${thumbnailPrefix(id)}${size}.${format}`;
  }

  async get(
    item: MediaRecord,
    size: number,
    format: ThumbnailFormat,
  ): Promise<{ key: string; size: number }> {
    const key = Thumbnails.key(item.id, size, format);
    const cached = await this.#storage.stat(key);
    if (cached) return { key, size: cached.size };
    let render = this.#inflight.get(key);
    if (!render) {
      render = this.#render(item, key, size, format).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, render);
    }
    return render;
  }

  async #render(item: MediaRecord, key: string, size: number, format: ThumbnailFormat) {
    const original = blobKey(item.id);
    let file = this.#storage.localPath(original);
    let spool: string | undefined;
    try {
      if (!file) {
        // Object storage: sharp decodes from a local file, so fetch the original once.
        spool = path.join(this.#spoolDir, `${newId()}.thumb`);
        await pipeline(
          await this.#storage.read(original),
          fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }),
        );
        file = spool;
      }
      const bytes = await this.#images.thumbnail(file, item.mimeType, size, format);
      const writer = this.#storage.createWriter(key);
      try {
        await pipeline(async function* () {
          yield bytes;
        }, writer.stream);
        await writer.commit();
      } catch (error) {
        await writer.abort();
        throw error;
      }
      return { key, size: bytes.length };
    } finally {
      if (spool) await fsp.rm(spool, { force: true });
    }
  }
}
