import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  BOUNDARY,
  eventually,
  expectError,
  fixture,
  KiB,
  multipart,
  pdf,
  pdfOfSize,
  png,
  sha256,
  startMediaApp,
  type Leftovers,
  type MediaApp,
  type MediaItem,
} from './media-helpers.ts';

const LIMIT = 64 * KiB;

let app: MediaApp;

beforeAll(async () => {
  app = await startMediaApp({ STOWAGE_MAX_UPLOAD_BYTES: String(LIMIT) });
});
afterAll(async () => {
  await app?.close();
});

/** What is stored now; a refused upload must leave exactly this behind. */
async function snapshot(): Promise<{ rows: number; files: Leftovers }> {
  return { rows: await app.rows(), files: await app.leftovers() };
}

async function expectUnchanged(before: { rows: number; files: Leftovers }): Promise<void> {
  await eventually(async () => expect(await snapshot()).toEqual(before));
  expect(before.files.incomplete).toEqual([]);
}

describe('a successful upload', () => {
  test('answers 201 with the item, its Location, and fields before or after the file', async () => {
    const image = await png(12, 7);
    const res = await app.upload([
      { name: 'visibility', value: 'public' },
      { name: 'file', filename: 'holiday.png', data: image, type: 'image/png' },
      { name: 'tags', value: ' Beach,sun , beach' },
    ]);
    expect(res.status).toBe(201);
    const item = res.json<MediaItem>();
    expect(res.headers.location).toBe(`/api/media/${item.id}`);
    expect(item).toEqual({
      id: item.id,
      filename: 'holiday.png',
      mimeType: 'image/png',
      size: image.length,
      sha256: sha256(image),
      owner: 'alice',
      visibility: 'public',
      tags: ['beach', 'sun'],
      image: { width: 12, height: 7 },
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      updatedAt: item.createdAt,
      urls: { content: `/api/media/${item.id}/content`, thumbnail: `/api/media/${item.id}/thumbnail` },
      // A generated PNG holds no camera data; its placeholder is still made from its pixels.
      takenAt: null,
      placeholder: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/),
      media: null,
      exif: null,
    });
    const fetched = await app.api('GET', `/api/media/${item.id}`);
    expect(fetched.json()).toEqual(item);
  });

  test('is private with no tags by default', async () => {
    const item = await app.uploadFile(pdf(), 'notes.pdf');
    expect(item).toMatchObject({ visibility: 'private', tags: [], image: null, mimeType: 'application/pdf' });
    expect(item.urls.thumbnail).toBeNull();
  });

  test('stores the type found in the bytes, not the claimed name or part type', async () => {
    const claimedJpeg = await app.upload([
      { name: 'file', filename: 'photo.jpg', data: pdf(), type: 'image/jpeg' },
    ]);
    expect(claimedJpeg.status).toBe(201);
    expect(claimedJpeg.json()).toMatchObject({
      mimeType: 'application/pdf',
      filename: 'photo.jpg',
      image: null,
    });

    const photo = await fixture('Canon_40D.jpg');
    const claimedPdf = await app.upload([
      { name: 'file', filename: 'scan.pdf', data: photo, type: 'application/pdf' },
    ]);
    expect(claimedPdf.status).toBe(201);
    expect(claimedPdf.json()).toMatchObject({
      mimeType: 'image/jpeg',
      size: photo.length,
      sha256: sha256(photo),
      image: { width: 100, height: 68 },
    });
  });

  test('ids are at least 128 bits, URL-safe and unique; blob keys come from the id, never the name', async () => {
    const items: MediaItem[] = [];
    for (let i = 0; i < 4; i++) items.push(await app.uploadFile(pdf(i), `holiday-secret-${i}.pdf`));
    for (const { id } of items) {
      expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(id.length * 6).toBeGreaterThanOrEqual(128);
    }
    expect(new Set(items.map((i) => i.id)).size).toBe(items.length);
    const { blobs } = await app.leftovers();
    for (const { id } of items) expect(blobs).toContain(`media/${id.slice(0, 2)}/${id}`);
    expect(blobs.filter((b) => /holiday|secret|\.pdf/.test(b))).toEqual([]);
  });
});

