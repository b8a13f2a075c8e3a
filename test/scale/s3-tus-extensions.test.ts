import crypto from 'node:crypto';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { isBlobKey } from '../../src/storage/key-layout.ts';
import { MiB, bucketContents, pdfOfSize, s3Env, sha256 } from './scale-helpers.ts';

/**
 * tus's checksum, deferred-length and concatenation extensions on S3 (@tus/s3-store, plain S3
 * multipart API): what a PATCH with a wrong checksum sent cannot be taken back from a multipart
 * upload, so it must never reach the bucket; partials and deferred uploads leave nothing behind.
 */
const TUS = '/api/media/uploads';

let s3: TestBucket;
let t: TestApp;
let base: string;
let token: string;

const runs = s3Available();
beforeAll(async () => {
  if (!runs) return;
  s3 = await createTestBucket();
  t = await createTestApp({ ...s3Env(s3), STOWAGE_MAX_UPLOAD_BYTES: String(64 * MiB) });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
  token = (await t.login('alice')).accessToken;
});
afterAll(async () => {
  await t?.close();
  await s3?.drop();
});

const headers = (extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${token}`,
  'tus-resumable': '1.0.0',
  ...extra,
});

async function expectStored(mediaId: string | null | undefined, data: Buffer): Promise<void> {
  const res = await fetch(`${base}/api/media/${mediaId}/content`, { headers: headers() });
  expect(res.status).toBe(200);
  expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));
}

/** Only items' blobs: no tus objects, partials or unfinished multipart uploads. */
async function expectOnlyItemsInBucket(): Promise<void> {
  const contents = await bucketContents(s3);
  expect(contents.objects.filter((key) => !isBlobKey(key))).toEqual([]);
  expect(contents.uploads.filter((u) => !isBlobKey(u.key))).toEqual([]);
}

function upload(data: Buffer, options: Partial<tus.UploadOptions>): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let mediaId: string | undefined;
    new tus.Upload(data, {
      endpoint: `${base}${TUS}`,
      headers: { Authorization: `Bearer ${token}` },
      retryDelays: [],
      metadata: { filename: 's3.pdf' },
      ...options,
      onAfterResponse: (_req, res) => {
        mediaId = res.getHeader('Media-Id') || mediaId;
      },
      onSuccess: () => resolve(mediaId),
      onError: reject,
    }).start();
  });
}

describe.skipIf(!runs)('tus extensions on S3 (radosgw)', () => {
  it('a PATCH with a wrong checksum keeps none of its bytes, even past one S3 part', async () => {
    const data = pdfOfSize(12 * MiB);
    const created = await fetch(`${base}${TUS}`, {
      method: 'POST',
      headers: headers({ 'upload-length': String(data.length) }),
    });
    const url = new URL(created.headers.get('location')!, base).toString();
    const patch = (from: number, to: number, digestOf: Buffer) =>
      fetch(url, {
        method: 'PATCH',
        headers: headers({
          'upload-offset': String(from),
          'content-type': 'application/offset+octet-stream',
          'upload-checksum': `sha1 ${crypto.createHash('sha1').update(digestOf).digest('base64')}`,
        }),
        body: data.subarray(from, to),
      });
    const bad = await patch(0, 9 * MiB, Buffer.from('something else'));
    expect(bad.status).toBe(460);
    const head = await fetch(url, { method: 'HEAD', headers: headers() });
    expect(head.headers.get('upload-offset')).toBe('0');
    expect((await patch(0, 9 * MiB, data.subarray(0, 9 * MiB))).status).toBe(204);
    const last = await patch(9 * MiB, data.length, data.subarray(9 * MiB));
    expect(last.status).toBe(204);
    await expectStored(last.headers.get('media-id'), data);
    await expectOnlyItemsInBucket();
  });

  it('tus-js-client with parallelUploads: one item, no partials left in the bucket', async () => {
    const data = pdfOfSize(14 * MiB + 3);
    const mediaId = await upload(data, { parallelUploads: 3 });
    await expectStored(mediaId, data);
    await expectOnlyItemsInBucket();
  });

  it('tus-js-client with a deferred length', async () => {
    const data = pdfOfSize(9 * MiB + 1);
    const mediaId = await upload(data, { uploadLengthDeferred: true, chunkSize: 6 * MiB });
    await expectStored(mediaId, data);
    await expectOnlyItemsInBucket();
  });
});
