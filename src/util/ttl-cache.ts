import { systemClock, type Clock } from './clock.ts';

/**
 * At most this long may an instance trust what it looked up about access (a session, an item's
 * owner and visibility, a signed link): the bound on how late a logout, revocation, password
 * change, removal, visibility change or link revocation made on another instance can take effect
 * there when the invalidation message between instances is lost (Redis pub/sub delivers at most
 * once and drops messages while a subscriber is disconnected).
 */
export const ACCESS_CACHE_TTL_MS = 1_000;

export interface TtlCacheOptions {
  /** How long a loaded value is served without loading it again (for access: ACCESS_CACHE_TTL_MS at most). */
  ttlMs: number;
  /** Entries kept at most; when full, the cache starts over (a bound on memory, not an LRU). */
  maxEntries: number;
  clock?: Clock;
}

/**
 * A read-through cache whose entries expire `ttlMs` after the load that produced them began. The
 * age counts from before the load, so a value read just before a change committed is never
 * served longer than `ttlMs` after the change. A load that was in flight while entries were
 * deleted does not store its (possibly stale) result.
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: V; at: number }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  /** Bumped by every deletion: a load that began before one may have read what was deleted. */
  #generation = 0;

  constructor(options: TtlCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries;
    this.#clock = options.clock ?? systemClock;
  }

  async get(key: K, load: () => Promise<V>): Promise<V> {
    const now = this.#clock.now();
    const hit = this.#entries.get(key);
    if (hit && now - hit.at < this.#ttlMs) return hit.value;
    const generation = this.#generation;
    const value = await load();
    if (generation === this.#generation && this.#ttlMs > 0) {
      if (this.#entries.size >= this.#maxEntries) this.#entries.clear();
      this.#entries.set(key, { value, at: now });
    }
    return value;
  }

  delete(key: K): void {
    this.#generation++;
    this.#entries.delete(key);
  }

  /** Deletes every entry whose value matches. */
  deleteWhere(matches: (value: V) => boolean): void {
    this.#generation++;
    for (const [key, entry] of this.#entries) if (matches(entry.value)) this.#entries.delete(key);
  }
}
