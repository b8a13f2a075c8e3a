import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { CounterStore } from '../util/counter-store.ts';

/**
 * @fastify/rate-limit counting through our CounterStore, so the per-user request limit uses the
 * same counters as the login limits: Redis across instances, falling back to this instance's own
 * while Redis is down (FallbackCounterStore) instead of failing or stalling each request. Both
 * keep fixed windows that open at a key's first hit, as the plugin's own stores do.
 */
export function counterRateLimitStore(counters: CounterStore, prefix = 'rl:'): FastifyRateLimitStoreCtor {
  const storeFor = (keyPrefix: string): FastifyRateLimitStore => ({
    incr(key, callback, timeWindow) {
      counters.increment(keyPrefix + key, timeWindow).then(
        ({ count, resetInMs }) => callback(null, { current: count, ttl: resetInMs }),
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
    },
    // A route with its own limit counts apart. The plugin passes its merged options, which hold
    // the route under `routeInfo` (its typings say the route itself).
    child: (options) => {
      const route = (options as { routeInfo?: { method?: unknown; url?: unknown } }).routeInfo ?? {};
      return storeFor(`${keyPrefix}${String(route.method)}${String(route.url)}:`);
    },
  });
  // The plugin constructs its store with `new`; a constructor may hand back another object.
  return class {
    constructor() {
      return storeFor(prefix);
    }
  } as unknown as FastifyRateLimitStoreCtor;
}
