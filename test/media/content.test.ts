import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  expectError,
  mp4,
  png,
  startMediaApp,
  wav,
  type ApiResponse,
  type MediaApp,
  type MediaItem,
  type User,
} from './media-helpers.ts';

const SIZE = 1000;
/** A PDF whose every byte position is recognisable, so ranges can be checked exactly. */
const DATA = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(SIZE - 9)]);
const CSP = "default-src 'none'; sandbox";

let app: MediaApp;
let doc: MediaItem;

beforeAll(async () => {
  app = await startMediaApp({ STOWAGE_LINK_MAX_TTL: '7200' });
  doc = await app.uploadFile(DATA, 'doc.pdf');
});
afterAll(async () => {
  await app?.close();
});

function content(
  id: string,
  options: {
    as?: User | null;
    headers?: Record<string, string>;
    method?: 'GET' | 'HEAD';
    query?: string;
  } = {},
): Promise<ApiResponse> {
  const as = options.as === undefined ? 'alice' : options.as;
  return app.app
    .inject({
      method: options.method ?? 'GET',
      url: `/api/media/${id}/content${options.query ?? ''}`,
      headers: { ...(as ? { authorization: `Bearer ${app.tokens[as]}` } : {}), ...options.headers },
    })
    .then((res) => ({
      status: res.statusCode,
      headers: res.headers,
      body: res.body,
      rawPayload: res.rawPayload,
      json: () => res.json(),
    }));
}

