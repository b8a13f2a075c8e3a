import { pipeline } from 'node:stream/promises';
import { buffer } from 'node:stream/consumers';
import { AppError } from '../errors.ts';
import { isNotFound, type BlobStore } from '../storage/blob-store.ts';
import type { ImageProcessor, RenderSpec } from '../images/image-processor.ts';
import type { ThumbnailFormat } from '../images/negotiate-format.ts';
import { idOfRenditionKey, renditionKey } from '../storage/key-layout.ts';
import type { MediaRecord } from './media-repo.ts';
import type { ImageSource, SourceImage } from './image-source.ts';
import type { RenditionCache } from './rendition-cache.ts';

/** The size the thumbnail route serves when none is asked for: 256, or the first configured. */
export function defaultThumbnailSize(sizes: readonly number[]): number {
  return sizes.includes(256) ? 256 : (sizes[0] ?? 256);
}

/** A rendition: where it is stored, and its bytes when they are at hand in memory. */
export interface Rendition {
  key: string;
  size: number;
  bytes?: Buffer;
}

/** Renditions larger than this are streamed from storage rather than kept in memory. */
const MAX_REMEMBERED = 1024 * 1024;

export interface ThumbnailsDeps {
  storage: BlobStore;
  images: ImageProcessor;
  /** The local image each item's thumbnails and renditions are rendered from. */
  source: ImageSource;
  /** The index and byte budget of everything stored under the renditions prefix. */
  cache: RenditionCache;
  memoryBudgetBytes?: number;
}

/**
 * What one remembered rendition costs besides its bytes (the map entry, its key, the Buffer and
 * its backing store), so that the budget also bounds memory when renditions are tiny.
 */
const ENTRY_OVERHEAD = 512;

/**
 * Thumbnails (fixed sizes) and renditions on demand (/render), rendered on first request and kept
 * in storage beside the original, within the rendition cache's byte budget. Concurrent first
 * requests for one rendition share a single render; the image processor caps how many renders run
 * at once and refuses (503) past its queue.
 */
export class Thumbnails {
  readonly #storage: BlobStore;
  readonly #images: ImageProcessor;
  readonly #source: ImageSource;
  readonly #cache: RenditionCache;
  readonly #inflight = new Map<string, Promise<Rendition>>();
  /**
   * Recently served renditions, least recently used first; a rendition never changes. Each is a
   * copy in a buffer of its own exact size (see #remember).
   */
  readonly #memory = new Map<string, Buffer>();
  /** The keys in #memory by item id, so that forgetting an item does not scan them all. */
  readonly #keysOf = new Map<string, Set<string>>();
  readonly #memoryBudget: number;
  #memoryBytes = 0;

  constructor(deps: ThumbnailsDeps) {
    this.#storage = deps.storage;
    this.#images = deps.images;
    this.#source = deps.source;
    this.#cache = deps.cache;
    this.#memoryBudget = deps.memoryBudgetBytes ?? 64 * 1024 * 1024;
    // An evicted rendition is rendered again when next asked for, as if it had never been.
    deps.cache.onEvicted((key) => this.#drop(key));
  }

  static key(id: string, size: number, format: ThumbnailFormat): string {
    return renditionKey(id, `${size}.${format}`);
  }

  /** Where a rendition is stored; PNG is lossless, so its quality is not part of the name. */
  static renditionKey(id: string, spec: RenderSpec): string {
    const quality = spec.format === 'png' ? 0 : spec.quality;
    return renditionKey(
      id,
      `r-${spec.width ?? 0}x${spec.height ?? 0}-${spec.fit}-q${quality}.${spec.format}`,
    );
  }

  /** The thumbnail, from memory, from storage, or rendered now (once, however many ask). */
  get(item: MediaRecord, size: number, format: ThumbnailFormat): Promise<Rendition> {
    return this.#obtain(item, Thumbnails.key(item.id, size, format), (image) =>
      this.#images.thumbnail(image.file, image.mimeType, size, format),
    );
  }

