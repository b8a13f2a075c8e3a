import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  TUS_HEADER,
  MiB,
  KiB,
  TUS,
  expectError,
  patchHeaders,
  pdfOfSize,
  rawRequest,
  startTusApp,
  type TusApp,
} from './tus-helpers.ts';

/** The tus protocol rules, spoken raw over HTTP where the exact request matters. */

const MAX = 1536 * MiB;
const QUOTA = 1280 * MiB;
const ORIGIN = 'https://app.example.com';

let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({
    STOWAGE_MAX_UPLOAD_BYTES: String(MAX),
    STOWAGE_QUOTA_BYTES: String(QUOTA),
    STOWAGE_UPLOAD_EXPIRY: '60',
    STOWAGE_CORS_ORIGINS: ORIGIN,
  });
});
afterAll(async () => {
  await app?.close();
});

async function terminate(uploadPath: string, as: 'alice' | 'bob' = 'alice'): Promise<void> {
  expect((await app.request('DELETE', uploadPath, { as, headers: TUS_HEADER })).status).toBe(204);
}

describe('discovery and creation', () => {
  test('OPTIONS needs no token and lists tus 1.0.0 with every extension and the checksum algorithms', async () => {
    const res = await app.request('OPTIONS', TUS, { as: null });
    expect(res.status).toBe(204);
    expect(res.headers.get('tus-version')).toBe('1.0.0');
    const extensions = (res.headers.get('tus-extension') ?? '').split(',').map((e) => e.trim());
    expect(extensions.sort()).toEqual(
      [
        'checksum',
        'concatenation',
        'creation',
        'creation-defer-length',
        'creation-with-upload',
        'expiration',
        'termination',
      ].sort(),
    );
    const algorithms = (res.headers.get('tus-checksum-algorithm') ?? '').split(',').map((a) => a.trim());
    expect(algorithms).toEqual(expect.arrayContaining(['sha1', 'sha256', 'md5']));
    expect(res.headers.get('tus-max-size')).toBe(String(MAX));
  });

  test('a request without Tus-Resumable is refused with 412 PRECONDITION_FAILED', async () => {
    const res = await app.request('POST', TUS, { headers: { 'upload-length': '10' } });
    await expectError(res, 412, 'PRECONDITION_FAILED');
    expect(await app.reservations()).toEqual([]);
  });

  test('creation answers 201 with an opaque Location and Upload-Expires', async () => {
    const before = Date.now();
    const res = await app.request('POST', TUS, { headers: { ...TUS_HEADER, 'upload-length': '100' } });
    expect(res.status).toBe(201);
    expect(res.headers.get('tus-resumable')).toBe('1.0.0');
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/api\/media\/uploads\/[A-Za-z0-9_-]{22}$/);
    const expires = Date.parse(res.headers.get('upload-expires') ?? '');
    expect(expires).toBeGreaterThan(before);
    expect(expires).toBeLessThanOrEqual(before + 61_000);
    await terminate(location);
  });

  test('a creation with neither Upload-Length nor Upload-Defer-Length, or with both, is refused', async () => {
    const cases: Record<string, string>[] = [{}, { 'upload-length': '10', 'upload-defer-length': '1' }];
    for (const headers of cases) {
      const res = await app.request('POST', TUS, { headers: { ...TUS_HEADER, ...headers } });
      await expectError(res, 400, 'VALIDATION_FAILED');
    }
    expect(await app.reservations()).toEqual([]);
  });
});

describe('limits at creation and on the bytes', () => {
  test('Upload-Length over STOWAGE_MAX_UPLOAD_BYTES → 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-length': String(MAX + 1) },
    });
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(await app.reservations()).toEqual([]);
    expect(await app.uploadFiles()).toEqual([]);
  });

  test('a declared length over the quota → 413 QUOTA_EXCEEDED', async () => {
    const res = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-length': String(QUOTA + 1) },
    });
    await expectError(res, 413, 'QUOTA_EXCEEDED');
    expect(await app.reservations()).toEqual([]);
  });

  test('declared lengths are reserved: the second of two that together pass the quota is refused', async () => {
    const first = await app.create(700 * MiB);
    const second = await app.request('POST', TUS, {
      headers: { ...TUS_HEADER, 'upload-length': String(700 * MiB) },
    });
    await expectError(second, 413, 'QUOTA_EXCEEDED');
    // Someone else's quota is their own.
    await terminate(await app.create(700 * MiB, { as: 'bob' }), 'bob');
    await terminate(first);
    const third = await app.create(700 * MiB);
    await terminate(third);
    expect(await app.reservations()).toEqual([]);
  });

  test('more bytes than declared → 413, and the upload keeps what it had', async () => {
    const uploadPath = await app.create(10 * KiB);
    const res = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: pdfOfSize(11 * KiB),
    });
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    const head = await app.request('HEAD', uploadPath, { headers: TUS_HEADER });
    expect(head.headers.get('upload-offset')).toBe('0');
    await terminate(uploadPath);
  });

  test("an offset that is not the upload's → 409 CONFLICT without changing it", async () => {
    const uploadPath = await app.create(10 * KiB);
    const data = pdfOfSize(10 * KiB);
    const wrong = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(5),
      body: data.subarray(5),
    });
    await expectError(wrong, 409, 'CONFLICT');
    const right = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: data.subarray(0, 6 * KiB),
    });
    expect(right.status).toBe(204);
    const again = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: data.subarray(0, 6 * KiB),
    });
    await expectError(again, 409, 'CONFLICT');
    expect(
      (await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).headers.get('upload-offset'),
    ).toBe(String(6 * KiB));
    await terminate(uploadPath);
  });
});

