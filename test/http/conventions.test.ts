import { afterEach, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { createTestApp, PASSWORDS, type TestApp } from '../helpers/app.ts';
import { expectError, login, registeredRoutes } from './http-helpers.ts';

let t: TestApp;

afterEach(async () => {
  await t?.close();
});

async function start(env: Record<string, string> = {}): Promise<TestApp> {
  t = await createTestApp(env);
  return t;
}

describe('headers on every response', () => {
  it('sends nosniff and a request id, and no X-Powered-By, on successes and errors alike', async () => {
    await start();
    const { accessToken } = await t.login('alice');
    const requests: [InjectOptions, number][] = [
      [{ method: 'GET', url: '/healthz' }, 200],
      [{ method: 'GET', url: '/api/users/me', headers: t.auth(accessToken) }, 200],
      [{ method: 'GET', url: '/no/such/route' }, 404],
      [{ method: 'GET', url: '/api/no-such-route', headers: t.auth(accessToken) }, 404],
      [{ method: 'PUT', url: '/api/auth/login', payload: {} }, 404],
      [{ method: 'GET', url: '/api/auth/me' }, 401],
      [{ method: 'POST', url: '/api/auth/login', payload: { username: 'alice' } }, 400],
      [
        {
          method: 'POST',
          url: '/api/auth/login',
          headers: { 'content-type': 'application/json' },
          payload: '{',
        },
        400,
      ],
    ];
    const ids = new Set<string>();
    for (const [request, status] of requests) {
      const res = await t.app.inject(request);
      expect(res.statusCode, `${request.method} ${JSON.stringify(request.url)}`).toBe(status);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['x-powered-by']).toBeUndefined();
      const id = res.headers['x-request-id'];
      expect(id).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
      ids.add(String(id));
      if (status >= 400) {
        const code = { 400: 'VALIDATION_FAILED', 401: 'UNAUTHENTICATED', 404: 'NOT_FOUND' }[status]!;
        expectError(res, status, request.payload === '{' ? 'BAD_REQUEST' : code);
      }
    }
    expect(ids.size).toBe(requests.length);
  });

  it('answers URLs the router cannot take apart with the same error shape and headers', async () => {
    await start();
    const { accessToken } = await t.login('alice');
    for (const url of ['/api/auth/%', '/api/media/%zz/content', `/api/auth/sessions/${'a'.repeat(300)}`]) {
      const res = await t.app.inject({
        method: url.includes('sessions') ? 'DELETE' : 'GET',
        url,
        headers: { ...t.auth(accessToken), 'x-request-id': 'bad-url-1' },
      });
      expectError(res, 400, 'BAD_REQUEST');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['x-request-id']).toBe('bad-url-1');
      expect(res.body).not.toContain('%zz');
    }
  });

  it('answers an unexpected failure with a bare 500 INTERNAL and no internals; readiness fails', async () => {
    await start();
    const { accessToken } = await t.login('alice');
    // The database going away under the server is a real failure, not a mocked one.
    await t.services.database.close();
    const res = await t.app.inject({
      method: 'GET',
      url: '/api/auth/sessions',
      headers: { ...t.auth(accessToken), 'x-request-id': 'trace-500' },
    });
    expectError(res, 500, 'INTERNAL');
    expect(res.headers['x-request-id']).toBe('trace-500');
    expect(res.json().error).toEqual({
      code: 'INTERNAL',
      message: 'An unexpected error occurred.',
      details: {},
    });
    expect(res.body).not.toMatch(/sqlite|database|connection|kysely|stowage\.db|stowage-test-/i);

    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ status: 'fail', checks: { database: 'fail', storage: 'ok' } });
  });

  it('echoes a safe X-Request-Id and replaces an unsafe one', async () => {
    await start();
    for (const safe of ['abc-123', 'trace:4bf92f3577b34da6.a3ce929d0e0e4736', 'x'.repeat(128)]) {
      const res = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': safe } });
      expect(res.headers['x-request-id']).toBe(safe);
    }
    for (const unsafe of ['x'.repeat(129), 'a b', 'a<script>', '../../etc/passwd', 'a;b=c', 'a"b', '']) {
      const res = await t.app.inject({
        method: 'GET',
        url: '/no-route',
        headers: { 'x-request-id': unsafe },
      });
      const id = String(res.headers['x-request-id']);
      expect(id).not.toBe(unsafe);
      expect(id).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
    }
  });
});