describe('response headers', () => {
  test('are exactly as the contract says', async () => {
    const res = await content(doc.id);
    expect(res.status).toBe(200);
    expect(res.rawPayload).toEqual(DATA);
    expect(res.headers).toMatchObject({
      'content-type': 'application/pdf',
      'content-length': String(SIZE),
      'x-content-type-options': 'nosniff',
      'content-security-policy': CSP,
      'content-disposition': `attachment; filename="doc.pdf"; filename*=UTF-8''doc.pdf`,
      'accept-ranges': 'bytes',
      etag: `"${doc.sha256}"`,
      'last-modified': new Date(doc.createdAt).toUTCString(),
    });
    expect(res.headers['cache-control']).toMatch(/^private\b/);
    expect(res.headers['x-request-id']).toEqual(expect.any(String));
  });

  test('Content-Disposition is inline for images, audio and video, attachment with ?download=1', async () => {
    for (const [name, data, mime] of [
      ['a.png', await png(), 'image/png'],
      ['a.wav', wav(), 'audio/wav'],
      ['a.mp4', mp4(), 'video/mp4'],
    ] as const) {
      const item = await app.uploadFile(data, name);
      const inline = await content(item.id);
      expect(inline.headers['content-type']).toBe(mime);
      expect(inline.headers['content-disposition']).toBe(
        `inline; filename="${name}"; filename*=UTF-8''${name}`,
      );
      expect(inline.headers['content-security-policy']).toBe(CSP);
      const download = await content(item.id, { query: '?download=1' });
      expect(download.headers['content-disposition']).toBe(
        `attachment; filename="${name}"; filename*=UTF-8''${name}`,
      );
    }
  });

  test('the file name is RFC 6266 encoded and cannot inject a header', async () => {
    const name = 'Q1 "final"; résumé 100%\r\nSet-Cookie: stolen=1.pdf';
    const item = await app.uploadFile(DATA, 'x.pdf');
    const patched = await app.api('PATCH', `/api/media/${item.id}`, { body: { filename: name } });
    const stored = patched.json<MediaItem>().filename;
    expect(stored).toBe('Q1 "final"; résumé 100%Set-Cookie: stolen=1.pdf');
    // Over a real socket, so what arrives is what a browser would parse.
    const res = await fetch(`${app.base}/api/media/${item.id}/content`, {
      headers: { authorization: `Bearer ${app.tokens.alice}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toBeNull();
    const disposition = res.headers.get('content-disposition')!;
    const match =
      /^attachment; filename="([\x20-\x7e]*)"; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]+)$/.exec(
        disposition,
      );
    expect(match, disposition).not.toBeNull();
    expect(match![1]).not.toMatch(/["\\]/);
    expect(decodeURIComponent(match![2]!)).toBe(stored);
    await res.arrayBuffer();
  });

  test('Cache-Control is private for private items and public for public ones', async () => {
    const item = await app.uploadFile(DATA, 'pub.pdf', 'alice', { visibility: 'public' });
    expect((await content(item.id, { as: null })).headers['cache-control']).toMatch(/^public\b/);
    expect((await content(doc.id)).headers['cache-control']).not.toMatch(/public/);
  });

  test('HEAD has the headers and no body', async () => {
    const res = await content(doc.id, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.rawPayload.length).toBe(0);
    expect(res.headers).toMatchObject({
      'content-length': String(SIZE),
      etag: `"${doc.sha256}"`,
      'content-type': 'application/pdf',
    });
    const ranged = await content(doc.id, { method: 'HEAD', headers: { range: 'bytes=0-9' } });
    expect({
      status: ranged.status,
      length: ranged.rawPayload.length,
      range: ranged.headers['content-range'],
    }).toEqual({
      status: 206,
      length: 0,
      range: `bytes 0-9/${SIZE}`,
    });
  });
});

describe('ranges', () => {
  const partial: [string, number, number][] = [
    ['bytes=0-9', 0, 9],
    ['bytes=400-599', 400, 599],
    ['bytes=-10', SIZE - 10, SIZE - 1],
    ['bytes=995-', 995, SIZE - 1],
    ['bytes=990-5000', 990, SIZE - 1],
  ];
  test.each(partial)('%s → 206 with exactly those bytes', async (range, start, end) => {
    const res = await content(doc.id, { headers: { range } });
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${SIZE}`);
    expect(res.headers['content-length']).toBe(String(end - start + 1));
    expect(res.rawPayload).toEqual(DATA.subarray(start, end + 1));
  });

  test('an unsatisfiable range → 416 with Content-Range: bytes */SIZE', async () => {
    for (const range of [`bytes=${SIZE}-`, 'bytes=5000-6000']) {
      const res = await content(doc.id, { headers: { range } });
      expectError(res, 416, 'RANGE_NOT_SATISFIABLE');
      expect(res.headers['content-range']).toBe(`bytes */${SIZE}`);
    }
  });

  test('several ranges, or a malformed one → 200 with the whole file', async () => {
    for (const range of ['bytes=0-1,10-11', 'bytes=abc', 'bytes=5-2', 'items=0-5', 'bytes=1-2-3']) {
      const res = await content(doc.id, { headers: { range } });
      expect({ range, status: res.status, contentRange: res.headers['content-range'] }).toEqual({
        range,
        status: 200,
        contentRange: undefined,
      });
      expect(res.rawPayload).toEqual(DATA);
    }
  });

  test('an abusive multi-range request costs at most one full read', async () => {
    const many = (spec: (i: number) => string) =>
      `bytes=${Array.from({ length: 200 }, (_, i) => spec(i)).join(',')}`;
    for (const range of [
      many(() => '0-'),
      many((i) => `${i}-${SIZE - 1}`),
      many((i) => `${i * 5}-${i * 5 + 1}`),
    ]) {
      const res = await content(doc.id, { headers: { range } });
      expect([200, 206]).toContain(res.status);
      expect(res.rawPayload.length).toBeLessThanOrEqual(SIZE);
    }
  });
});

describe('conditional requests', () => {
  test('If-None-Match with the ETag (or *) → 304 without a body', async () => {
    for (const inm of [`"${doc.sha256}"`, `"other", "${doc.sha256}"`, `W/"${doc.sha256}"`, '*']) {
      const res = await content(doc.id, { headers: { 'if-none-match': inm } });
      expect({ inm, status: res.status, body: res.body }).toEqual({ inm, status: 304, body: '' });
      expect(res.headers.etag).toBe(`"${doc.sha256}"`);
    }
    expect((await content(doc.id, { headers: { 'if-none-match': '"something-else"' } })).status).toBe(200);
  });

  test('If-Modified-Since → 304 when not modified since, 200 otherwise', async () => {
    const lastModified = new Date(doc.createdAt).toUTCString();
    expect((await content(doc.id, { headers: { 'if-modified-since': lastModified } })).status).toBe(304);
    const before = new Date(Date.parse(doc.createdAt) - 60_000).toUTCString();
    expect((await content(doc.id, { headers: { 'if-modified-since': before } })).status).toBe(200);
    expect((await content(doc.id, { headers: { 'if-modified-since': 'not a date' } })).status).toBe(200);
  });

  test('If-Range: a matching validator gives the range, another gives the whole file', async () => {
    const lastModified = new Date(doc.createdAt).toUTCString();
    for (const ifRange of [`"${doc.sha256}"`, lastModified]) {
      const res = await content(doc.id, { headers: { range: 'bytes=0-9', 'if-range': ifRange } });
      expect(res.status).toBe(206);
      expect(res.rawPayload).toEqual(DATA.subarray(0, 10));
    }
    for (const ifRange of ['"0000"', `W/"${doc.sha256}"`, 'Thu, 01 Jan 1970 00:00:00 GMT']) {
      const res = await content(doc.id, { headers: { range: 'bytes=0-9', 'if-range': ifRange } });
      expect({ ifRange, status: res.status }).toEqual({ ifRange, status: 200 });
      expect(res.rawPayload).toEqual(DATA);
    }
  });
});

describe('access', () => {
  test('owner and admin may read; another user gets 404', async () => {
    expect((await content(doc.id, { as: 'alice' })).status).toBe(200);
    expect((await content(doc.id, { as: 'root' })).status).toBe(200);
    expectError(await content(doc.id, { as: 'bob' }), 404, 'NOT_FOUND');
  });

  test('no credential: a private item and a missing one both → 401', async () => {
    const priv = await content(doc.id, { as: null });
    const missing = await content('AAAAAAAAAAAAAAAAAAAAAA', { as: null });
    for (const res of [priv, missing]) {
      expectError(res, 401, 'UNAUTHENTICATED');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(res.headers['content-disposition']).toBeUndefined();
    }
    expect(priv.body).toBe(missing.body);
  });

  test('a public item is readable by anyone', async () => {
    const item = await app.uploadFile(DATA, 'public.pdf', 'alice', { visibility: 'public' });
    expect((await content(item.id, { as: null })).rawPayload).toEqual(DATA);
    expect((await content(item.id, { as: 'bob' })).status).toBe(200);
  });
});
