import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { BlobWriter } from './blob-store.ts';

/**
 * The commit-or-abort rules every blob writer shares: each settles once, commit only after the
 * caller ended the stream, never after an abort; the backend parts live in the subclasses.
 */
export abstract class SettlingBlobWriter implements BlobWriter {
  abstract readonly stream: Writable;
  abstract readonly tempPath: string | null;
  #committing: Promise<void> | undefined;
  #aborting: Promise<void> | undefined;

  commit(): Promise<void> {
    this.#committing ??= this.#commit();
    return this.#committing;
  }

  abort(): Promise<void> {
    this.#aborting ??= this.abortWrite(this.#committing);
    return this.#aborting;
  }

  async #commit(): Promise<void> {
    if (this.#aborting) throw new Error('blob write was aborted');
    if (!this.stream.writableEnded && !this.stream.destroyed) {
      throw new Error('commit() called before the stream was ended');
    }
    await finished(this.stream);
    await this.completeWrite();
  }

  /** Makes the finished bytes visible at the key. */
  protected abstract completeWrite(): Promise<void>;

  /** Removes whatever was written; `committing` is the commit in progress or done, if any. */
  protected abstract abortWrite(committing: Promise<void> | undefined): Promise<void>;
}
