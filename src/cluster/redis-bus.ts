import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Breaker } from '../util/breaker.ts';
import { DependencyUnavailableError } from '../util/dependency-failure.ts';
import type { InvalidationBus, InvalidationEvent } from '../util/invalidation-bus.ts';

const CHANNEL = 'stowage:invalidate';

/**
 * Cache invalidations over Redis pub/sub: a logout or revocation on one instance reaches every
 * other instance's caches within milliseconds. Subscribing needs its own connection. Pub/sub
 * delivers at most once — nothing is replayed to a subscriber that was disconnected, and nothing
 * tells it what it missed — so this only makes changes quicker: the caches' lifetime of at most
 * a second (ACCESS_CACHE_TTL_MS) is what bounds how late a change can take effect.
 *
 * While Redis is down the bus degrades instead of failing the request that publishes: the event
 * is dropped (logged) and the other instances catch up within that second. ioredis subscribes
 * again on reconnect.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #breaker: Breaker;
  readonly #logger: Logger;
  readonly #listeners: ((event: InvalidationEvent) => void)[] = [];

  private constructor(pub: Redis, sub: Redis, breaker: Breaker, logger: Logger) {
    this.#pub = pub;
    this.#sub = sub;
    this.#breaker = breaker;
    this.#logger = logger;
  }

  static async create(
    redis: Redis,
    logger: Logger,
    breaker = new Breaker('redis'),
  ): Promise<RedisInvalidationBus> {
    const sub = redis.duplicate();
    sub.on('error', (error: Error) => logger.debug({ err: error }, 'redis subscriber connection problem'));
    const bus = new RedisInvalidationBus(redis, sub, breaker, logger);
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
    // Without an offline queue, a lazy client must be connected before its first command.
    if (sub.status === 'wait') await sub.connect();
    await sub.subscribe(CHANNEL);
    return bus;
  }

  /**
   * Sends without waiting: the change is already in the database, and a message that does not
   * arrive only delays it elsewhere by the cache lifetime, so a slow or unreachable Redis must not
   * hold up (or fail) the logout, revocation or edit that publishes it.
   */
  publish(event: InvalidationEvent): Promise<void> {
    this.#breaker
      .run(() => this.#pub.publish(CHANNEL, JSON.stringify(event)))
      .catch((error: unknown) => {
        this.#logger.warn(
          { err: error instanceof DependencyUnavailableError ? error.cause : error },
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
