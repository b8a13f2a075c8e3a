import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { expectErrorShape } from '../helpers/contract.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { png, startMediaApp, type MediaApp, type MediaItem } from '../media/media-helpers.ts';
import { s3Env } from './scale-helpers.ts';

/**
 * STOWAGE_S3_REDIRECT=on against the test S3 server (radosgw): a content request is authorised by Stowage
 * and answered with a 302 to a presigned GET that the client follows to the object store, which
 * sends the bytes with the contract's Content-Type and Content-Disposition.
 */
const DATA = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(300_000)]);

const runs = s3Available();
let s3: TestBucket;
let app: MediaApp;
let doc: MediaItem;

beforeAll(async () => {
  if (!runs) return;
  s3 = await createTestBucket();
  app = await startMediaApp({ ...s3Env(s3), STOWAGE_S3_REDIRECT: 'on' });
  doc = await app.uploadFile(DATA, 'Q1 report; résumé.pdf');
}, 60_000);
afterAll(async () => {
  await app?.close();
  await s3?.drop();
});

function content(
  id: string,
  options: {
    as?: 'alice' | 'bob' | null;
    headers?: Record<string, string>;
    query?: string;
    method?: string;
  } = {},
) {
  const as = options.as === undefined ? 'alice' : options.as;
  return fetch(`${app.base}/api/media/${id}/content${options.query ?? ''}`, {
    method: options.method ?? 'GET',
    redirect: 'manual',
    headers: { ...(as ? { authorization: `Bearer ${app.tokens[as]}` } : {}), ...options.headers },
  });
}

async function redirected(id: string, query = ''): Promise<URL> {
  const res = await content(id, { query });
  expect(res.status, await res.clone().text()).toBe(302);
  expect(res.headers.get('cache-control')).toBe('no-store');
  await res.arrayBuffer();
  return new URL(res.headers.get('location')!);
}

