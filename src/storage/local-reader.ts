import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { assertValidKey, BlobNotFoundError, isNotFound } from './blob-store.ts';

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
    assertValidKey(key);
    const file = path.resolve(this.root, key);
    if (!file.startsWith(this.root + path.sep)) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
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
}
