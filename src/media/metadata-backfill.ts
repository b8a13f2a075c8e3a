import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { originalKey } from '../storage/key-layout.ts';
import { isAppError } from '../errors.ts';
import { newId } from '../util/ids.ts';
import { intervalScheduler, type SweepScheduler } from './sweeper.ts';
import type { MediaKind } from './media-kind.ts';
import { METADATA_VERSION, type MetadataReader } from './media-metadata.ts';
import type { MediaRecord, MediaRepo } from './media-repo.ts';

export interface MetadataBackfillDeps {
  repo: MediaRepo;
  storage: BlobStore;
  reader: MetadataReader;
  /** Where originals on object storage are copied to be read (one at a time). */
  spoolDir: string;
  logger: Logger;
  /** Runs the periodic pass; the default is an unref'd setInterval. Tests drive it themselves. */
  scheduler?: SweepScheduler;
  /** Time between passes after the first; default 10 minutes. */
  intervalMs?: number;
  /** Rows fetched per query. */
  batchSize?: number;
}

const KINDS: readonly MediaKind[] = ['image', 'video', 'audio', 'document'];

/**
 * Gives items stored before their metadata was read (or while it could not be: extraction off,
 * ffmpeg missing) their takenAt, placeholder, media and exif, in the background: one item at a
 * time, off the request path. Each row is marked done (metadata_version) as it is written, so a
 * restart picks up where the last run stopped; a pass walks the rows in id order, so an item that
 * fails is tried again next pass, not in a loop.
 */
export class MetadataBackfill {
  readonly #deps: MetadataBackfillDeps;
  #schedule: { stop(): void } | undefined;
  #running: Promise<number> | undefined;
  #stopped = false;

  constructor(deps: MetadataBackfillDeps) {
    this.#deps = deps;
  }

  /** A pass now (without waiting), then every `intervalMs`. */
  start(): void {
    void this.tick();
    const scheduler = this.#deps.scheduler ?? intervalScheduler;
    this.#schedule = scheduler(async () => void (await this.tick()), this.#deps.intervalMs ?? 600_000);
  }

  /** Runs a pass unless one is running; resolves with how many items it completed. */
  tick(): Promise<number> {
    if (this.#stopped) return Promise.resolve(0);
    this.#running ??= this.pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** Resolves when no pass is running (the one begun at start included). */
  async idle(): Promise<void> {
    await this.#running;
  }

  /** Stops after the item in hand; resolves once nothing runs. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#schedule?.stop();
    await this.#running;
  }

  /** One walk over every row still to do that can be done now; never throws. */
  async pass(): Promise<number> {
    const { repo, reader, logger } = this.#deps;
    const kinds = KINDS.filter((kind) => reader.canComplete(kind));
    let after = '';
    let done = 0;
    try {
      while (!this.#stopped) {
        const batch = await repo.metadataPending(METADATA_VERSION, kinds, after, this.#deps.batchSize ?? 50);
        if (batch.length === 0) break;
        for (const item of batch) {
          if (this.#stopped) break;
          after = item.id;
          if (await this.#fill(item)) done++;
        }
      }
    } catch (error) {
      logger.error({ err: error }, 'metadata backfill stopped; it resumes next pass');
    }
    if (done > 0) logger.info({ items: done }, 'metadata backfill: items completed');
    return done;
  }

  async #fill(item: MediaRecord): Promise<boolean> {
    const { repo, reader, logger } = this.#deps;
    try {
      const meta = await this.#withLocalOriginal(item, (file) => reader.read(file, item.mimeType));
      return await repo.setMetadata(item.id, meta);
    } catch (error) {
      if (error instanceof BlobNotFoundError) return false;
      if (isAppError(error) && error.code === 'INVALID_FILE') {
        // An image stored before today's checks that no longer decodes: nothing more to learn.
        return repo.setMetadata(item.id, {
          width: item.width,
          height: item.height,
          takenAt: null,
          placeholder: null,
          media: null,
          exif: null,
          metadataVersion: METADATA_VERSION,
        });
      }
      // Overload or an unreachable store: left for the next pass.
      logger.warn({ err: error, id: item.id }, 'metadata backfill could not read an item');
      return false;
    }
  }

  async #withLocalOriginal<T>(item: MediaRecord, use: (file: string | null) => Promise<T>): Promise<T> {
    const { storage, reader, spoolDir } = this.#deps;
    if (!reader.needsFile(item.kind)) return use(null);
    const key = originalKey(item.id);
    const local = storage.localPath(key);
    if (local) {
      if (!(await storage.stat(key))) throw new BlobNotFoundError(key);
      return use(local);
    }
    const spool = path.join(spoolDir, `${newId()}.backfill`);
    try {
      await pipeline(await storage.read(key), fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
      return await use(spool);
    } finally {
      await fsp.rm(spool, { force: true });
    }
  }
}
