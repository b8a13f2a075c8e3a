export interface WindowCount {
  count: number;
  /** Milliseconds until this window ends and the count starts again from zero. */
  resetInMs: number;
}

/**
 * Fixed-window counters for rate limits: the window opens at a key's first hit. In memory for one
 * instance; Redis (redis-counter-store.ts) when several instances must share the counts.
 */
export interface CounterStore {
  increment(key: string, windowMs: number): Promise<WindowCount>;
  get(key: string): Promise<WindowCount | null>;
  /** Takes one back within the current window; nothing when the window has ended. */
  decrement(key: string): Promise<void>;
  reset(key: string): Promise<void>;
}

export class MemoryCounterStore implements CounterStore {
  readonly #entries = new Map<string, { count: number; until: number }>();
  readonly #maxKeys: number;

  constructor(maxKeys = 100_000) {
    this.#maxKeys = maxKeys;
  }

  increment(key: string, windowMs: number): Promise<WindowCount> {
    const now = Date.now();
    let entry = this.#entries.get(key);
    if (!entry || entry.until <= now) {
      if (this.#entries.size >= this.#maxKeys) this.#sweep(now);
      entry = { count: 0, until: now + windowMs };
      this.#entries.set(key, entry);
    }
    entry.count++;
    return Promise.resolve({ count: entry.count, resetInMs: entry.until - now });
  }

  get(key: string): Promise<WindowCount | null> {
    const now = Date.now();
    const entry = this.#entries.get(key);
    if (!entry || entry.until <= now) return Promise.resolve(null);
    return Promise.resolve({ count: entry.count, resetInMs: entry.until - now });
  }

  decrement(key: string): Promise<void> {
    const entry = this.#entries.get(key);
    if (entry && entry.until > Date.now() && entry.count > 0) entry.count--;
    return Promise.resolve();
  }

  reset(key: string): Promise<void> {
    this.#entries.delete(key);
    return Promise.resolve();
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#entries) if (entry.until <= now) this.#entries.delete(key);
    // Under a flood of distinct keys, forget the oldest windows rather than grow without bound.
    for (const key of this.#entries.keys()) {
      if (this.#entries.size < this.#maxKeys * 0.9) break;
      this.#entries.delete(key);
    }
  }
}
