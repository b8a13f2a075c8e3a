import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import type { UserRecord } from '../../src/auth/user-file.ts';
import { updateUsersFile } from '../../src/auth/users-file-io.ts';
import { until } from '../helpers/common.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { startPubSubDroppingProxy, type PubSubDroppingProxy } from '../helpers/pubsub-dropping-proxy.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { pdf, startMediaApp, type MediaApp, type MediaItem, type User } from '../media/media-helpers.ts';

/**
 * Two app instances on one database, where instance B never hears of what instance A changed: with
 * Redis, every message Redis pushes to B's subscriber connection is dropped by a proxy (the
 * connection stays up and B's other Redis commands keep working); without Redis there is no bus
 * at all. Logout, revocation, a password change or removal in the users file, a visibility change
 * and a link revocation made on A must still be refused on B within 1 s (wall time: that is the
 * guarantee). Each instance keeps files on its own disk here, so items are uploaded through B.
 */
const WITHIN_MS = 1500; // the 1 s bound plus room for the polling requests themselves
const DB = REDIS_DB.revocation;

const setups = [
  {
    name: 'PostgreSQL and Redis, every pub/sub message to B lost',
    redis: true,
    canRun: pgAvailable() && redisAvailable(),
  },
  { name: 'one SQLite file, no Redis', redis: false, canRun: true },
];

