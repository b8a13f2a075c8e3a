import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  TUS_HEADER,
  MiB,
  KiB,
  TUS,
  encodeMetadata,
  expectError,
  patchHeaders,
  pdfOfSize,
  sha256,
  startTusApp,
  tusUpload,
  type TusApp,
  type User,
} from './tus-helpers.ts';

/** tus's concatenation extension, raw and through tus-js-client's parallel uploads. */

const MAX = 8 * MiB;
const QUOTA = 10 * MiB;

let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_MAX_UPLOAD_BYTES: String(MAX), STOWAGE_QUOTA_BYTES: String(QUOTA) });
});
afterAll(async () => {
  await app?.close();
});
afterEach(async () => {
  for (const { id, username } of await app.reservations()) {
    await app.request('DELETE', `${TUS}/${id}`, { as: username as User, headers: TUS_HEADER });
  }
  for (const as of ['alice', 'bob'] as const) {
    for (const item of await app.mediaList(as)) await app.request('DELETE', `/api/media/${item.id}`, { as });
  }
  expect(await app.reservations()).toEqual([]);
  expect(await app.uploadFiles()).toEqual([]);
});

/** A partial upload holding `data` (all of it unless `send` says how much). */
async function partial(data: Buffer, options: { as?: User; send?: number } = {}): Promise<string> {
  const as = options.as ?? 'alice';
  const res = await app.request('POST', TUS, {
    as,
    headers: { ...TUS_HEADER, 'upload-concat': 'partial', 'upload-length': String(data.length) },
  });
  expect(res.status).toBe(201);
  const uploadPath = new URL(res.headers.get('location')!, app.base).pathname;
  const send = options.send ?? data.length;
  if (send > 0) {
    const patch = await app.request('PATCH', uploadPath, {
      as,
      headers: patchHeaders(0),
      body: data.subarray(0, send),
    });
    expect(patch.status).toBe(204);
    expect(patch.headers.get('media-id')).toBeNull();
  }
  return uploadPath;
}

function final(urls: string[], options: { as?: User; metadata?: Record<string, string> } = {}) {
  return app.request('POST', TUS, {
    as: options.as ?? 'alice',
    headers: {
      ...TUS_HEADER,
      'upload-concat': `final;${urls.join(' ')}`,
      ...(options.metadata ? { 'upload-metadata': encodeMetadata(options.metadata) } : {}),
    },
  });
}

async function gone(uploadPath: string, as: User = 'alice'): Promise<boolean> {
  return (await app.request('HEAD', uploadPath, { as, headers: TUS_HEADER })).status === 404;
}

