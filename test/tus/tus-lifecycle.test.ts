import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { IngestSource } from '../../src/uploads/ingest.ts';
import { until } from '../helpers/common.ts';
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

/** Expiry, browsers (CORS) and concurrent requests on one upload. */

const ORIGIN = 'https://app.example.com';

let app: TusApp;

beforeAll(async () => {
  app = await startTusApp({ STOWAGE_UPLOAD_EXPIRY: '60', STOWAGE_CORS_ORIGINS: ORIGIN });
});
afterAll(async () => {
  await app?.close();
});

describe('expiry', () => {
  test('an unfinished upload past Upload-Expires is swept: its file, its reservation, and the upload', async () => {
    const uploadPath = await app.create(64 * KiB);
    const id = uploadPath.split('/').pop()!;
    const patch = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: pdfOfSize(16 * KiB),
    });
    expect(patch.status).toBe(204);
    expect(Date.parse(patch.headers.get('upload-expires') ?? '')).toBeGreaterThan(Date.now());
    expect(await app.uploadFiles()).toEqual([id, `${id}.json`]);

    // Two minutes pass: the upload's creation time and its reservation both move back.
    const info = path.join(app.dir, 'uploads', `${id}.json`);
    const stored = JSON.parse(await fs.readFile(info, 'utf8')) as { creation_date: string };
    await fs.writeFile(
      info,
      JSON.stringify({ ...stored, creation_date: new Date(Date.now() - 120_000).toISOString() }),
    );
    await app.services.database.db
      .updateTable('reservations')
      .set({ expires_at: Date.now() - 60_000 })
      .where('id', '=', id)
      .execute();
    await app.services.sweeper.sweep(24 * 3_600_000);

    expect(await app.uploadFiles()).toEqual([]);
    expect(await app.reservations()).toEqual([]);
    expect([404, 410]).toContain((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status);
    const late = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(16 * KiB),
      body: pdfOfSize(1 * KiB),
    });
    expect([404, 410]).toContain(late.status);
  });

  test('an upload that has not expired survives a sweep', async () => {
    const uploadPath = await app.create(10 * KiB);
    await app.services.sweeper.sweep(24 * 3_600_000);
    expect((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status).toBe(200);
    expect((await app.request('DELETE', uploadPath, { headers: TUS_HEADER })).status).toBe(204);
  });
});

describe('browsers (CORS)', () => {
  const EXPOSED = [
    'location',
    'upload-offset',
    'upload-length',
    'upload-expires',
    'tus-resumable',
    'media-id',
  ];

  function exposed(res: Response): string[] {
    return (res.headers.get('access-control-expose-headers') ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase());
  }

  test('a preflight for a PATCH with tus headers from an allowed origin is allowed', async () => {
    const uploadPath = await app.create(10);
    for (const url of [TUS, uploadPath]) {
      const res = await app.request('OPTIONS', url, {
        as: null,
        headers: {
          origin: ORIGIN,
          'access-control-request-method': 'PATCH',
          'access-control-request-headers': 'tus-resumable,upload-offset,content-type,authorization',
        },
      });
      expect(res.status).toBeLessThan(300);
      expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
      expect(res.headers.get('access-control-allow-methods')).toMatch(/\bPATCH\b/);
      const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
      expect(allowed).toEqual(
        expect.arrayContaining(['tus-resumable', 'upload-offset', 'content-type', 'authorization']),
      );
    }
    const other = await app.request('OPTIONS', TUS, {
      as: null,
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'PATCH' },
    });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect((await app.request('DELETE', uploadPath, { headers: TUS_HEADER })).status).toBe(204);
  });

  test('responses to an allowed origin expose the tus headers and Media-Id', async () => {
    const data = pdfOfSize(8 * KiB);
    const cors = { origin: ORIGIN };
    const created = await app.request('POST', TUS, {
      headers: { ...cors, ...TUS_HEADER, 'upload-length': String(data.length) },
    });
    expect(created.status).toBe(201);
    const uploadPath = created.headers.get('location')!;
    const head = await app.request('HEAD', uploadPath, { headers: { ...cors, ...TUS_HEADER } });
    const done = await app.request('PATCH', uploadPath, {
      headers: { ...cors, ...patchHeaders(0) },
      body: data,
    });
    expect(done.status).toBe(204);
    expect(done.headers.get('media-id')).toBeTruthy();
    for (const res of [created, head, done]) {
      expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
      expect(exposed(res)).toEqual(expect.arrayContaining(EXPOSED));
    }
  });
});

describe('concurrent requests on one upload', () => {
  test('two PATCHes at the same offset: one is taken, the other gets 409, and the file is intact', async () => {
    const data = pdfOfSize(64 * KiB);
    const uploadPath = await app.create(data.length);
    const file = path.join(app.dir, 'uploads', uploadPath.split('/').pop()!);
    const headers = { ...app.bearer('alice'), ...patchHeaders(0), 'content-length': String(data.length) };
    // The first PATCH sends 16 KiB and stalls, holding the upload; the second brings the whole file.
    const first = rawRequest(app, 'PATCH', uploadPath, {
      headers,
      body: data.subarray(0, 16 * KiB),
      hold: true,
    });
    await until(async () => (await fs.stat(file)).size === 16 * KiB);
    const second = await rawRequest(app, 'PATCH', uploadPath, { headers, body: data });
    const stalled = await first;
    expect(stalled.status).toBe(204);
    expect(stalled.headers['upload-offset']).toBe(String(16 * KiB));
    expectError(second, 409, 'CONFLICT');

    const head = await app.request('HEAD', uploadPath, { headers: TUS_HEADER });
    expect(head.headers.get('upload-offset')).toBe(String(16 * KiB));
    const rest = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(16 * KiB),
      body: data.subarray(16 * KiB),
    });
    expect(rest.status).toBe(204);
    const item = (await app.mediaList()).find((i) => i.id === rest.headers.get('media-id'));
    expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
  });

  test('a second completing request while the first is being stored does not store the file twice', async () => {
    const data = pdfOfSize(16 * KiB);
    const uploadPath = await app.create(data.length);
    expect(
      (await app.request('PATCH', uploadPath, { headers: patchHeaders(0), body: data.subarray(0, 8 * KiB) }))
        .status,
    ).toBe(204);
    // Instrumentation: the real ingest, held at its start until the second request has its answer.
    const ingest = app.services.ingest;
    const receive = ingest.receive.bind(ingest);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const entered: (() => void)[] = [];
    const entries = [0, 1].map(
      (i) => new Promise<string>((resolve) => (entered[i] = () => resolve(`ingest ${i}`))),
    );
    let calls = 0;
    ingest.receive = async (source: IngestSource) => {
      entered[calls++]?.();
      await gate;
      return receive(source);
    };
    try {
      const completing = app.request('PATCH', uploadPath, {
        headers: patchHeaders(8 * KiB),
        body: data.subarray(8 * KiB),
      });
      await entries[0];
      const again = app.request('PATCH', uploadPath, {
        headers: patchHeaders(16 * KiB),
        body: Buffer.alloc(0),
      });
      const first = await Promise.race([again, entries[1]!]);
      expect(first).not.toBe('ingest 1');
      await expectError(first as Response, 409, 'CONFLICT');
      release();
      const done = await completing;
      expect(done.status).toBe(204);
      expect(done.headers.get('media-id')).toBeTruthy();
    } finally {
      release();
      delete (ingest as { receive?: unknown }).receive;
    }
    expect((await app.mediaList()).filter((i) => i.sha256 === sha256(data))).toHaveLength(1);
    expect(calls).toBe(1);
  });
});
