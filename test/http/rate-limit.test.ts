import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';

/** The general per-user request limit on authenticated routes (STOWAGE_RATE_LIMIT_PER_MINUTE). */
describe('per-user request rate limit', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    t = await createTestApp({ STOWAGE_RATE_LIMIT_PER_MINUTE: '5' });
    alice = (await t.login('alice')).accessToken;
    bob = (await t.login('bob')).accessToken;
  });
  afterAll(() => t.close());

  const me = (token: string) => t.app.inject({ method: 'GET', url: '/api/users/me', headers: t.auth(token) });

  it('answers 429 RATE_LIMITED with Retry-After past the limit, per user', async () => {
    for (let i = 0; i < 5; i++) expect((await me(alice)).statusCode).toBe(200);
    const limited = await me(alice);
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toEqual({
      error: { code: 'RATE_LIMITED', message: expect.any(String) as string, details: {} },
    });
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await me(bob)).statusCode).toBe(200);
  });

  it('does not count unauthenticated probes against a user', async () => {
    const probe = await t.app.inject({ method: 'GET', url: '/api/users/me' });
    expect(probe.statusCode).toBe(401);
    expect((await me(bob)).statusCode).toBe(200);
  });
});
