/**
 * The audit log, black-box over HTTP on SQLite and PostgreSQL: one entry for each action the
 * contract names, read by admins newest first with a cursor and filters; no entry holds a
 * password, token or hash (searched for the very strings this test used); entries are kept
 * STOWAGE_AUDIT_DAYS days (ManualClock, no sleeping); and an entry that cannot be written fails
 * the change it belongs to, never a login answer.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { hashRefreshToken } from '../../src/auth/tokens.ts';
import { PASSWORDS } from '../helpers/app.ts';
import { ManualClock } from '../helpers/clock.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import {
  eventually,
  expectError,
  pdf,
  startMediaApp,
  type MediaApp,
  type MediaItem,
} from '../media/media-helpers.ts';

const DAY = 86_400_000;
const DATABASES = [
  ['sqlite', true],
  ['postgres', pgAvailable()],
] as const;
const noTimer = () => ({ stop: () => undefined });

interface Entry {
  id: string;
  at: string;
  actor: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  outcome: string;
}

const WRONG_PASSWORD = 'not-the-password-Zq8';

describe.each(DATABASES)('the audit log on %s', (kind, available) => {
  const clock = new ManualClock(Date.now());
  let app: MediaApp;
  let database: TestDatabase | undefined;
  /** Every credential this test handled, to be searched for in the stored entries. */
  const secrets = new Set<string>([...Object.values(PASSWORDS), WRONG_PASSWORD]);
  const ids: Record<string, string> = {};

  const post = async (url: string, body: unknown, token?: string) =>
    app.app.inject({
      method: 'POST',
      url,
      payload: body as object,
      headers: token ? app.auth(token) : {},
    });
  const audit = async (query = '', token = app.tokens.root) => {
    const res = await app.app.inject({
      method: 'GET',
      url: `/api/admin/audit${query}`,
      headers: app.auth(token),
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ items: Entry[]; nextCursor: string | null }>();
  };

  beforeAll(async () => {
    if (!available) return;
    const env: Record<string, string> = { STOWAGE_TRASH_DAYS: '7' };
    if (kind === 'postgres') {
      database = await createTestDatabase();
      env.STOWAGE_DATABASE_URL = database.url;
    }
    app = await startMediaApp(env, { clock, sweepScheduler: noTimer });
    for (const token of Object.values(app.tokens)) secrets.add(token);

    // One of each action.
    const login = (await post('/api/auth/login', { username: 'alice', password: PASSWORDS.alice })).json<{
      accessToken: string;
      refreshToken: string;
    }>();
    secrets.add(login.accessToken).add(login.refreshToken);
    expect((await post('/api/auth/login', { username: 'alice', password: WRONG_PASSWORD })).statusCode).toBe(
      401,
    );
    expect((await post('/api/auth/login', { username: 'nobody', password: WRONG_PASSWORD })).statusCode).toBe(
      401,
    );
    const refreshed = await post('/api/auth/refresh', { refreshToken: login.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    secrets.add(refreshed.json<{ accessToken: string }>().accessToken);
    secrets.add(refreshed.json<{ refreshToken: string }>().refreshToken);
    // The first refresh token again: reuse, which ends the session.
    expect((await post('/api/auth/refresh', { refreshToken: login.refreshToken })).statusCode).toBe(401);

    const second = await app.login('alice');
    secrets.add(second.accessToken).add(second.refreshToken);
    const third = await app.login('alice');
    secrets.add(third.accessToken).add(third.refreshToken);
    const me = await app.app.inject({
      method: 'GET',
      url: '/api/auth/me',
      headers: app.auth(second.accessToken),
    });
    ids.revokedSession = me.json<{ session: { id: string } }>().session.id;
    const revoke = await app.app.inject({
      method: 'DELETE',
      url: `/api/auth/sessions/${ids.revokedSession}`,
      headers: app.auth(third.accessToken),
    });
    expect(revoke.statusCode).toBe(204);
    const logout = await app.app.inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: app.auth(third.accessToken),
    });
    expect(logout.statusCode).toBe(204);

    const item = await app.uploadFile(pdf(10, 'audited'), 'audited.pdf', 'alice');
    ids.item = item.id;
    const refused = await app.upload([
      { name: 'file', filename: 'page.html', data: Buffer.from('<html><script>x</script></html>') },
    ]);
    expectError(refused, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const link = await app.api('POST', `/api/media/${item.id}/links`, { body: { expiresIn: 60 } });
    expect(link.status).toBe(201);
    ids.link = link.json<{ id: string }>().id;
    secrets.add(new URL(link.json<{ url: string }>().url, 'http://x').searchParams.get('token')!);
    expect((await app.api('DELETE', `/api/media/${item.id}/links/${ids.link}`)).status).toBe(204);
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect((await app.api('POST', `/api/media/${item.id}/restore`)).status).toBe(200);
    // Hashes: of every refresh token, and the users' password hashes.
    for (const secret of [...secrets]) secrets.add(hashRefreshToken(secret));
    for (const user of app.services.users.list()) secrets.add(user.hash);
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  test.skipIf(!available)('records each action, with who, what, from where and how it ended', async () => {
    const { items } = await audit('?limit=500');
    const find = (action: string, match: Partial<Entry> = {}) => {
      const found = items.filter(
        (e) => e.action === action && Object.entries(match).every(([k, v]) => e[k as keyof Entry] === v),
      );
      expect(found, `${action} ${JSON.stringify(match)}`).not.toEqual([]);
      return found[0]!;
    };
    const local = expect.stringMatching(/^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/);
    expect(find('login', { actor: 'alice' })).toMatchObject({ target: 'alice', outcome: 'ok', ip: local });
    expect(find('login_failed', { actor: 'alice' })).toMatchObject({
      target: 'alice',
      outcome: 'INVALID_CREDENTIALS',
    });
    expect(find('login_failed', { actor: 'nobody' }).outcome).toBe('INVALID_CREDENTIALS');
    expect(find('refresh_reuse', { actor: 'alice' }).outcome).toBe('UNAUTHENTICATED');
    expect(find('session_revoked', { target: ids.revokedSession })).toMatchObject({
      actor: 'alice',
      outcome: 'ok',
    });
    expect(find('logout', { actor: 'alice' }).outcome).toBe('ok');
    expect(find('upload', { target: ids.item })).toMatchObject({ actor: 'alice', outcome: 'ok', ip: local });
    expect(find('upload_refused', { actor: 'alice' }).outcome).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(find('link_created', { target: ids.link }).actor).toBe('alice');
    expect(find('link_revoked', { target: ids.link }).actor).toBe('alice');
    expect(find('delete', { target: ids.item }).actor).toBe('alice');
    expect(find('restore', { target: ids.item }).actor).toBe('alice');
    for (const entry of items) {
      expect(Date.parse(entry.at)).toBeGreaterThan(0);
      expect(entry.id).toEqual(expect.any(String));
    }
  });

  test.skipIf(!available)('holds no password, token or hash in any stored field', async () => {
    const rows = await app.services.database.db.selectFrom('audit_log').selectAll().execute();
    expect(rows.length).toBeGreaterThanOrEqual(12);
    expect(secrets.size).toBeGreaterThan(10);
    const stored = JSON.stringify(rows);
    for (const secret of secrets) expect(stored.includes(secret), 'a secret in the audit log').toBe(false);
  });

  test.skipIf(!available)('pages newest first with a cursor: every entry exactly once', async () => {
    const all = (await audit('?limit=500')).items;
    const seen: Entry[] = [];
    let cursor: string | null = null;
    do {
      const page = await audit(`?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(new Set(seen.map((e) => e.id)).size).toBe(seen.length);
    const times = seen.map((e) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    // The default page is 100.
    expect((await audit()).items.length).toBe(Math.min(100, all.length));
  });

  test.skipIf(!available)(
    'filters by user and by action, also together, and pages through a filter',
    async () => {
      const byAlice = (await audit('?user=alice&limit=500')).items;
      expect(byAlice.length).toBeGreaterThan(5);
      expect(byAlice.every((e) => e.actor === 'alice')).toBe(true);
      const uploads = (await audit('?action=upload&limit=500')).items;
      expect(uploads.length).toBeGreaterThanOrEqual(1);
      expect(uploads.every((e) => e.action === 'upload')).toBe(true);
      const aliceLogins = (await audit('?user=alice&action=login&limit=500')).items;
      expect(aliceLogins.length).toBe(4); // startMediaApp's, then three here
      expect(aliceLogins.every((e) => e.actor === 'alice' && e.action === 'login')).toBe(true);
      const first = await audit('?user=alice&action=login&limit=2');
      const rest = await audit(
        `?user=alice&action=login&limit=2&cursor=${encodeURIComponent(first.nextCursor!)}`,
      );
      expect([...first.items, ...rest.items].map((e) => e.id)).toEqual(aliceLogins.map((e) => e.id));
      expect(rest.nextCursor).toBeNull();
      expect((await audit('?user=nobody-at-all')).items).toEqual([]);
    },
  );

  test.skipIf(!available)('refuses bad paging and filter values', async () => {
    for (const query of ['?limit=0', '?limit=501', '?action=purge', '?cursor=not-a-cursor', '?limit=x']) {
      const res = await app.app.inject({
        method: 'GET',
        url: `/api/admin/audit${query}`,
        headers: app.auth(app.tokens.root),
      });
      expect(res.statusCode, query).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
    }
  });

  test.skipIf(!available)(
    'an entry that cannot be written fails the change it records, and never a login answer',
    async () => {
      const db = app.services.database.db;
      const item = await app.uploadFile(pdf(10, 'stays'), 'stays.pdf', 'alice');
      const before = (await audit('?limit=500')).items.length;
      await sql`alter table audit_log rename to audit_log_away`.execute(db);
      try {
        // Changes with a transaction of their own fail whole.
        const del = await app.api('DELETE', `/api/media/${item.id}`);
        expect(del.status).toBeGreaterThanOrEqual(500);
        expect((await app.api('GET', `/api/media/${item.id}`)).status).toBe(200);
        const upload = await app.upload([{ name: 'file', filename: 'x.pdf', data: pdf(10, 'not stored') }]);
        expect(upload.status).toBeGreaterThanOrEqual(500);
        const list = (await app.api('GET', '/api/media/list?limit=100')).json<{ items: MediaItem[] }>();
        expect(list.items.map((i) => i.filename)).not.toContain('x.pdf');
        const link = await app.api('POST', `/api/media/${item.id}/links`, { body: {} });
        expect(link.status).toBeGreaterThanOrEqual(500);
        expect((await app.api('GET', `/api/media/${item.id}/links`)).json()).toEqual({ items: [] });
        // Logins answer as ever: a wrong password is a 401, a right one a 200.
        const failed = await post('/api/auth/login', { username: 'alice', password: WRONG_PASSWORD });
        expect(failed.statusCode).toBe(401);
        expect(failed.json<{ error: { code: string } }>().error.code).toBe('INVALID_CREDENTIALS');
        expect((await post('/api/auth/login', { username: 'bob', password: PASSWORDS.bob })).statusCode).toBe(
          200,
        );
      } finally {
        await sql`alter table audit_log_away rename to audit_log`.execute(db);
      }
      expect((await audit('?limit=500')).items.length).toBe(before);
      expect((await app.api('DELETE', `/api/media/${item.id}?permanent=true`)).status).toBe(204);
    },
  );

  test.skipIf(!available)('records a failed login whose username holds control characters', async () => {
    const res = await post('/api/auth/login', { username: 'mallory\u0000\nx', password: WRONG_PASSWORD });
    expect(res.statusCode).toBe(401);
    await eventually(async () => {
      const { items } = await audit('?action=login_failed&limit=500');
      expect(items.map((e) => e.actor)).toContain('mallory\ufffd\ufffdx');
    });
  });

  // Last: it moves the clock 90 days on, past every session's life.
  test.skipIf(!available)(
    'keeps entries STOWAGE_AUDIT_DAYS (90) days, then the sweeper removes them',
    async () => {
      const before = (await audit('?limit=500')).items;
      expect(before.length).toBeGreaterThan(0);
      clock.advance(90 * DAY - 1);
      const root = await app.login('root');
      await app.services.sweeper.sweep();
      const kept = (await audit('?limit=500', root.accessToken)).items.map((e) => e.id);
      expect(kept).toEqual(expect.arrayContaining(before.map((e) => e.id)));

      clock.advance(2);
      const outcome = await app.services.sweeper.sweep();
      expect(outcome['old audit entries']).toBe(before.length);
      const after = (await audit('?limit=500', root.accessToken)).items;
      // Only the login made after the clock moved is left.
      expect(after.map((e) => [e.action, e.actor])).toEqual([['login', 'root']]);
    },
  );
});
