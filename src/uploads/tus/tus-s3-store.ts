import { S3Store } from '@tus/s3-store';
import { ERRORS } from '@tus/utils';
import { isNotFound } from '../../storage/blob-store.ts';

/**
 * @tus/s3-store keeps an upload as a multipart upload plus the objects `ID.info` (its record),
 * `ID.part` (bytes of a PATCH too small to be a part yet) and, once complete, `ID` (the assembled
 * file). Its remove() aborts the multipart upload first and gives up with 404 when there is none,
 * which is always the case once the upload completed: the assembled file and its record stayed in
 * the bucket for good (nothing else ever deletes them), and `ID.part` was never removed at all.
 * This remove() takes all of it away, with plain single-object deletes, and still answers 404 for
 * an upload that does not exist.
 */
export class S3UploadStore extends S3Store {
  /** The key of a finished upload's assembled object (the multipart upload completed at the last PATCH). */
  objectKey(id: string): string {
    return id;
  }

  override async remove(id: string): Promise<void> {
    let uploadId: string | undefined;
    try {
      uploadId = (await this.getMetadata(id))['upload-id'];
    } catch (error) {
      // tus answers its own error objects ({ status_code, body }) with their status.
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      if (isNotFound(error)) throw ERRORS.FILE_NOT_FOUND;
      throw error;
    }
    if (uploadId) {
      try {
        await this.client.abortMultipartUpload({ Bucket: this.bucket, Key: id, UploadId: uploadId });
      } catch (error) {
        if (!isNotFound(error)) throw error; // completed, or already aborted
      }
    }
    // Deleting a key that does not exist succeeds. The record goes last, so that a remove() that
    // failed half-way can be repeated.
    await Promise.all(
      [id, this.partKey(id, true)].map((Key) => this.client.deleteObject({ Bucket: this.bucket, Key })),
    );
    await this.client.deleteObject({ Bucket: this.bucket, Key: this.infoKey(id) });
    await this.clearCache(id);
  }
}
