import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import type { ImageProcessor } from '../images/image-processor.ts';
import type { ThumbnailFormat } from '../images/negotiate-format.ts';
import { idOfRenditionKey, originalKey, renditionKey } from '../storage/key-layout.ts';
import type { MediaRecord } from './media-repo.ts';
import { newId } from '../util/ids.ts';
import { buffer } from 'node:stream/consumers';

/** A rendition: where it is stored, and its bytes when they are at hand in memory. */
export interface Rendition {
  key: string;
  size: number;
  bytes?: Buffer;
}

/** Renditions larger than this are streamed from storage rather than kept in memory. */
const MAX_REMEMBERED = 1024 * 1024;

/**
 * What one remembered rendition costs besides its bytes (the map entry, its key, the Buffer and
 * its backing store), so that the budget also bounds memory when renditions are tiny.
 */
const ENTRY_OVERHEAD = 512;

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
  /**
   * Recently served renditions, least recently used first; a rendition never changes. Each is a
   * copy in a buffer of its own exact size (see #remember).
   */
  readonly #memory = new Map<string, Buffer>();
  /** The keys in #memory by item id, so that forgetting an item does not scan them all. */
  readonly #keysOf = new Map<string, Set<string>>();
  readonly #memoryBudget: number;
  #memoryBytes = 0;

  constructor(
    storage: BlobStore,
    images: ImageProcessor,
    spoolDir: string,
    memoryBudgetBytes = 64 * 1024 * 1024,
  ) {
    this.#storage = storage;
    this.#images = images;
    this.#spoolDir = spoolDir;
    this.#memoryBudget = memoryBudgetBytes;
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
    const bytes = this.#remember(
      key,
      stored ? await buffer(await this.#storage.read(key)) : await this.#render(item, key, size, format),
    );
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

  /** Drops the remembered renditions of a deleted item: they would only take others' room. */
  forget(id: string): void {
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

  async #render(item: MediaRecord, key: string, size: number, format: ThumbnailFormat): Promise<Buffer> {
    const original = originalKey(item.id);
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
      const bytes = await this.#images
        .thumbnail(file, item.mimeType, size, format)
        .catch(async (error: unknown) => {
          // The original deleted under the request (the item with it): 404 like content, not a 500.
          if ((await this.#storage.stat(original).catch(() => undefined)) === null) {
            throw new BlobNotFoundError(original);
          }
          throw error;
        });
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
    } finally {
      if (spool) await fsp.rm(spool, { force: true });
    }
  }
}

function cost(bytes: Buffer): number {
  return bytes.length + ENTRY_OVERHEAD;
}
