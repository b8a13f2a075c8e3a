import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.ts';
import type { CounterStore } from '../../util/counter-store.ts';
import { clientAddressKey } from '../../util/client-address.ts';

const WINDOW_MS = 60_000;

export interface AnonymousLimitDeps {
  /** The rate-limit counters (Redis when configured, so every instance counts together). */
  counters: CounterStore;
  /** Requests per minute per client address; 0 turns the limit off. */
  perMinute: number;
  /** Whether the request's Authorization header is a valid credential (a user's session, the metrics token). */
  hasValidCredential(request: FastifyRequest): Promise<boolean>;
}

const vouched = new WeakSet<FastifyRequest>();

/**
 * For routes that check a credential of their own outside the user sessions (the metrics token):
 * a request that presented a valid one is not anonymous traffic.
 */
export function vouchFor(request: FastifyRequest): void {
  vouched.add(request);
}

/**
 * Per-address request limit for everything that is not a signed-in user's request: no token,
 * a token that fails, a link token, a public item, tus discovery, an unknown route. Without it a
 * client could send unauthenticated requests (and wrong tokens) as fast as the server answers,
 * each costing a token check, a database lookup or a readiness probe. A signed-in user is never
 * refused by it, also from an address that is over it (a NAT shared with an attacker): their
 * requests fall under the per-user limit instead.
 *
 * A request without an Authorization header is counted when it arrives. One with a header cannot
 * be judged before its token is checked, so it is counted when it ends, unless a valid credential
 * was found (request.caller, or vouchFor); and once its address is over the limit, its credential
 * is checked first, and only a valid one lets it through.
 */
export function registerAnonymousLimit(app: FastifyInstance, deps: AnonymousLimitDeps): void {
  if (deps.perMinute <= 0) return;
  const keyOf = (request: FastifyRequest) => `anon:${clientAddressKey(request.ip)}`;
  const credentialed = new WeakSet<FastifyRequest>();

  const count = async (request: FastifyRequest): Promise<{ over: boolean; retryAfter: number }> => {
    try {
      const window = await deps.counters.increment(keyOf(request), WINDOW_MS);
      return { over: window.count > deps.perMinute, retryAfter: secondsOf(window.resetInMs) };
    } catch (error) {
      // A limit that cannot be counted is not applied: refusing everyone would be worse.
      request.log.warn({ err: error }, 'anonymous rate limit: counter unavailable');
      return { over: false, retryAfter: 0 };
    }
  };

  app.addHook('onRequest', async (request) => {
    if (request.headers.authorization === undefined) {
      const { over, retryAfter } = await count(request);
      if (over) throw limited(retryAfter);
      return;
    }
    let window;
    try {
      window = await deps.counters.get(keyOf(request));
    } catch (error) {
      request.log.warn({ err: error }, 'anonymous rate limit: counter unavailable');
      return;
    }
    if (!window || window.count < deps.perMinute) return;
    if (await deps.hasValidCredential(request)) {
      credentialed.add(request);
      return;
    }
    await count(request);
    throw limited(secondsOf(window.resetInMs));
  });

  app.addHook('onResponse', async (request, reply) => {
    if (request.headers.authorization === undefined || reply.statusCode === 429) return;
    if (request.caller || vouched.has(request) || credentialed.has(request)) return;
    await count(request);
  });
}

function secondsOf(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function limited(retryAfter: number): AppError {
  return new AppError('RATE_LIMITED', 'Too many requests from this address. Try again later.', {
    headers: { 'Retry-After': String(retryAfter) },
  });
}