describe('concatenation', () => {
  test('a final upload of finished partials is stored as one item; the partials are gone', async () => {
    const data = pdfOfSize(3 * MiB + 123);
    const cuts = [0, MiB, 2 * MiB + 17, data.length];
    const parts: string[] = [];
    for (let i = 0; i < 3; i++) parts.push(await partial(data.subarray(cuts[i], cuts[i + 1])));
    // A finished partial is no item, and says what it is.
    expect(await app.mediaList()).toEqual([]);
    const head = await app.request('HEAD', parts[0]!, { headers: TUS_HEADER });
    expect(head.headers.get('upload-concat')).toBe('partial');

    // Absolute URLs and absolute paths are both accepted.
    const res = await final([`${app.base}${parts[0]}`, parts[1]!, parts[2]!], {
      metadata: { filename: 'joined.pdf', tags: 'a,b', visibility: 'public' },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toMatch(/^\/api\/media\/uploads\/[A-Za-z0-9_-]{22}$/);
    const mediaId = res.headers.get('media-id');
    const items = await app.mediaList();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      id: mediaId,
      filename: 'joined.pdf',
      size: data.length,
      sha256: sha256(data),
      visibility: 'public',
      tags: ['a', 'b'],
    });
    for (const p of parts) expect(await gone(p)).toBe(true);
    expect(await app.reservations()).toEqual([]);
    expect(await app.services.repo.usage('alice')).toEqual({ files: 1, bytes: data.length });
  });

  test('partials hold quota while they exist, and the item replaces them without counting twice', async () => {
    const data = pdfOfSize(4 * MiB);
    const parts = [await partial(data.subarray(0, 2 * MiB)), await partial(data.subarray(2 * MiB))];
    // 4 of the 10 MiB are held: 7 more cannot be declared.
    await expectError(
      await app.request('POST', TUS, { headers: { ...TUS_HEADER, 'upload-length': String(7 * MiB) } }),
      413,
      'QUOTA_EXCEEDED',
    );
    const res = await final(parts);
    expect(res.status).toBe(201);
    expect(await app.services.repo.usage('alice')).toEqual({ files: 1, bytes: 4 * MiB });
    expect(await app.reservations()).toEqual([]);
    // 6 MiB are left, not less.
    const rest = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-length': String(6 * MiB) },
    });
    expect(rest.status).toBe(201);
  });

  test("another user's, an unfinished or an unknown partial: one 400 that does not say which", async () => {
    const data = pdfOfSize(64 * KiB);
    const mine = await partial(data.subarray(0, 32 * KiB));
    const bobs = await partial(data.subarray(32 * KiB), { as: 'bob' });
    const unfinished = await partial(data.subarray(32 * KiB), { send: 16 * KiB });
    const notPartial = await app.create(32 * KiB);
    const unknown = `${TUS}/AAAAAAAAAAAAAAAAAAAAAA`;
    const bodies: unknown[] = [];
    for (const other of [bobs, unfinished, unknown, notPartial, mine, `${TUS}/x/../..`, 'http://[bad']) {
      const res = await final([mine, other]);
      const body = await expectError(res, 400, 'VALIDATION_FAILED');
      expect(res.headers.get('media-id')).toBeNull();
      bodies.push(body);
    }
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
    // Nothing was decided: every partial is still there, bob's untouched and his alone.
    expect(await gone(mine)).toBe(false);
    expect(await gone(unfinished)).toBe(false);
    expect(await gone(bobs, 'bob')).toBe(false);
    expect(await gone(bobs, 'alice')).toBe(true);
    expect((await app.reservations()).find((r) => r.id === bobs.split('/').pop())).toMatchObject({
      username: 'bob',
      bytes: 32 * KiB,
    });
    expect(await app.mediaList('alice')).toEqual([]);
    expect(await app.mediaList('bob')).toEqual([]);
  });

  test('a type refused only once concatenated: 415, no item, and the partials are gone', async () => {
    // Neither half alone has a type worth refusing at creation; together they are HTML.
    const html = Buffer.from(
      `<!doctype html><html><body>${'x'.repeat(9000)}<script>alert(1)</script></body></html>`,
    );
    const parts = [await partial(html.subarray(0, 4000)), await partial(html.subarray(4000))];
    const res = await final(parts);
    await expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    for (const p of parts) expect(await gone(p)).toBe(true);
    expect(await app.reservations()).toEqual([]);
    expect(await app.mediaList()).toEqual([]);
    expect(await app.blobFiles()).toEqual([]);
  });

  test('a concatenation past the upload limit is 413, and its partials are gone', async () => {
    const data = pdfOfSize(MAX + 1);
    const parts = [await partial(data.subarray(0, 5 * MiB)), await partial(data.subarray(5 * MiB))];
    await expectError(await final(parts), 413, 'PAYLOAD_TOO_LARGE');
    for (const p of parts) expect(await gone(p)).toBe(true);
    expect(await app.reservations()).toEqual([]);
    expect(await app.mediaList()).toEqual([]);
  });

  test('a partial listed twice is not a valid final, and decides nothing', async () => {
    const part = await partial(pdfOfSize(16 * KiB));
    await expectError(await final([part, part]), 400, 'VALIDATION_FAILED');
    expect(await gone(part)).toBe(false);
  });

  test('tus-js-client with parallelUploads stores the file as one item and leaves no partials', async () => {
    const data = pdfOfSize(3 * MiB + 5);
    const outcome = await tusUpload(app, data, {
      parallelUploads: 4,
      chunkSize: 512 * KiB,
      metadata: { filename: 'parallel.pdf' },
    });
    expect(outcome.mediaId).toBeTruthy();
    // Four partials and the final: concatenation, not one upload.
    expect(outcome.methods.filter((m) => m === 'POST')).toHaveLength(5);
    expect(outcome.completedBy).toBe('POST');
    const items = await app.mediaList();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ id: outcome.mediaId, filename: 'parallel.pdf', sha256: sha256(data) });
    expect(await app.reservations()).toEqual([]);
    expect(await app.uploadFiles()).toEqual([]);
  });

  test('tus-js-client with parallelUploads and uploadDataDuringCreation', async () => {
    const data = pdfOfSize(2 * MiB + 999);
    const outcome = await tusUpload(app, data, { parallelUploads: 3, uploadDataDuringCreation: true });
    const items = await app.mediaList();
    expect(items.map((i) => [i.id, i.sha256])).toEqual([[outcome.mediaId, sha256(data)]]);
    expect(await app.uploadFiles()).toEqual([]);
  });

  test('tus-js-client with parallelUploads: a refused type fails the upload and leaves nothing', async () => {
    const html = Buffer.from(`<html><body>${'y'.repeat(300 * KiB)}</body></html>`);
    await expect(tusUpload(app, html, { parallelUploads: 2 })).rejects.toThrow(/415/);
    expect(await app.mediaList()).toEqual([]);
    expect(await app.reservations()).toEqual([]);
    expect(await app.uploadFiles()).toEqual([]);
  });
});
