import { Redis } from 'ioredis';
import { required } from './requirements.ts';

/**
 * Redis for the tests that need it: they run when STOWAGE_TEST_REDIS_URL points at a server (CI
 * sets redis://127.0.0.1:6379) and are skipped otherwise. The app's keys have fixed prefixes, so
 * test files keep apart by database index: each file takes its own index from REDIS_DB and flushes
 * it before and after. (Pub/sub channels are server-wide; listeners must ignore others' events.)
 */
const baseUrl = process.env.STOWAGE_TEST_REDIS_URL?.trim() || undefined;

/** One database index per test file that uses Redis; add a line for a new file. */
export const REDIS_DB = {
  partition: 1,
  partitionLimits: 2,
  redisUnit: 11,
  multiInstance: 12,
  locker: 5,
  revocation: 3,
  anonymousLimit: 14,
  tusHandover: 7,
  adminSessions: 4,
  trashInstances: 6,
} as const;

/** Whether Redis tests can run; says once (per test file) why not when they cannot. */
export function redisAvailable(): boolean {
  return required(
    baseUrl !== undefined,
    'Redis (STOWAGE_TEST_REDIS_URL)',
    'set STOWAGE_TEST_REDIS_URL, e.g. redis://127.0.0.1:6379 (.ci/run does)',
  );
}

/** The test server's URL with database index `n`. */
export function redisUrlFor(n: number): string {
  if (!baseUrl) throw new Error('STOWAGE_TEST_REDIS_URL is not set');
  const url = new URL(baseUrl);
  url.pathname = `/${n}`;
  return url.toString();
}

/** Empties database `n` (its keys only; other files' indexes are untouched). */
export async function flushRedisDb(n: number): Promise<void> {
  const client = new Redis(redisUrlFor(n), { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    await client.flushdb();
  } finally {
    client.disconnect();
  }
}
