import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThumbnailFormat } from '../../src/images/negotiate-format.ts';
import type { MediaRecord } from '../../src/media/media-repo.ts';
import {
  difference,
  expectError,
  fixture,
  imageBytes,
  startThumbApp,
  type MediaItem,
  type ThumbApp,
} from './thumb-helpers.ts';

/** Thumbnails of real photos, uploaded through the API and fetched over HTTP. */

let app: ThumbApp;
let dscn: MediaItem;
let portrait: MediaItem;
let canon: MediaItem;

beforeAll(async () => {
  app = await startThumbApp();
  dscn = await app.uploadFile(await fixture('DSCN0025.jpg'), 'DSCN0025.jpg');
  portrait = await app.uploadFile(await fixture('portrait_6.jpg'), 'portrait_6.jpg');
  canon = await app.uploadFile(await fixture('Canon_40D.jpg'), 'Canon_40D.jpg', {
    fields: { visibility: 'public' },
  });
});
afterAll(async () => {
  await app?.close();
});

describe('renditions of real photos', () => {
  test('a photo with GPS EXIF comes out without any metadata', async () => {
    expect(await sharp(await fixture('DSCN0025.jpg')).metadata()).toMatchObject({ exif: expect.any(Buffer) });
    for (const accept of [undefined, 'image/jpeg', 'image/avif']) {
      const res = await app.thumbnail(dscn.id, { headers: accept ? { accept } : {} });
      const data = Buffer.from(await res.arrayBuffer());
      expect(res.status).toBe(200);
      const meta = await sharp(data).metadata();
      expect({ exif: meta.exif, xmp: meta.xmp, iptc: meta.iptc }).toEqual({
        exif: undefined,
        xmp: undefined,
        iptc: undefined,
      });
      expect(data.includes('Exif\0\0')).toBe(false);
      expect(data.includes('NIKON')).toBe(false);
    }
  });

  test('a photo with a rotating EXIF orientation is listed and rendered as displayed', async () => {
    expect(portrait.image).toEqual({ width: 450, height: 600 });
    const data = await imageBytes(await app.thumbnail(portrait.id));
    const meta = await sharp(data).metadata();
    expect({ width: meta.width, height: meta.height }).toEqual({ width: 192, height: 256 });
    expect(meta.orientation ?? 1).toBe(1);
    // The pixels are the upright picture, not the stored one squeezed into a portrait frame.
    const upright = sharp(await fixture('portrait_6.jpg')).autoOrient();
    const sideways = sharp(await fixture('portrait_6.jpg'));
    expect(await difference(data, upright)).toBeLessThan(8);
    expect(await difference(data, sideways)).toBeGreaterThan(2 * (await difference(data, upright)));
  });

  test('a small photo is never enlarged, and the size fits within size×size', async () => {
    const small = await sharp(
      await imageBytes(await app.thumbnail(canon.id, { query: 'size=1024' })),
    ).metadata();
    expect({ width: small.width, height: small.height }).toEqual({ width: 100, height: 68 });
    const fitted = await sharp(
      await imageBytes(await app.thumbnail(dscn.id, { query: 'size=512' })),
    ).metadata();
    expect({ width: fitted.width, height: fitted.height }).toEqual({ width: 512, height: 384 });
    const omitted = await sharp(await imageBytes(await app.thumbnail(dscn.id))).metadata();
    expect({ width: omitted.width, height: omitted.height }).toEqual({ width: 256, height: 192 });
  });

  test('sizes outside the configured set → 400 VALIDATION_FAILED', async () => {
    for (const query of ['size=300', 'size=0', 'size=-256', 'size=abc', 'size=256.5', 'size=4096']) {
      await expectError(await app.thumbnail(dscn.id, { query }), 400, 'VALIDATION_FAILED');
    }
  });

  test.each([
    [undefined, 'image/webp', 'webp'],
    ['*/*', 'image/webp', 'webp'],
    ['image/avif,image/webp,*/*', 'image/avif', 'heif'],
    ['image/jpeg', 'image/jpeg', 'jpeg'],
    ['image/webp;q=0.5, image/jpeg', 'image/jpeg', 'jpeg'],
  ])('Accept %s → %s', async (accept, type, format) => {
    const res = await app.thumbnail(dscn.id, { headers: accept ? { accept } : {} });
    const data = await imageBytes(res, type);
    expect(res.headers.get('vary')).toMatch(/\bAccept\b/i);
    expect((await sharp(data).metadata()).format).toBe(format);
  });

  test('HEIC/HEIF photos render with the libheif tool, or get 415 without it', async () => {
    const heif = await app.uploadFile(await fixture('samplefilehub.heif'), 'phone.heic');
    expect(heif.image).toEqual({ width: 640, height: 426 });
    const res = await app.thumbnail(heif.id);
    if (app.services.images.heifDecoder === null) {
      await expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    } else {
      const meta = await sharp(await imageBytes(res)).metadata();
      expect({ width: meta.width, height: meta.height }).toEqual({ width: 256, height: 170 });
    }
  });

  test('an item that is not an image has no thumbnail (404)', async () => {
    const pdf = await app.uploadFile(
      Buffer.from('%PDF-1.4\n1 0 obj\n<< >>\nendobj\ntrailer\n<< >>\n%%EOF\n'),
      'a.pdf',
    );
    expect(pdf.urls).toMatchObject({ thumbnail: null });
    await expectError(await app.thumbnail(pdf.id), 404, 'NOT_FOUND');
    await expectError(await app.thumbnail('no-such-item'), 404, 'NOT_FOUND');
  });
});

