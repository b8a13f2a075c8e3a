import { AppError } from '../errors.ts';
import { DeadlineExceededError } from './deadline.ts';

/**
 * Seconds a client is told to wait (Retry-After, RFC 9110 §10.2.3) when a dependency is down:
 * readiness checks run at most once a second, so a healed dependency is seen again within this.
 */
export const DEPENDENCY_RETRY_AFTER_SECONDS = 2;

/**
 * 503 UNAVAILABLE: a dependency (database, Redis) cannot serve this request right now. It is an
 * AppError so that it keeps its meaning through code that only passes AppErrors on (tus). Which
 * dependency failed goes to the log, never to the client.
 */
export class DependencyUnavailableError extends AppError {
  readonly dependency: string;

  constructor(dependency: string, cause?: unknown) {
    super('UNAVAILABLE', 'A service this request needs is unavailable. Try again shortly.', {
      cause,
      headers: { 'Retry-After': String(DEPENDENCY_RETRY_AFTER_SECONDS) },
    });
    this.name = 'DependencyUnavailableError';
    this.dependency = dependency;
  }
}

/** Socket errors of a peer that is down, unreachable or gone. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * PostgreSQL SQLSTATEs that say the server cannot serve now (not that the query is wrong): class 08
 * (connection exception), 57P01–57P03 (shutting down, crashed, starting up), 53300 (too many
 * connections). https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const PG_UNAVAILABLE = /^(08...|57P0[123]|53300)$/;

/**
 * Messages of pg, pg-pool and ioredis for a connection that failed, timed out or is gone: these
 * libraries give such errors no code, so the message is all there is to go on.
 */
const CLIENT_MESSAGES = [
  // pg / pg-pool
  /^Query read timeout$/,
  /^timeout exceeded when trying to connect$/,
  /^Connection terminated/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
  // ioredis
  /^Command timed out$/,
  /^Stream isn't writeable and enableOfflineQueue options is false$/,
  /^Connection is closed\.$/,
  /^Socket timeout\./,
  /^Reached the max retries per request limit/,
  /^LOADING /,
];

/**
 * The one classifier of dependency failures: whether `error` (or what caused it) means that the
 * database or Redis is down, unreachable or too slow to answer — as opposed to a bug or a query
 * the server refused. The database and Redis adapters use it to trip their breakers, and the error
 * handler to answer 503 UNAVAILABLE instead of 500.
 */
export function isDependencyFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof DependencyUnavailableError || e instanceof DeadlineExceededError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || PG_UNAVAILABLE.test(code))) return true;
    if (e.name === 'MaxRetriesPerRequestError') return true;
    if (CLIENT_MESSAGES.some((re) => re.test(e.message))) return true;
  }
  return false;
}

/** `error` as the 503 to answer when it is a dependency failure; undefined otherwise. */
export function asDependencyUnavailable(error: unknown, dependency = 'dependency'): AppError | undefined {
  if (error instanceof DependencyUnavailableError) return error;
  return isDependencyFailure(error) ? new DependencyUnavailableError(dependency, error) : undefined;
}