describe('refused content', () => {
  const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(120)]);
  const PE = (() => {
    const exe = Buffer.alloc(256);
    exe.write('MZ', 0);
    exe.writeUInt32LE(0x80, 0x3c);
    exe.write('PE\0\0', 0x80, 'latin1');
    return exe;
  })();
  const cases: [string, string, string, Buffer][] = [
    [
      'HTML named .jpg',
      'cute-cat.jpg',
      'image/jpeg',
      Buffer.from('<!doctype html><html><script>alert(document.cookie)</script></html>'),
    ],
    [
      'SVG',
      'logo.svg',
      'image/svg+xml',
      Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ],
    [
      'SVG with an XML prolog',
      'logo.png',
      'image/png',
      Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ],
    ['a shell script', 'run.pdf', 'application/pdf', Buffer.from('#!/bin/sh\nrm -rf ~\n')],
    ['an ELF executable', 'tool.png', 'image/png', ELF],
    ['a PE executable', 'setup.jpg', 'image/jpeg', PE],
    ['an empty file', 'empty.pdf', 'application/pdf', Buffer.alloc(0)],
  ];
  test.each(cases)('%s → 415, nothing stored', async (_what, filename, type, data) => {
    const before = await snapshot();
    const res = await app.upload([{ name: 'file', filename, data, type }]);
    expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectUnchanged(before);
  });

  test('without a token → 401, nothing stored', async () => {
    const before = await snapshot();
    const res = await app.upload([{ name: 'file', filename: 'a.pdf', data: pdf() }], null);
    expectError(res, 401, 'UNAUTHENTICATED');
    await expectUnchanged(before);
  });

  test('a body that is not multipart → 415', async () => {
    const json = await app.api('POST', '/api/media/upload', { body: { file: 'x' } });
    expectError(json, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const raw = await app.app.inject({
      method: 'POST',
      url: '/api/media/upload',
      headers: { authorization: `Bearer ${app.tokens.alice}`, 'content-type': 'application/pdf' },
      payload: pdf(),
    });
    expect(raw.statusCode).toBe(415);
    expect(raw.json()).toMatchObject({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', details: {} } });
  });
});

describe('the size limit counts the file', () => {
  test('exactly STOWAGE_MAX_UPLOAD_BYTES is accepted, with form fields around it', async () => {
    const file = pdfOfSize(LIMIT);
    const res = await app.upload([
      { name: 'tags', value: 'a'.repeat(60) },
      { name: 'file', filename: 'exact.pdf', data: file },
      { name: 'visibility', value: 'private' },
    ]);
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({ size: LIMIT, sha256: sha256(file) });
  });

  test('one byte more → 413 PAYLOAD_TOO_LARGE and nothing stored', async () => {
    const before = await snapshot();
    const res = await app.upload([{ name: 'file', filename: 'big.pdf', data: pdfOfSize(LIMIT + 1) }]);
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    await expectUnchanged(before);
  });

  test('an image past the limit → 413 too (not a truncated image that fails to decode)', async () => {
    const before = await snapshot();
    const photo = await fixture('DSCN0025.jpg');
    expect(photo.length).toBeGreaterThan(LIMIT);
    const res = await app.upload([{ name: 'file', filename: 'big.jpg', data: photo, type: 'image/jpeg' }]);
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    await expectUnchanged(before);
  });
});

describe('malformed or invalid forms', () => {
  const file = { name: 'file', filename: 'a.pdf', data: pdf() };
  const cases: [string, Parameters<MediaApp['upload']>[0], string[]][] = [
    ['no file part', [{ name: 'visibility', value: 'public' }], ['VALIDATION_FAILED']],
    ['two file parts', [file, { ...file, filename: 'b.pdf' }], ['BAD_REQUEST', 'VALIDATION_FAILED']],
    ['a file part with another name', [{ ...file, name: 'upload' }], ['VALIDATION_FAILED']],
    ['an unknown field', [{ name: 'colour', value: 'red' }, file], ['VALIDATION_FAILED']],
    ['an unknown field after the file', [file, { name: 'colour', value: 'red' }], ['VALIDATION_FAILED']],
    ['a bad visibility', [{ name: 'visibility', value: 'secret' }, file], ['VALIDATION_FAILED']],
    [
      'a bad visibility after the file',
      [file, { name: 'visibility', value: 'everyone' }],
      ['VALIDATION_FAILED'],
    ],
    [
      'a tag list with too long a tag',
      [{ name: 'tags', value: 'x'.repeat(65) }, file],
      ['VALIDATION_FAILED'],
    ],
  ];
  test.each(cases)('%s → 400 in the contract shape, nothing stored', async (_what, parts, codes) => {
    const before = await snapshot();
    const res = await app.upload(parts);
    expect(res.status).toBe(400);
    const { error } = res.json<{
      error: { code: string; message: string; details: { issues?: unknown[] } };
    }>();
    expect(codes).toContain(error.code);
    expect(error.message).toBeTypeOf('string');
    if (error.code === 'VALIDATION_FAILED') expect(error.details.issues).toHaveLength(1);
    await expectUnchanged(before);
  });

  test('a multipart body cut off inside the file → 400 BAD_REQUEST, nothing stored', async () => {
    const before = await snapshot();
    const { body } = multipart([file]);
    const res = await app.app.inject({
      method: 'POST',
      url: '/api/media/upload',
      headers: {
        authorization: `Bearer ${app.tokens.alice}`,
        'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
      },
      payload: body.subarray(0, body.length - 40),
    });
    expectError(res, 400, 'BAD_REQUEST');
    await expectUnchanged(before);
  });

  test.each([
    ['no boundary', 'multipart/form-data', 'whatever'],
    ['a boundary that never comes', `multipart/form-data; boundary=${BOUNDARY}`, 'garbage, not a form'],
  ])('a multipart body with %s → 400 BAD_REQUEST, never a 500', async (_what, contentType, payload) => {
    const before = await snapshot();
    const res = await app.app.inject({
      method: 'POST',
      url: '/api/media/upload',
      headers: { authorization: `Bearer ${app.tokens.alice}`, 'content-type': contentType },
      payload,
    });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json()).toEqual({
      error: { code: 'BAD_REQUEST', message: expect.any(String) as string, details: {} },
    });
    await expectUnchanged(before);
  });
});