describe.skipIf(!runs)('a content request is redirected to a presigned GET', () => {
  test('that points at the object store, lives at most 60 s and needs no other credential', async () => {
    const location = await redirected(doc.id);
    expect(location.origin).toBe(new URL(s3.endpoint).origin);
    expect(location.pathname).toBe(`/${s3.bucket}/media/${doc.id.slice(0, 2)}/${doc.id}`);
    expect(location.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    const expires = Number(location.searchParams.get('X-Amz-Expires'));
    expect(expires).toBeGreaterThan(0);
    expect(expires).toBeLessThanOrEqual(60);
    // Nothing of Stowage's own credentials travels in the URL.
    expect(location.href).not.toContain(app.tokens.alice);
  });

  test('whose answer is the file, byte for byte, with the contract headers', async () => {
    const location = await redirected(doc.id);
    const res = await fetch(location);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(DATA)).toBe(true);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    // The same value as Stowage's own answer (RFC 6266, the name also as filename*).
    const head = await content(doc.id, { method: 'HEAD' });
    expect(head.headers.get('content-disposition')).toBe(
      `attachment; filename="Q1 report; r_sum_.pdf"; filename*=UTF-8''Q1%20report%3B%20r%C3%A9sum%C3%A9.pdf`,
    );
    expect(res.headers.get('content-disposition')).toBe(head.headers.get('content-disposition'));
    expect(res.headers.get('cache-control')).toBe('private, no-cache');
  });

  test('a client following redirects gets the file in one call, and ranges from the store', async () => {
    const res = await fetch(`${app.base}/api/media/${doc.id}/content`, {
      headers: { authorization: `Bearer ${app.tokens.alice}` },
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(DATA)).toBe(true);
    const ranged = await fetch(await redirected(doc.id), { headers: { range: 'bytes=100000-100099' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer())).toEqual(DATA.subarray(100_000, 100_100));
  });

  test('images are inline, and attachment with ?download=1', async () => {
    const image = await app.uploadFile(await png(), 'pic.png');
    const inline = await fetch(await redirected(image.id));
    expect(inline.headers.get('content-type')).toBe('image/png');
    expect(inline.headers.get('content-disposition')).toBe(
      `inline; filename="pic.png"; filename*=UTF-8''pic.png`,
    );
    await inline.arrayBuffer();
    const download = await fetch(await redirected(image.id, '?download=1'));
    expect(download.headers.get('content-disposition')).toBe(
      `attachment; filename="pic.png"; filename*=UTF-8''pic.png`,
    );
    await download.arrayBuffer();
  });

  test('the URL is validly signed (SigV4) over the response headers, which cannot be changed', async () => {
    const location = await redirected(doc.id);
    expect(location.searchParams.get('response-content-type')).toBe('application/pdf');
    expect(location.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    // Checked here, independently of the SDK, as S3 checks it: every query parameter but the
    // signature itself is part of what is signed.
    expect(location.searchParams.get('X-Amz-Signature')).toBe(
      sigV4QuerySignature(location, s3.secretAccessKey),
    );

    const tampered = new URL(location);
    tampered.searchParams.set('response-content-type', 'text/html');
    expect(sigV4QuerySignature(tampered, s3.secretAccessKey)).not.toBe(
      location.searchParams.get('X-Amz-Signature'),
    );
    const res = await fetch(tampered);
    const body = await res.text();
    expect(res.status).toBe(403);
    expect(body).not.toContain('%PDF');
  });
});

/** AWS SigV4 for a presigned GET (query-string authentication, host the only signed header). */
function sigV4QuerySignature(url: URL, secret: string): string {
  const hmac = (key: crypto.BinaryLike, data: string) =>
    crypto.createHmac('sha256', key).update(data).digest();
  const encode = (text: string) =>
    encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams]
    .filter(([name]) => name !== 'X-Amz-Signature')
    .map(([name, value]) => [encode(name), encode(value)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  const canonical = ['GET', url.pathname, query, `host:${url.host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join(
    '\n',
  );
  const date = url.searchParams.get('X-Amz-Date')!;
  const scope = url.searchParams.get('X-Amz-Credential')!.split('/').slice(1).join('/');
  const [day, region, service] = scope.split('/') as [string, string, string];
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    date,
    scope,
    crypto.createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  return crypto.createHmac('sha256', key).update(stringToSign).digest('hex');
}

describe.skipIf(!runs)('what Stowage still answers itself', () => {
  test('access rules come first: 401 without a credential, 404 for another user, no redirect', async () => {
    for (const [res, status, code] of [
      [await content(doc.id, { as: null }), 401, 'UNAUTHENTICATED'],
      [await content('AAAAAAAAAAAAAAAAAAAAAA', { as: null }), 401, 'UNAUTHENTICATED'],
      [await content(doc.id, { as: 'bob' }), 404, 'NOT_FOUND'],
      [await content('AAAAAAAAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND'],
    ] as const) {
      expect(res.headers.get('location')).toBeNull();
      expectErrorShape(
        {
          status: res.status,
          contentType: res.headers.get('content-type') ?? undefined,
          text: await res.text(),
        },
        status,
        code,
      );
    }
  });

  test('a signed link and a public item redirect too', async () => {
    const link = await app.api('POST', `/api/media/${doc.id}/links`, { body: { expiresIn: 600 } });
    expect(link.status).toBe(201);
    const url = new URL(link.json<{ url: string }>().url, app.base);
    const viaLink = await fetch(url, { redirect: 'manual' });
    expect(viaLink.status).toBe(302);
    const res = await fetch(viaLink.headers.get('location')!);
    expect(Buffer.from(await res.arrayBuffer()).equals(DATA)).toBe(true);

    const pub = await app.uploadFile(DATA, 'pub.pdf', 'alice', { visibility: 'public' });
    const anonymous = await content(pub.id, { as: null });
    expect(anonymous.status).toBe(302);
    const file = await fetch(anonymous.headers.get('location')!);
    expect(file.headers.get('cache-control')).toBe('public, no-cache');
    expect(Buffer.from(await file.arrayBuffer()).equals(DATA)).toBe(true);
  });

  test('HEAD is answered with the headers, not redirected (a presigned URL is for GET only)', async () => {
    const res = await content(doc.id, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('location')).toBeNull();
    expect(res.headers.get('content-length')).toBe(String(DATA.length));
    expect(res.headers.get('etag')).toBe(`"${doc.sha256}"`);
    expect(res.headers.get('content-type')).toBe('application/pdf');
  });

  test('If-None-Match with the ETag → 304, unsatisfiable range → 416, without a redirect', async () => {
    const notModified = await content(doc.id, { headers: { 'if-none-match': `"${doc.sha256}"` } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get('location')).toBeNull();
    const unsatisfiable = await content(doc.id, { headers: { range: `bytes=${DATA.length}-` } });
    expect(unsatisfiable.status).toBe(416);
    expect(unsatisfiable.headers.get('content-range')).toBe(`bytes */${DATA.length}`);
    await unsatisfiable.arrayBuffer();
  });
});
