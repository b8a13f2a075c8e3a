import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { expectError, expectUnauthenticated } from './http-helpers.ts';

/** Finding 6 of the security review: /metrics was public. With STOWAGE_METRICS_TOKEN it is not. */

const TOKEN = 'metrics-7f3a9c1e5b2d4f6a8c0e';

describe('GET /metrics with STOWAGE_METRICS_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ STOWAGE_METRICS_TOKEN: TOKEN, STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: '5' });
  });
  afterAll(() => t.close());

  const metrics = (authorization?: string, remoteAddress = '127.0.0.1') =>
    t.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: authorization === undefined ? {} : { authorization },
      remoteAddress,
    });

  it('answers the right Bearer token with the Prometheus text', async () => {
    const res = await metrics(`Bearer ${TOKEN}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('# TYPE');
  });

  it('refuses no token, a wrong one, a prefix of the right one and a user’s access token with 401', async () => {
    const alice = (await t.login('alice')).accessToken;
    for (const authorization of [
      undefined,
      'Bearer wrong-token-wrong-token',
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`,
      `Bearer ${alice}`,
    ]) {
      const res = await metrics(authorization, '198.51.100.20');
      expectUnauthenticated(res);
      expect(res.body).not.toContain('# TYPE');
    }
  });

  it('limits guessing per address, while the right token keeps working from there', async () => {
    const from = '198.51.100.21';
    for (let i = 0; i < 5; i++) expectUnauthenticated(await metrics(`Bearer guess-${i}-guess-guess`, from));
    expectError(await metrics('Bearer guess-6-guess-guess', from), 429, 'RATE_LIMITED');
    expect((await metrics(`Bearer ${TOKEN}`, from)).statusCode).toBe(200);
  });
});

describe('GET /metrics without STOWAGE_METRICS_TOKEN', () => {
  it('stays open, as before', async () => {
    const t = await createTestApp();
    try {
      const res = await t.app.inject({ method: 'GET', url: '/metrics' });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('# TYPE');
    } finally {
      await t.close();
    }
  });
});