describe('file names', () => {
  const raw = (s: string) => Buffer.from(s, 'utf8');
  const cases: [string, Buffer, string][] = [
    ['Unix path parts', raw('../../etc/passwd.pdf'), 'passwd.pdf'],
    ['Windows path parts', raw('C:\\Users\\eve\\report.pdf'), 'report.pdf'],
    ['control characters', Buffer.from('a\x01b\x1bc\x7fd.pdf', 'latin1'), 'abcd.pdf'],
    ['a bidi override that disguises the extension', raw('invoice\u202Efdp.exe'), 'invoicefdp.exe'],
    ['bidi isolates and marks', raw('\u2066a\u2069\u200fb.pdf'), 'ab.pdf'],
    ['leading dots', raw('..hidden.pdf'), 'hidden.pdf'],
    ['non-ASCII letters (kept)', raw('Résumé – 履歴書.pdf'), 'Résumé – 履歴書.pdf'],
  ];
  test.each(cases)('%s', async (_what, rawFilename, expected) => {
    const res = await app.upload([{ name: 'file', filename: 'x', rawFilename, data: pdf() }]);
    expect(res.status).toBe(201);
    expect(res.json<MediaItem>().filename).toBe(expected);
  });

  test('a very long name is capped and keeps its extension', async () => {
    const res = await app.upload([{ name: 'file', filename: `${'ü'.repeat(1000)}.pdf`, data: pdf() }]);
    expect(res.status).toBe(201);
    const { filename } = res.json<MediaItem>();
    expect(Array.from(filename).length).toBeLessThanOrEqual(255);
    expect(Array.from(filename).length).toBeGreaterThan(200);
    expect(filename).toMatch(/^ü+\.pdf$/);
  });

  test('a name with nothing usable left falls back to a default', async () => {
    const res = await app.upload([
      { name: 'file', filename: 'x', rawFilename: raw('\u202E\u0007'), data: pdf() },
    ]);
    expect(res.status).toBe(201);
    expect(res.json<MediaItem>().filename).not.toBe('');
  });
});

describe("an operator's allow-list (STOWAGE_ALLOWED_TYPES)", () => {
  test('admits only what it lists, and never HTML or SVG even when listed', async () => {
    const custom = await startMediaApp({ STOWAGE_ALLOWED_TYPES: 'image/*,text/html,image/svg+xml' });
    try {
      expect((await custom.upload([{ name: 'file', filename: 'a.png', data: await png() }])).status).toBe(
        201,
      );
      const pdfRes = await custom.upload([{ name: 'file', filename: 'a.pdf', data: pdf() }]);
      expectError(pdfRes, 415, 'UNSUPPORTED_MEDIA_TYPE');
      expect(pdfRes.json().error.details).toEqual({ detectedType: 'application/pdf' });
      for (const data of ['<html><body>hi</body></html>', '<svg xmlns="http://www.w3.org/2000/svg"/>']) {
        const res = await custom.upload([
          { name: 'file', filename: 'a.png', data: Buffer.from(data), type: 'image/png' },
        ]);
        expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
      }
      expect(await custom.rows()).toBe(1);
    } finally {
      await custom.close();
    }
  });
});
