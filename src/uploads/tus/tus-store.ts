import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import { ERRORS } from '@tus/utils';
import type { Config } from '../../config.ts';
import { createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
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

  /**
   * Appends like the file store, keeping the cause of a failure (the original answers every
   * failed write with its generic FILE_WRITE_ERROR, a 500, so a full disk could not be told from a
   * bug: a full disk is passed on, to be answered 507 like on every other upload path), then
   * flushes the bytes to disk before the PATCH is answered: an Upload-Offset a client was given
   * must survive a crash (after one, the offset is the file's size, which without the flush could
   * cover bytes never written). It also spreads the flushing over the PATCHes, so the completing
   * one has almost nothing left to flush when the file is adopted into the blob store.
   */
  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    let received = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(
        readable,
        counter,
        createWriteStream(this.localFile(id), { flags: 'r+', start: offset }),
      );
    } catch (error) {
      if (isStorageFull(error)) throw error;
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw ERRORS.FILE_WRITE_ERROR;
    } finally {
      const handle = await fs.open(this.localFile(id), 'r+').catch(() => undefined);
      try {
        await handle?.datasync();
      } finally {
        await handle?.close();
      }
    }
    return offset + received;
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
