import fs from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../storage/blob-store.ts';
import { SettlingBlobWriter } from '../storage/settling-writer.ts';

/** Where the finished bytes already are: a local file, or an object in the blob store's bucket. */
export type AdoptedSource = { file: string } | { object: string; size: number };

/**
 * A writer for bytes that already sit complete in a local file or an object of the same bucket (a
 * finished resumable upload): the pipeline may still read them once for checks and hashing, but
 * they are not written again — commit links the file in at its key (local disk) or has the object
 * store copy the object (S3), or, where neither is possible, copies the bytes.
 */
export class AdoptingWriter extends SettlingBlobWriter {
  readonly stream = new Writable({ write: (_chunk, _encoding, done) => done() });
  readonly tempPath: string | null;
  readonly #store: BlobStore;
  readonly #key: string;
  readonly #source: AdoptedSource;

  constructor(store: BlobStore, key: string, source: AdoptedSource) {
    super();
    this.#store = store;
    this.#key = key;
    this.#source = source;
    this.tempPath = 'file' in source ? source.file : null;
  }

  protected async completeWrite(): Promise<void> {
    const source = this.#source;
    const adopted =
      'file' in source
        ? await this.#store.adopt?.(source.file, this.#key)
        : await this.#store.adoptObject?.(source.object, this.#key, source.size);
    if (adopted) return;
    const writer = this.#store.createWriter(this.#key);
    try {
      const bytes =
        'file' in source ? fs.createReadStream(source.file) : await this.#store.read(source.object);
      await pipeline(bytes, writer.stream);
      await writer.commit();
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  protected async abortWrite(committing: Promise<void> | undefined): Promise<void> {
    const committed = committing
      ? await committing.then(
          () => true,
          () => false,
        )
      : false;
    if (committed) await this.#store.delete(this.#key);
  }
}
