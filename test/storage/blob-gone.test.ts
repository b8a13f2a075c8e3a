import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { originalKey as blobKey } from '../../src/storage/key-layout.ts';
import { BlobNotFoundError, isNotFound, isStorageFull } from '../../src/storage/blob-store.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { s3Env } from '../scale/scale-helpers.ts';
import { expectError, pdf, png, startMediaApp, type MediaApp } from '../media/media-helpers.ts';

/**
 * A download that races a delete: the item's row was found, then the blob under it went away
 * before it was opened. The item is gone, so the answer is 404 in the contract's shape, never a
 * 500 — for GET, a ranged GET and HEAD, on local disk and on S3.
 */
const KINDS = s3Available() ? (['local', 's3'] as const) : (['local'] as const);

describe.each(KINDS)('a content request whose blob was deleted under it (%s)', (kind) => {
  let s3: TestBucket | undefined;
  let app: MediaApp;
  beforeAll(async () => {
    if (kind === 's3') s3 = await createTestBucket();
    app = await startMediaApp(s3 ? s3Env(s3) : {});
  });
  afterAll(async () => {
    await app?.close();
    await s3?.drop();
  });

  test('GET, a ranged GET and HEAD answer 404, not 500', async () => {
    const item = await app.uploadFile(pdf(100), 'gone.pdf');
    const url = `/api/media/${item.id}/content`;
    expect((await app.api('HEAD', url)).status).toBe(200);
    // Exactly what a concurrent delete does between the row lookup and the open.
    await app.services.storage.delete(blobKey(item.id));
    if (kind === 'local') {
      await expect(fs.stat(app.services.storage.localPath(blobKey(item.id))!)).rejects.toThrow();
    }

    expectError(await app.api('GET', url), 404, 'NOT_FOUND');
    const ranged = await app.app.inject({
      method: 'GET',
      url,
      headers: { authorization: `Bearer ${app.tokens.alice}`, range: 'bytes=0-9' },
    });
    expect(ranged.statusCode).toBe(404);
    expect(ranged.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    const head = await app.api('HEAD', url);
    expect(head.status).toBe(404);
    expect(head.headers['content-type']).toMatch(/^application\/json/);
    // A real socket too: the error is answered, and the connection is not cut mid-response.
    const res = await fetch(`${app.base}${url}`, {
      headers: { authorization: `Bearer ${app.tokens.alice}` },
    });
    await expectError(res, 404, 'NOT_FOUND');
  });
});

describe.each(KINDS)('a thumbnail whose original was deleted under it (%s)', (kind) => {
  test('is a 404, not a 500', async () => {
    const s3 = kind === 's3' ? await createTestBucket() : undefined;
    const app = await startMediaApp(s3 ? s3Env(s3) : {});
    try {
      const item = await app.uploadFile(await png(300, 200), 'gone.png');
      await app.services.storage.delete(blobKey(item.id));
      expectError(await app.api('GET', `/api/media/${item.id}/thumbnail?size=256`), 404, 'NOT_FOUND');
    } finally {
      await app.close();
      await s3?.drop();
    }
  });
});

describe('the storage error classifiers', () => {
  test('isNotFound: a missing file, a missing object, but not a missing bucket', async () => {
    const enoent = await fs.readFile('/nonexistent/stowage/file').catch((error: unknown) => error);
    const enotdir = await fs.readFile('/etc/hostname/x').catch((error: unknown) => error);
    expect(isNotFound(enoent)).toBe(true);
    expect(isNotFound(enotdir)).toBe(true);
    expect(isNotFound(new BlobNotFoundError('media/ab/x'))).toBe(true);
    for (const name of ['NoSuchKey', 'NoSuchUpload', 'NotFound']) {
      expect(isNotFound({ name, $metadata: { httpStatusCode: 404 } })).toBe(true);
    }
    expect(isNotFound({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } })).toBe(false);
    expect(isNotFound({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } })).toBe(false);
    expect(isNotFound(Object.assign(new Error('full'), { code: 'ENOSPC' }))).toBe(false);
    expect(isNotFound(undefined)).toBe(false);
  });

  test('isStorageFull: ENOSPC, EDQUOT, EFBIG and an S3 clone answering 507', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EFBIG']) {
      expect(isStorageFull(Object.assign(new Error(code), { code }))).toBe(true);
    }
    expect(isStorageFull({ name: 'XMinioStorageFull', $metadata: { httpStatusCode: 507 } })).toBe(true);
    expect(isStorageFull(Object.assign(new Error('gone'), { code: 'ENOENT' }))).toBe(false);
    expect(isStorageFull(Object.assign(new Error('denied'), { code: 'EACCES' }))).toBe(false);
    expect(isStorageFull(null)).toBe(false);
  });
});
