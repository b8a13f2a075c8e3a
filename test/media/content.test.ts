import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { nginxAvailable, startNginx, type TestNginx } from '../helpers/nginx.ts';
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
const ACCEL_PREFIX = '/_stowage_blobs/';

/**
 * The content contract as a client sees it, over a real socket, three ways: straight from
 * Stowage; through nginx running deploy/nginx.conf, Stowage streaming; and through the same nginx
 * with STOWAGE_ACCEL_REDIRECT, nginx sending the file. Every case below runs in each.
 */
type Mode = 'direct' | 'nginx' | 'nginx-accel';
const MODES: Mode[] = nginxAvailable('the content suite through nginx')
  ? ['direct', 'nginx', 'nginx-accel']
  : ['direct'];

interface Served {
  app: MediaApp;
  /** Where the client sends its requests. */
  base: string;
  nginx: TestNginx | undefined;
  close(): Promise<void>;
}

async function serve(mode: Mode, env: Record<string, string> = {}): Promise<Served> {
  const app = await startMediaApp({
    ...env,
    STOWAGE_LINK_MAX_TTL: '7200',
    ...(mode === 'nginx-accel' ? { STOWAGE_ACCEL_REDIRECT: ACCEL_PREFIX } : {}),
  });
  let nginx: TestNginx | undefined;
  try {
    if (mode !== 'direct') {
      if (app.config.storage.kind !== 'local') throw new Error('unreachable');
      nginx = await startNginx({
        dir: path.join(app.dir, 'nginx'),
        upstreams: [new URL(app.base).host],
        blobRoot: app.config.storage.dir,
      });
    }
  } catch (error) {
    await app.close();
    throw error;
  }
  return {
    app,
    base: nginx?.base ?? app.base,
    nginx,
    async close() {
      await nginx?.stop();
      await app.close();
    },
  };
}

interface Request {
  as?: User | null;
  headers?: Record<string, string>;
  method?: 'GET' | 'HEAD';
  query?: string;
}

async function fetchContent(served: Served, id: string, options: Request = {}): Promise<ApiResponse> {
  const as = options.as === undefined ? 'alice' : options.as;
  const res = await fetch(`${served.base}/api/media/${id}/content${options.query ?? ''}`, {
    method: options.method ?? 'GET',
    headers: { ...(as ? { authorization: `Bearer ${served.app.tokens[as]}` } : {}), ...options.headers },
  });
  const rawPayload = Buffer.from(await res.arrayBuffer());
  const body = rawPayload.toString();
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers),
    body,
    rawPayload,
    json: <T>() => JSON.parse(body) as T,
  };
}

describe.each(MODES)('content, %s', (mode) => {
  let served: Served;
  let app: MediaApp;
  let doc: MediaItem;

  beforeAll(async () => {
    served = await serve(mode);
    app = served.app;
    doc = await app.uploadFile(DATA, 'doc.pdf');
  }, 30_000);
  afterAll(async () => {
    await served?.close();
  });

  const content = (id: string, options: Request = {}) => fetchContent(served, id, options);

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
      // What arrives over the socket is what a browser would parse.
      const res = await content(item.id);
      expect(res.status).toBe(200);
      expect(res.headers['set-cookie']).toBeUndefined();
      const disposition = res.headers['content-disposition'] as string;
      const match =
        /^attachment; filename="([\x20-\x7e]*)"; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]+)$/.exec(
          disposition,
        );
      expect(match, disposition).not.toBeNull();
      expect(match![1]).not.toMatch(/["\\]/);
      expect(decodeURIComponent(match![2]!)).toBe(stored);
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
});

