import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startListeningApp, type ListeningApp } from '../helpers/app.ts';
import { pdfOfSize, until } from '../helpers/common.ts';
import { expectErrorShape } from '../helpers/contract.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

/**
 * Dependency faults injected for real: the app reaches PostgreSQL and Redis through TCP proxies
 * that either refuse (the dependency is down) or silently drop every byte (a network partition).
 * The contract: never a hung request — within 5 s either 503 UNAVAILABLE with Retry-After where the
 * request needs the dependency, or a normal answer where it does not; /healthz stays 200, /readyz
 * names what is down, and everything works again once the dependency is back, without a restart.
 */
const BOUND_MS = 5000;

interface Timed {
  status: number;
  contentType: string | undefined;
  retryAfter: string | null;
  text: string;
  ms: number;
}

async function timed(url: string, init: RequestInit = {}): Promise<Timed> {
  const started = performance.now();
  // The test's own safety net, far above the bound: a hung request fails the test, not the run.
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? undefined,
    retryAfter: res.headers.get('retry-after'),
    text,
    ms: performance.now() - started,
  };
}

/** `url` with its port replaced by the proxy's. */
function through(proxy: TcpProxy, url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}

function targetPort(url: string, fallback: number): number {
  return Number(new URL(url).port || fallback);
}

const available = pgAvailable() && redisAvailable();

