import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';

const PHOTO = path.join(import.meta.dirname, '..', 'fixtures', 'images', 'Canon_40D.jpg');
const ERROR_SHAPE = /^\{"error":\{"code":"[A-Z_]+","message":"[^"]*","details":\{.*\}\}\}$/s;

/**
 * Every route against a grid of malformed bodies, content types and headers: each answer is
 * either a success or an error in the contract's shape, never a 5xx, and always carries the
 * conventional headers.
 */
describe('malformed input on every route', () => {
  let t: TestApp;
  let routes: [string, string][];
  let auth: { authorization: string };

  beforeAll(async () => {
    t = await createTestApp();
    auth = t.auth((await t.login('alice')).accessToken);
    const form = new FormData();
    form.set('file', new Blob([fs.readFileSync(PHOTO)]), 'a.jpg');
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
    const item = (await (
      await fetch(`${base}/api/media/upload`, { method: 'POST', headers: auth, body: form })
    ).json()) as {
      id: string;
    };
    const created = await fetch(`${base}/api/media/uploads`, {
      method: 'POST',
      headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-length': '100' },
    });
    const upload = created.headers.get('location')!;
    routes = [
      ['POST', '/api/auth/login'],
      ['POST', '/api/auth/refresh'],
      ['GET', '/api/auth/me'],
      ['GET', '/api/users/me'],
      ['POST', '/api/media/upload'],
      ['GET', '/api/media/list'],
      ['POST', '/api/media/lookup'],
      ['PATCH', `/api/media/${item.id}`],
      ['POST', `/api/media/${item.id}/links`],
      ['GET', `/api/media/${item.id}/links`],
      ['DELETE', `/api/media/${item.id}/links/no-such-link`],
      ['GET', `/api/media/${item.id}/content`],
      ['GET', `/api/media/${item.id}/thumbnail`],
      ['POST', '/api/media/uploads'],
      ['PATCH', upload],
    ];
  });
  afterAll(() => t.close());

  it('never answers 5xx, and every error has the contract shape', async () => {
    const bodies = [
      undefined,
      '',
      '{',
      'null',
      '[]',
      '{"__proto__":{"a":1}}',
      '{"a":1}',
      '\u0000\u0001',
      'x'.repeat(70_000),
    ];
    const types = [
      undefined,
      'application/json',
      'text/plain',
      'application/offset+octet-stream',
      'multipart/form-data',
    ];
    const extras: Record<string, string>[] = [
      {},
      { 'tus-resumable': '1.0.0', 'upload-offset': '0' },
      { 'tus-resumable': '1.0.0', 'upload-length': 'abc' },
      { range: 'bytes=abc', 'if-none-match': '*' },
      { 'tus-resumable': '1.0.0', 'upload-length': '10', 'upload-metadata': 'visibility Ym9ndXM=' },
    ];
    const problems: string[] = [];
    let sent = 0;
    for (const [method, url] of routes) {
      for (const body of method === 'GET' ? [undefined] : bodies) {
        for (const type of method === 'GET' ? [undefined] : types) {
          for (const extra of extras) {
            const headers: Record<string, string> = { ...auth, ...extra };
            if (type) headers['content-type'] = type;
            const res = await t.app.inject({
              method: method as 'GET',
              url,
              headers,
              ...(body === undefined ? {} : { payload: body }),
            });
            sent++;
            const shaped = res.statusCode < 400 || ERROR_SHAPE.test(res.body);
            if (
              res.statusCode >= 500 ||
              !shaped ||
              res.headers['x-content-type-options'] !== 'nosniff' ||
              !res.headers['x-request-id']
            ) {
              problems.push(
                `${res.statusCode} ${method} ${url} ${type} ${JSON.stringify(extra)}: ${res.body.slice(0, 100)}`,
              );
            }
          }
        }
      }
    }
    expect(sent).toBeGreaterThan(1000);
    expect(problems).toEqual([]);
  });
});
