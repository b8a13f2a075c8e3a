import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import { ERRORS } from '@tus/utils';
import type { Config } from '../../config.ts';
import { createReadStream, createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isNotFound, isStorageFull } from '../../storage/blob-store.ts';
import { uploadsDirectory } from '../../storage/key-layout.ts';
import type { ReadableDataStore } from './tus-uploads.ts';

/** Where unfinished resumable uploads live: in the same kind of storage as the blobs. */
export async function createTusStore(config: Config): Promise<ReadableDataStore> {
  const expirationPeriodInMilliseconds = config.uploadExpiry * 1000;
  const storage = config.storage;
  if (storage.kind === 's3') {
    // Loaded only for S3: the AWS SDK costs tens of MiB of memory.
    const { S3UploadStore } = await import('./tus-s3-store.ts');
    return new S3UploadStore({
      partSize: 8 * 1024 * 1024,
      expirationPeriodInMilliseconds,
      s3ClientConfig: {
        bucket: storage.bucket,
        region: storage.region,
        ...(storage.endpoint ? { endpoint: storage.endpoint } : {}),
        forcePathStyle: storage.forcePathStyle,
        ...(storage.accessKeyId && storage.secretAccessKey
          ? { credentials: { accessKeyId: storage.accessKeyId, secretAccessKey: storage.secretAccessKey } }
          : {}),
        // S3-compatible servers often reject the SDK's default CRC trailers (see src/storage/s3.ts).
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      },
    });
  }
  const directory = uploadsDirectory(config.dataDir);
  await fs.mkdir(directory, { recursive: true, mode: 0o700 });
  return new LocalUploadStore({ directory, expirationPeriodInMilliseconds });
}

/**
 * The file store, able to say where an upload's bytes are, so a finished upload is linked into
 * the blob store rather than copied; removing an upload whose file is already gone still works.
 */
class LocalUploadStore extends FileStore {
  localFile(id: string): string {
    return path.join(this.directory, id);
  }

  /** In 1 MiB reads (the original's are 64 KiB): a concatenation reads every partial whole. */
  override read(id: string): ReturnType<FileStore['read']> {
    return createReadStream(this.localFile(id), { highWaterMark: 1024 * 1024 });
  }

  /** Per upload, the flush started when its last PATCH ended (see write()). */
  readonly #flushes = new Map<string, Promise<void>>();

  /**
   * Appends like the file store, keeping the cause of a failure (the original answers every
   * failed write with its generic FILE_WRITE_ERROR, a 500, so a full disk could not be told from a
   * bug: a full disk is passed on, to be answered 507 like on every other upload path).
   *
   * The offset is acknowledged once the bytes are written, before they are flushed (as tusd
   * does): an acknowledged offset survives a crash of the process, since the bytes are in the
   * kernel's page cache; only a crash of the machine can lose the unflushed tail, and then the
   * file is shorter than acknowledged, never longer (the offset is the file's size), so the
   * client's HEAD on resume sees the shorter offset and sends the rest again. The flush of each
   * PATCH runs behind its answer, while the next PATCH's bytes arrive; a PATCH waits only for the
   * previous PATCH's flush, so at most one PATCH's bytes are ever unflushed and a disk slower than
   * the network slows the PATCHes down instead of piling up work for the completion (the
   * adoption into the blob store flushes the file before the item exists).
   */
  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    return this.#append(readable, id, offset, true);
  }

  /**
   * Appends without any flush: a partial upload's file is read back by the concatenation, which
   * writes its bytes again into the blob it flushes, and is deleted then. Flushing it too would
   * write every byte of a parallel upload to the disk twice; unflushed, the partial's pages are
   * mostly dropped from the page cache before the kernel ever writes them. A crash of the
   * machine can only shorten the file (see write()).
   */
  async writeUnflushed(readable: Readable, id: string, offset: number): Promise<number> {
    return this.#append(readable, id, offset, false);
  }

  async #append(readable: Readable, id: string, offset: number, flush: boolean): Promise<number> {
    // No counting stage: the file stream counts what it wrote.
    const file = createWriteStream(this.localFile(id), { flags: 'r+', start: offset });
    try {
      await pipeline(readable, file);
    } catch (error) {
      if (isStorageFull(error)) throw error;
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw ERRORS.FILE_WRITE_ERROR;
    } finally {
      if (flush) await this.#flushBehind(id);
    }
    return offset + file.bytesWritten;
  }

  /**
   * Starts an fdatasync of the upload's file after the one before it, and resolves when that one
   * before it has ended. A failed flush is not this PATCH's (it was written): the adoption's own
   * flush at completion is the one that must succeed, and fails the completion if it does not.
   */
  async #flushBehind(id: string): Promise<void> {
    const previous = this.#flushes.get(id);
    const next = (async () => {
      await previous;
      const handle = await fs.open(this.localFile(id), 'r+').catch(() => undefined);
      try {
        await handle?.datasync();
      } catch {
        // See above.
      } finally {
        await handle?.close().catch(() => undefined);
      }
    })();
    this.#flushes.set(id, next);
    void next.finally(() => {
      if (this.#flushes.get(id) === next) this.#flushes.delete(id);
    });
    await previous;
  }

  /** Resolves once the flushes started by earlier PATCHes of `id` have ended. */
  async flushed(id: string): Promise<void> {
    await this.#flushes.get(id);
  }

  /** Cuts the upload back to `offset` bytes: the file's size is the upload's offset. */
  async truncate(id: string, offset: number): Promise<void> {
    await fs.truncate(this.localFile(id), offset);
  }

  override async remove(id: string): Promise<void> {
    const info = await this.configstore.get(id);
    try {
      await fs.unlink(this.localFile(id));
    } catch (error) {
      // tus answers its own error objects ({ status_code, body }) with their status.
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      if (!isNotFound(error) || !info) throw ERRORS.FILE_NOT_FOUND;
    }
    await this.configstore.delete(id);
  }
}
