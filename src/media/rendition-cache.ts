import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { systemClock, type Clock } from '../util/clock.ts';

export interface RenditionCacheOptions {
  /** Most bytes all stored thumbnails and renditions may take together. */
  budgetBytes: number;
  clock?: Clock;
  /**
   * A served rendition's last use is written at most this often per key: least recently used
   * needs minutes, not milliseconds, and a write per request would cost more than the request.
   */
  touchEveryMs?: number;
}

const TOUCH_EVERY_MS = 60_000;
/** Keys whose last write of `last_used_at` this instance remembers; past this, the oldest go. */
const MAX_TOUCHED = 10_000;
const EVICT_BATCH = 50;

/**
 * The rendition cache's index and byte budget. Every stored thumbnail and rendition has a row
 * (key, item, bytes, last use) in the database, which all instances share, so the budget holds
 * for the storage as a whole. Before a new rendition is stored, the least recently used ones are
 * evicted until it fits: the blob first, then its row, so a row never stands for nothing while
 * the bytes it counts are still there (a crash between the two leaves a row whose blob is gone,
 * which the next eviction removes harmlessly).
 *
 * Renditions stored before the index existed are counted lazily, when next served (used()).
 */
export class RenditionCache {
  readonly #db: Db;
  readonly #storage: BlobStore;
  readonly #budget: number;
  readonly #clock: Clock;
  readonly #touchEveryMs: number;
  /** When this instance last wrote each key's last use, oldest first. */
  readonly #touched = new Map<string, number>();
  readonly #evictedListeners: ((key: string) => void)[] = [];

  constructor(db: Db, storage: BlobStore, options: RenditionCacheOptions) {
    if (!(options.budgetBytes > 0)) throw new RangeError('the rendition cache budget must be positive');
    this.#db = db;
    this.#storage = storage;
    this.#budget = options.budgetBytes;
    this.#clock = options.clock ?? systemClock;
    this.#touchEveryMs = options.touchEveryMs ?? TOUCH_EVERY_MS;
  }

  get budgetBytes(): number {
    return this.#budget;
  }

  /** Called with each evicted key (e.g. to forget a copy kept in memory). */
  onEvicted(listener: (key: string) => void): void {
    this.#evictedListeners.push(listener);
  }

  /**
   * Evicts least recently used renditions (never `keep`) until `bytes` more fit in the budget.
   * False when `bytes` alone exceed it: such a rendition is served but not stored.
   */
  async makeRoom(bytes: number, keep?: string): Promise<boolean> {
    if (bytes > this.#budget) return false;
    let total = await this.totalBytes();
    while (total + bytes > this.#budget) {
      let query = this.#db
        .selectFrom('renditions')
        .select(['key', 'bytes'])
        .orderBy('last_used_at')
        .orderBy('key')
        .limit(EVICT_BATCH);
      if (keep !== undefined) query = query.where('key', '!=', keep);
      const oldest = await query.execute();
      if (oldest.length === 0) break;
      for (const row of oldest) {
        if (total + bytes <= this.#budget) break;
        await this.#evict(row.key);
        total -= Number(row.bytes);
      }
    }
    return true;
  }

  /** Records a rendition just stored at `key`. */
  async added(key: string, mediaId: string, bytes: number): Promise<void> {
    const now = this.#clock.now();
    await this.#db
      .insertInto('renditions')
      .values({ key, media_id: mediaId, bytes, last_used_at: now })
      .onConflict((oc) => oc.column('key').doUpdateSet({ bytes, last_used_at: now }))
      .execute();
    this.#remember(key, now);
  }

  /**
   * A rendition was served from memory: its last use is written when the last write is older than
   * `touchEveryMs`. Nothing is added: the blob may not be stored (evicted meanwhile, or too large).
   */
  async touch(key: string): Promise<void> {
    await this.#touch(key);
  }

  /**
   * A rendition was served from storage: as touch(), and one that the index does not know (stored
   * before the index existed) is counted now, and the budget applied.
   */
  async used(key: string, mediaId: string, bytes: number): Promise<void> {
    const now = await this.#touch(key);
    if (now === null) return;
    await this.#db
      .insertInto('renditions')
      .values({ key, media_id: mediaId, bytes, last_used_at: now })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    await this.makeRoom(0, key);
  }

  /** The time written when the key has no row, null when it was written or did not need to be. */
  async #touch(key: string): Promise<number | null> {
    const now = this.#clock.now();
    const last = this.#touched.get(key);
    if (last !== undefined && now - last < this.#touchEveryMs) return null;
    this.#remember(key, now);
    const updated = await this.#db
      .updateTable('renditions')
      .set({ last_used_at: now })
      .where('key', '=', key)
      .executeTakeFirst();
    return updated.numUpdatedRows > 0n ? null : now;
  }

  async totalBytes(): Promise<number> {
    const row = await this.#db
      .selectFrom('renditions')
      .select(sql<string | number | null>`sum(bytes)`.as('total'))
      .executeTakeFirst();
    return Number(row?.total ?? 0);
  }

  /**
   * For the sweeper: drops the rows of items that no longer exist (their blobs went with the item,
   * or go with the orphan sweep), then applies the budget again. Returns how many rows went.
   */
  async reconcile(): Promise<number> {
    const result = await this.#db
      .deleteFrom('renditions')
      .where((eb) =>
        eb.not(
          eb.exists(
            eb.selectFrom('media').select('media.id').whereRef('media.id', '=', 'renditions.media_id'),
          ),
        ),
      )
      .executeTakeFirst();
    await this.makeRoom(0);
    return Number(result.numDeletedRows);
  }

  async #evict(key: string): Promise<void> {
    await this.#storage.delete(key);
    await this.#db.deleteFrom('renditions').where('key', '=', key).execute();
    this.#touched.delete(key);
    for (const listener of this.#evictedListeners) listener(key);
  }

  #remember(key: string, at: number): void {
    this.#touched.delete(key);
    this.#touched.set(key, at);
    if (this.#touched.size > MAX_TOUCHED) {
      const oldest = this.#touched.keys().next();
      if (!oldest.done) this.#touched.delete(oldest.value);
    }
  }
}
