import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { flushRedisDb, REDIS_DB, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { expectError, expectUnauthenticated } from './http-helpers.ts';

/**
 * Finding 6 of the security review: requests that fail authentication (and every other request
 * that is not a signed-in user's) were never rate limited, so anyone could try tokens, probe
 * /readyz or fetch public content as fast as the server answers. They are now counted per client
 * address (IPv4, or the IPv6 /64): past STOWAGE_ANON_RATE_LIMIT_PER_MINUTE, 429.
 */

const LIMIT = 5;

function expectLimited(res: LightMyRequestResponse): void {
  expectError(res, 429, 'RATE_LIMITED');
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(60);
}

describe('per-address limit for requests that are not a signed-in user’s', () => {
  let t: TestApp;
  let alice: string;
  // Each test floods from its own address, so the tests do not share a budget.
  let n = 0;
  let address: string;

  beforeAll(async () => {
    t = await createTestApp({ STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: String(LIMIT) });
    alice = (await t.login('alice')).accessToken;
  });
  afterAll(() => t.close());
  beforeEach(() => {
    address = `203.0.113.${++n}`;
  });

  const get = (url: string, from: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'GET', url, headers, remoteAddress: from });

  it('answers 429 to a flood of bad tokens past the limit; other addresses and signed-in users are served', async () => {
    const bad = { authorization: 'Bearer not-a-token' };
    for (let i = 0; i < LIMIT; i++) expectUnauthenticated(await get('/api/users/me', address, bad));
    expectLimited(await get('/api/users/me', address, bad));
    // A well-formed token with a wrong signature is refused the same way.
    const forged = { authorization: `Bearer ${alice.slice(0, -4)}AAAA` };
    expectLimited(await get('/api/users/me', address, forged));
    // Another address is not affected.
    expectUnauthenticated(await get('/api/users/me', '203.0.113.250', bad));
    // A user signed in from the flooded address (a shared NAT) is served, under the per-user limit.
    expect((await get('/api/users/me', address, t.auth(alice))).statusCode).toBe(200);
  });

  it('counts requests without a token: readiness probes, unknown routes, tus discovery', async () => {
    expect((await get('/readyz', address)).statusCode).toBe(200);
    expect((await get('/healthz', address)).statusCode).toBe(200);
    expect((await get('/no/such/route', address)).statusCode).toBe(404);
    const discovery = await t.app.inject({
      method: 'OPTIONS',
      url: '/api/media/uploads',
      remoteAddress: address,
    });
    expect(discovery.statusCode).toBeLessThan(300);
    expect((await get('/api/media/list', address)).statusCode).toBe(401);
    expectLimited(await get('/readyz', address));
    expectLimited(await get('/no/such/route', address));
  });

  it('counts failed link tokens and public content fetches', async () => {
    for (let i = 0; i < LIMIT; i++) {
      const res = await get('/api/media/AAAAAAAAAAAAAAAAAAAAAA/content?token=forged', address);
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).not.toBe(429);
    }
    expectLimited(await get('/api/media/AAAAAAAAAAAAAAAAAAAAAA/content', address));
  });

  it('cannot be dodged by sending any Authorization header to a route that ignores it', async () => {
    const junk = { authorization: 'Bearer whatever' };
    for (let i = 0; i < LIMIT; i++) expect((await get('/readyz', address, junk)).statusCode).toBe(200);
    expectLimited(await get('/readyz', address, junk));
    expectLimited(await get('/readyz', address));
  });

  it('counts an IPv6 client by its /64, and an IPv4-mapped address as the IPv4 one', async () => {
    const prefix = `2001:db8:${n}:7`;
    for (let i = 1; i <= LIMIT; i++) expect((await get('/healthz', `${prefix}::${i}`)).statusCode).toBe(200);
    // Any other address of the same /64 is the same client…
    expectLimited(await get('/healthz', `${prefix}:ffff:ffff:ffff:ffff`));
    // …while the next /64 is another.
    expect((await get('/healthz', `2001:db8:${n}:8::1`)).statusCode).toBe(200);

    for (let i = 0; i < LIMIT; i++) expect((await get('/healthz', address)).statusCode).toBe(200);
    expectLimited(await get('/healthz', `::ffff:${address}`));
  });

  it('does not count a signed-in user’s requests', async () => {
    for (let i = 0; i < LIMIT * 2; i++) {
      expect((await get('/api/users/me', address, t.auth(alice))).statusCode).toBe(200);
    }
    expect((await get('/healthz', address)).statusCode).toBe(200);
  });
});

describe('STOWAGE_ANON_RATE_LIMIT_PER_MINUTE=0', () => {
  it('turns the limit off', async () => {
    const t = await createTestApp({ STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: '0' });
    try {
      for (let i = 0; i < 20; i++) {
        const res = await t.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '198.51.100.1' });
        expect(res.statusCode).toBe(200);
      }
    } finally {
      await t.close();
    }
  });
});

describe.skipIf(!redisAvailable())('with Redis, across instances', () => {
  const db = REDIS_DB.anonymousLimit;
  let one: TestApp;
  let two: TestApp;

  beforeAll(async () => {
    await flushRedisDb(db);
    const env = { STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: String(LIMIT), STOWAGE_REDIS_URL: redisUrlFor(db) };
    one = await createTestApp(env);
    two = await createTestApp(env);
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
    await flushRedisDb(db);
  });

  it('counts an address on every instance together', async () => {
    const from = '192.0.2.44';
    for (let i = 0; i < LIMIT; i++) {
      const t = i % 2 === 0 ? one : two;
      expect((await t.app.inject({ method: 'GET', url: '/healthz', remoteAddress: from })).statusCode).toBe(
        200,
      );
    }
    expectLimited(await one.app.inject({ method: 'GET', url: '/healthz', remoteAddress: from }));
    expectLimited(await two.app.inject({ method: 'GET', url: '/healthz', remoteAddress: from }));
  });

  it('counts bad tokens on every instance together (each learns of it by at most one more request)', async () => {
    const from = '192.0.2.45';
    const bad = (t: TestApp) =>
      t.app.inject({
        method: 'GET',
        url: '/api/users/me',
        headers: { authorization: 'Bearer not-a-token' },
        remoteAddress: from,
      });
    for (let i = 0; i < LIMIT; i++) expectUnauthenticated(await bad(i % 2 === 0 ? one : two));
    for (const t of [one, two]) {
      const first = await bad(t);
      expect([401, 429]).toContain(first.statusCode);
      expectLimited(await bad(t));
    }
  });
});