describe.skipIf(!available)('PostgreSQL and Redis unreachable', () => {
  let pgProxy: TcpProxy;
  let redisProxy: TcpProxy;
  let database: TestDatabase;
  let t: ListeningApp;

  const get = (path: string, token = t.tokens.alice) =>
    timed(`${t.base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const readyz = async () => {
    const res = await timed(`${t.base}/readyz`);
    return {
      status: res.status,
      checks: (JSON.parse(res.text) as { checks: Record<string, string> }).checks,
    };
  };
  const login = () =>
    timed(`${t.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'bob', password: 'bob-password-22' }),
    });
  const expectUnavailable = (res: Timed) => {
    expectErrorShape(res, 503, 'UNAVAILABLE');
    expect(Number(res.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(res.ms).toBeLessThan(BOUND_MS);
  };
  const heal = async (proxy: TcpProxy) => {
    await proxy.setMode('forward');
    await until(async () => (await readyz()).status === 200, 15_000, 'ready again');
    const res = await get('/api/media/list');
    expect(res.status).toBe(200);
  };

  beforeAll(async () => {
    database = await createTestDatabase();
    pgProxy = await startTcpProxy({ port: targetPort(database.url, 5432) });
    const redisUrl = redisUrlFor(REDIS_DB.partition);
    redisProxy = await startTcpProxy({ port: targetPort(redisUrl, 6379) });
    await flushRedisDb(REDIS_DB.partition);
    t = await startListeningApp({
      STOWAGE_DATABASE_URL: through(pgProxy, database.url),
      STOWAGE_REDIS_URL: through(redisProxy, redisUrl),
    });
  });

  afterAll(async () => {
    // Heal first, so that closing the pool and the Redis client does not wait on a partition.
    await pgProxy?.setMode('forward');
    await redisProxy?.setMode('forward');
    await t?.close();
    await pgProxy?.close();
    await redisProxy?.close();
    await database?.drop();
    await flushRedisDb(REDIS_DB.partition);
  });

  for (const mode of ['drop', 'refuse'] as const) {
    it(`Redis ${mode === 'drop' ? 'dropping packets' : 'refusing'}: requests, logins and logouts are served normally within 5 s`, async () => {
      expect((await get('/api/media/list')).status).toBe(200);
      await redisProxy.setMode(mode);

      // The per-user rate limit (and the login limits) count locally instead of failing.
      for (let i = 0; i < 4; i++) {
        const res = await get('/api/media/list');
        expect(res.status, res.text).toBe(200);
        expect(res.ms).toBeLessThan(BOUND_MS);
      }
      const signedIn = await login();
      expect(signedIn.status, signedIn.text).toBe(200);
      expect(signedIn.ms).toBeLessThan(BOUND_MS);
      // A logout cannot tell the other instances through Redis; it still ends the session here.
      const { accessToken } = JSON.parse(signedIn.text) as { accessToken: string };
      const out = await timed(`${t.base}/api/auth/logout`, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}` },
      });
      expect(out.status, out.text).toBe(204);
      expect(out.ms).toBeLessThan(BOUND_MS);
      expect((await get('/api/media/list', accessToken)).status).toBe(401);

      const health = await timed(`${t.base}/healthz`);
      expect(health.status).toBe(200);
      await until(async () => (await readyz()).checks.redis === 'fail', BOUND_MS, '/readyz naming redis');
      expect(await readyz()).toMatchObject({ status: 503, checks: { redis: 'fail', database: 'ok' } });

      await heal(redisProxy);
      expect((await readyz()).checks.redis).toBe('ok');
    });
  }

  it('Redis unreachable: a tus PATCH, which needs the shared upload lock, gets 503 UNAVAILABLE within 5 s', async () => {
    const tus = { authorization: `Bearer ${t.tokens.alice}`, 'tus-resumable': '1.0.0' };
    const created = await fetch(`${t.base}/api/media/uploads`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': '4', 'upload-metadata': `filename ${btoa('a.pdf')}` },
    });
    expect(created.status).toBe(201);
    const location = new URL(created.headers.get('location')!, t.base).toString();
    await redisProxy.setMode('drop');
    const patch = () =>
      timed(location, {
        method: 'PATCH',
        headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
        body: '%PDF',
      });
    expectUnavailable(await patch());
    // Known down: the next one does not wait for Redis at all.
    const again = await patch();
    expectUnavailable(again);
    await heal(redisProxy);
  });

  for (const mode of ['drop', 'refuse'] as const) {
    it(`PostgreSQL ${mode === 'drop' ? 'dropping packets' : 'refusing'}: 503 UNAVAILABLE with Retry-After within 5 s, then at once while known down; back without a restart`, async () => {
      expect((await get('/api/media/list')).status).toBe(200);
      await pgProxy.setMode(mode);

      expectUnavailable(await get('/api/media/list'));
      expect((await timed(`${t.base}/healthz`)).status).toBe(200);
      await until(
        async () => (await readyz()).checks.database === 'fail',
        BOUND_MS,
        '/readyz naming the database',
      );
      expect(await readyz()).toMatchObject({ status: 503, checks: { database: 'fail', redis: 'ok' } });

      // While the database is known down, requests are answered without waiting for it: well
      // under the 2 s connect and query timeout.
      for (let i = 0; i < 3; i++) {
        const res = await get('/api/media/list');
        expectUnavailable(res);
        expect(res.ms).toBeLessThan(1000);
      }
      // A login needs the database for its session: 503 too.
      expectUnavailable(await login());
      // An upload: 503, and nothing of it is kept.
      const form = new FormData();
      form.append(
        'file',
        new Blob([new Uint8Array(pdfOfSize(64 * 1024))], { type: 'application/pdf' }),
        'a.pdf',
      );
      expectUnavailable(
        await timed(`${t.base}/api/media/upload`, {
          method: 'POST',
          headers: { authorization: `Bearer ${t.tokens.alice}` },
          body: form,
        }),
      );

      await heal(pgProxy);
      const listed = JSON.parse((await get('/api/media/list')).text) as { items: unknown[] };
      expect(listed.items).toEqual([]);
    });
  }
});

describe.skipIf(!redisAvailable())('the per-user rate limit while Redis is down', () => {
  let redisProxy: TcpProxy;
  let t: ListeningApp;

  beforeAll(async () => {
    const redisUrl = redisUrlFor(REDIS_DB.partitionLimits);
    redisProxy = await startTcpProxy({ port: targetPort(redisUrl, 6379) });
    await flushRedisDb(REDIS_DB.partitionLimits);
    t = await startListeningApp({
      STOWAGE_REDIS_URL: through(redisProxy, redisUrl),
      STOWAGE_RATE_LIMIT_PER_MINUTE: '5',
    });
  });
  afterAll(async () => {
    await redisProxy?.setMode('forward');
    await t?.close();
    await redisProxy?.close();
    await flushRedisDb(REDIS_DB.partitionLimits);
  });

  it('still holds, counted on this instance: never an error, never unlimited', async () => {
    await redisProxy.setMode('refuse');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await timed(`${t.base}/api/media/list`, {
        headers: { authorization: `Bearer ${t.tokens.bob}` },
      });
      expect(res.ms).toBeLessThan(BOUND_MS);
      statuses.push(res.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });
});

describe.skipIf(!available)('shutting down while PostgreSQL and Redis are unreachable', () => {
  it('closes the pool and the Redis connections anyway, without waiting on the network for ever', async () => {
    const database = await createTestDatabase();
    const pgProxy = await startTcpProxy({ port: targetPort(database.url, 5432) });
    const redisUrl = redisUrlFor(REDIS_DB.partitionLimits);
    const redisProxy = await startTcpProxy({ port: targetPort(redisUrl, 6379) });
    try {
      const t = await startListeningApp({
        STOWAGE_DATABASE_URL: through(pgProxy, database.url),
        STOWAGE_REDIS_URL: through(redisProxy, redisUrl),
      });
      // Pooled connections and both Redis connections are open, then the network goes silent.
      expect((await get(t, '/api/media/list')).status).toBe(200);
      await pgProxy.setMode('drop');
      await redisProxy.setMode('drop');
      const started = performance.now();
      await t.close();
      // Redis's goodbye (QUIT) goes unanswered and is given up after the timeout's backstop (4 s).
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      await pgProxy.close();
      await redisProxy.close();
      await database.drop();
    }
  });
});

function get(t: ListeningApp, path: string): Promise<Timed> {
  return timed(`${t.base}${path}`, { headers: { authorization: `Bearer ${t.tokens.alice}` } });
}
