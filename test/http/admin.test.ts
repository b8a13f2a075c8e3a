/**
 * The admin routes over HTTP, on SQLite and PostgreSQL: refused to everyone but admins (each
 * route, before its input is even looked at), the users with their usage and live sessions, and
 * ending all of a user's sessions — on this instance at once, and on a second instance sharing the
 * database within 1 s (with Redis, and without any bus).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { until } from '../helpers/common.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { expectError, pdf, startMediaApp, type MediaApp } from '../media/media-helpers.ts';

const DATABASES = [
  ['sqlite', true],
  ['postgres', pgAvailable()],
] as const;

interface AdminUser {
  username: string;
  roles: string[];
  usage: { files: number; bytes: number };
  sessions: number;
}

const ROUTES = [
  ['GET', '/api/admin/users'],
  ['DELETE', '/api/admin/users/alice/sessions'],
  ['DELETE', '/api/admin/users/nobody/sessions'],
  ['GET', '/api/admin/audit'],
  ['GET', '/api/admin/audit?limit=0&action=nonsense'],
] as const;

describe.each(DATABASES)('admin routes on %s', (kind, available) => {
  let app: MediaApp;
  let database: TestDatabase | undefined;

  beforeAll(async () => {
    if (!available) return;
    const env: Record<string, string> = {};
    if (kind === 'postgres') {
      database = await createTestDatabase();
      env.STOWAGE_DATABASE_URL = database.url;
    }
    app = await startMediaApp(env);
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  const users = async () => {
    const res = await app.api('GET', '/api/admin/users', { as: 'root' });
    expect(res.status).toBe(200);
    return res.json<{ items: AdminUser[] }>().items;
  };

  test.skipIf(!available)(
    'refuse non-admins with 403 and callers without a token with 401, on every route',
    async () => {
      for (const [method, url] of ROUTES) {
        expectError(await app.api(method, url, { as: 'bob' }), 403, 'FORBIDDEN');
        expectError(await app.api(method, url, { as: 'alice' }), 403, 'FORBIDDEN');
        expectError(await app.api(method, url, { as: null }), 401, 'UNAUTHENTICATED');
      }
      // Refused, so nothing was done: alice's token still works.
      expect((await app.api('GET', '/api/auth/me')).status).toBe(200);
    },
  );

  test.skipIf(!available)('list every user with roles, usage and live sessions', async () => {
    const before = await users();
    expect(before.map((u) => u.username)).toEqual(['alice', 'bob', 'root']);
    const alice = before.find((u) => u.username === 'alice')!;
    expect(before.find((u) => u.username === 'root')!.roles).toEqual(['admin']);

    const a = await app.uploadFile(pdf(100, 'one'), 'one.pdf');
    const b = await app.uploadFile(pdf(300, 'two'), 'two.pdf');
    const extra = await app.login('alice');
    const after = (await users()).find((u) => u.username === 'alice')!;
    expect(after.usage).toEqual({
      files: alice.usage.files + 2,
      bytes: alice.usage.bytes + a.size + b.size,
    });
    expect(after.sessions).toBe(alice.sessions + 1);
    // A logged-out session is not live.
    const logout = await app.app.inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: app.auth(extra.accessToken),
    });
    expect(logout.statusCode).toBe(204);
    expect((await users()).find((u) => u.username === 'alice')!.sessions).toBe(alice.sessions);
  });

  test.skipIf(!available)(
    "end every session of a user: their tokens are refused, others' are not",
    async () => {
      const second = await app.login('bob');
      expect((await app.api('GET', '/api/auth/me', { as: 'bob' })).status).toBe(200);
      const res = await app.api('DELETE', '/api/admin/users/bob/sessions', { as: 'root' });
      expect(res.status).toBe(204);
      expectError(await app.api('GET', '/api/auth/me', { as: 'bob' }), 401, 'UNAUTHENTICATED');
      const me = await app.app.inject({
        method: 'GET',
        url: '/api/auth/me',
        headers: app.auth(second.accessToken),
      });
      expect(me.statusCode).toBe(401);
      const refresh = await app.app.inject({
        method: 'POST',
        url: '/api/auth/refresh',
        payload: { refreshToken: second.refreshToken },
      });
      expect(refresh.statusCode).toBe(401);
      expect((await users()).find((u) => u.username === 'bob')!.sessions).toBe(0);
      expect((await app.api('GET', '/api/auth/me', { as: 'alice' })).status).toBe(200);
      // Recorded, by whom and for whom.
      const audit = await app.api('GET', '/api/admin/audit?action=session_revoked&user=root', { as: 'root' });
      expect(audit.json<{ items: { target: string }[] }>().items[0]?.target).toBe('bob');
      // bob may log in again.
      expect((await app.login('bob')).accessToken).toEqual(expect.any(String));
    },
  );

  test.skipIf(!available)('an unknown user → 404', async () => {
    expectError(
      await app.api('DELETE', '/api/admin/users/nobody/sessions', { as: 'root' }),
      404,
      'NOT_FOUND',
    );
  });
});

/**
 * Two instances on one database: root ends alice's sessions on A, and B — which has looked the
 * session up and may cache it — refuses it within 1 s (wall time: that is the guarantee).
 */