describe('ownership and authentication', () => {
  test("someone else's upload is 404 on HEAD, PATCH and DELETE, and stays the owner's", async () => {
    const data = pdfOfSize(8 * KiB);
    const uploadPath = await app.create(data.length);
    for (const as of ['bob', 'root'] as const) {
      // A HEAD response has no body: only its status tells.
      expect((await app.request('HEAD', uploadPath, { as, headers: TUS_HEADER })).status).toBe(404);
      const patch = await app.request('PATCH', uploadPath, { as, headers: patchHeaders(0), body: data });
      await expectError(patch, 404, 'NOT_FOUND');
      await expectError(
        await app.request('DELETE', uploadPath, { as, headers: TUS_HEADER }),
        404,
        'NOT_FOUND',
      );
    }
    const head = await app.request('HEAD', uploadPath, { headers: TUS_HEADER });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe('0');
    const done = await app.request('PATCH', uploadPath, { headers: patchHeaders(0), body: data });
    expect(done.status).toBe(204);
    const mediaId = done.headers.get('media-id');
    expect((await app.mediaList()).map((i) => i.id)).toContain(mediaId);
    expect((await app.mediaList('bob')).map((i) => i.id)).not.toContain(mediaId);
  });

  test('no token → 401 UNAUTHENTICATED on every upload request', async () => {
    const uploadPath = await app.create(10);
    const requests: [string, string, Record<string, string>][] = [
      ['POST', TUS, { ...TUS_HEADER, 'upload-length': '10' }],
      ['HEAD', uploadPath, TUS_HEADER],
      ['PATCH', uploadPath, patchHeaders(0)],
      ['DELETE', uploadPath, TUS_HEADER],
    ];
    for (const [method, url, headers] of requests) {
      const res = await app.request(method, url, {
        as: null,
        headers,
        ...(method === 'PATCH' ? { body: 'x' } : {}),
      });
      expect(res.status).toBe(401);
      if (method !== 'HEAD') await expectError(res, 401, 'UNAUTHENTICATED');
    }
    expect(
      (await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).headers.get('upload-offset'),
    ).toBe('0');
    await terminate(uploadPath);
  });
});

describe('upload ids', () => {
  test('ids that try to leave the store are 404 and touch nothing outside it', async () => {
    // A victim beside the store, shaped like an upload, and reservations naming it: even so,
    // nothing may reach it through an id.
    const victim = path.join(app.dir, 'victim');
    await fs.writeFile(victim, 'do not touch');
    await fs.writeFile(`${victim}.json`, JSON.stringify({ id: '../victim', size: 100, offset: 12 }));
    const names = ['../victim', '..%2Fvictim', '%2e%2e%2fvictim', '..\\victim', '../../etc/passwd'];
    for (const name of names) {
      await app.services.database.db
        .insertInto('reservations')
        .values({
          id: decodeURIComponent(name),
          username: 'alice',
          bytes: 1,
          expires_at: Date.now() + 60_000,
        })
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
    const auth = app.bearer('alice');
    const ids = [
      ...names.map((n) => n.replace(/\//g, '%2F')),
      '..%252Fvictim',
      'A'.repeat(23),
      'A'.repeat(80),
    ];
    const paths = [...ids.map((id) => `${TUS}/${id}`), `${TUS}/../../victim`, `${TUS}/%2e%2e/%2e%2e/victim`];
    for (const url of paths) {
      for (const [method, headers] of [
        ['HEAD', TUS_HEADER],
        ['PATCH', patchHeaders(12)],
        ['DELETE', TUS_HEADER],
      ] as const) {
        const res = await rawRequest(app, method, url, {
          headers: { ...auth, ...headers },
          ...(method === 'PATCH' ? { body: Buffer.from('overwritten!') } : {}),
        });
        expect({ url, method, status: res.status }).toEqual({ url, method, status: 404 });
        if (method !== 'HEAD') expectError(res, 404, 'NOT_FOUND');
      }
    }
    expect(await fs.readFile(victim, 'utf8')).toBe('do not touch');
    expect(JSON.parse(await fs.readFile(`${victim}.json`, 'utf8'))).toMatchObject({ offset: 12 });
    await app.services.database.db.deleteFrom('reservations').execute();
  });

  test("an id longer than any route parameter is refused in the contract's error shape too", async () => {
    // Past the router's parameter limit the request never reaches the upload routes: a 400 from
    // the framework is as good as the 404, as long as it speaks the contract.
    const res = await rawRequest(app, 'DELETE', `${TUS}/${'a'.repeat(300)}`, {
      headers: { ...app.bearer('alice'), ...TUS_HEADER },
    });
    const expected = res.status === 400 ? 'BAD_REQUEST' : 'NOT_FOUND';
    expectError(res, res.status === 400 ? 400 : 404, expected);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });
});
