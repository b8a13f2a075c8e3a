import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, afterEach, describe, expect, test } from 'vitest';
import {
  TUS_HEADER,
  MiB,
  KiB,
  TUS,
  encodeMetadata,
  expectError,
  patchHeaders,
  pdfOfSize,
  rawRequest,
  sha256,
  startTusApp,
  tusUpload,
  type TusApp,
} from './tus-helpers.ts';

/** tus's checksum and creation-defer-length extensions, and every malformed tus header. */

const MAX = 1 * MiB;
const QUOTA = 3 * MiB;

let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_MAX_UPLOAD_BYTES: String(MAX), STOWAGE_QUOTA_BYTES: String(QUOTA) });
});
afterAll(async () => {
  await app?.close();
});
afterEach(async () => {
  // Every test leaves nothing behind: no upload, no reservation, no item.
  for (const { id } of await app.reservations()) {
    await app.request('DELETE', `${TUS}/${id}`, { headers: TUS_HEADER });
  }
  for (const item of await app.mediaList()) await app.request('DELETE', `/api/media/${item.id}`);
  expect(await app.reservations()).toEqual([]);
  expect(await app.uploadFiles()).toEqual([]);
});

function digest(algorithm: string, data: Buffer): string {
  return crypto.createHash(algorithm).update(data).digest('base64');
}

async function offsetOf(uploadPath: string): Promise<string | null> {
  const head = await app.request('HEAD', uploadPath, { headers: TUS_HEADER });
  expect(head.status).toBe(200);
  return head.headers.get('upload-offset');
}

async function storedSize(uploadPath: string): Promise<number> {
  return (await fs.stat(path.join(app.dir, 'uploads', uploadPath.split('/').pop()!))).size;
}

describe('checksum', () => {
  test.each(['sha1', 'sha256', 'md5'])(
    '%s: a matching PATCH moves the offset; a mismatched one is 460 and keeps none of its bytes',
    async (algorithm) => {
      const data = pdfOfSize(96 * KiB);
      const uploadPath = await app.create(data.length);
      const first = data.subarray(0, 32 * KiB);
      const ok = await app.request('PATCH', uploadPath, {
        headers: { ...patchHeaders(0), 'upload-checksum': `${algorithm} ${digest(algorithm, first)}` },
        body: first,
      });
      expect(ok.status).toBe(204);
      expect(ok.headers.get('upload-offset')).toBe(String(32 * KiB));

      const second = data.subarray(32 * KiB, 64 * KiB);
      const wrongDigest = digest(algorithm, Buffer.concat([second.subarray(1), Buffer.from('x')]));
      const bad = await app.request('PATCH', uploadPath, {
        headers: { ...patchHeaders(32 * KiB), 'upload-checksum': `${algorithm} ${wrongDigest}` },
        body: second,
      });
      await expectError(bad, 460, 'CHECKSUM_MISMATCH');
      expect(await offsetOf(uploadPath)).toBe(String(32 * KiB));
      expect(await storedSize(uploadPath)).toBe(32 * KiB);

      // Sent again with the right digest, the rest completes the file byte for byte.
      const rest = data.subarray(32 * KiB);
      const done = await app.request('PATCH', uploadPath, {
        headers: { ...patchHeaders(32 * KiB), 'upload-checksum': `${algorithm} ${digest(algorithm, rest)}` },
        body: rest,
      });
      expect(done.status).toBe(204);
      const item = (await app.mediaList()).find((i) => i.id === done.headers.get('media-id'));
      expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
    },
  );

  test('an unsupported algorithm is 400 VALIDATION_FAILED and the offset does not move', async () => {
    const uploadPath = await app.create(64 * KiB);
    const body = pdfOfSize(16 * KiB);
    for (const algorithm of ['crc32', 'sha512', 'SHA1']) {
      const res = await app.request('PATCH', uploadPath, {
        headers: { ...patchHeaders(0), 'upload-checksum': `${algorithm} ${digest('sha1', body)}` },
        body,
      });
      await expectError(res, 400, 'VALIDATION_FAILED');
    }
    expect(await offsetOf(uploadPath)).toBe('0');
  });

  test('a malformed Upload-Checksum is 400 BAD_REQUEST', async () => {
    const uploadPath = await app.create(64 * KiB);
    const body = pdfOfSize(16 * KiB);
    for (const value of ['sha1', 'sha1 ', 'sha1 not*base64', `sha1 ${digest('sha1', body)} extra`]) {
      const res = await app.request('PATCH', uploadPath, {
        headers: { ...patchHeaders(0), 'upload-checksum': value },
        body,
      });
      await expectError(res, 400, 'BAD_REQUEST');
    }
    expect(await offsetOf(uploadPath)).toBe('0');
  });

  test('creation-with-upload: a matching digest keeps the bytes, a mismatched one leaves no upload', async () => {
    const data = pdfOfSize(64 * KiB);
    const head = data.subarray(0, 16 * KiB);
    const post = (checksum: string) =>
      app.request('POST', TUS, {
        headers: {
          ...TUS_HEADER,
          'upload-length': String(data.length),
          'content-type': 'application/offset+octet-stream',
          'upload-checksum': checksum,
        },
        body: head,
      });
    const bad = await post(`sha256 ${digest('sha256', data.subarray(1, 16 * KiB + 1))}`);
    await expectError(bad, 460, 'CHECKSUM_MISMATCH');
    expect(bad.headers.get('location')).toBeNull();
    expect(await app.reservations()).toEqual([]);
    expect(await app.uploadFiles()).toEqual([]);

    const ok = await post(`sha256 ${digest('sha256', head)}`);
    expect(ok.status).toBe(201);
    expect(ok.headers.get('upload-offset')).toBe(String(16 * KiB));
  });

  test('tus-js-client is unaffected: it sends no checksum and its upload is stored', async () => {
    const data = pdfOfSize(200 * KiB);
    const outcome = await tusUpload(app, data, { chunkSize: 64 * KiB });
    const item = (await app.mediaList()).find((i) => i.id === outcome.mediaId);
    expect(item?.sha256).toBe(sha256(data));
  });
});

