import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { InvalidationBus, InvalidationEvent } from '../util/invalidation-bus.ts';

const CHANNEL = 'stowage:invalidate';

/**
 * Cache invalidations over Redis pub/sub: a logout or revocation on one instance reaches every
 * other instance's session cache within milliseconds. Subscribing needs its own connection.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #listeners: ((event: InvalidationEvent) => void)[] = [];

  private constructor(pub: Redis, sub: Redis) {
    this.#pub = pub;
    this.#sub = sub;
  }

  static async create(redis: Redis, logger: Logger): Promise<RedisInvalidationBus> {
    const sub = redis.duplicate();
    const bus = new RedisInvalidationBus(redis, sub);
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

  async publish(event: InvalidationEvent): Promise<void> {
    await this.#pub.publish(CHANNEL, JSON.stringify(event));
  }

  subscribe(listener: (event: InvalidationEvent) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#sub.disconnect();
    return Promise.resolve();
  }
}
