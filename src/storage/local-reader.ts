import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { assertValidKey, BlobNotFoundError, isNotFound } from './blob-store.ts';
import { assertPrefix } from './keys.ts';

/**
 * Reads the committed blobs of a local store without creating anything in it (no scratch folder,
 * no lease, unlike LocalBlobStore.create): for `stowage migrate`, whose source is only read.
 */
export class LocalBlobReader {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** Streams the blob at `key`; throws BlobNotFoundError when there is none. */
  async read(key: string): Promise<Readable> {
    const file = this.#pathOf(key);
    const handle = await open(file, 'r').catch((err: unknown) => {
      throw isNotFound(err) ? new BlobNotFoundError(key) : err;
    });
    try {
      if (!(await handle.stat()).isFile()) throw new BlobNotFoundError(key);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle.createReadStream({ highWaterMark: 1024 * 1024 });
  }

  /** The blobs under `prefix` (which ends with "/") with their sizes, in no particular order. */
  async list(prefix: string): Promise<{ key: string; size: number }[]> {
    assertPrefix(prefix, false);
    const dir = this.#pathOf(prefix.slice(0, -1));
    let entries;
    try {
      entries = await readdir(dir, { recursive: true, withFileTypes: true });
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const found: { key: string; size: number }[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const key = path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
      const st = await stat(path.join(entry.parentPath, entry.name)).catch(() => null);
      if (st) found.push({ key, size: st.size });
    }
    return found;
  }

  #pathOf(key: string): string {
    assertValidKey(key);
    const file = path.resolve(this.root, key);
    if (!file.startsWith(this.root + path.sep)) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
    return file;
  }
}
