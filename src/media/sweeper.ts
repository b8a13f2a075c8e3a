import type { Logger } from 'pino';
import type { BlobStore } from '../storage/blob-store.ts';
import type { ScratchLease } from '../storage/scratch.ts';
import type { SessionService } from '../auth/sessions.ts';
import { systemClock, type Clock } from '../util/clock.ts';
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
  /** Scratch space of the instances sharing the data directory (spool files, decoder temp dirs). */
  scratch: ScratchLease;
  /** The spool directory's parent: each instance spools into its own folder under it. */
  spoolRoot: string;
  logger: Logger;
  /** Expired resumable uploads. */
  tus?: { sweepExpired(): Promise<number> };
  clock?: Clock;
  /** Runs the periodic pass; the default is an unref'd setInterval. Tests drive it themselves. */
  scheduler?: SweepScheduler;
  /** Time between periodic passes; default one hour. */
  intervalMs?: number;
}

/** One pass of the sweeper, as each step sees it. */
export interface SweepPass {
  /** When the pass began, by the sweeper's clock; every age is counted from here. */
  now: number;
  /** Unfinished work (writes, spool files) older than this is left over from a failure. */
  incompleteAgeMs: number;
  /** The pass at start (true) or a periodic one. */
  atStart: boolean;
}

/** A named piece of cleanup; returns how many things it removed, when it knows. */
export interface SweepStep {
  name: string;
  run(pass: SweepPass): Promise<number | void>;
}

/** Calls `tick` every `everyMs` until stopped. */
export type SweepScheduler = (tick: () => Promise<void>, everyMs: number) => { stop(): void };

export const intervalScheduler: SweepScheduler = (tick, everyMs) => {
  const timer = setInterval(() => void tick(), everyMs);
  // The sweeper never keeps the process alive by itself.
  timer.unref();
  return { stop: () => clearInterval(timer) };
};

const HOUR = 3_600_000;
const BATCH = 500;
/**
 * An unfinished write or spool file that has not changed for a day belongs to no upload: a write
 * in progress changes its file with every chunk, and request timeouts end a stalled one long
 * before. (Scratch of an instance known to be dead is removed at once, whatever its age.)
 */
export const INCOMPLETE_AGE_MS = 24 * HOUR;
/** A committed blob without a row is an orphan only once no upload can still be inserting it. */
export const ORPHAN_AGE_MS = HOUR;
/** Ended sessions are kept this long (for the session list and reuse detection), then purged. */
const ENDED_SESSION_AGE_MS = 7 * 24 * HOUR;

/**
 * Removes what a crash or a failed cleanup can leave behind: unfinished writes, blobs and
 * renditions without a row, spool files, expired resumable uploads and reservations, long-ended
 * sessions. Runs at start and then every `intervalMs`, one pass at a time. Each step runs on its
 * own: one that fails is logged and retried next pass, and the others still run. More steps are
 * added with addStep() (e.g. by the composition root), not by editing the pass.
 */
export class Sweeper {
  readonly #deps: SweeperDeps;
  readonly #clock: Clock;
  readonly #steps: SweepStep[];
  #schedule: { stop(): void } | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: SweeperDeps) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    const { storage, repo, sessions, scratch, spoolRoot, tus } = deps;
    this.#steps = [
      {
        name: 'unfinished writes',
        run: ({ now, incompleteAgeMs }) => storage.sweepIncomplete(incompleteAgeMs, now),
      },
      {
        name: 'orphaned blobs',
        run: ({ now }) =>
          this.#orphans(now, ORIGINALS_PREFIX, idOfOriginalKey, async (_id, keys) => {
            for (const key of keys) await storage.delete(key);
          }),
      },
      {
        name: 'orphaned renditions',
        run: ({ now }) =>
          this.#orphans(now, RENDITIONS_PREFIX, idOfRenditionKey, (id) =>
            storage.deletePrefix(renditionsPrefix(id)),
          ),
      },
      {
        name: 'spool files',
        run: ({ now, incompleteAgeMs }) => scratch.sweep(spoolRoot, now - incompleteAgeMs),
      },
      // After every scratch area was swept: an instance's record goes once its scratch is gone.
      { name: 'records of stopped instances', run: () => scratch.pruneDead() },
      { name: 'expired resumable uploads', run: async () => (tus ? tus.sweepExpired() : 0) },
      { name: 'expired reservations', run: ({ now }) => repo.purgeExpiredReservations(now) },
      { name: 'ended sessions', run: ({ now }) => sessions.purgeExpired(ENDED_SESSION_AGE_MS, now) },
      { name: 'expired links', run: ({ now }) => repo.deleteExpiredLinks(now) },
    ];
  }

  /** Adds a step to every later pass (after the built-in ones). */
  addStep(step: SweepStep): void {
    this.#steps.push(step);
  }

  /** Sweeps now (without waiting), then every `intervalMs`. */
  start(): void {
    void this.#run(true);
    const scheduler = this.#deps.scheduler ?? intervalScheduler;
    this.#schedule = scheduler(() => this.tick(), this.#deps.intervalMs ?? HOUR);
  }

  /**
   * The periodic pass (what the timer calls): sweeps unless a pass is already running, and
   * resolves when that pass is over.
   */
  tick(): Promise<void> {
    return this.#run(false);
  }

  /** Resolves when no pass is running. */
  async idle(): Promise<void> {
    await this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#schedule?.stop();
    await this.#running;
  }

  #run(atStart: boolean): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    // Cleared when the pass ends, whichever pass it was, so the next tick sweeps again.
    const pass = (this.#running ??= this.sweep(INCOMPLETE_AGE_MS, atStart).then(() => {
      this.#running = undefined;
    }));
    return pass;
  }

  /**
   * One pass over every step, treating unfinished work older than `incompleteAgeMs` as left over;
   * never throws. Returns what each step removed, or 'failed'.
   */
  async sweep(
    incompleteAgeMs = INCOMPLETE_AGE_MS,
    atStart = false,
  ): Promise<Record<string, number | 'failed' | undefined>> {
    const { logger } = this.#deps;
    // One fixed now per pass: an upload that begins while the pass runs is never older than a cutoff.
    const pass: SweepPass = { now: this.#clock.now(), incompleteAgeMs, atStart };
    const outcome: Record<string, number | 'failed' | undefined> = {};
    for (const step of [...this.#steps]) {
      try {
        const removed = await step.run(pass);
        outcome[step.name] = removed ?? undefined;
        if (typeof removed === 'number' && removed > 0) {
          logger.info({ step: step.name, removed }, `swept ${step.name}`);
        }
      } catch (error) {
        outcome[step.name] = 'failed';
        logger.error({ err: error, step: step.name }, `sweeping ${step.name} failed; will retry next pass`);
      }
    }
    return outcome;
  }

  /** Blobs under `prefix` older than ORPHAN_AGE_MS whose item id has no row. */
  async #orphans(
    now: number,
    prefix: string,
    idOf: (key: string) => string | undefined,
    remove: (id: string, keys: string[]) => Promise<void>,
  ): Promise<number> {
    const cutoff = now - ORPHAN_AGE_MS;
    let removed = 0;
    let batch = new Map<string, string[]>();
    const flush = async () => {
      const alive = await this.#deps.repo.existing([...batch.keys()]);
      for (const [id, keys] of batch) {
        if (alive.has(id)) continue;
        this.#deps.logger.info({ id, prefix }, 'removing orphaned blobs');
        await remove(id, keys);
        removed++;
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
    return removed;
  }
}
