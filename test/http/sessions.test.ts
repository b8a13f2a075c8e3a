import fs from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORDS, type TestApp } from '../helpers/app.ts';
import {
  editUsersFile,
  eventually,
  expectError,
  expectUnauthenticated,
  login,
  me,
  refresh,
} from './http-helpers.ts';

let t: TestApp;

beforeEach(async () => {
  t = await createTestApp();
});

afterEach(async () => {
  await t.close();
});

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

interface Tokens {
  accessToken: string;
  refreshToken: string;
}

interface Me {
  username: string;
  roles: string[];
  session: { id: string; createdAt: string; expiresAt: string };
}

interface SessionItem {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
  userAgent: string | null;
  ip: string | null;
  current: boolean;
}

async function sessions(token: string): Promise<SessionItem[]> {
  const res = await t.app.inject({ method: 'GET', url: '/api/auth/sessions', headers: t.auth(token) });
  expect(res.statusCode).toBe(200);
  return res.json<{ items: SessionItem[] }>().items;
}

async function sessionId(token: string): Promise<string> {
  return (await me(t, token)).json<{ session: { id: string } }>().session.id;
}

function logout(token: string) {
  return t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: t.auth(token) });
}

describe('login and the session it opens', () => {
  it('answers login with the token response and me with the user and session', async () => {
    const before = Date.now();
    const res = await login(t, 'alice', PASSWORDS.alice);
    expect(res.statusCode).toBe(200);
    const body = res.json<Tokens & Record<string, unknown>>();
    expect(Object.keys(body).sort()).toEqual([
      'accessToken',
      'expiresIn',
      'refreshToken',
      'tokenType',
      'user',
    ]);
    expect(body).toMatchObject({
      tokenType: 'Bearer',
      expiresIn: 900,
      user: { username: 'alice', roles: ['user'] },
    });
    expect(body.accessToken).not.toBe(body.refreshToken);

    const who = await me(t, body.accessToken);
    expect(who.statusCode).toBe(200);
    const m = who.json<Me>();
    expect(m).toMatchObject({ username: 'alice', roles: ['user'] });
    expect(Object.keys(m.session).sort()).toEqual(['createdAt', 'expiresAt', 'id']);
    expect(m.session.createdAt).toMatch(ISO_UTC);
    expect(m.session.expiresAt).toMatch(ISO_UTC);
    expect(Date.parse(m.session.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    // The session lives as long as the refresh token (30 days by default).
    expect(Date.parse(m.session.expiresAt) - Date.parse(m.session.createdAt)).toBe(2_592_000_000);
  });

  it('lists only the caller’s live sessions, marking the current one', async () => {
    const first = await login(t, 'alice', PASSWORDS.alice, '10.1.1.1', { 'user-agent': 'phone/1.0' });
    const second = await t.login('alice');
    await t.login('bob');
    const items = await sessions(second.accessToken);
    expect(items).toHaveLength(2);
    for (const s of items) {
      expect(Object.keys(s).sort()).toEqual([
        'createdAt',
        'current',
        'expiresAt',
        'id',
        'ip',
        'lastUsedAt',
        'userAgent',
      ]);
      for (const time of [s.createdAt, s.lastUsedAt, s.expiresAt]) expect(time).toMatch(ISO_UTC);
    }
    const current = items.filter((s) => s.current);
    expect(current.map((s) => s.id)).toEqual([await sessionId(second.accessToken)]);
    const phone = items.find((s) => !s.current)!;
    expect(phone).toMatchObject({
      id: await sessionId(first.json<Tokens>().accessToken),
      userAgent: 'phone/1.0',
      ip: '10.1.1.1',
    });
    // From the other session, the current flag moves.
    const fromPhone = await sessions(first.json<Tokens>().accessToken);
    expect(fromPhone.find((s) => s.current)?.id).toBe(phone.id);
  });

  it('sends Cache-Control: no-store on auth responses, successful or not', async () => {
    const ok = await login(t, 'alice', PASSWORDS.alice);
    const { accessToken, refreshToken } = ok.json<Tokens>();
    const responses = [
      ok,
      await login(t, 'alice', 'wrong-password'),
      await me(t, accessToken),
      await t.app.inject({ method: 'GET', url: '/api/auth/sessions', headers: t.auth(accessToken) }),
      await refresh(t, refreshToken),
      await refresh(t, 'not-a-token'),
      await me(t, 'nope'),
      await t.app.inject({ method: 'GET', url: '/api/users/me', headers: t.auth(accessToken) }),
    ];
    for (const res of responses) expect(res.headers['cache-control']).toBe('no-store');
  });
});

describe('refresh', () => {
  it('rotates: new tokens work, the old refresh token is refused, the session stays the same', async () => {
    const first = await t.login('alice');
    const res = await refresh(t, first.refreshToken);
    expect(res.statusCode).toBe(200);
    const next = res.json<Tokens>();
    expect(next).toMatchObject({
      tokenType: 'Bearer',
      expiresIn: 900,
      user: { username: 'alice', roles: ['user'] },
    });
    expect(next.refreshToken).not.toBe(first.refreshToken);
    expect(await sessionId(next.accessToken)).toBe(await sessionId(first.accessToken));
    expect((await me(t, next.accessToken)).statusCode).toBe(200);
    expect((await refresh(t, next.refreshToken)).statusCode).toBe(200);
    expectUnauthenticated(await refresh(t, first.refreshToken));
  });

  it('revokes the whole session when an already-used refresh token comes back', async () => {
    const first = await t.login('alice');
    const second = (await refresh(t, first.refreshToken)).json<Tokens>();
    expect((await me(t, second.accessToken)).statusCode).toBe(200);

    expectUnauthenticated(await refresh(t, first.refreshToken));
    // Whoever held the newest tokens is cut off too: the leak could have been either side.
    expectUnauthenticated(await me(t, second.accessToken));
    expectUnauthenticated(await me(t, first.accessToken));
    expectUnauthenticated(await refresh(t, second.refreshToken));
  });

  it('refuses unknown refresh tokens, and access tokens presented as refresh tokens', async () => {
    const { accessToken } = await t.login('alice');
    expectUnauthenticated(await refresh(t, 'x'.repeat(43)));
    // The access token is longer than any refresh token: refused by validation or as unknown.
    const res = await refresh(t, accessToken);
    if (res.statusCode === 400) expectError(res, 400, 'VALIDATION_FAILED');
    else expectUnauthenticated(res);
  });
});

describe('logout and revocation', () => {
  it('ends the session at once: its access and refresh tokens are refused, others live on', async () => {
    const mine = await t.login('alice');
    const other = await t.login('alice');
    const res = await logout(mine.accessToken);
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expectUnauthenticated(await me(t, mine.accessToken));
    expectUnauthenticated(await refresh(t, mine.refreshToken));
    expectUnauthenticated(await logout(mine.accessToken));
    expect((await me(t, other.accessToken)).statusCode).toBe(200);
  });

  it('revokes one of the caller’s own sessions by id', async () => {
    const laptop = await t.login('alice');
    const phone = await t.login('alice');
    const phoneId = await sessionId(phone.accessToken);
    const res = await t.app.inject({
      method: 'DELETE',
      url: `/api/auth/sessions/${phoneId}`,
      headers: t.auth(laptop.accessToken),
    });
    expect(res.statusCode).toBe(204);
    expectUnauthenticated(await me(t, phone.accessToken));
    expectUnauthenticated(await refresh(t, phone.refreshToken));
    expect((await sessions(laptop.accessToken)).map((s) => s.id)).toEqual([
      await sessionId(laptop.accessToken),
    ]);
  });

  it("answers 404 for another user's session (or an unknown id) and leaves it alive", async () => {
    const alice = await t.login('alice');
    const bob = await t.login('bob');
    const bobId = await sessionId(bob.accessToken);
    for (const id of [bobId, 'no-such-session']) {
      const res = await t.app.inject({
        method: 'DELETE',
        url: `/api/auth/sessions/${id}`,
        headers: t.auth(alice.accessToken),
      });
      expectError(res, 404, 'NOT_FOUND');
    }
    expect((await me(t, bob.accessToken)).statusCode).toBe(200);
    expect((await refresh(t, bob.refreshToken)).statusCode).toBe(200);
  });
});

describe('changes to the users file while the server runs', () => {
  it('cuts off a user removed from the file, and only them', async () => {
    const bob = await t.login('bob');
    const alice = await t.login('alice');
    expect((await me(t, bob.accessToken)).statusCode).toBe(200);

    await editUsersFile(t, (line) => (line.startsWith('bob:') ? null : line));

    await eventually(async () => expect((await me(t, bob.accessToken)).statusCode).toBe(401));
    expectUnauthenticated(await me(t, bob.accessToken));
    expectUnauthenticated(await refresh(t, bob.refreshToken));
    expectError(await login(t, 'bob', PASSWORDS.bob), 401, 'INVALID_CREDENTIALS');
    expect((await me(t, alice.accessToken)).statusCode).toBe(200);
  });

  it('ends the sessions of a user whose password changed; the new password works', async () => {
    const alice = await t.login('alice');
    const bob = await t.login('bob');
    // alice gets bob's password hash: a password change, as `stowage users passwd` would write.
    const text = await fs.readFile(t.config.usersFile, 'utf8');
    const bobHash = /^bob:([^:\n]+)/m.exec(text)![1]!;
    await editUsersFile(t, (line) => (line.startsWith('alice:') ? `alice:${bobHash}` : line));

    await eventually(async () => expect((await me(t, alice.accessToken)).statusCode).toBe(401));
    expectUnauthenticated(await refresh(t, alice.refreshToken));
    expectError(await login(t, 'alice', PASSWORDS.alice), 401, 'INVALID_CREDENTIALS');
    expect((await login(t, 'alice', PASSWORDS.bob)).statusCode).toBe(200);
    expect((await me(t, bob.accessToken)).statusCode).toBe(200);
  });
});
