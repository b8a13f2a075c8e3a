/**
 * Bounds how many expensive jobs (password hashing, image decoding) run at once, with a bounded
 * queue behind them, so that a flood of requests cannot exhaust the thread pool or memory: past
 * the queue bound, run() fails fast with LimiterFullError and the caller answers 429/503.
 */
export class LimiterFullError extends Error {
  constructor() {
    super('too many queued jobs');
    this.name = 'LimiterFullError';
  }
}

export class ConcurrencyLimiter {
  readonly #max: number;
  readonly #maxQueue: number;
  #active = 0;
  readonly #queue: (() => void)[] = [];

  constructor(max: number, maxQueue: number) {
    if (!(max >= 1) || !(maxQueue >= 0)) throw new RangeError('limiter bounds must be positive');
    this.#max = max;
    this.#maxQueue = maxQueue;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) {
      if (this.#queue.length >= this.#maxQueue) throw new LimiterFullError();
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await job();
    } finally {
      const next = this.#queue.shift();
      // The slot passes straight to the next waiter, so #active only drops when nobody waits.
      if (next) next();
      else this.#active--;
    }
  }
}
