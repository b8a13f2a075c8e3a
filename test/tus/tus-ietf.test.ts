import type { UploadOptions } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  KiB,
  TUS,
  expectError,
  pdfOfSize,
  sha256,
  startTusApp,
  tusFailure,
  tusUpload,
  type TusApp,
} from './tus-helpers.ts';

/**
 * tus-js-client's `protocol: 'ietf-draft-05'` (the IETF resumable-uploads draft, interop version
 * 6) on the same endpoint, with the same checks: owner, type, size, quota, completion.
 */

const IETF = { 'upload-draft-interop-version': '6' };
/** tus-js-client 4.3 has the option at run time, but its type definitions do not list it. */
const draft = (options: Partial<UploadOptions> = {}): Partial<UploadOptions> =>
  ({ ...options, protocol: 'ietf-draft-05' }) as Partial<UploadOptions>;
let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_MAX_UPLOAD_BYTES: String(512 * KiB) });
});
afterAll(async () => {
  await app?.close();
});

describe("tus-js-client's ietf-draft-05 protocol", () => {
  test('an upload in chunks is stored as an item', async () => {
    const data = pdfOfSize(300 * KiB);
    const outcome = await tusUpload(app, data, draft({ chunkSize: 64 * KiB }));
    expect(outcome.methods[0]).toBe('POST');
    const item = (await app.mediaList()).find((i) => i.id === outcome.mediaId);
    expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
  });

  test('with uploadDataDuringCreation, the creation request carries the whole file', async () => {
    const data = pdfOfSize(100 * KiB);
    const outcome = await tusUpload(app, data, draft({ uploadDataDuringCreation: true }));
    expect(outcome.completedBy).toBe('POST');
    expect((await app.mediaList()).map((i) => i.id)).toContain(outcome.mediaId);
  });

  test('a refused type and a file over the limit get the same errors as over tus 1.0.0', async () => {
    const html = Buffer.from(`<html><body>${'z'.repeat(64 * KiB)}</body></html>`);
    const refused = await tusFailure(app, html, draft({ chunkSize: 16 * KiB }));
    expect(refused.status).toBe(415);
    const tooLarge = await tusFailure(app, pdfOfSize(600 * KiB), draft());
    expect(tooLarge.status).toBe(413);
    expect(await app.reservations()).toEqual([]);
  });

  test("another user's upload is 404 in this protocol too", async () => {
    const uploadPath = await app.create(10 * KiB, { as: 'bob' });
    const res = await app.request('PATCH', uploadPath, {
      headers: { ...IETF, 'upload-offset': '0', 'content-type': 'application/partial-upload' },
      body: pdfOfSize(10 * KiB),
    });
    await expectError(res, 404, 'NOT_FOUND');
    await app.request('DELETE', uploadPath, { as: 'bob', headers: { 'tus-resumable': '1.0.0' } });
  });

  test('application/partial-upload without the draft header, or a bad Upload-Complete, is refused', async () => {
    const uploadPath = await app.create(10 * KiB);
    const plain = await app.request('PATCH', uploadPath, {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-offset': '0',
        'content-type': 'application/partial-upload',
      },
      body: pdfOfSize(10 * KiB),
    });
    await expectError(plain, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const bad = await app.request('PATCH', uploadPath, {
      headers: {
        ...IETF,
        'upload-offset': '0',
        'upload-complete': 'yes',
        'content-type': 'application/partial-upload',
      },
      body: pdfOfSize(10 * KiB),
    });
    await expectError(bad, 400, 'BAD_REQUEST');
    const post = await app.request('POST', TUS, { headers: { ...IETF, 'upload-length': '10' } });
    expect(post.status).toBe(201);
    await app.request('DELETE', uploadPath, { headers: { 'tus-resumable': '1.0.0' } });
    await app.request('DELETE', new URL(post.headers.get('location')!, app.base).pathname, { headers: IETF });
  });
});