const WITHIN_MS = 1500; // the 1 s bound plus room for the polling requests themselves
const setups = [
  { name: 'PostgreSQL and Redis', redis: true, canRun: pgAvailable() && redisAvailable() },
  { name: 'one SQLite file, no Redis', redis: false, canRun: true },
];
for (const setup of setups) {
  describe.skipIf(!setup.canRun)(`ending a user's sessions across instances: ${setup.name}`, () => {
    const DB = REDIS_DB.adminSessions;
    let tmp: string;
    let database: TestDatabase | undefined;
    let a: MediaApp;
    let b: MediaApp;

    beforeAll(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-admin-'));
      const env: Record<string, string> = {
        STOWAGE_JWT_KEY_FILE: path.join(tmp, 'keys', 'jwt-ed25519.pem'),
        STOWAGE_LINK_KEY_FILE: path.join(tmp, 'keys', 'link-hmac.key'),
      };
      if (setup.redis) {
        database = await createTestDatabase();
        env.STOWAGE_DATABASE_URL = database.url;
        env.STOWAGE_REDIS_URL = redisUrlFor(DB);
        await flushRedisDb(DB);
      } else {
        env.STOWAGE_DATABASE_URL = `sqlite:${path.join(tmp, 'stowage.db')}`;
      }
      a = await startMediaApp(env);
      b = await startMediaApp(env);
    }, 60_000);
    afterAll(async () => {
      await b?.close();
      await a?.close();
      await database?.drop();
      if (setup.redis) await flushRedisDb(DB).catch(() => undefined);
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    test('B refuses every one of the user’s sessions within 1 s', async () => {
      const onA = await a.login('alice');
      const onB = await b.login('alice');
      const me = async (app: MediaApp, token: string) =>
        (await app.app.inject({ method: 'GET', url: '/api/auth/me', headers: app.auth(token) })).statusCode;
      for (const token of [onA.accessToken, onB.accessToken]) expect(await me(b, token)).toBe(200);
      expect(await me(b, b.tokens.bob)).toBe(200);
      const res = await a.app.inject({
        method: 'DELETE',
        url: '/api/admin/users/alice/sessions',
        headers: a.auth(a.tokens.root),
      });
      expect(res.statusCode).toBe(204);
      await until(
        async () => (await me(b, onA.accessToken)) === 401 && (await me(b, onB.accessToken)) === 401,
        WITHIN_MS,
        "B refusing alice's sessions",
      );
      expect(await me(b, b.tokens.alice)).toBe(401);
      expect(await me(b, b.tokens.bob)).toBe(200);
    });
  });
}
