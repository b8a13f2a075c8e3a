import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BlobStore } from '../storage/blob-store.ts';
import type { SessionService } from '../auth/sessions.ts';
import type { MediaRepo } from './media-repo.ts';
import {
  ORIGINALS_PREFIX,
  RENDITIONS_PREFIX,
  idOfOriginalKey,
  idOfRenditionKey,
  renditionsPrefix,
} from '../storage/key-layout.ts';

export interface SweeperDeps {
  storage: BlobStore;
  repo: MediaRepo;
  sessions: SessionService;
  spoolDir: string;
  logger: Logger;
  /** Expired resumable uploads. */
  tus?: { sweepExpired(): Promise<number> };
  /** Unfinished writes older than this are crash leftovers at start (0: none can be in flight). */
  startupIncompleteAgeMs?: number;
}

const HOUR = 3_600_000;
const BATCH = 500;

/**
 * Removes what a crash or a failed cleanup can leave behind: unfinished writes, blobs and
 * renditions without a row, spool files, expired reservations and long-dead sessions. Runs at
 * start and then hourly; a failed pass is logged and retried next time, never fatal.
 */
export class Sweeper {
  readonly #deps: SweeperDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(deps: SweeperDeps) {
    this.#deps = deps;
  }

  start(): void {
    this.#running = this.sweep(this.#deps.startupIncompleteAgeMs ?? 0);
    this.#timer = setInterval(() => {
      this.#running ??= this.sweep(24 * HOUR).finally(() => (this.#running = undefined));
    }, HOUR);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  /** Removes leftovers older than `incompleteAgeMs`, counted from when this pass starts. */
  async sweep(incompleteAgeMs: number): Promise<void> {
    const { logger, storage } = this.#deps;
    // Fixed now: an upload that begins while this pass runs is never older than the cutoff.
    const cutoff = Date.now() - incompleteAgeMs;
    const steps: [string, () => Promise<unknown>][] = [
      ['unfinished writes', () => this.#deps.storage.sweepIncomplete(Date.now() - cutoff)],
      [
        'orphaned blobs',
        () =>
          this.#orphans(ORIGINALS_PREFIX, idOfOriginalKey, async (_id, keys) => {
            for (const key of keys) await storage.delete(key);
          }),
      ],
      [
        'orphaned renditions',
        () =>
          this.#orphans(RENDITIONS_PREFIX, idOfRenditionKey, (id) =>
            storage.deletePrefix(renditionsPrefix(id)),
          ),
      ],
      ['spool files', () => this.#spool(cutoff)],
      ['expired resumable uploads', () => this.#deps.tus?.sweepExpired() ?? Promise.resolve()],
      ['expired reservations', () => this.#deps.repo.purgeExpiredReservations()],
      ['ended sessions', () => this.#deps.sessions.purgeExpired()],
    ];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (error) {
        logger.warn({ err: error }, `sweeping ${what} failed; will retry`);
      }
    }
  }

  /** Blobs under `prefix` older than an hour whose item id has no row. */
  async #orphans(
    prefix: string,
    idOf: (key: string) => string | undefined,
    remove: (id: string, keys: string[]) => Promise<void>,
  ): Promise<void> {
    const cutoff = Date.now() - HOUR;
    let batch = new Map<string, string[]>();
    const flush = async () => {
      const alive = await this.#deps.repo.existing([...batch.keys()]);
      for (const [id, keys] of batch) {
        if (alive.has(id)) continue;
        this.#deps.logger.info({ id, prefix }, 'removing orphaned blobs');
        await remove(id, keys);
      }
      batch = new Map();
    };
    for await (const { key, lastModified } of this.#deps.storage.list(prefix)) {
      const id = idOf(key);
      if (!id || lastModified.getTime() > cutoff) continue;
      batch.set(id, [...(batch.get(id) ?? []), key]);
      if (batch.size >= BATCH) await flush();
    }
    if (batch.size > 0) await flush();
  }

  async #spool(cutoff: number): Promise<void> {
    for (const name of await fs.readdir(this.#deps.spoolDir)) {
      const file = path.join(this.#deps.spoolDir, name);
      const stat = await fs.stat(file).catch(() => null);
      // Image decoders keep temporary folders here too, hence recursive.
      if (stat && stat.mtimeMs <= cutoff) await fs.rm(file, { recursive: true, force: true });
    }
  }
}
