import fs from 'node:fs/promises';
import path from 'node:path';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, startListeningApp, type TestApp } from '../helpers/app.ts';
import { ManualClock } from '../helpers/clock.ts';
import { createTestBucket, s3Available, s3Client, startS3Proxy, type TestBucket } from '../helpers/s3.ts';
import { originalKey as blobKey } from '../../src/storage/key-layout.ts';
import { ScratchLease } from '../../src/storage/scratch.ts';
import { Sweeper } from '../../src/media/sweeper.ts';
import {
  MiB,
  bucketContents,
  pdfOfSize,
  s3Env,
  sha256,
  tusUpload,
  until,
  uploadMultipart,
  zipOfSize,
  type HttpResult,
} from './scale-helpers.ts';

/**
 * The whole app on a real S3 server (Ceph's radosgw, a bucket of its own; see test/helpers/s3.ts),
 * over real HTTP: uploads stream into multipart uploads, downloads are ranged reads, thumbnails are
 * cached in the bucket, resumable uploads use @tus/s3-store, and nothing without a row outlives a
 * failed upload.
 */
const MAX_UPLOAD = 20 * MiB;
const TUS = '/api/media/uploads';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let s3: TestBucket;
let t: TestApp;
let base: string;
let token: string;

const runs = s3Available();
beforeAll(async () => {
  if (!runs) return;
  s3 = await createTestBucket();
  t = await createTestApp({ ...s3Env(s3), STOWAGE_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
  token = (await t.login('alice')).accessToken;
});
afterAll(async () => {
  await t?.close();
  await s3?.drop();
});

const auth = () => ({ authorization: `Bearer ${token}` });
const get = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${base}${url}`, { headers: { ...auth(), ...headers } });

async function upload(data: Buffer, filename: string): Promise<{ id: string; size: number; sha256: string }> {
  const res = await uploadMultipart({ base, token, data, filename });
  expect(res.status, res.body).toBe(201);
  return JSON.parse(res.body) as { id: string; size: number; sha256: string };
}

function errorCode(res: HttpResult): string | undefined {
  return (JSON.parse(res.body) as { error?: { code?: string } }).error?.code;
}

/** Nothing but committed items' blobs and renditions: no tus objects, no unfinished uploads. */
async function expectOnlyItemsInBucket(): Promise<void> {
  const ids = new Set(
    (await t.services.database.db.selectFrom('media').select('id').execute()).map((r) => r.id),
  );
  const contents = await bucketContents(s3);
  const stray = contents.objects.filter((key) => {
    const [area, a, b] = key.split('/');
    return !((area === 'media' && ids.has(b ?? '')) || (area === 'thumbs' && ids.has(a ?? '')));
  });
  expect({ stray, uploads: contents.uploads }).toEqual({ stray: [], uploads: [] });
}

describe.skipIf(!runs)('the app on S3', () => {
  it('is ready, with the bucket checked', async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'ok',
      checks: { database: 'ok', storage: 'ok', scanner: 'off' },
    });
  });

  it('streams an upload into the bucket (multipart) and downloads it whole and in ranges', async () => {
    const data = pdfOfSize(18 * MiB + 4321); // three 8 MiB parts, the last one short
    const item = await upload(data, 'big.pdf');
    expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
    expect((await bucketContents(s3)).objects).toContain(blobKey(item.id));

    const whole = await get(`/api/media/${item.id}/content`);
    expect(whole.status).toBe(200);
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(sha256(data));

    const ranged = await get(`/api/media/${item.id}/content`, { range: 'bytes=9000000-9000999' });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 9000000-9000999/${data.length}`);
    expect(Buffer.from(await ranged.arrayBuffer())).toEqual(data.subarray(9_000_000, 9_001_000));

    const first = await get(`/api/media/${item.id}/content`, { range: 'bytes=0-0' });
    expect(first.status).toBe(206);
    expect(Buffer.from(await first.arrayBuffer())).toEqual(data.subarray(0, 1));

    const suffix = await get(`/api/media/${item.id}/content`, { range: 'bytes=-100' });
    expect(suffix.status).toBe(206);
    expect(Buffer.from(await suffix.arrayBuffer())).toEqual(data.subarray(data.length - 100));

    const beyond = await get(`/api/media/${item.id}/content`, { range: `bytes=${data.length}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${data.length}`);
    await expectOnlyItemsInBucket();
  });

  it('caches thumbnails in the bucket, and serves them from there', async () => {
    const photo = await fs.readFile(
      path.join(import.meta.dirname, '..', 'fixtures', 'images', 'Canon_40D.jpg'),
    );
    const item = await upload(photo, 'canon.jpg');
    const first = await get(`/api/media/${item.id}/thumbnail?size=256`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('image/webp');
    const rendition = Buffer.from(await first.arrayBuffer());
    expect((await bucketContents(s3)).objects).toContain(`thumbs/${item.id}/256.webp`);

    // Without the original in the bucket, only the cached rendition can answer.
    await t.services.storage.delete(blobKey(item.id));
    const again = await get(`/api/media/${item.id}/thumbnail?size=256`);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer())).toEqual(rendition);
  });

  it('renders on demand from a spooled copy of the original, and keeps the rendition in the bucket', async () => {
    const photo = await fs.readFile(
      path.join(import.meta.dirname, '..', 'fixtures', 'images', 'DSCN0025.jpg'),
    );
    const item = await upload(photo, 'render.jpg');
    const res = await get(`/api/media/${item.id}/render?w=100&h=100&fit=cover&format=jpeg`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await res.arrayBuffer()).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    expect((await bucketContents(s3)).objects).toContain(`thumbs/${item.id}/r-100x100-cover-q80.jpeg`);
    expect(await t.services.renditionCache.totalBytes()).toBeGreaterThan(0);
  });

  it('removes the blob and every rendition from the bucket when an item is deleted', async () => {
    const photo = await fs.readFile(
      path.join(import.meta.dirname, '..', 'fixtures', 'images', 'DSCN0025.jpg'),
    );
    const item = await upload(photo, 'dscn.jpg');
    for (const size of [256, 512])
      expect((await get(`/api/media/${item.id}/thumbnail?size=${size}`)).status).toBe(200);
    const mine = (keys: string[]) => keys.filter((k) => k.includes(item.id));
    expect(mine((await bucketContents(s3)).objects)).toHaveLength(3);

    const res = await fetch(`${base}/api/media/${item.id}`, { method: 'DELETE', headers: auth() });
    expect(res.status).toBe(204);
    expect(mine((await bucketContents(s3)).objects)).toEqual([]);
    expect((await get(`/api/media/${item.id}/content`)).status).toBe(404);
  });

  it('leaves nothing in the bucket when an upload of a refused type is several MB long', async () => {
    const res = await uploadMultipart({ base, token, data: zipOfSize(10 * MiB), filename: 'archive.pdf' });
    expect(res.status).toBe(415);
    expect(errorCode(res)).toBe('UNSUPPORTED_MEDIA_TYPE');
    await until(async () => (await bucketContents(s3)).uploads.length === 0, 1000, 'no unfinished upload');
    await expectOnlyItemsInBucket();
  });

  it('leaves nothing in the bucket when an upload passes the limit after parts were stored', async () => {
    // 8 MiB parts: two are in the bucket when the limit is reached.
    const res = await uploadMultipart({
      base,
      token,
      data: pdfOfSize(MAX_UPLOAD + 3 * MiB),
      filename: 'huge.pdf',
    });
    expect(res.status).toBe(413);
    expect(errorCode(res)).toBe('PAYLOAD_TOO_LARGE');
    await until(async () => (await bucketContents(s3)).uploads.length === 0, 1000, 'no unfinished upload');
    await expectOnlyItemsInBucket();
  });

  it('sweeps objects without a row once they are an hour old, and unfinished uploads past the age', async () => {
    const { storage, repo, sessions } = t.services;
    const kept = await upload(pdfOfSize(1000), 'kept.pdf');
    const put = async (key: string) => {
      const writer = storage.createWriter(key);
      writer.stream.end(Buffer.from('leftover'));
      await new Promise((resolve) => writer.stream.once('finish', resolve));
      await writer.commit();
    };
    const orphan = blobKey('OrphanOrphanOrphanOrph');
    const orphanThumb = 'thumbs/OrphanOrphanOrphanOrph/256.webp';
    for (const key of [orphan, orphanThumb]) await put(key);

    // An unfinished multipart upload, as a crash leaves it.
    const client = s3Client(s3);
    const crashedKey = blobKey('CrashedCrashedCrashedC');
    const { UploadId: crashed } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: crashedKey }),
    );
    await client.send(
      new UploadPartCommand({
        Bucket: s3.bucket,
        Key: crashedKey,
        UploadId: crashed,
        PartNumber: 1,
        Body: pdfOfSize(1000),
      }),
    );
    client.destroy();

    // The bucket dates what it holds by its own clock; the sweeper measures ages on this one.
    const clock = new ManualClock(Date.now());
    const sweeper = new Sweeper({
      storage,
      repo,
      sessions,
      scratch: await ScratchLease.acquire(path.join(t.config.dataDir, 'instances')),
      spoolRoot: path.join(t.config.dataDir, 'tmp'),
      logger: pino({ level: 'silent' }),
      clock,
    });
    const contents = async () => {
      const { objects, uploads } = await bucketContents(s3);
      return { objects, uploads: uploads.map((u) => u.uploadId) };
    };

    // Younger than an hour, an object without a row may be an upload about to commit.
    await sweeper.sweep(24 * HOUR);
    let after = await contents();
    expect(after.objects).toEqual(expect.arrayContaining([orphan, orphanThumb, blobKey(kept.id)]));
    expect(after.uploads).toEqual([crashed]);

    clock.advance(HOUR + MINUTE);
    await sweeper.sweep(24 * HOUR);
    after = await contents();
    expect(after.objects).toContain(blobKey(kept.id));
    expect(after.objects).not.toContain(orphan);
    expect(after.objects).not.toContain(orphanThumb);
    expect(after.uploads).toEqual([crashed]); // unfinished, but not yet a day old

    clock.advance(24 * HOUR);
    await sweeper.sweep(24 * HOUR);
    after = await contents();
    expect(after.uploads).toEqual([]);
    expect(after.objects).toContain(blobKey(kept.id));
    expect((await get(`/api/media/${kept.id}/content`)).status).toBe(200);
  });
});