describe('caching', () => {
  test('ETag per rendition; If-None-Match → 304 without rendering', async () => {
    const webp = await app.thumbnail(canon.id, { query: 'size=512' });
    const etag = webp.headers.get('etag');
    expect(etag).toMatch(/^"[^"]+"$/);
    const jpeg = await app.thumbnail(canon.id, { query: 'size=512', headers: { accept: 'image/jpeg' } });
    expect(jpeg.headers.get('etag')).not.toBe(etag);
    const again = await app.thumbnail(canon.id, { query: 'size=512', headers: { 'if-none-match': etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect(again.headers.get('etag')).toBe(etag);
    // A rendition never rendered is not rendered for a request that will get a 304 anyway.
    const before = await app.storedThumbnails(canon.id);
    const conditional = await app.thumbnail(canon.id, {
      query: 'size=1024',
      headers: { 'if-none-match': '*' },
    });
    expect(conditional.status).toBe(304);
    expect(await app.storedThumbnails(canon.id)).toEqual(before);
  });

  test('rendered once on first request, then served from storage', async () => {
    const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'copy.jpg');
    const renders = spyOnRenders();
    try {
      expect(await app.storedThumbnails(item.id)).toEqual([]);
      const first = await imageBytes(await app.thumbnail(item.id));
      expect(await app.storedThumbnails(item.id)).toEqual(['256.webp']);
      const second = await imageBytes(await app.thumbnail(item.id));
      expect(second.equals(first)).toBe(true);
      expect(renders.count).toBe(1);
    } finally {
      renders.restore();
    }
  });

  test('concurrent first requests for one rendition share a single render', async () => {
    const item = await app.uploadFile(await fixture('portrait_6.jpg'), 'copy.jpg');
    const n = 10;
    // The render is held until all n requests have asked for the rendition.
    const renders = spyOnRenders(n);
    try {
      const responses = await Promise.all(
        Array.from({ length: n }, () =>
          app.thumbnail(item.id, { query: 'size=512', headers: { accept: 'image/avif' } }),
        ),
      );
      const bodies = await Promise.all(responses.map((res) => imageBytes(res, 'image/avif')));
      expect(renders.count).toBe(1);
      expect(new Set(bodies.map((b) => b.toString('base64'))).size).toBe(1);
      expect(await app.storedThumbnails(item.id)).toEqual(['512.avif']);
    } finally {
      renders.restore();
    }
  });

  test('deleting the item removes its renditions', async () => {
    const item = await app.uploadFile(await fixture('Canon_40D.jpg'), 'gone.jpg');
    await imageBytes(await app.thumbnail(item.id));
    await imageBytes(await app.thumbnail(item.id, { headers: { accept: 'image/jpeg' } }), 'image/jpeg');
    expect(await app.storedThumbnails(item.id)).toEqual(['256.jpeg', '256.webp']);
    expect((await app.request('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect(await app.storedThumbnails(item.id)).toEqual([]);
    await expectError(await app.thumbnail(item.id), 404, 'NOT_FOUND');
  });
});

describe('access', () => {
  test("another user's private item is 404; without credentials it is 401", async () => {
    await expectError(await app.thumbnail(dscn.id, { as: 'bob' }), 404, 'NOT_FOUND');
    const anonymous = await app.thumbnail(dscn.id, { as: null });
    await expectError(anonymous, 401, 'UNAUTHENTICATED');
    await expectError(await app.thumbnail('no-such-item', { as: null }), 401, 'UNAUTHENTICATED');
    await imageBytes(await app.thumbnail(dscn.id, { as: 'root' }));
  });

  test('a public item needs no credentials', async () => {
    const res = await app.thumbnail(canon.id, { as: null });
    await imageBytes(res);
    expect(res.headers.get('cache-control')).toMatch(/^public\b/);
    await imageBytes(await app.thumbnail(canon.id, { as: 'bob' }));
  });

  test("a signed link's token works on the thumbnail, for that item only", async () => {
    const res = await app.request('POST', `/api/media/${dscn.id}/links`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ expiresIn: 60 }),
    });
    expect(res.status).toBe(201);
    const { url } = (await res.json()) as { url: string };
    expect(url).toMatch(new RegExp(`^/api/media/${dscn.id}/content\\?token=`));
    const token = new URL(url, app.base).searchParams.get('token')!;
    const viaLink = await app.thumbnail(dscn.id, {
      as: null,
      query: `token=${encodeURIComponent(token)}&size=512`,
    });
    const meta = await sharp(await imageBytes(viaLink)).metadata();
    expect(meta.width).toBe(512);
    await expectError(
      await app.thumbnail(portrait.id, { as: null, query: `token=${encodeURIComponent(token)}` }),
      401,
      'UNAUTHENTICATED',
    );
    const tampered = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
    await expectError(
      await app.thumbnail(dscn.id, { as: null, query: `token=${tampered}` }),
      401,
      'UNAUTHENTICATED',
    );
  });
});

/**
 * Counts calls of the real image processor's thumbnail(); with `holdUntil`, the first render waits
 * until that many requests have asked the thumbnail cache for a rendition.
 */
function spyOnRenders(holdUntil?: number): { count: number; restore(): void } {
  const { images, thumbnails } = app.services;
  const render = images.thumbnail.bind(images);
  const get = thumbnails.get.bind(thumbnails);
  let asked = 0;
  let arrived!: () => void;
  const allArrived = new Promise<void>((resolve) => (arrived = resolve));
  if (holdUntil === undefined) arrived();
  const spy = { count: 0, restore: () => undefined as void };
  thumbnails.get = (item: MediaRecord, size: number, format: ThumbnailFormat) => {
    if (++asked === holdUntil) arrived();
    return get(item, size, format);
  };
  images.thumbnail = async (...args: Parameters<typeof render>) => {
    spy.count++;
    await allArrived;
    return render(...args);
  };
  spy.restore = () => {
    arrived();
    delete (images as { thumbnail?: unknown }).thumbnail;
    delete (thumbnails as { get?: unknown }).get;
  };
  return spy;
}
