import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  TUS_HEADER,
  KiB,
  TUS,
  expectError,
  patchHeaders,
  pdfOfSize,
  rawRequest,
  sha256,
  startTusApp,
  type TusApp,
} from './tus-helpers.ts';

/**
 * Security review, finding 1: the upload id comes from the request path alone. The route checks
 * the id in its path, so whatever else the URL carries (a query string, encoded slashes, dot
 * segments, `;` parameters, a `#`, doubled slashes) must never let a request reach another
 * user's upload: not read its offset or metadata, not append to it, not complete it as an item
 * of the caller, not delete it, not release its quota reservation.
 */

const QUOTA = 4 * 1024 * KiB;
const BOB_LENGTH = 64 * KiB;

let app: TusApp;
let bobFile: Buffer;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_QUOTA_BYTES: String(QUOTA), STOWAGE_UPLOAD_EXPIRY: '600' });
  bobFile = pdfOfSize(BOB_LENGTH);
});
afterAll(async () => {
  await app?.close();
});

/** bob's upload with its first 10 KiB received, and alice's own (empty) upload of the same size. */
async function setUp(): Promise<{ theirs: string; mine: string; theirsId: string; mineId: string }> {
  const theirs = await app.create(BOB_LENGTH, { as: 'bob', metadata: { filename: 'bob.pdf' } });
  const first = await app.request('PATCH', theirs, {
    as: 'bob',
    headers: patchHeaders(0),
    body: bobFile.subarray(0, 10 * KiB),
  });
  expect(first.status).toBe(204);
  const mine = await app.create(BOB_LENGTH, { as: 'alice' });
  return { theirs, mine, theirsId: theirs.split('/').pop()!, mineId: mine.split('/').pop()! };
}

/** bob's upload is exactly as he left it, and he can still finish it as his own item. */
async function expectTheirsUntouched(theirs: string, theirsId: string): Promise<void> {
  const head = await app.request('HEAD', theirs, { as: 'bob', headers: TUS_HEADER });
  expect(head.status).toBe(200);
  expect(head.headers.get('upload-offset')).toBe(String(10 * KiB));
  const reservation = (await app.reservations()).find((r) => r.id === theirsId);
  expect(reservation).toMatchObject({ username: 'bob', bytes: BOB_LENGTH });
  expect(await app.mediaList('alice')).toEqual([]);
  const rest = await app.request('PATCH', theirs, {
    as: 'bob',
    headers: patchHeaders(10 * KiB),
    body: bobFile.subarray(10 * KiB),
  });
  expect(rest.status).toBe(204);
  const items = await app.mediaList('bob');
  expect(items.map((i) => i.id)).toContain(rest.headers.get('media-id'));
  expect(items.find((i) => i.id === rest.headers.get('media-id'))?.sha256).toBe(sha256(bobFile));
  expect(await app.mediaList('alice')).toEqual([]);
}

/** Every way a URL could say "THEIRS" after the id the route checked. */
function tricks(mineId: string, theirsId: string): string[] {
  return [
    `${TUS}/${mineId}?x=/${theirsId}`,
    `${TUS}/${mineId}?x=%2F${theirsId}`,
    `${TUS}/${mineId}?/../${theirsId}`,
    `${TUS}/${mineId}?${theirsId}`,
    `${TUS}/${mineId}%2F${theirsId}`,
    `${TUS}/${mineId}%2f..%2f${theirsId}`,
    `${TUS}/${mineId}/../${theirsId}`,
    `${TUS}/${mineId}/%2e%2e/${theirsId}`,
    `${TUS}/${mineId};x=/${theirsId}`,
    `${TUS}/${mineId};/${theirsId}`,
    `${TUS}/${mineId}%23/${theirsId}`,
    `${TUS}/${mineId}#/${theirsId}`,
    `${TUS}/${mineId}//${theirsId}`,
    `${TUS}//${mineId}?x=//${theirsId}`,
    `${TUS}/${mineId}?x=${encodeURIComponent(`http://h${TUS}/${theirsId}`)}`,
  ];
}

/** Answers that touch nothing: the caller's own upload, or none at all (404, 400). */
function expectHarmless(status: number): void {
  expect([200, 204, 400, 404, 409, 412, 415]).toContain(status);
}

