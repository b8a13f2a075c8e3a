import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { createTestBucket, s3Available, startS3Proxy, type S3Proxy, type TestBucket } from '../helpers/s3.ts';
import { isBlobKey } from '../../src/storage/key-layout.ts';
import { MiB, bucketContents, pdfOfSize, s3Env, sha256 } from './scale-helpers.ts';

/**
 * On S3 too, the bytes of a resumable upload pass once: hashed, typed and scanned while the
 * PATCHes arrive, then made the item's original by a copy inside the object store. The upload's
 * object is never read back (no GetObject of it through the proxy in front of radosgw) when this
 * process saw every PATCH; after a restart in the middle, the completion reads it once instead.
 */
const TUS = '/api/media/uploads';
const runs = s3Available();

let s3: TestBucket;
let proxy: S3Proxy;
let dataDir: string;

beforeAll(async () => {
  if (!runs) return;
  s3 = await createTestBucket();
  proxy = await startS3Proxy(s3.endpoint, {});
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-s3-single-pass-'));
});
afterAll(async () => {
  await proxy?.stop();
  await s3?.drop();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
});

/** An app on the bucket through the proxy; two of them in turn share the data dir (a restart). */
async function startApp(): Promise<{ t: TestApp; base: string; token: string; close(): Promise<void> }> {
  const t = await createTestApp({
    ...s3Env({ ...s3, endpoint: proxy.endpoint }),
    STOWAGE_DATA_DIR: dataDir,
    STOWAGE_MAX_UPLOAD_BYTES: String(64 * MiB),
  });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
  return { t, base, token: (await t.login('alice')).accessToken, close: () => t.close() };
}

function tusHeaders(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0', ...extra };
}

async function create(base: string, token: string, length: number): Promise<string> {
  const res = await fetch(`${base}${TUS}`, {
    method: 'POST',
    headers: tusHeaders(token, { 'upload-length': String(length) }),
  });
  expect(res.status).toBe(201);
  return res.headers.get('location')!;
}

function patch(base: string, token: string, location: string, data: Buffer, from: number, to: number) {
  return fetch(new URL(location, base), {
    method: 'PATCH',
    headers: tusHeaders(token, {
      'upload-offset': String(from),
      'content-type': 'application/offset+octet-stream',
    }),
    body: data.subarray(from, to),
  });
}

/**
 * GetObject requests for the upload's own object: not its record (ID.info), a held-back short
 * part (ID.part) or the listing of its multipart upload's parts (ID?uploadId=…).
 */
function readsOf(location: string): string[] {
  const id = location.split('/').pop()!;
  return proxy.seen.filter((line) => {
    const [method, target] = line.split(' ');
    const url = new URL(target!, 'http://s3.invalid');
    return method === 'GET' && url.pathname === `/${s3.bucket}/${id}` && !url.searchParams.has('uploadId');
  });
}

async function completions(t: TestApp): Promise<Record<string, number>> {
  const metric = await t.services.metrics.tusCompletions.get();
  return Object.fromEntries(metric.values.map((v) => [String(v.labels.pass), v.value]));
}

async function expectStored(base: string, token: string, mediaId: string | null, data: Buffer) {
  const res = await fetch(`${base}/api/media/${mediaId}/content`, { headers: tusHeaders(token) });
  expect(res.status).toBe(200);
  expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));
  const contents = await bucketContents(s3);
  expect(contents.objects.filter((key) => !isBlobKey(key))).toEqual([]);
  expect(contents.uploads.filter((u) => !isBlobKey(u.key))).toEqual([]);
}

describe.skipIf(!runs)('the single pass on S3 (radosgw)', () => {
  it('an upload whose PATCHes all reached this process is never read back', async () => {
    const app = await startApp();
    try {
      const data = pdfOfSize(12 * MiB + 5);
      const location = await create(app.base, app.token, data.length);
      expect((await patch(app.base, app.token, location, data, 0, 8 * MiB)).status).toBe(204);
      const last = await patch(app.base, app.token, location, data, 8 * MiB, data.length);
      expect(last.status).toBe(204);
      expect(readsOf(location)).toEqual([]);
      expect(await completions(app.t)).toEqual({ while_received: 1 });
      await expectStored(app.base, app.token, last.headers.get('media-id'), data);
    } finally {
      await app.close();
    }
  });

  it('after a restart in the middle, the completion reads the stored upload once', async () => {
    const data = pdfOfSize(12 * MiB + 7);
    const first = await startApp();
    let location: string;
    try {
      location = await create(first.base, first.token, data.length);
      expect((await patch(first.base, first.token, location, data, 0, 8 * MiB)).status).toBe(204);
    } finally {
      await first.close();
    }
    const second = await startApp();
    try {
      const last = await patch(second.base, second.token, location, data, 8 * MiB, data.length);
      expect(last.status).toBe(204);
      expect(readsOf(location)).toHaveLength(1);
      expect(await completions(second.t)).toEqual({ stored_bytes: 1 });
      await expectStored(second.base, second.token, last.headers.get('media-id'), data);
    } finally {
      await second.close();
    }
  });
});
