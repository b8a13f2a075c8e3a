/**
 * STOWAGE_SESSION_MAX_AGE (a session ends that long after its login, however often it is
 * refreshed) and STOWAGE_SESSIONS_PER_USER (a new login past it ends the least recently used
 * session). Time moves on a ManualClock, never by sleeping.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORDS, type TestApp } from '../helpers/app.ts';
import { ManualClock } from '../helpers/clock.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { expectUnauthenticated, login, me, refresh } from './http-helpers.ts';

let t: TestApp | undefined;
let pg: TestDatabase | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
  await pg?.drop();
  pg = undefined;
});

/** The app's database: SQLite in its data dir, or a throwaway PostgreSQL database. */
async function databaseEnv(kind: 'sqlite' | 'postgres'): Promise<Record<string, string>> {
  if (kind === 'sqlite') return {};
  pg = await createTestDatabase();
  return { STOWAGE_DATABASE_URL: pg.url };
}

const DATABASES = [
  ['sqlite', true],
  ['postgres', pgAvailable()],
] as const;

interface Tokens {
  accessToken: string;
  refreshToken: string;
}

async function loginAs(app: TestApp, user: 'alice' | 'bob'): Promise<Tokens> {
  const res = await login(app, user, PASSWORDS[user]);
  expect(res.statusCode).toBe(200);
  return res.json<Tokens>();
}

async function sessionIds(app: TestApp, token: string): Promise<string[]> {
  const res = await app.app.inject({ method: 'GET', url: '/api/auth/sessions', headers: app.auth(token) });
  expect(res.statusCode).toBe(200);
  return res
    .json<{ items: { id: string }[] }>()
    .items.map((s) => s.id)
    .sort();
}

async function idOf(app: TestApp, token: string): Promise<string> {
  const res = await me(app, token);
  expect(res.statusCode).toBe(200);
  return res.json<{ session: { id: string } }>().session.id;
}

describe.each(DATABASES)('STOWAGE_SESSION_MAX_AGE on %s', (kind, available) => {
  it.skipIf(!available)(
    'ends a session its maximum age after the login, however often it was refreshed',
    async () => {
      const clock = new ManualClock(Date.now());
      const env = { STOWAGE_SESSION_MAX_AGE: '3600', STOWAGE_REFRESH_TOKEN_TTL: '600' };
      t = await createTestApp({ ...(await databaseEnv(kind)), ...env }, { clock });
      const app = t;
      let tokens = await loginAs(app, 'alice');
      const loggedInAt = clock.now();
      const meRes = await me(app, tokens.accessToken);
      const created = Date.parse(meRes.json<{ session: { createdAt: string } }>().session.createdAt);
      expect(created).toBe(loggedInAt);

      // Refreshed every 500 s, well within the 600 s refresh TTL, for just under the hour.
      for (let elapsed = 500; elapsed < 3600; elapsed += 500) {
        clock.advance(500_000);
        const res = await refresh(app, tokens.refreshToken);
        expect(res.statusCode, `refresh at ${elapsed} s`).toBe(200);
        tokens = res.json<Tokens>();
        const session = (await me(app, tokens.accessToken)).json<{ session: { expiresAt: string } }>()
          .session;
        // Never promised beyond the maximum age.
        expect(Date.parse(session.expiresAt)).toBeLessThanOrEqual(loggedInAt + 3_600_000);
      }
      expect((await me(app, tokens.accessToken)).statusCode).toBe(200);

      // 3600 s after the login: over, though the last refresh was only 100 s ago.
      clock.advance(100_000);
      expectUnauthenticated(await me(app, tokens.accessToken));
      expectUnauthenticated(await refresh(app, tokens.refreshToken));
      // A new login starts a new session.
      expect((await me(app, (await loginAs(app, 'alice')).accessToken)).statusCode).toBe(200);
    },
  );
});

describe.each(DATABASES)('STOWAGE_SESSIONS_PER_USER on %s', (kind, available) => {
  it.skipIf(!available)('ends the least recently used session when a login goes past the limit', async () => {
    const clock = new ManualClock(Date.now());
    t = await createTestApp({ ...(await databaseEnv(kind)), STOWAGE_SESSIONS_PER_USER: '3' }, { clock });
    const app = t;
    const bob = await loginAs(app, 'bob');
    const first = await loginAs(app, 'alice');
    clock.advance(1_000);
    const second = await loginAs(app, 'alice');
    clock.advance(1_000);
    const third = await loginAs(app, 'alice');
    const [firstId, secondId, thirdId] = [
      await idOf(app, first.accessToken),
      await idOf(app, second.accessToken),
      await idOf(app, third.accessToken),
    ];

    // The first session is used again later (past the interval at which use is recorded), so the
    // second is now the least recently used one.
    clock.advance(120_000);
    expect((await me(app, first.accessToken)).statusCode).toBe(200);
    clock.advance(1_000);

    const fourth = await loginAs(app, 'alice');
    const fourthId = await idOf(app, fourth.accessToken);
    expectUnauthenticated(await me(app, second.accessToken));
    expectUnauthenticated(await refresh(app, second.refreshToken));
    expect(await sessionIds(app, fourth.accessToken)).toEqual([firstId, thirdId, fourthId].sort());
    expect(secondId).not.toBe(fourthId);

    // Logins beyond keep ending the oldest-used, never the new one; bob's session is not alice's.
    for (let i = 0; i < 5; i++) {
      clock.advance(1_000);
      const latest = await loginAs(app, 'alice');
      expect((await me(app, latest.accessToken)).statusCode).toBe(200);
      expect(await sessionIds(app, latest.accessToken)).toHaveLength(3);
    }
    expect((await me(app, bob.accessToken)).statusCode).toBe(200);
  });

  it.skipIf(!available)('keeps 50 sessions per user by default', async () => {
    t = await createTestApp(await databaseEnv(kind));
    const app = t;
    const all: Tokens[] = [];
    for (let i = 0; i < 51; i++) all.push(await loginAs(app, 'bob'));
    expect(await sessionIds(app, all[50]!.accessToken)).toHaveLength(50);
    expectUnauthenticated(await me(app, all[0]!.accessToken));
    expect((await me(app, all[1]!.accessToken)).statusCode).toBe(200);
  });
});
