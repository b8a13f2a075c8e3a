import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, startListeningApp, type TestApp } from '../helpers/app.ts';
import { parseResponse, RawConnection } from './raw-socket.ts';
import { required } from '../helpers/requirements.ts';

const dist = path.resolve(import.meta.dirname, '../../console/dist');
const built = required(
  fs.existsSync(path.join(dist, 'index.html')),
  'the built web console',
  'node scripts/build-console.ts (npm test builds it first)',
);

describe.skipIf(!built)('the web console route', () => {
  let t: TestApp;
  let script: string;
  beforeAll(async () => {
    t = await createTestApp();
    script = fs.readdirSync(path.join(dist, 'assets')).find((f) => f.endsWith('.js'))!;
  });
  afterAll(() => t?.close());

  it('serves the page at / and every /app/ path with a strict CSP and no-cache', async () => {
    for (const url of ['/', '/app/library', '/app/items/abc', '/app/sessions']) {
      const res = await t.app.inject({ url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['cache-control']).toBe('no-cache');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
      expect(res.body).toContain(`/app/assets/${script}`);
    }
  });

  it('answers a revalidation with 304 and HEAD without a body', async () => {
    const first = await t.app.inject({ url: '/' });
    const again = await t.app.inject({ url: '/', headers: { 'if-none-match': String(first.headers.etag) } });
    expect(again.statusCode).toBe(304);
    const head = await t.app.inject({ method: 'HEAD', url: '/app/library' });
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
  });

  it('serves hashed assets for a year', async () => {
    const res = await t.app.inject({ url: `/app/assets/${script}` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.headers['content-type']).toMatch(/javascript/);
  });

  it('serves nothing outside the build, whatever the path says', async () => {
    // Over a real socket, byte for byte: inject() would resolve the dot segments itself.
    const listening = await startListeningApp();
    const get = async (url: string) => {
      const connection = await RawConnection.open(listening.port);
      connection.write(`GET ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      return parseResponse((await connection.closed).received);
    };
    try {
      for (const url of [
        '/app/assets/../../package.json',
        '/app/assets/%2e%2e/%2e%2e/package.json',
        '/app/assets/..%2f..%2fpackage.json',
        '/app/assets/.%2e/index.html',
        '/app/assets/missing.js',
        '/app/assets/',
      ]) {
        const attack = await get(url);
        expect(attack.body, url).not.toContain('"name": "stowage"');
        expect(attack.body, url).not.toContain('<!doctype html>');
        expect([404, 403], url).toContain(attack.status);
        expect(attack.body, url).toMatch(/"code":"(NOT_FOUND|FORBIDDEN)"/);
      }
    } finally {
      await listening.close();
    }
  });

  it('is gone with STOWAGE_CONSOLE=off', async () => {
    const off = await createTestApp({ STOWAGE_CONSOLE: 'off' });
    try {
      expect((await off.app.inject({ url: '/' })).statusCode).toBe(404);
      expect((await off.app.inject({ url: `/app/assets/${script}` })).statusCode).toBe(404);
    } finally {
      await off.close();
    }
  });
});
