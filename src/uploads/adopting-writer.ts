import fs from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../storage/blob-store.ts';
import { SettlingBlobWriter } from '../storage/settling-writer.ts';

/**
 * A writer for bytes that already sit complete in a local file (a finished resumable upload):
 * the pipeline still reads them once for checks and hashing, but they are not written again —
 * commit links the file in at its key, or copies it where the store cannot adopt it.
 */
export class AdoptingWriter extends SettlingBlobWriter {
  readonly stream = new Writable({ write: (_chunk, _encoding, done) => done() });
  readonly tempPath: string;
  readonly #store: BlobStore;
  readonly #key: string;

  constructor(store: BlobStore, key: string, file: string) {
    super();
    this.#store = store;
    this.#key = key;
    this.tempPath = file;
  }

  protected async completeWrite(): Promise<void> {
    if (await this.#store.adopt?.(this.tempPath, this.#key)) return;
    const writer = this.#store.createWriter(this.#key);
    try {
      await pipeline(fs.createReadStream(this.tempPath), writer.stream);
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
