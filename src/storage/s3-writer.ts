import { AbortMultipartUploadCommand, DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough, Writable } from 'node:stream';
import { SettlingBlobWriter } from './settling-writer.ts';

export interface S3WriterOptions {
  client: S3Client;
  bucket: string;
  key: string;
  partSizeBytes: number;
  queueSize: number;
}

type Outcome = { ok: true } | { ok: false; error: unknown };

/**
 * Streams into a multipart Upload, but holds back the end of the body until commit(): the Upload
 * only completes (or, for a single part, PUTs) once its body ends, so nothing can appear at the
 * key before commit, and abort() before commit only has to cancel parts. Memory stays bounded by
 * queueSize × partSize plus the part being filled.
 */
export class S3BlobWriter extends SettlingBlobWriter {
  readonly stream: Writable;
  readonly tempPath = null;
  readonly #body = new PassThrough();
  readonly #upload: Upload;
  readonly #outcome: Promise<Outcome>;
  readonly #opts: S3WriterOptions;

  constructor(opts: S3WriterOptions) {
    super();
    this.#opts = opts;
    const body = this.#body;
    const front: Writable = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (body.write(chunk)) return callback();
        const onDrain = (): void => {
          body.off('close', onClose);
          callback();
        };
        const onClose = (): void => {
          body.off('drain', onDrain);
          callback(new Error('blob upload stopped'));
        };
        body.once('drain', onDrain);
        body.once('close', onClose);
      },
      // The caller's end() only means "all bytes handed over"; the body ends in commit().
      final(callback) {
        callback();
      },
      // Also runs by itself after finish (autoDestroy), which must leave the body to commit().
      destroy(error, callback) {
        if ((error || !front.writableFinished) && !body.destroyed) {
          body.destroy(error ?? new Error('blob write aborted'));
        }
        callback(error);
      },
    });
    this.stream = front;
    // Failures also reach the caller through commit(); without a listener, an error after the
    // caller's pipeline settled would crash the process.
    this.stream.on('error', () => {});
    this.#body.on('error', () => {});

    this.#upload = new Upload({
      client: opts.client,
      params: { Bucket: opts.bucket, Key: opts.key, Body: this.#body },
      partSize: opts.partSizeBytes,
      queueSize: opts.queueSize,
      // We abort the multipart upload ourselves, so a server that rejects the abort (some do not
      // implement it) cannot replace the error that actually made the upload fail.
      leavePartsOnError: true,
    });
    this.#outcome = this.#upload.done().then(
      (): Outcome => ({ ok: true }),
      async (error: unknown): Promise<Outcome> => {
        // Destroying the caller's stream makes its pipeline reject instead of waiting forever for
        // an Upload that no longer reads.
        this.stream.destroy(error instanceof Error ? error : new Error(String(error)));
        await this.#abortMultipart();
        return { ok: false, error };
      },
    );
  }

  protected async completeWrite(): Promise<void> {
    this.#body.end();
    const outcome = await this.#outcome;
    if (!outcome.ok) throw outcome.error;
  }

  protected async abortWrite(): Promise<void> {
    if (!this.stream.destroyed) this.stream.destroy();
    // Once the caller's stream finished it no longer owns the body, which must still be stopped.
    if (!this.#body.destroyed) this.#body.destroy(new Error('blob write aborted'));
    // After commit (or a commit racing with us) the object exists and has to go again.
    const outcome = await this.#outcome;
    if (outcome.ok) {
      await this.#opts.client.send(
        new DeleteObjectCommand({ Bucket: this.#opts.bucket, Key: this.#opts.key }),
      );
    }
  }

  async #abortMultipart(): Promise<void> {
    const uploadId = this.#upload.uploadId;
    if (!uploadId) return;
    const { client, bucket, key } = this.#opts;
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    } catch {
      // Left for sweepIncomplete (or a bucket lifecycle rule): the parts are invisible meanwhile.
    }
  }
}