for (const setup of setups) {
  describe.skipIf(!setup.canRun)(`revocation across instances: ${setup.name}`, () => {
    let tmp: string;
    let database: TestDatabase | undefined;
    let proxy: PubSubDroppingProxy | undefined;
    let a: MediaApp;
    let b: MediaApp;

    beforeAll(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-revocation-'));
      // Shared keys and database; each instance has its own users file (a copy), so B can learn
      // of a change made through A's file only from the database.
      const env: Record<string, string> = {
        STOWAGE_JWT_KEY_FILE: path.join(tmp, 'keys', 'jwt-ed25519.pem'),
        STOWAGE_LINK_KEY_FILE: path.join(tmp, 'keys', 'link-hmac.key'),
      };
      if (setup.redis) {
        database = await createTestDatabase();
        env.STOWAGE_DATABASE_URL = database.url;
        await flushRedisDb(DB);
        proxy = await startPubSubDroppingProxy(redisUrlFor(DB));
      } else {
        env.STOWAGE_DATABASE_URL = `sqlite:${path.join(tmp, 'stowage.db')}`;
      }
      a = await startMediaApp({ ...env, ...(setup.redis ? { STOWAGE_REDIS_URL: redisUrlFor(DB) } : {}) });
      b = await startMediaApp({ ...env, ...(proxy ? { STOWAGE_REDIS_URL: proxy.url(DB) } : {}) });
      proxy?.startDropping();
    }, 60_000);

    afterAll(async () => {
      await b?.close();
      await a?.close();
      await proxy?.close();
      await database?.drop();
      if (setup.redis) await flushRedisDb(DB).catch(() => undefined);
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    const me = async (app: MediaApp, accessToken: string) =>
      (await app.app.inject({ method: 'GET', url: '/api/auth/me', headers: app.auth(accessToken) }))
        .statusCode;
    const sessionId = async (app: MediaApp, accessToken: string) =>
      (await app.app.inject({ method: 'GET', url: '/api/auth/me', headers: app.auth(accessToken) })).json<{
        session: { id: string };
      }>().session.id;
    const as = (app: MediaApp, accessToken: string) => ({ headers: app.auth(accessToken) });
    /** That the invalidation naming `text` was published and then lost on its way to B. */
    const lostOnB = async (text: string) => {
      if (proxy)
        await until(() => proxy!.dropped().includes(text), 5000, `the message about ${text} reaching B`);
    };
    const refusedOnB = (check: () => Promise<boolean>, what: string) => until(check, WITHIN_MS, what);
    const status = async (app: MediaApp, url: string, headers: Record<string, string> = {}) =>
      (await app.app.inject({ method: 'GET', url, headers })).statusCode;

    // Only where there is a Redis (registered, not skipped, so a CI run shows no skip).
    if (setup.redis) {
      it('keeps B connected to Redis for everything but the lost messages', async () => {
        const res = await b.app.inject({ method: 'GET', url: '/readyz' });
        expect(res.json<{ checks: Record<string, string> }>().checks.redis).toBe('ok');
      });
    }

    it('logout on A: B refuses the session within 1 s', async () => {
      const { accessToken } = await a.login('alice');
      const id = await sessionId(a, accessToken);
      expect(await me(b, accessToken)).toBe(200); // B has looked it up and may cache it
      const logout = await a.app.inject({ method: 'POST', url: '/api/auth/logout', ...as(a, accessToken) });
      expect(logout.statusCode).toBe(204);
      expect(await me(a, accessToken)).toBe(401);
      await lostOnB(id);
      await refusedOnB(async () => (await me(b, accessToken)) === 401, 'B refusing the logged-out session');
    });

    it('revocation on A: B refuses that session within 1 s and keeps the other', async () => {
      const first = await a.login('alice');
      const second = await b.login('alice');
      const id = await sessionId(a, first.accessToken);
      expect(await me(b, first.accessToken)).toBe(200);
      const revoke = await a.app.inject({
        method: 'DELETE',
        url: `/api/auth/sessions/${id}`,
        ...as(a, second.accessToken),
      });
      expect(revoke.statusCode).toBe(204);
      await lostOnB(id);
      await refusedOnB(
        async () => (await me(b, first.accessToken)) === 401,
        'B refusing the revoked session',
      );
      expect(await me(b, second.accessToken)).toBe(200);
    });

    it('public → private on A: B refuses anonymous reads within 1 s', async () => {
      const item = await b.uploadFile(pdf(11, 'was public'), 'public.pdf', 'root', { visibility: 'public' });
      const content = `/api/media/${item.id}/content`;
      expect(await status(b, content)).toBe(200); // cached as public on B
      const patch = await a.api('PATCH', `/api/media/${item.id}`, {
        as: 'root',
        body: { visibility: 'private' },
      });
      expect(patch.status, patch.body).toBe(200);
      expect(await status(a, content)).toBe(401);
      await lostOnB(item.id);
      await refusedOnB(async () => (await status(b, content)) === 401, 'B refusing the now private item');
      expect(await status(b, content, { authorization: `Bearer ${b.tokens.root}` })).toBe(200);
    });

    it('link revoked on A: B refuses it within 1 s', async () => {
      const item = await b.uploadFile(pdf(12, 'linked'), 'linked.pdf', 'root');
      const created = await a.api('POST', `/api/media/${item.id}/links`, { as: 'root', body: {} });
      expect(created.status, created.body).toBe(201);
      const link = created.json<{ id: string; url: string }>();
      expect(await status(b, link.url)).toBe(200); // cached on B
      expect((await a.api('DELETE', `/api/media/${item.id}/links/${link.id}`, { as: 'root' })).status).toBe(
        204,
      );
      expect(await status(a, link.url)).toBe(401);
      await lostOnB(link.id);
      await refusedOnB(async () => (await status(b, link.url)) === 401, 'B refusing the revoked link');
    });

    it('item deleted on A: B refuses its owner and its links within 1 s', async () => {
      const item: MediaItem = await b.uploadFile(pdf(13, 'deleted'), 'deleted.pdf', 'root');
      const link = (await a.api('POST', `/api/media/${item.id}/links`, { as: 'root', body: {} })).json<{
        url: string;
      }>();
      const bearer = { authorization: `Bearer ${b.tokens.root}` };
      const content = `/api/media/${item.id}/content`;
      expect([await status(b, content, bearer), await status(b, link.url)]).toEqual([200, 200]);
      expect((await a.api('DELETE', `/api/media/${item.id}`, { as: 'root' })).status).toBe(204);
      await lostOnB(item.id);
      await refusedOnB(
        async () => (await status(b, content, bearer)) === 404 && (await status(b, link.url)) === 401,
        'B forgetting the deleted item and its link',
      );
    });

    // These two end sessions of alice and bob for good, so they come last.
    const changeUsersFileOfA = (change: (users: Map<string, UserRecord>) => void) =>
      updateUsersFile(a.config.usersFile, (users) => void change(users));

    it("password change in A's users file: B refuses the user's sessions within 1 s of A acting on it", async () => {
      const onA = (await a.login('alice')).accessToken;
      const onB = (await b.login('alice')).accessToken;
      for (const token of [onA, onB]) expect(await me(b, token)).toBe(200);
      const hash = await new PasswordHasher().hash('a-brand-new-password');
      await changeUsersFileOfA((users) => {
        users.set('alice', { ...users.get('alice')!, hash });
      });
      await until(async () => (await me(a, onA)) === 401, 5000, 'A noticing the changed file');
      await lostOnB('alice');
      await refusedOnB(
        async () => (await me(b, onA)) === 401 && (await me(b, onB)) === 401,
        "B refusing alice's sessions",
      );
    });

    it("removal from A's users file: B refuses the user's sessions within 1 s of A acting on it", async () => {
      const user: User = 'bob';
      const onB = (await b.login(user)).accessToken;
      expect(await me(b, onB)).toBe(200);
      await changeUsersFileOfA((users) => void users.delete(user));
      await until(async () => (await me(a, a.tokens.bob)) === 401, 5000, 'A noticing the removal');
      await lostOnB(user);
      await refusedOnB(async () => (await me(b, onB)) === 401, "B refusing bob's session");
    });
  });
}