describe.skipIf(!runs)('resumable uploads on S3 (@tus/s3-store)', () => {
  const endpoint = () => `${base}${TUS}`;
  const tusHeaders = (extra: Record<string, string> = {}) => ({
    ...auth(),
    'tus-resumable': '1.0.0',
    ...extra,
  });

  async function expectStored(mediaId: string, data: Buffer): Promise<void> {
    const res = await get(`/api/media/${mediaId}/content`);
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));
  }

  it('completes an upload sent in 8 MiB chunks with a small last chunk, and leaves no tus objects', async () => {
    const data = pdfOfSize(2 * 8 * MiB + 12_345);
    const outcome = await tusUpload({ endpoint: endpoint(), token, data, chunkSize: 8 * MiB });
    expect(outcome.methods).toEqual(['POST', 'PATCH', 'PATCH', 'PATCH']);
    await expectStored(outcome.mediaId, data);
    await expectOnlyItemsInBucket();
  });

  it('completes an upload smaller than one S3 part in a single request', async () => {
    const data = pdfOfSize(300 * 1024);
    const outcome = await tusUpload({ endpoint: endpoint(), token, data });
    await expectStored(outcome.mediaId, data);
    await expectOnlyItemsInBucket();
  });

  it('completes an upload sent in chunks smaller than the 5 MiB S3 minimum part size', async () => {
    const data = pdfOfSize(3 * MiB + 77);
    const outcome = await tusUpload({ endpoint: endpoint(), token, data, chunkSize: MiB });
    expect(outcome.methods.filter((m) => m === 'PATCH')).toHaveLength(4);
    await expectStored(outcome.mediaId, data);
    await expectOnlyItemsInBucket();
  });

  it('resumes at the offset the bucket holds, after an interruption', async () => {
    const data = pdfOfSize(6 * MiB);
    const created = await fetch(endpoint(), {
      method: 'POST',
      headers: tusHeaders({ 'upload-length': String(data.length) }),
    });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, base).toString();
    const patch = (from: number, to: number) =>
      fetch(url, {
        method: 'PATCH',
        headers: tusHeaders({
          'upload-offset': String(from),
          'content-type': 'application/offset+octet-stream',
        }),
        body: data.subarray(from, to),
      });
    expect((await patch(0, 5 * MiB + 10)).status).toBe(204);
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders() });
    expect(head.headers.get('upload-offset')).toBe(String(5 * MiB + 10));
    const last = await patch(5 * MiB + 10, data.length);
    expect(last.status).toBe(204);
    const mediaId = last.headers.get('media-id');
    expect(mediaId).toEqual(expect.any(String));
    await expectStored(mediaId!, data);
    await expectOnlyItemsInBucket();
  });

  it('removes everything of an upload that is terminated', async () => {
    const created = await fetch(endpoint(), {
      method: 'POST',
      headers: tusHeaders({ 'upload-length': String(4 * MiB) }),
    });
    const url = new URL(created.headers.get('location')!, base).toString();
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: tusHeaders({ 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }),
      body: pdfOfSize(MiB),
    });
    expect(patched.status).toBe(204);
    expect((await bucketContents(s3)).uploads).toHaveLength(1);
    expect((await fetch(url, { method: 'DELETE', headers: tusHeaders() })).status).toBe(204);
    expect((await fetch(url, { method: 'HEAD', headers: tusHeaders() })).status).toBe(404);
    await expectOnlyItemsInBucket();
  });

  it('removes everything of an upload refused for its type', async () => {
    const created = await fetch(endpoint(), {
      method: 'POST',
      headers: tusHeaders({ 'upload-length': String(6 * MiB) }),
    });
    const url = new URL(created.headers.get('location')!, base).toString();
    const refused = await fetch(url, {
      method: 'PATCH',
      headers: tusHeaders({ 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }),
      body: zipOfSize(6 * MiB),
    });
    expect(refused.status).toBe(415);
    // The rest of the body is not wanted: the connection closes instead of waiting for it.
    expect(refused.headers.get('connection')).toBe('close');
    await until(async () => (await bucketContents(s3)).uploads.length === 0, 1000, 'no unfinished upload');
    await expectOnlyItemsInBucket();
  });

  it('cleans up expired unfinished uploads', async () => {
    // @tus/s3-store expires an upload by when its multipart upload began (as ListMultipartUploads
    // says) against the system clock. A second instance reaches the bucket through a proxy that,
    // once told, lists every upload as begun two days earlier: the bucket as seen two days later.
    let shiftMs = 0;
    const proxy = await startS3Proxy(s3.endpoint, {
      rewrite: (_req, xml) =>
        xml.replace(
          /<Initiated>([^<]+)<\/Initiated>/g,
          (_match, iso: string) =>
            `<Initiated>${new Date(Date.parse(iso) - shiftMs).toISOString()}</Initiated>`,
        ),
    });
    const later = await startListeningApp(s3Env({ ...s3, endpoint: proxy.endpoint }));
    try {
      const headers = (extra: Record<string, string> = {}) => ({
        authorization: `Bearer ${later.tokens.alice}`,
        'tus-resumable': '1.0.0',
        ...extra,
      });
      const created = await fetch(`${later.base}${TUS}`, {
        method: 'POST',
        headers: headers({ 'upload-length': String(4 * MiB) }),
      });
      expect(created.status).toBe(201);
      const url = new URL(created.headers.get('location')!, later.base).toString();
      const patched = await fetch(url, {
        method: 'PATCH',
        headers: headers({ 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }),
        body: pdfOfSize(MiB),
      });
      expect(patched.status).toBe(204);
      expect((await bucketContents(s3)).uploads).toHaveLength(1);

      await later.services.tus.sweepExpired();
      expect((await bucketContents(s3)).uploads).toHaveLength(1); // not expired yet
      expect((await fetch(url, { method: 'HEAD', headers: headers() })).headers.get('upload-offset')).toBe(
        String(MiB),
      );

      shiftMs = 48 * HOUR;
      await later.services.tus.sweepExpired();
      await expectOnlyItemsInBucket(); // multipart upload aborted, .info and .part objects deleted
    } finally {
      await later.close();
      await proxy.stop();
    }
  });
});
