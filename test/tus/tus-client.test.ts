import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  KiB,
  TUS,
  clientOptions,
  fixture,
  pdfOfSize,
  sha256,
  startTusApp,
  tusFailure,
  tusUpload,
  type MediaItem,
  type TusApp,
  type TusOutcome,
  type User,
} from './tus-helpers.ts';

/** The stock tus client (tus-js-client's Node build) against the real server, over real HTTP. */

const QUOTA = 600 * KiB;

let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_QUOTA_BYTES: String(QUOTA) });
});
afterAll(async () => {
  await app?.close();
});

function options(as: User, extra: Partial<tus.UploadOptions> = {}): tus.UploadOptions {
  return clientOptions(app, as, extra);
}

function upload(
  data: Buffer,
  extra: Partial<tus.UploadOptions> = {},
  as: User = 'alice',
): Promise<TusOutcome> {
  return tusUpload(app, data, extra, as);
}

async function item(id: string | undefined, as: User = 'alice'): Promise<MediaItem> {
  const found = (await app.mediaList(as)).find((i) => i.id === id);
  if (!found) throw new Error(`media ${id} is not in the list`);
  return found;
}

async function headOffset(path: string): Promise<number> {
  const res = await app.request('HEAD', path, { headers: { 'tus-resumable': '1.0.0' } });
  expect(res.status).toBe(200);
  return Number(res.headers.get('upload-offset'));
}

