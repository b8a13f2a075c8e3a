import type { Breaker } from './breaker.ts';
import { DependencyUnavailableError } from './dependency-failure.ts';

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

/**
 * Shared counters (Redis) that fall back to this instance's own while the shared store is down or
 * unreachable: a rate limit keeps holding, per instance, instead of failing every request or
 * waiting on a dead connection (the breaker answers at once while the store is known down). The
 * local counts start from zero and are no longer consulted once the shared store is back.
 */
export class FallbackCounterStore implements CounterStore {
  readonly #primary: CounterStore;
  readonly #fallback: CounterStore;
  readonly #breaker: Breaker;

  constructor(primary: CounterStore, fallback: CounterStore, breaker: Breaker) {
    this.#primary = primary;
    this.#fallback = fallback;
    this.#breaker = breaker;
  }

  increment(key: string, windowMs: number): Promise<WindowCount> {
    return this.#call((store) => store.increment(key, windowMs));
  }

  get(key: string): Promise<WindowCount | null> {
    return this.#call((store) => store.get(key));
  }

  decrement(key: string): Promise<void> {
    return this.#call((store) => store.decrement(key));
  }

  reset(key: string): Promise<void> {
    return this.#call((store) => store.reset(key));
  }

  async #call<T>(op: (store: CounterStore) => Promise<T>): Promise<T> {
    try {
      return await this.#breaker.run(() => op(this.#primary));
    } catch (error) {
      if (!(error instanceof DependencyUnavailableError)) throw error;
      return op(this.#fallback);
    }
  }
}