describe("another user's upload cannot be reached through tricks in the URL", () => {
  test('HEAD never reveals their offset, length or metadata', async () => {
    const { theirs, mineId, theirsId } = await setUp();
    for (const url of tricks(mineId, theirsId)) {
      const res = await rawRequest(app, 'HEAD', url, {
        headers: { ...app.bearer('alice'), ...TUS_HEADER },
      });
      expectHarmless(res.status);
      // Alice's own upload is empty: an offset other than 0 would be bob's.
      if (res.status === 200) {
        expect(res.headers['upload-offset'], url).toBe('0');
        expect(res.headers['upload-metadata'] ?? '', url).not.toContain(
          Buffer.from('bob').toString('base64'),
        );
      }
    }
    await expectTheirsUntouched(theirs, theirsId);
  });

  test('PATCH never appends to or completes their upload as an item of the caller', async () => {
    const { theirs, mineId, theirsId } = await setUp();
    for (const url of tricks(mineId, theirsId)) {
      // The rest of bob's file at bob's offset: accepted only by bob's upload.
      const res = await rawRequest(app, 'PATCH', url, {
        headers: {
          ...app.bearer('alice'),
          ...patchHeaders(10 * KiB),
          'content-length': String(BOB_LENGTH - 10 * KiB),
        },
        body: bobFile.subarray(10 * KiB),
      });
      expectHarmless(res.status);
      expect(res.headers['media-id'], url).toBeUndefined();
    }
    await expectTheirsUntouched(theirs, theirsId);
  });

  test('DELETE never removes their upload or releases their quota reservation', async () => {
    for (const trick of tricks('MINE', 'THEIRS').keys()) {
      // Each DELETE may terminate alice's own upload, so every trick gets a fresh pair.
      const { theirs, mineId, theirsId } = await setUp();
      const url = tricks(mineId, theirsId)[trick]!;
      const res = await rawRequest(app, 'DELETE', url, {
        headers: { ...app.bearer('alice'), ...TUS_HEADER },
      });
      expectHarmless(res.status);
      const reservation = (await app.reservations()).find((r) => r.id === theirsId);
      expect(reservation, url).toMatchObject({ username: 'bob', bytes: BOB_LENGTH });
      const head = await app.request('HEAD', theirs, { as: 'bob', headers: TUS_HEADER });
      expect(head.status, url).toBe(200);
      expect(head.headers.get('upload-offset'), url).toBe(String(10 * KiB));
      // When alice's request did act, it acted on her own upload, and released her reservation.
      if (res.status === 204) expect((await app.reservations()).map((r) => r.id)).not.toContain(mineId);
      await app.request('DELETE', theirs, { as: 'bob', headers: TUS_HEADER });
      await app.request('DELETE', `${TUS}/${mineId}`, { as: 'alice', headers: TUS_HEADER });
    }
  });

  test('the plain path of their upload is 404 for the caller, for every method', async () => {
    const { theirs, theirsId } = await setUp();
    for (const method of ['HEAD', 'PATCH', 'DELETE']) {
      const res = await rawRequest(app, method, theirs, {
        headers: {
          ...app.bearer('alice'),
          ...(method === 'PATCH'
            ? { ...patchHeaders(10 * KiB), 'content-length': String(BOB_LENGTH - 10 * KiB) }
            : TUS_HEADER),
        },
        ...(method === 'PATCH' ? { body: bobFile.subarray(10 * KiB) } : {}),
      });
      expect(res.status).toBe(404);
      if (method !== 'HEAD') expectError(res, 404, 'NOT_FOUND');
    }
    await expectTheirsUntouched(theirs, theirsId);
  });
});

describe('PATCH content type', () => {
  test.each(['text/plain', 'application/json', 'application/octet-stream', 'image/png'])(
    'a PATCH with Content-Type %s is refused with 415 and the offset does not move',
    async (contentType) => {
      const upload = await app.create(1024);
      const body = contentType === 'application/json' ? '{"a":1}' : 'x'.repeat(16);
      const res = await app.request('PATCH', upload, {
        headers: { ...patchHeaders(0), 'content-type': contentType },
        body,
      });
      await expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
      const head = await app.request('HEAD', upload, { headers: TUS_HEADER });
      expect(head.headers.get('upload-offset')).toBe('0');
      await app.request('DELETE', upload, { headers: TUS_HEADER });
    },
  );

  test('a PATCH without Content-Type is refused with 415', async () => {
    const upload = await app.create(1024);
    const res = await rawRequest(app, 'PATCH', upload, {
      headers: {
        ...app.bearer('alice'),
        ...TUS_HEADER,
        'upload-offset': '0',
        'content-length': '16',
      },
      body: Buffer.alloc(16),
    });
    expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await app.request('DELETE', upload, { headers: TUS_HEADER });
  });
});