describe.skipIf(!MODES.includes('nginx-accel'))('nginx sending the file (STOWAGE_ACCEL_REDIRECT)', () => {
  let plain: Served;
  let accel: Served;
  const docs = new Map<Served, MediaItem>();
  const publicDocs = new Map<Served, MediaItem>();

  beforeAll(async () => {
    // With CORS on, so that its headers are compared too.
    const cors = { STOWAGE_CORS_ORIGINS: 'https://app.example.com' };
    [plain, accel] = await Promise.all([serve('nginx', cors), serve('nginx-accel', cors)]);
    for (const served of [plain, accel]) {
      docs.set(served, await served.app.uploadFile(DATA, 'doc.pdf'));
      publicDocs.set(served, await served.app.uploadFile(DATA, 'pub.pdf', 'alice', { visibility: 'public' }));
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all([plain?.close(), accel?.close()]);
  });

  /** Status, body and headers, with the values that differ between two servers by nature masked. */
  async function seen(served: Served, which: 'doc' | 'public' | 'missing', request: Request) {
    const item =
      which === 'doc' ? docs.get(served)! : which === 'public' ? publicDocs.get(served)! : undefined;
    const res = await fetchContent(served, item?.id ?? 'AAAAAAAAAAAAAAAAAAAAAA', request);
    const headers = { ...res.headers };
    for (const name of ['date', 'x-request-id', 'last-modified'])
      if (headers[name] !== undefined) headers[name] = '(present)';
    return { status: res.status, headers, body: res.rawPayload.toString('base64') };
  }

  const cases: [string, 'doc' | 'public' | 'missing', () => Request][] = [
    ['GET', 'doc', () => ({})],
    ['HEAD', 'doc', () => ({ method: 'HEAD' })],
    ['GET ?download=1', 'doc', () => ({ query: '?download=1' })],
    ['a range', 'doc', () => ({ headers: { range: 'bytes=100-199' } })],
    ['a suffix range', 'doc', () => ({ headers: { range: 'bytes=-10' } })],
    ['HEAD with a range', 'doc', () => ({ method: 'HEAD', headers: { range: 'bytes=0-9' } })],
    [
      'If-Range with the ETag',
      'doc',
      () => ({ headers: { range: 'bytes=0-9', 'if-range': `"${doc().sha256}"` } }),
    ],
    ['If-Range with another ETag', 'doc', () => ({ headers: { range: 'bytes=0-9', 'if-range': '"other"' } })],
    [
      'If-Range with an older date',
      'doc',
      () => ({ headers: { range: 'bytes=0-9', 'if-range': 'Thu, 01 Jan 1970 00:00:00 GMT' } }),
    ],
    [
      'If-None-Match that matches (304)',
      'doc',
      () => ({ headers: { 'if-none-match': `"${doc().sha256}"` } }),
    ],
    ['If-None-Match that does not match', 'doc', () => ({ headers: { 'if-none-match': '"other"' } })],
    [
      'If-Modified-Since in the past',
      'doc',
      () => ({ headers: { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' } }),
    ],
    [
      'If-Modified-Since in the future',
      'doc',
      () => ({ headers: { 'if-modified-since': 'Thu, 01 Jan 2099 00:00:00 GMT' } }),
    ],
    ['an unsatisfiable range (416)', 'doc', () => ({ headers: { range: `bytes=${SIZE}-` } })],
    ['several ranges', 'doc', () => ({ headers: { range: 'bytes=0-1,10-11' } })],
    ['a reversed range', 'doc', () => ({ headers: { range: 'bytes=5-2' } })],
    ['a huge range end', 'doc', () => ({ headers: { range: 'bytes=0-99999999999999999999' } })],
    ['If-Match that does not match', 'doc', () => ({ headers: { 'if-match': '"other"' } })],
    [
      'If-Unmodified-Since in the past',
      'doc',
      () => ({ headers: { 'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' } }),
    ],
    ['a public item without credentials', 'public', () => ({ as: null })],
    ['a cross-origin request', 'doc', () => ({ headers: { origin: 'https://app.example.com' } })],
    [
      'a cross-origin range',
      'doc',
      () => ({ headers: { origin: 'https://app.example.com', range: 'bytes=1-2' } }),
    ],
    ['a private item without credentials (401)', 'doc', () => ({ as: null })],
    ["another user's item (404)", 'doc', () => ({ as: 'bob' })],
    ['a missing item (401)', 'missing', () => ({ as: null })],
  ];
  const doc = () => docs.get(accel)!;

  test.each(cases)(
    '%s: what the client sees is the same with and without it',
    async (_name, which, request) => {
      // Same bytes, so the same ETag; Last-Modified differs by upload time and is masked.
      const req = request();
      const [without, withAccel] = [await seen(plain, which, req), await seen(accel, which, req)];
      expect(withAccel).toEqual(without);
    },
  );

  test('a browser on an allowed origin may read the file and its headers', async () => {
    const res = await fetchContent(accel, docs.get(accel)!.id, {
      headers: { origin: 'https://app.example.com' },
    });
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(res.headers['access-control-expose-headers']).toMatch(/Content-Disposition/);
    expect(res.headers.vary).toMatch(/Origin/);
    expect(res.rawPayload).toEqual(DATA);
  });

  test('If-Range with the exact Last-Modified gives the range', async () => {
    for (const served of [plain, accel]) {
      const item = docs.get(served)!;
      const res = await fetchContent(served, item.id, {
        headers: { range: 'bytes=0-9', 'if-range': new Date(item.createdAt).toUTCString() },
      });
      expect(res.status).toBe(206);
      expect(res.rawPayload).toEqual(DATA.subarray(0, 10));
    }
  });

  test('Stowage answers nginx with X-Accel-Redirect to the blob and no body; clients never see it', async () => {
    const item = docs.get(accel)!;
    const direct = await fetch(`${accel.app.base}/api/media/${item.id}/content`, {
      headers: { authorization: `Bearer ${accel.app.tokens.alice}` },
    });
    expect(direct.headers.get('x-accel-redirect')).toBe(
      `${ACCEL_PREFIX}media/${item.id.slice(0, 2)}/${item.id}`,
    );
    expect((await direct.arrayBuffer()).byteLength).toBe(0);
    const viaNginx = await fetchContent(accel, item.id);
    expect(viaNginx.headers['x-accel-redirect']).toBeUndefined();
    expect(viaNginx.rawPayload).toEqual(DATA);
  });

  test('what nginx would decide differently, Stowage streams itself', async () => {
    const item = docs.get(accel)!;
    for (const headers of [
      { range: 'bytes=0-1,10-11' },
      { range: 'bytes=5-2' },
      { range: 'Bytes=0-9' },
      { 'if-match': `"${item.sha256}"` },
      { 'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' },
    ]) {
      const direct = await fetch(`${accel.app.base}/api/media/${item.id}/content`, {
        headers: { authorization: `Bearer ${accel.app.tokens.alice}`, ...headers },
      });
      const body = Buffer.from(await direct.arrayBuffer());
      expect({ headers, accel: direct.headers.get('x-accel-redirect') }).toEqual({ headers, accel: null });
      expect(body).toEqual(DATA);
    }
  });

  test("blobs are readable by nginx's group (0640, folders 0750) even under umask 0077; otherwise private", async () => {
    const previous = process.umask(0o077);
    try {
      const modeOf = async (p: string) => (await fs.stat(p)).mode & 0o777;
      const keyOf = (item: MediaItem) => `media/${item.id.slice(0, 2)}/${item.id}`;
      const shared = await accel.app.uploadFile(DATA, 'modes.pdf');
      const file = accel.app.services.storage.localPath(keyOf(shared))!;
      expect([await modeOf(file), await modeOf(path.dirname(file))]).toEqual([0o640, 0o750]);
      const own = await plain.app.uploadFile(DATA, 'modes.pdf');
      expect(await modeOf(plain.app.services.storage.localPath(keyOf(own))!)).toBe(0o600);
    } finally {
      process.umask(previous);
    }
  });

  test('a blob gone from disk (deleted under the request) is the same 404 in the contract shape either way', async () => {
    const answers = [];
    for (const served of [plain, accel]) {
      const item = await served.app.uploadFile(DATA, 'gone.pdf');
      await fs.rm(served.app.services.storage.localPath(`media/${item.id.slice(0, 2)}/${item.id}`)!);
      const res = await fetchContent(served, item.id);
      expectError(res, 404, 'NOT_FOUND');
      answers.push({ status: res.status, body: res.json<unknown>() });
    }
    expect(answers[1]).toEqual(answers[0]);
  });

  test('the internal location cannot be requested by clients', async () => {
    const item = docs.get(accel)!;
    const res = await fetch(`${accel.base}${ACCEL_PREFIX}media/${item.id.slice(0, 2)}/${item.id}`);
    expect(res.status).toBe(404);
    expect(Buffer.from(await res.arrayBuffer()).includes(DATA.subarray(0, 100))).toBe(false);
  });

  test('a larger file arrives byte for byte, whole and from the middle', async () => {
    const big = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(3 * 1024 * 1024)]);
    const item = await accel.app.uploadFile(big, 'big.pdf');
    const whole = await fetchContent(accel, item.id);
    expect(whole.status).toBe(200);
    expect(whole.rawPayload.equals(big)).toBe(true);
    const middle = await fetchContent(accel, item.id, { headers: { range: 'bytes=1048570-2097160' } });
    expect(middle.status).toBe(206);
    expect(middle.rawPayload.equals(big.subarray(1_048_570, 2_097_161))).toBe(true);
  });
});

describe.skipIf(!MODES.includes('nginx-accel'))(
  'deploy/nginx.conf follows X-Accel-Redirect only for downloads',
  () => {
    test('from any other route, the header is neither followed nor passed to the client', async () => {
      // An upstream that names a blob on every answer: what a bug elsewhere in the API would do.
      const blobs = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-accel-'));
      await fs.mkdir(path.join(blobs, 'media', 'ab'), { recursive: true });
      await fs.writeFile(path.join(blobs, 'media', 'ab', 'abc'), 'the secret file');
      const upstream = http.createServer((req, res) => {
        res.setHeader('X-Accel-Redirect', `${ACCEL_PREFIX}media/ab/abc`);
        res.end(req.url === '/healthz' ? 'ok' : 'the upstream answer');
      });
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
      const { port } = upstream.address() as { port: number };
      const nginx = await startNginx({
        dir: path.join(blobs, 'nginx'),
        upstreams: [`127.0.0.1:${port}`],
        blobRoot: blobs,
      });
      try {
        for (const url of [
          '/api/auth/me',
          '/api/media/list',
          '/api/media/abc',
          '/api/media/abc/thumbnail',
          '/docs',
          '/metrics',
        ]) {
          const res = await fetch(`${nginx.base}${url}`);
          expect({ url, body: await res.text(), accel: res.headers.get('x-accel-redirect') }).toEqual({
            url,
            body: 'the upstream answer',
            accel: null,
          });
        }
        const download = await fetch(`${nginx.base}/api/media/abc/content`);
        expect(await download.text()).toBe('the secret file');
      } finally {
        await nginx.stop();
        upstream.closeAllConnections();
        await new Promise((resolve) => upstream.close(resolve));
        await fs.rm(blobs, { recursive: true, force: true });
      }
    });
  },
);
