import type { Redis } from 'ioredis';
import type { CounterStore, WindowCount } from '../util/counter-store.ts';

/** INCR then set the expiry only if the key has none: the window opens at the first hit. */
const INCREMENT = `
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { n, redis.call('PTTL', KEYS[1]) }`;

/** DECR only an existing, positive counter: a missing key must not come back without an expiry. */
const DECREMENT = `
if (tonumber(redis.call('GET', KEYS[1]) or '0') > 0) then redis.call('DECR', KEYS[1]) end
return 0`;

/** Rate-limit counters shared by every instance, so limits hold behind a load balancer. */
export class RedisCounterStore implements CounterStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix = 'stowage:count:') {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async increment(key: string, windowMs: number): Promise<WindowCount> {
    const [count, ttl] = (await this.#redis.eval(INCREMENT, 1, this.#prefix + key, windowMs)) as [
      number,
      number,
    ];
    return { count, resetInMs: Math.max(0, ttl) };
  }

  async get(key: string): Promise<WindowCount | null> {
    const [count, ttl] = await Promise.all([
      this.#redis.get(this.#prefix + key),
      this.#redis.pttl(this.#prefix + key),
    ]);
    if (count === null || ttl < 0) return null;
    return { count: Number(count), resetInMs: ttl };
  }

  async decrement(key: string): Promise<void> {
    await this.#redis.eval(DECREMENT, 1, this.#prefix + key);
  }

  async reset(key: string): Promise<void> {
    await this.#redis.del(this.#prefix + key);
  }
}
