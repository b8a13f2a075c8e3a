import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { createTestBucket, s3Available, startS3Proxy, type S3Proxy, type TestBucket } from '../helpers/s3.ts';
import { MiB, bucketContents, pdfOfSize, s3Env } from './scale-helpers.ts';

/**
 * An object store that stops taking bytes in the middle of an upload is the server's trouble,
 * not the client's: 503 UNAVAILABLE with Retry-After (never 400 "malformed"), and nothing kept.
 */
const runs = s3Available();

let s3: TestBucket;
let proxy: S3Proxy;
let refusing = false;
let t: TestApp;

beforeAll(async () => {
  if (!runs) return;
  s3 = await createTestBucket();
  // Writes of object bytes (PutObject, UploadPart) are refused while `refusing` is set.
  proxy = await startS3Proxy(s3.endpoint, {
    refuse: (req) => (refusing && req.method === 'PUT' ? { status: 403, code: 'AccessDenied' } : null),
  });
  t = await createTestApp({ ...s3Env({ ...s3, endpoint: proxy.endpoint }) });
});
afterAll(async () => {
  await t?.close();
  await proxy?.stop();
  await s3?.drop();
});

describe.skipIf(!runs)('an object store that refuses the bytes of an upload', () => {
  for (const size of [64 * 1024, 12 * MiB]) {
    it(`answers 503 UNAVAILABLE, not the client's fault, and keeps nothing (${size} bytes)`, async () => {
      const { accessToken } = await t.login('alice');
      const form = new FormData();
      form.append(
        'file',
        new Blob([new Uint8Array(pdfOfSize(size))], { type: 'application/pdf' }),
        'report.pdf',
      );
      await t.app.listen({ host: '127.0.0.1', port: 0 }).catch(() => undefined);
      const base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
      refusing = true;
      try {
        const res = await fetch(`${base}/api/media/upload`, {
          method: 'POST',
          headers: { authorization: `Bearer ${accessToken}` },
          body: form,
        });
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBeTruthy();
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe('UNAVAILABLE');
      } finally {
        refusing = false;
      }
      const list = await t.app.inject({ url: '/api/media/list', headers: t.auth(accessToken) });
      expect(list.json<{ items: unknown[] }>().items).toEqual([]);
      const contents = await bucketContents(s3);
      expect(contents.objects.filter((key) => key.startsWith('media/'))).toEqual([]);
      expect(contents.uploads).toEqual([]);
    });
  }
});
