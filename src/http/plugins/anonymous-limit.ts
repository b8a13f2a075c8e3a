import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.ts';
import type { CounterStore } from '../../util/counter-store.ts';
import { clientAddressKey } from '../../util/client-address.ts';
import { systemClock, type Clock } from '../../util/clock.ts';

const WINDOW_MS = 60_000;
/** Addresses remembered as over the limit; past this, expired entries go, then the oldest. */
const MAX_REMEMBERED = 10_000;

export interface AnonymousLimitDeps {
  /** The rate-limit counters (Redis when configured, so every instance counts together). */
  counters: CounterStore;
  /** Requests per minute per client address; 0 turns the limit off. */
  perMinute: number;
  /** Whether the request's Authorization header is a valid credential (a session, the metrics token). */
  hasValidCredential(request: FastifyRequest): Promise<boolean>;
  clock?: Clock;
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
 * be judged before its token is checked, so it is counted as it is answered, unless a valid
 * credential was found (request.caller, or vouchFor); and once its address is over the limit, its
 * credential is checked first, and only a valid one lets it through. Which addresses are over the
 * limit is remembered locally when a count reaches it, so the requests of signed-in users (the
 * bulk of the traffic) add no round trip to the counter store.
 */
export function registerAnonymousLimit(app: FastifyInstance, deps: AnonymousLimitDeps): void {
  if (deps.perMinute <= 0) return;
  const clock = deps.clock ?? systemClock;
  const keyOf = (request: FastifyRequest) => `anon:${clientAddressKey(request.ip)}`;
  const credentialed = new WeakSet<FastifyRequest>();
  // Addresses this instance has seen go over the limit, until their window ends. A request with a
  // token only needs this local look-up, so signed-in users' requests cost no counter round trip.
  const over = new Map<string, number>();

  const remember = (key: string, until: number) => {
    if (over.size >= MAX_REMEMBERED) {
      const now = clock.now();
      for (const [k, end] of over) if (end <= now) over.delete(k);
      for (const k of over.keys()) {
        if (over.size < MAX_REMEMBERED) break;
        over.delete(k);
      }
    }
    over.set(key, until);
  };

  /** Counts the request; returns the seconds until its window ends when the address is over the limit. */
  const count = async (request: FastifyRequest): Promise<number | null> => {
    const key = keyOf(request);
    try {
      const window = await deps.counters.increment(key, WINDOW_MS);
      // The budget is used up from here on: the next request with a token must show a valid one.
      if (window.count >= deps.perMinute) remember(key, clock.now() + window.resetInMs);
      return window.count > deps.perMinute ? secondsOf(window.resetInMs) : null;
    } catch (error) {
      // A limit that cannot be counted is not applied: refusing everyone would be worse.
      request.log.warn({ err: error }, 'anonymous rate limit: counter unavailable');
      return null;
    }
  };

  app.addHook('onRequest', async (request) => {
    if (request.headers.authorization === undefined) {
      const retryAfter = await count(request);
      if (retryAfter !== null) throw limited(retryAfter);
      return;
    }
    const until = over.get(keyOf(request));
    if (until === undefined) return;
    const left = until - clock.now();
    if (left <= 0) {
      over.delete(keyOf(request));
      return;
    }
    if (await deps.hasValidCredential(request)) {
      credentialed.add(request);
      return;
    }
    throw limited((await count(request)) ?? secondsOf(left));
  });

  // Counted before the answer goes out, so that the client's next request already sees it.
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.headers.authorization === undefined || reply.statusCode === 429) return payload;
    if (request.caller || vouched.has(request) || credentialed.has(request)) return payload;
    await count(request);
    return payload;
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