describe('creation-defer-length', () => {
  async function createDeferred(): Promise<string> {
    const res = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-defer-length': '1' },
    });
    expect(res.status).toBe(201);
    return new URL(res.headers.get('location')!, app.base).pathname;
  }

  test('the length is declared by a later PATCH, and the upload completes with it', async () => {
    const data = pdfOfSize(100 * KiB);
    const uploadPath = await createDeferred();
    const head = await app.request('HEAD', uploadPath, { headers: TUS_HEADER });
    expect(head.headers.get('upload-defer-length')).toBe('1');
    expect(head.headers.get('upload-length')).toBeNull();

    const first = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: data.subarray(0, 60 * KiB),
    });
    expect(first.status).toBe(204);
    // Bytes received count toward the quota as they arrive.
    const id = uploadPath.split('/').pop()!;
    expect(await app.reservations()).toEqual([{ id, username: 'alice', bytes: 60 * KiB }]);

    const last = await app.request('PATCH', uploadPath, {
      headers: { ...patchHeaders(60 * KiB), 'upload-length': String(data.length) },
      body: data.subarray(60 * KiB),
    });
    expect(last.status).toBe(204);
    const item = (await app.mediaList()).find((i) => i.id === last.headers.get('media-id'));
    expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
  });

  test('tus-js-client with uploadLengthDeferred stores the file', async () => {
    const data = pdfOfSize(150 * KiB);
    const outcome = await tusUpload(app, data, { chunkSize: 64 * KiB, uploadLengthDeferred: true });
    const item = (await app.mediaList()).find((i) => i.id === outcome.mediaId);
    expect(item?.sha256).toBe(sha256(data));
  });

  test('bytes past the upload limit: 413 as soon as the limit is passed, and nothing is left', async () => {
    const uploadPath = await createDeferred();
    const almost = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: pdfOfSize(MAX - 10),
    });
    expect(almost.status).toBe(204);
    const over = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(MAX - 10),
      body: Buffer.alloc(11),
    });
    await expectError(over, 413, 'PAYLOAD_TOO_LARGE');
    expect((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status).toBe(404);
  });

  test('a body streamed without Content-Length past the limit is cut off with 413', async () => {
    const uploadPath = await createDeferred();
    const chunk = pdfOfSize(64 * KiB);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // Well past the limit; the server answers long before the end.
        if (sent >= 4 * MAX) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${app.base}${uploadPath}`, {
      method: 'PATCH',
      headers: { ...app.bearer('alice'), ...patchHeaders(0) },
      body,
      duplex: 'half',
    });
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status).toBe(404);
  });

  test('bytes past the quota: 413 QUOTA_EXCEEDED, with uploads of the same user holding the rest', async () => {
    // 2.5 MiB of the 3 MiB quota are held by two declared uploads.
    const held = [await app.create(MAX), await app.create(MAX), await app.create(MAX / 2)];
    const uploadPath = await createDeferred();
    const res = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: pdfOfSize(MAX / 2 + 1),
    });
    await expectError(res, 413, 'QUOTA_EXCEEDED');
    expect((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status).toBe(404);
    for (const p of held) expect(await offsetOf(p)).toBe('0');
  });

  test('a declared length past the limit or the quota is 413, and a length below the offset 400', async () => {
    const tooLong = await createDeferred();
    const res = await app.request('PATCH', tooLong, {
      headers: { ...patchHeaders(0), 'upload-length': String(MAX + 1) },
      body: Buffer.alloc(0),
    });
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');

    const shrinking = await createDeferred();
    expect(
      (await app.request('PATCH', shrinking, { headers: patchHeaders(0), body: pdfOfSize(2 * KiB) })).status,
    ).toBe(204);
    const below = await app.request('PATCH', shrinking, {
      headers: { ...patchHeaders(2 * KiB), 'upload-length': String(KiB) },
      body: Buffer.alloc(0),
    });
    await expectError(below, 400, 'BAD_REQUEST');
    expect(await offsetOf(shrinking)).toBe(String(2 * KiB));
  });

  test('Upload-Length cannot change once declared', async () => {
    const uploadPath = await app.create(10 * KiB);
    const res = await app.request('PATCH', uploadPath, {
      headers: { ...patchHeaders(0), 'upload-length': String(20 * KiB) },
      body: Buffer.alloc(0),
    });
    await expectError(res, 400, 'BAD_REQUEST');
  });
});

describe('malformed tus headers', () => {
  const bad = (headers: Record<string, string>) =>
    app.request('POST', TUS, { headers: { ...TUS_HEADER, ...headers } });

  test.each([
    ['Upload-Length', { 'upload-length': 'abc' }],
    ['Upload-Length', { 'upload-length': '-5' }],
    ['Upload-Length', { 'upload-length': '1.5' }],
    ['Upload-Length', { 'upload-length': '1e3' }],
    ['Upload-Length', { 'upload-length': ' ' }],
    ['Upload-Length', { 'upload-length': '99999999999999999999' }],
    ['Upload-Defer-Length', { 'upload-defer-length': '2' }],
    ['Upload-Defer-Length', { 'upload-defer-length': 'yes' }],
    ['Upload-Metadata', { 'upload-length': '10', 'upload-metadata': 'filename !!!' }],
    ['Upload-Metadata', { 'upload-length': '10', 'upload-metadata': 'filename YQ== extra' }],
    ['Upload-Metadata', { 'upload-length': '10', 'upload-metadata': 'filename YQ==,filename Yg==' }],
    ['Upload-Metadata', { 'upload-length': '10', 'upload-metadata': ',' }],
  ])('a creation with a malformed %s is 400 BAD_REQUEST and creates nothing', async (_name, headers) => {
    await expectError(await bad(headers), 400, 'BAD_REQUEST');
    expect(await app.reservations()).toEqual([]);
  });

  test.each([
    ['metadata.visibility', { 'upload-metadata': encodeMetadata({ visibility: 'everyone' }) }],
    ['headers.upload-concat', { 'upload-concat': 'sometimes' }],
    ['headers.upload-concat', { 'upload-concat': 'final;' }],
    ['headers.upload-concat', { 'upload-concat': 'final' }],
  ])('a creation with an invalid %s is 400 VALIDATION_FAILED', async (issuePath, headers) => {
    const body = await expectError(
      await bad({ 'upload-length': '10', ...headers }),
      400,
      'VALIDATION_FAILED',
    );
    expect(body.error.details.issues).toEqual([{ path: issuePath, message: expect.any(String) }]);
    expect(await app.reservations()).toEqual([]);
  });

  test.each(['abc', '-1', '1.5', '', '0x10'])(
    'a PATCH with Upload-Offset %j is 400 BAD_REQUEST',
    async (offset) => {
      const uploadPath = await app.create(64 * KiB);
      const res = await rawRequest(app, 'PATCH', uploadPath, {
        headers: {
          ...app.bearer('alice'),
          ...patchHeaders(0),
          'upload-offset': offset,
          'content-length': '16',
        },
        body: Buffer.alloc(16),
      });
      expectError(res, 400, 'BAD_REQUEST');
      expect(await offsetOf(uploadPath)).toBe('0');
    },
  );

  test('a PATCH without Upload-Offset is 400 BAD_REQUEST', async () => {
    const uploadPath = await app.create(64 * KiB);
    const headers: Record<string, string> = { ...patchHeaders(0) };
    delete headers['upload-offset'];
    await expectError(
      await app.request('PATCH', uploadPath, { headers, body: Buffer.alloc(16) }),
      400,
      'BAD_REQUEST',
    );
  });

  test('an unsupported Tus-Resumable is 412 with the version the server speaks', async () => {
    const uploadPath = await app.create(64 * KiB);
    for (const [method, url] of [
      ['POST', TUS],
      ['HEAD', uploadPath],
      ['PATCH', uploadPath],
      ['DELETE', uploadPath],
    ] as const) {
      const res = await app.request(method, url, {
        headers: { ...patchHeaders(0), 'tus-resumable': '0.2.2', 'upload-length': '10' },
        ...(method === 'PATCH' ? { body: Buffer.alloc(4) } : {}),
      });
      expect(res.status).toBe(412);
      expect(res.headers.get('tus-version')).toBe('1.0.0');
      if (method !== 'HEAD') await expectError(res, 412, 'PRECONDITION_FAILED');
    }
    expect(await offsetOf(uploadPath)).toBe('0');
  });

  test('a creation with a body that is not application/offset+octet-stream is 415', async () => {
    const res = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-length': '10', 'content-type': 'application/json' },
      body: '{}',
    });
    await expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(await app.reservations()).toEqual([]);
  });
});
