import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import { Breaker } from '../util/breaker.ts';
import { DependencyUnavailableError } from '../util/dependency-failure.ts';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

export interface RedisLockerOptions {
  /** How long a request waits for an upload's lock before failing. */
  acquireTimeoutMs?: number;
  /** The lock's lease; renewed while held, so a crashed holder frees it after at most this long. */
  leaseMs?: number;
  /** Fails fast (503) while Redis is known down; an upload cannot be locked without it. */
  breaker?: Breaker;
}

/**
 * tus upload locks shared by all instances, so chunks of one upload may reach different instances
 * (no sticky sessions) and two PATCHes to one upload never interleave. A lock is a Redis key with
 * a random token and a lease that the holder keeps renewing.
 */
export class RedisLocker implements Locker {
  readonly #redis: Redis;
  readonly #opts: Required<RedisLockerOptions>;

  constructor(redis: Redis, opts: RedisLockerOptions = {}) {
    this.#redis = redis;
    this.#opts = { acquireTimeoutMs: 30_000, leaseMs: 10_000, breaker: new Breaker('redis'), ...opts };
  }

  newLock(id: string): Lock {
    return new RedisLock(this.#redis, `stowage:tus-lock:${id}`, this.#opts);
  }
}

class RedisLock implements Lock {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #opts: Required<RedisLockerOptions>;
  readonly #token = crypto.randomBytes(16).toString('hex');
  #renewal: NodeJS.Timeout | undefined;

  constructor(redis: Redis, key: string, opts: Required<RedisLockerOptions>) {
    this.#redis = redis;
    this.#key = key;
    this.#opts = opts;
  }

  async lock(signal: AbortSignal, _requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.#opts.acquireTimeoutMs;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      // Redis down: 503 UNAVAILABLE (an AppError, which tus hands to our error handler as it is).
      const ok = await this.#opts.breaker.run(() =>
        this.#redis.set(this.#key, this.#token, 'PX', this.#opts.leaseMs, 'NX'),
      );
      if (ok === 'OK') break;
      // tus answers its own error objects ({ status_code, body }) with their status.
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    this.#renewal = setInterval(() => {
      this.#redis.eval(RENEW, 1, this.#key, this.#token, this.#opts.leaseMs).catch(() => undefined);
    }, this.#opts.leaseMs / 3);
    this.#renewal.unref();
  }

  async unlock(): Promise<void> {
    clearInterval(this.#renewal);
    try {
      await this.#opts.breaker.run(() => this.#redis.eval(RELEASE, 1, this.#key, this.#token));
    } catch (error) {
      // The request's work is done; with Redis gone the lease frees the lock once it runs out.
      if (!(error instanceof DependencyUnavailableError)) throw error;
    }
  }
}