  /** A rendition on demand, from memory, from storage, or rendered now (once, however many ask). */
  render(item: MediaRecord, spec: RenderSpec): Promise<Rendition> {
    return this.#obtain(item, Thumbnails.renditionKey(item.id, spec), (image) =>
      this.#images.render(image.file, image.mimeType, spec),
    );
  }

  async #obtain(
    item: MediaRecord,
    key: string,
    produce: (image: SourceImage) => Promise<Buffer>,
  ): Promise<Rendition> {
    const remembered = this.#memory.get(key);
    if (remembered) {
      this.#memory.delete(key);
      this.#memory.set(key, remembered);
      // The last use is only a hint for eviction: serving goes on when it cannot be written.
      await this.#cache.touch(key).catch(() => undefined);
      return { key, size: remembered.length, bytes: remembered };
    }
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#load(item, key, produce).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  async #load(
    item: MediaRecord,
    key: string,
    produce: (image: SourceImage) => Promise<Buffer>,
  ): Promise<Rendition> {
    const stored = await this.#storage.stat(key);
    if (stored) {
      await this.#cache.used(key, item.id, stored.size).catch(() => undefined);
      if (stored.size > MAX_REMEMBERED) return { key, size: stored.size };
      // Evicted between the stat and the read: rendered again below, as if it had never been.
      const read = await this.#storage.read(key).then(buffer, (error: unknown) => {
        if (isNotFound(error)) return undefined;
        throw error;
      });
      if (read) {
        const bytes = this.#remember(key, read);
        return { key, size: bytes.length, bytes };
      }
    }
    const bytes = this.#remember(key, await this.#render(item, key, produce));
    return { key, size: bytes.length, bytes };
  }

  /**
   * Keeps a copy, never the rendered buffer itself: sharp hands back a buffer that wraps libvips'
   * output allocation, which is several times larger than the image (16 KiB and more for a 3 KiB
   * thumbnail), lives in the malloc arena of the thread that encoded it, and is not reported to V8.
   * Kept as such, a full budget held about five times its size in native memory that nothing
   * accounted for (issue 9: RSS rising ~25 MiB/min under uploads while the JS heap stayed flat).
   * The copy is exactly as large as the image and counted in V8's external memory.
   */
  #remember(key: string, bytes: Buffer): Buffer {
    if (bytes.length > MAX_REMEMBERED) return bytes;
    const own = Buffer.allocUnsafeSlow(bytes.length);
    bytes.copy(own);
    this.#drop(key);
    this.#memory.set(key, own);
    this.#memoryBytes += cost(own);
    const id = idOfRenditionKey(key)!;
    const keys = this.#keysOf.get(id) ?? new Set();
    this.#keysOf.set(id, keys.add(key));
    for (const oldest of this.#memory.keys()) {
      if (this.#memoryBytes <= this.#memoryBudget) break;
      this.#drop(oldest);
    }
    return own;
  }

  /** Bytes held in memory by remembered renditions, as counted against the budget. */
  get memoryBytes(): number {
    return this.#memoryBytes;
  }

  /**
   * For a deleted item, before its files are removed: waits for its renders under way (each would
   * store its rendition after the item's folder went, an orphan only the sweeper would find) and
   * drops its remembered renditions, which would only take others' room.
   */
  async forget(id: string): Promise<void> {
    const rendering = [...this.#inflight].filter(([key]) => idOfRenditionKey(key) === id);
    await Promise.allSettled(rendering.map(([, pending]) => pending));
    for (const key of this.#keysOf.get(id) ?? []) this.#drop(key);
  }

  #drop(key: string): void {
    const bytes = this.#memory.get(key);
    if (!bytes) return;
    this.#memory.delete(key);
    this.#memoryBytes -= cost(bytes);
    const id = idOfRenditionKey(key)!;
    const keys = this.#keysOf.get(id);
    keys?.delete(key);
    if (keys?.size === 0) this.#keysOf.delete(id);
  }

  async #render(
    item: MediaRecord,
    key: string,
    produce: (image: SourceImage) => Promise<Buffer>,
  ): Promise<Buffer> {
    const bytes = await this.#source(item, produce);
    if (bytes === null) throw new AppError('NOT_FOUND', 'This item has no image to render.');
    // One larger than the whole budget is served but not stored.
    if (!(await this.#cache.makeRoom(bytes.length, key))) return bytes;
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
    await this.#cache.added(key, item.id, bytes.length);
    return bytes;
  }
}

function cost(bytes: Buffer): number {
  return bytes.length + ENTRY_OVERHEAD;
}