describe('CORS', () => {
  const origin = 'https://app.example.com';
  const tusHeaders = [
    'Location',
    'Upload-Offset',
    'Upload-Length',
    'Upload-Expires',
    'Tus-Resumable',
    'Media-Id',
  ];

  function preflight(from: string, url = '/api/auth/login') {
    return t.app.inject({
      method: 'OPTIONS',
      url,
      headers: {
        origin: from,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
      },
    });
  }

  it('allows a configured origin exactly, on preflight and actual requests, exposing the tus headers', async () => {
    await start({ STOWAGE_CORS_ORIGINS: `${origin}, http://localhost:5173` });
    const pre = await preflight(origin, '/api/media/upload');
    expect(pre.statusCode).toBeLessThan(300);
    expect(pre.headers['access-control-allow-origin']).toBe(origin);
    expect(String(pre.headers.vary)).toMatch(/\bOrigin\b/i);
    expect(String(pre.headers['access-control-allow-methods'])).toMatch(/\bPOST\b/);
    expect(String(pre.headers['access-control-allow-headers'])).toMatch(/\bAuthorization\b/i);

    const { accessToken } = await t.login('alice');
    const actual = await t.app.inject({
      method: 'GET',
      url: '/api/users/me',
      headers: { origin, ...t.auth(accessToken) },
    });
    expect(actual.statusCode).toBe(200);
    expect(actual.headers['access-control-allow-origin']).toBe(origin);
    expect(String(actual.headers.vary)).toMatch(/\bOrigin\b/i);
    const exposed = String(actual.headers['access-control-expose-headers'])
      .split(',')
      .map((h) => h.trim().toLowerCase());
    for (const header of tusHeaders) expect(exposed).toContain(header.toLowerCase());
    // Credentials are bearer tokens, never cookies: no credentialed CORS.
    expect(actual.headers['access-control-allow-credentials']).toBeUndefined();

    const second = await t.app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { origin: 'http://localhost:5173' },
    });
    expect(second.headers['access-control-allow-origin']).toBe('http://localhost:5173');
  });

  it('gives other origins no Access-Control-Allow-Origin', async () => {
    await start({ STOWAGE_CORS_ORIGINS: origin });
    for (const other of [
      'https://evil.example.com',
      'https://app.example.com.evil.net',
      'http://app.example.com',
      'null',
    ]) {
      expect((await preflight(other)).headers['access-control-allow-origin']).toBeUndefined();
      const actual = await t.app.inject({ method: 'GET', url: '/healthz', headers: { origin: other } });
      expect(actual.statusCode).toBe(200);
      expect(actual.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('sends no CORS headers when no origins are configured', async () => {
    await start();
    expect((await preflight(origin)).headers['access-control-allow-origin']).toBeUndefined();
    const actual = await t.app.inject({ method: 'GET', url: '/healthz', headers: { origin } });
    expect(actual.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('operations endpoints', () => {
  it('answers /healthz and /readyz with their body shapes', async () => {
    await start();
    const health = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({
      status: 'ok',
      checks: expect.objectContaining({ database: 'ok', storage: 'ok', scanner: 'off' }) as unknown,
    });
  });

  it('serves Prometheus text with request counters labelled by route pattern, never the raw URL', async () => {
    await start();
    const { accessToken } = await t.login('alice');
    await t.app.inject({
      method: 'DELETE',
      url: '/api/auth/sessions/secret-id-4711',
      headers: t.auth(accessToken),
    });
    await t.app.inject({ method: 'GET', url: '/no/such/route-0815' });
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toMatch(/^# TYPE stowage_http_requests_total counter$/m);
    const line = (route: string, method: string, status: number) =>
      new RegExp(
        `^stowage_http_requests_total\\{(?=.*method="${method}")(?=.*route="${route}")(?=.*status="${status}").*\\} 1$`,
        'm',
      );
    expect(res.body).toMatch(line('/api/auth/sessions/:id', 'DELETE', 404));
    expect(res.body).toMatch(line('/api/auth/login', 'POST', 200));
    expect(res.body).not.toContain('secret-id-4711');
    expect(res.body).not.toContain('route-0815');
  });

  it('serves an OpenAPI 3.1 document listing every route the app registers', async () => {
    await start();
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    expect(doc.openapi).toMatch(/^3\.1\./);
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)),
    );
    for (const route of [
      'POST /api/auth/login',
      'POST /api/auth/refresh',
      'POST /api/auth/logout',
      'GET /api/auth/me',
      'GET /api/auth/sessions',
      'DELETE /api/auth/sessions/{id}',
      'GET /api/users/me',
      'GET /healthz',
      'GET /readyz',
    ]) {
      expect(documented).toContain(route);
    }
    // And everything the router knows, apart from the docs themselves, CORS preflight and the web
    // console's page and files (/, /app/…: HTML for people, not API).
    const registered = registeredRoutes(t.app.printRoutes({ commonPrefix: false }))
      .filter(({ path }) => !path.startsWith('/docs') && path !== '/openapi.json' && path !== '*')
      .filter(({ path }) => path !== '/' && path !== '/app' && !path.startsWith('/app/') && path !== '/app*')
      .flatMap(({ path, methods }) =>
        methods
          .filter((m) => m !== 'HEAD' && m !== 'OPTIONS')
          .map((m) => `${m} ${path.replace(/:(\w+)/g, '{$1}')}`),
      );
    expect(registered.length).toBeGreaterThan(10);
    expect([...documented].sort()).toEqual(expect.arrayContaining(registered.sort()));
  });

  it('serves the interactive docs page', async () => {
    await start();
    const res = await t.app.inject({ method: 'GET', url: '/docs' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/<html/i);
    expect(res.body).toMatch(/swagger-ui/i);
    const init = await t.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(init.statusCode).toBe(200);
  });
});

describe('GET /api/users/me', () => {
  it('shows the caller, zero usage and no quota by default', async () => {
    await start();
    const { accessToken } = await t.login('root');
    const res = await t.app.inject({ method: 'GET', url: '/api/users/me', headers: t.auth(accessToken) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      username: 'root',
      roles: ['admin'],
      usage: { files: 0, bytes: 0 },
      quota: { bytes: null },
    });
  });

  it('shows the configured quota', async () => {
    await start({ STOWAGE_QUOTA_BYTES: '1048576' });
    const { accessToken } = await t.login('alice');
    const res = await t.app.inject({ method: 'GET', url: '/api/users/me', headers: t.auth(accessToken) });
    expect(res.json()).toMatchObject({ username: 'alice', quota: { bytes: 1048576 } });
  });
});

describe('STOWAGE_TRUST_PROXY and the client address', () => {
  const fail = (forwardedFor: string) =>
    login(t, 'alice', 'wrong-password', '127.0.0.1', { 'x-forwarded-for': forwardedFor });

  it('ignores X-Forwarded-For when unset: spoofed addresses do not escape the lock', async () => {
    await start();
    for (let i = 1; i <= 5; i++) await fail(`203.0.113.${i}`);
    const res = await login(t, 'alice', PASSWORDS.alice, '127.0.0.1', { 'x-forwarded-for': '203.0.113.99' });
    expectError(res, 429, 'RATE_LIMITED');
  });

  it('counts the forwarded address when the proxy is trusted', async () => {
    await start({ STOWAGE_TRUST_PROXY: '127.0.0.1' });
    for (let i = 0; i < 5; i++) await fail('203.0.113.5');
    const locked = await login(t, 'alice', PASSWORDS.alice, '127.0.0.1', {
      'x-forwarded-for': '203.0.113.5',
    });
    expectError(locked, 429, 'RATE_LIMITED');
    const other = await login(t, 'alice', PASSWORDS.alice, '127.0.0.1', { 'x-forwarded-for': '203.0.113.6' });
    expect(other.statusCode).toBe(200);
    const sessions = await t.app.inject({
      method: 'GET',
      url: '/api/auth/sessions',
      headers: t.auth(other.json<{ accessToken: string }>().accessToken),
    });
    expect(sessions.json().items[0].ip).toBe('203.0.113.6');
    // An untrusted peer cannot use the header to pick its address.
    const direct = await login(t, 'alice', PASSWORDS.alice, '192.0.2.50', {
      'x-forwarded-for': '203.0.113.5',
    });
    expect(direct.statusCode).toBe(200);
  });
});