describe('tus-js-client', () => {
  test('uploads a photo in small chunks; the completing PATCH carries Media-Id and the item is listed', async () => {
    const photo = await fixture('DSCN0025.jpg');
    const done = await upload(photo, {
      chunkSize: 16 * KiB,
      metadata: {
        filename: 'dir/holiday.jpg',
        filetype: 'text/plain',
        tags: 'Beach,sun',
        visibility: 'public',
      },
    });
    expect(done.methods.filter((m) => m === 'PATCH').length).toBe(Math.ceil(photo.length / (16 * KiB)));
    expect(done.completedBy).toBe('PATCH');
    expect(done.mediaId).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(await item(done.mediaId)).toMatchObject({
      filename: 'holiday.jpg',
      mimeType: 'image/jpeg',
      size: photo.length,
      sha256: sha256(photo),
      owner: 'alice',
      visibility: 'public',
      tags: ['beach', 'sun'],
      image: { width: 640, height: 480 },
    });
    const content = await app.request('GET', `/api/media/${done.mediaId}/content`);
    expect(Buffer.from(await content.arrayBuffer()).equals(photo)).toBe(true);
    // The finished upload is gone from the tus store and holds no reservation any more.
    expect(await app.uploadFiles()).toEqual([]);
    expect(await app.reservations()).toEqual([]);
    const gone = await app.request('HEAD', new URL(done.url!).pathname, {
      headers: { 'tus-resumable': '1.0.0' },
    });
    expect(gone.status).toBe(404);
  });

  test('creation-with-upload: the POST carries the whole file and completes it', async () => {
    const photo = await fixture('Canon_40D.jpg');
    const done = await upload(photo, { uploadDataDuringCreation: true, metadata: { filename: 'canon.jpg' } });
    expect(done.methods).toEqual(['POST']);
    expect(done.completedBy).toBe('POST');
    expect(await item(done.mediaId)).toMatchObject({
      filename: 'canon.jpg',
      sha256: sha256(photo),
      visibility: 'private',
      tags: [],
    });
  });

  test('an interrupted upload resumes from the offset the server kept', async () => {
    const data = pdfOfSize(200 * KiB);
    const chunkSize = 32 * KiB;
    const first = new tus.Upload(data, options('alice', { chunkSize, metadata: { filename: 'report.pdf' } }));
    // Abort in the middle of the third chunk: two chunks are on the server, the third is cut off.
    await new Promise<void>((resolve, reject) => {
      first.options.onProgress = (sent) => {
        if (sent > 2.5 * chunkSize) {
          void first.abort().then(resolve, reject);
        }
      };
      first.options.onError = reject;
      first.options.onSuccess = () => reject(new Error('the upload finished before it was interrupted'));
      first.start();
    });
    expect(first.url).toBeTruthy();
    const path = new URL(first.url!).pathname;
    const kept = await headOffset(path);
    expect(kept).toBeGreaterThanOrEqual(2 * chunkSize);
    expect(kept).toBeLessThan(data.length);

    const done = await upload(data, { chunkSize, uploadUrl: first.url! });
    expect(done.url).toBe(first.url);
    // Only the missing part was sent again: no new upload was created.
    expect(done.methods[0]).toBe('HEAD');
    expect(done.methods).not.toContain('POST');
    expect(await item(done.mediaId)).toMatchObject({
      filename: 'report.pdf',
      size: data.length,
      sha256: sha256(data),
    });
  });

  test('termination removes the upload and gives its reserved room back', async () => {
    // Declares 500 KiB of the 600 KiB quota, then is terminated after one chunk.
    const big = pdfOfSize(500 * KiB);
    const before = await app.uploadFiles();
    const started = new tus.Upload(big, options('bob', { chunkSize: 64 * KiB }));
    await new Promise<void>((resolve, reject) => {
      started.options.onChunkComplete = () => resolve();
      started.options.onError = reject;
      started.start();
    });
    await started.abort(true);
    const path = new URL(started.url!).pathname;
    const head = await app.request('HEAD', path, { as: 'bob', headers: { 'tus-resumable': '1.0.0' } });
    expect(head.status).toBe(404);
    expect(await app.uploadFiles()).toEqual(before);
    expect(await app.reservations()).toEqual([]);
    // The room is free again: another upload that needs it gets through.
    const again = pdfOfSize(500 * KiB);
    const done = await upload(again, { chunkSize: 128 * KiB }, 'bob');
    expect(await item(done.mediaId, 'bob')).toMatchObject({ size: again.length, sha256: sha256(again) });
  });

  test('a DELETE by the owner terminates too (204), and the upload answers 404 afterwards', async () => {
    const path = await app.create(10 * KiB);
    const res = await app.request('DELETE', path, { headers: { 'tus-resumable': '1.0.0' } });
    expect(res.status).toBe(204);
    expect(await app.reservations()).toEqual([]);
    expect((await app.request('HEAD', path, { headers: { 'tus-resumable': '1.0.0' } })).status).toBe(404);
    expect(path.startsWith(`${TUS}/`)).toBe(true);
  });

  test('over quota: the client gets 413 QUOTA_EXCEEDED at creation and nothing is created', async () => {
    const failed = await tusFailure(app, pdfOfSize(QUOTA + 1), { chunkSize: 64 * KiB }, 'root');
    expect(failed.status).toBe(413);
    expect(failed.body?.error).toMatchObject({ code: 'QUOTA_EXCEEDED', details: expect.any(Object) });
    expect(failed.outcome.methods).toEqual(['POST']);
    expect(failed.outcome.url).toBeNull();
    expect(await app.reservations()).toEqual([]);
    expect(await app.mediaList('root')).toEqual([]);
  });

  test("someone else's upload cannot be resumed: 404, and the owner's upload is untouched", async () => {
    const data = pdfOfSize(96 * KiB);
    const started = new tus.Upload(data, options('alice', { chunkSize: 32 * KiB }));
    await new Promise<void>((resolve, reject) => {
      started.options.onChunkComplete = () => void started.abort().then(resolve, reject);
      started.options.onError = reject;
      started.start();
    });
    const url = started.url!;
    // Without an endpoint to fall back to, the client must report the server's answer.
    const failed = await tusFailure(app, pdfOfSize(96 * KiB), { endpoint: null, uploadUrl: url }, 'bob');
    expect(failed.status).toBe(404);
    expect(failed.outcome.methods).toEqual(['HEAD']);
    // With one, the stock client starts an upload of its own instead.
    const own = await upload(data, { uploadUrl: url }, 'bob');
    expect(own.url).not.toBe(url);
    expect(await item(own.mediaId, 'bob')).toMatchObject({ owner: 'bob', sha256: sha256(data) });

    const resumed = await upload(data, { uploadUrl: url, chunkSize: 32 * KiB });
    expect(resumed.url).toBe(url);
    expect(resumed.methods.filter((m) => m === 'PATCH')).toHaveLength(2);
    expect(await item(resumed.mediaId)).toMatchObject({ owner: 'alice', sha256: sha256(data) });
    expect((await app.mediaList('alice')).map((i) => i.id)).not.toContain(own.mediaId);
  });
});
