import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { InvalidationBus, InvalidationEvent } from '../util/invalidation-bus.ts';

const CHANNEL = 'stowage:invalidate';

/**
 * Cache invalidations over Redis pub/sub: a logout or revocation on one instance reaches every
 * other instance's caches within milliseconds. Subscribing needs its own connection. Pub/sub
 * delivers at most once — nothing is replayed to a subscriber that was disconnected, and nothing
 * tells it what it missed — so this only makes changes quicker: the caches' lifetime of at most
 * a second (ACCESS_CACHE_TTL_MS) is what bounds how late a change can take effect.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #logger: Logger;
  readonly #listeners: ((event: InvalidationEvent) => void)[] = [];

  private constructor(pub: Redis, sub: Redis, logger: Logger) {
    this.#pub = pub;
    this.#sub = sub;
    this.#logger = logger;
  }

  static async create(redis: Redis, logger: Logger): Promise<RedisInvalidationBus> {
    const sub = redis.duplicate();
    const bus = new RedisInvalidationBus(redis, sub, logger);
    sub.on('message', (_channel: string, message: string) => {
      let event: InvalidationEvent;
      try {
        event = JSON.parse(message) as InvalidationEvent;
      } catch {
        logger.warn('ignoring a malformed invalidation message');
        return;
      }
      for (const listener of bus.#listeners) listener(event);
    });
    await sub.subscribe(CHANNEL);
    return bus;
  }

  /**
   * Sends without waiting: the change is already in the database, and a message that does not
   * arrive only delays it elsewhere by the cache lifetime, so a slow or unreachable Redis must not
   * hold up (or fail) the logout, revocation or edit that publishes it.
   */
  publish(event: InvalidationEvent): Promise<void> {
    this.#pub.publish(CHANNEL, JSON.stringify(event)).catch((error: unknown) => {
      this.#logger.warn(
        { err: error },
        'could not broadcast a cache invalidation; other instances catch up within a second',
      );
    });
    return Promise.resolve();
  }

  subscribe(listener: (event: InvalidationEvent) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#sub.disconnect();
    return Promise.resolve();
  }
}
