import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import type { ImageProcessor } from '../images/image-processor.ts';
import type { ThumbnailFormat } from '../images/negotiate-format.ts';
import { originalKey, renditionKey } from '../storage/key-layout.ts';
import type { MediaRecord } from './media-repo.ts';
import { newId } from '../util/ids.ts';
import { buffer } from 'node:stream/consumers';
import type { VideoTools } from '../video/video-tools.ts';
import { AppError } from '../errors.ts';

/** A local image file to render from, valid while the callback of withSourceImage() runs. */
export interface SourceImage {
  path: string;
  /** The detected type of `path` (a video's poster is image/jpeg). */
  mimeType: string;
}

/**
 * Whether the item has an image to render: images, and videos in which ffprobe found a picture
 * (their poster frame). Decides the item's `urls.thumbnail` and which items the route serves.
 */
export function hasSourceImage(item: MediaRecord): boolean {
  return item.kind === 'image' || (item.kind === 'video' && item.media?.width != null);
}

/** A rendition: where it is stored, and its bytes when they are at hand in memory. */
export interface Rendition {
  key: string;
  size: number;
  bytes?: Buffer;
}

/** Renditions larger than this are streamed from storage rather than kept in memory. */
const MAX_REMEMBERED = 1024 * 1024;

/**
 * Renditions are rendered on first request and kept in storage beside the original. Concurrent
 * first requests for one rendition share a single render; the image processor caps how many
 * renders run at once and refuses (503) past its queue.
 */
export class Thumbnails {
  readonly #storage: BlobStore;
  readonly #images: ImageProcessor;
  readonly #spoolDir: string;
  readonly #inflight = new Map<string, Promise<Rendition>>();
  /** Recently served renditions, least recently used first; a rendition never changes. */
  readonly #memory = new Map<string, Buffer>();
  readonly #memoryBudget: number;
  #memoryBytes = 0;
  readonly #video: VideoTools | null;

  constructor(
    storage: BlobStore,
    images: ImageProcessor,
    spoolDir: string,
    memoryBudgetBytes = 64 * 1024 * 1024,
    /** Extracts video posters; null when ffmpeg is missing (videos then have no thumbnails). */
    video: VideoTools | null = null,
  ) {
    this.#storage = storage;
    this.#images = images;
    this.#spoolDir = spoolDir;
    this.#memoryBudget = memoryBudgetBytes;
    this.#video = video;
  }

  static key(id: string, size: number, format: ThumbnailFormat): string {
    return renditionKey(id, `${size}.${format}`);
  }

  /** The rendition, from memory, from storage, or rendered now (once, however many ask). */
  async get(item: MediaRecord, size: number, format: ThumbnailFormat): Promise<Rendition> {
    const key = Thumbnails.key(item.id, size, format);
    const remembered = this.#memory.get(key);
    if (remembered) {
      this.#memory.delete(key);
      this.#memory.set(key, remembered);
      return { key, size: remembered.length, bytes: remembered };
    }
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#load(item, key, size, format).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  async #load(item: MediaRecord, key: string, size: number, format: ThumbnailFormat): Promise<Rendition> {
    const stored = await this.#storage.stat(key);
    if (stored && stored.size > MAX_REMEMBERED) return { key, size: stored.size };
    const bytes = stored
      ? await buffer(await this.#storage.read(key))
      : await this.#render(item, key, size, format);
    this.#remember(key, bytes);
    return { key, size: bytes.length, bytes };
  }

  #remember(key: string, bytes: Buffer): void {
    if (bytes.length > MAX_REMEMBERED) return;
    this.#memory.set(key, bytes);
    this.#memoryBytes += bytes.length;
    for (const [oldest, old] of this.#memory) {
      if (this.#memoryBytes <= this.#memoryBudget) break;
      this.#memory.delete(oldest);
      this.#memoryBytes -= old.length;
    }
  }

  async #render(item: MediaRecord, key: string, size: number, format: ThumbnailFormat): Promise<Buffer> {
    const bytes = await this.withSourceImage(item, (source) =>
      this.#images.thumbnail(source.path, source.mimeType, size, format),
    );
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
    return bytes;
  }

  /**
   * The image every rendition of the item is made from, as a local file handed to `use` and
   * removed (when temporary) once `use` settles: the original of an image (spooled from object
   * storage when not on local disk), the upright poster frame of a video (a JPEG extracted by
   * ffmpeg about one second in). Pass the path and type to ImageProcessor (which decodes HEIC
   * through libheif and applies EXIF orientation). Throws NOT_FOUND for items without an image
   * (see hasSourceImage), UNSUPPORTED_MEDIA_TYPE for videos when ffmpeg is missing, INVALID_FILE
   * for a video ffmpeg cannot take a frame from, and BlobNotFoundError when the original was
   * deleted meanwhile.
   */
  async withSourceImage<T>(item: MediaRecord, use: (source: SourceImage) => Promise<T>): Promise<T> {
    if (!hasSourceImage(item)) throw new AppError('NOT_FOUND', 'This item has no image to render.');
    const video = this.#video;
    if (item.kind === 'video' && !video) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Video posters are not available on this server.');
    }
    const original = originalKey(item.id);
    let file = this.#storage.localPath(original);
    let spool: string | undefined;
    try {
      if (!file) {
        // Object storage: sharp and ffmpeg read local files, so fetch the original once.
        spool = path.join(this.#spoolDir, `${newId()}.thumb`);
        await pipeline(
          await this.#storage.read(original),
          fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }),
        );
        file = spool;
      }
      const local = file;
      const job =
        item.kind === 'video' && video
          ? video.withPoster(local, item.media?.durationMs ?? null, (poster) =>
              use({ path: poster, mimeType: 'image/jpeg' }),
            )
          : use({ path: local, mimeType: item.mimeType });
      return await job.catch(async (error: unknown) => {
        // The original deleted under the request (the item with it): 404 like content, not a 500.
        if ((await this.#storage.stat(original).catch(() => undefined)) === null) {
          throw new BlobNotFoundError(original);
        }
        throw error;
      });
    } finally {
      if (spool) await fsp.rm(spool, { force: true });
    }
  }
}
