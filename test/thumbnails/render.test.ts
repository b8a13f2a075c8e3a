import exifr from 'exifr';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RenderSpec } from '../../src/images/image-processor.ts';
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

/**
 * GET|HEAD /api/media/{id}/render (contract, second part: "Media metadata (additions)"): renditions
 * of real photos on demand, over HTTP, rendered by the real sharp.
 */

let app: ThumbApp;
/** 640×480, Nikon EXIF with GPS. */
let dscn: MediaItem;
/** 100×68, public. */
let canon: MediaItem;

type Options = { as?: 'alice' | 'bob' | 'root' | null; headers?: Record<string, string>; method?: string };
const render = (id: string, query: string, options: Options = {}) =>
  app.request(options.method ?? 'GET', `/api/media/${id}/render?${query}`, {
    as: options.as === undefined ? 'alice' : options.as,
    ...(options.headers ? { headers: options.headers } : {}),
  });

const PNG_HEADER_TAGS = new Set([
  'ImageWidth',
  'ImageHeight',
  'BitDepth',
  'ColorType',
  'Compression',
  'Filter',
  'Interlace',
]);

async function sizeOf(res: Response, type = 'image/webp') {
  const meta = await sharp(await imageBytes(res, type)).metadata();
  return { width: meta.width, height: meta.height };
}

beforeAll(async () => {
  app = await startThumbApp();
  dscn = await app.uploadFile(await fixture('DSCN0025.jpg'), 'DSCN0025.jpg');
  canon = await app.uploadFile(await fixture('Canon_40D.jpg'), 'Canon_40D.jpg', {
    fields: { visibility: 'public' },
  });
});
afterAll(async () => {
  await app?.close();
});

describe('sizes and fits', () => {
  test.each([
    ['w=200&h=200', { width: 200, height: 150 }],
    ['w=200&h=200&fit=inside', { width: 200, height: 150 }],
    ['w=100', { width: 100, height: 75 }],
    ['h=120', { width: 160, height: 120 }],
    ['w=200&h=200&fit=contain', { width: 200, height: 200 }],
    ['w=300&h=100&fit=contain', { width: 300, height: 100 }],
    ['w=200&h=200&fit=cover', { width: 200, height: 200 }],
    ['w=300&h=100&fit=cover', { width: 300, height: 100 }],
    ['w=16&h=2560&fit=cover', { width: 16, height: 2560 }],
  ])('%s → %o', async (query, size) => {
    expect(await sizeOf(await render(dscn.id, query))).toEqual(size);
  });

  test('inside never enlarges; contain and cover fill exactly w×h however small the photo', async () => {
    expect(await sizeOf(await render(canon.id, 'w=800&h=800'))).toEqual({ width: 100, height: 68 });
    expect(await sizeOf(await render(canon.id, 'w=2560'))).toEqual({ width: 100, height: 68 });
    expect(await sizeOf(await render(canon.id, 'w=400&h=400&fit=contain'))).toEqual({
      width: 400,
      height: 400,
    });
    expect(await sizeOf(await render(canon.id, 'w=400&h=300&fit=cover'))).toEqual({
      width: 400,
      height: 300,
    });
  });

  test('cover crops at the centre: the middle of the photo stays, its sides go', async () => {
    const cover = await imageBytes(await render(dscn.id, 'w=240&h=240&fit=cover&format=png'), 'image/png');
    // The centre 480×480 of the 640×480 photo, scaled: the same picture as the server's crop.
    const centre = await sharp(await fixture('DSCN0025.jpg'))
      .extract({ left: 80, top: 0, width: 480, height: 480 })
      .resize(240, 240)
      .png()
      .toBuffer();
    const squeezed = await sharp(await fixture('DSCN0025.jpg'))
      .resize(240, 240, { fit: 'fill' })
      .png()
      .toBuffer();
    expect(await difference(cover, centre)).toBeLessThan(3);
    expect(await difference(cover, squeezed)).toBeGreaterThan(2 * (await difference(cover, centre)));
  });
});

describe('contain padding', () => {
  /** RGBA of one pixel. */
  async function pixel(data: Buffer, x: number, y: number): Promise<number[]> {
    const { data: raw, info } = await sharp(data).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const at = (y * info.width + x) * 4;
    return [...raw.subarray(at, at + 4)];
  }

  test.each(['png', 'webp', 'avif'] as const)('%s: transparent bands around the photo', async (format) => {
    // 640×480 in 200×200: the photo is 200×150, between bands of 25 px at the top and bottom.
    const data = await imageBytes(
      await render(dscn.id, `w=200&h=200&fit=contain&format=${format}`),
      `image/${format}`,
    );
    expect((await sharp(data).metadata()).hasAlpha).toBe(true);
    expect((await pixel(data, 100, 5))[3]).toBe(0);
    expect((await pixel(data, 100, 194))[3]).toBe(0);
    expect((await pixel(data, 100, 100))[3]).toBe(255);
  });

  test('jpeg: white bands', async () => {
    const data = await imageBytes(await render(dscn.id, 'w=200&h=200&fit=contain&format=jpeg'), 'image/jpeg');
    for (const [x, y] of [
      [100, 5],
      [100, 194],
    ] as const) {
      for (const channel of (await pixel(data, x, y)).slice(0, 3)) expect(channel).toBeGreaterThan(245);
    }
  });
});

describe('formats and quality', () => {
  test.each([
    [
      'webp',
      'image/webp',
      (b: Buffer) => b.subarray(0, 4).toString() === 'RIFF' && b.subarray(8, 12).toString() === 'WEBP',
    ],
    ['avif', 'image/avif', (b: Buffer) => b.subarray(4, 12).toString() === 'ftypavif'],
    ['jpeg', 'image/jpeg', (b: Buffer) => b.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))],
    ['png', 'image/png', (b: Buffer) => b.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex'))],
  ])('format=%s → %s with its magic bytes, whatever Accept says', async (format, type, magic) => {
    const res = await render(dscn.id, `w=120&format=${format}`, { headers: { accept: 'image/jpeg' } });
    const data = await imageBytes(res, type);
    expect(magic(data)).toBe(true);
    expect(res.headers.get('vary') ?? '').not.toMatch(/\bAccept\b/i);
  });

  test.each(['jpeg', 'webp', 'avif'])(
    '%s: q=30 is smaller than the default 80, which is smaller than q=95',
    async (format) => {
      const bytes = async (q: string) =>
        (await imageBytes(await render(dscn.id, `w=400&format=${format}${q}`), `image/${format}`)).length;
      const [low, normal, high] = [await bytes('&q=30'), await bytes(''), await bytes('&q=95')];
      expect(low).toBeLessThan(normal);
      expect(normal).toBeLessThan(high);
    },
  );

  test.each([
    [undefined, 'image/webp'],
    ['*/*', 'image/webp'],
    ['image/avif,image/webp,*/*', 'image/avif'],
    ['image/jpeg', 'image/jpeg'],
    ['image/webp;q=0.5, image/jpeg', 'image/jpeg'],
  ])('without format, Accept %s → %s, with Vary: Accept', async (accept, type) => {
    const res = await render(dscn.id, 'w=150', { headers: accept ? { accept } : {} });
    await imageBytes(res, type);
    expect(res.headers.get('vary')).toMatch(/\bAccept\b/i);
  });

  test('a photo with GPS EXIF comes out without any metadata, in every format', async () => {
    expect(await exifr.gps(await fixture('DSCN0025.jpg'))).toMatchObject({ latitude: expect.any(Number) });
    for (const format of ['webp', 'avif', 'jpeg', 'png']) {
      const data = await imageBytes(await render(dscn.id, `w=300&format=${format}`), `image/${format}`);
      const meta = await sharp(data).metadata();
      expect({ format, exif: meta.exif, xmp: meta.xmp, iptc: meta.iptc }).toEqual({
        format,
        exif: undefined,
        xmp: undefined,
        iptc: undefined,
      });
      // exifr reads every container's camera data; only PNG's own IHDR facts may remain.
      expect(await exifr.gps(data).catch(() => undefined)).toBeUndefined();
      const parsed = (await exifr.parse(data, true).catch(() => undefined)) as
        Record<string, unknown> | undefined;
      expect(Object.keys(parsed ?? {}).filter((tag) => !PNG_HEADER_TAGS.has(tag))).toEqual([]);
      expect(data.includes('Exif\0\0')).toBe(false);
      expect(data.includes('NIKON')).toBe(false);
    }
  });
});

describe('bad parameters → 400 VALIDATION_FAILED', () => {
  test.each([
    'w=15',
    'w=2561',
    'h=0',
    'h=2561',
    'w=abc',
    'w=100.5',
    'w=-100',
    'w=100&fit=bogus',
    'w=100&format=gif',
    'w=100&q=29',
    'w=100&q=96',
    'w=100&q=high',
    '',
    'fit=cover',
    'q=80&format=webp',
    'w=100&w=200',
    'w=100&w=100',
    'w=100&h=100&fit=cover&fit=contain',
    'w=100&format=png&format=png',
    'w=100&q=80&q=80',
    'w=100&width=200',
    'w=100&token=a&token=b',
  ])('?%s', async (query) => {
    await expectError(await render(dscn.id, query), 400, 'VALIDATION_FAILED');
  });
});

describe('access and HTTP', () => {
  test("another user's private item is 404; without credentials it is 401; an admin may", async () => {
    await expectError(await render(dscn.id, 'w=100', { as: 'bob' }), 404, 'NOT_FOUND');
    await expectError(await render(dscn.id, 'w=100', { as: null }), 401, 'UNAUTHENTICATED');
    await expectError(await render('no-such-item', 'w=100', { as: null }), 401, 'UNAUTHENTICATED');
    await expectError(await render('no-such-item', 'w=100'), 404, 'NOT_FOUND');
    await imageBytes(await render(dscn.id, 'w=100', { as: 'root' }));
  });

  test('a public item needs no credentials', async () => {
    const res = await render(canon.id, 'w=50', { as: null });
    await imageBytes(res);
    expect(res.headers.get('cache-control')).toMatch(/^public\b/);
    await imageBytes(await render(canon.id, 'w=50', { as: 'bob' }));
  });

  test("a signed link's token opens the rendition of its item only, until the link is revoked", async () => {
    const res = await app.request('POST', `/api/media/${dscn.id}/links`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ expiresIn: 600 }),
    });
    expect(res.status).toBe(201);
    const { id: linkId, url } = (await res.json()) as { id: string; url: string };
    const token = encodeURIComponent(new URL(url, app.base).searchParams.get('token')!);
    expect(await sizeOf(await render(dscn.id, `w=64&token=${token}`, { as: null }))).toEqual({
      width: 64,
      height: 48,
    });
    const other = await app.uploadFile(await fixture('portrait_6.jpg'), 'other.jpg');
    await expectError(await render(other.id, `w=64&token=${token}`, { as: null }), 401, 'UNAUTHENTICATED');
    expect((await app.request('DELETE', `/api/media/${dscn.id}/links/${linkId}`)).status).toBe(204);
    await expectError(await render(dscn.id, `w=64&token=${token}`, { as: null }), 401, 'UNAUTHENTICATED');
  });

  test('an item that is not an image has no rendition (404)', async () => {
    const pdf = await app.uploadFile(
      Buffer.from('%PDF-1.4\n1 0 obj\n<< >>\nendobj\ntrailer\n<< >>\n%%EOF\n'),
      'a.pdf',
    );
    await expectError(await render(pdf.id, 'w=100'), 404, 'NOT_FOUND');
  });

  test('headers of the thumbnail route; ETag per rendition; If-None-Match → 304; HEAD', async () => {
    const res = await render(dscn.id, 'w=180&format=jpeg');
    const data = await imageBytes(res, 'image/jpeg');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('private, no-cache');
    expect(res.headers.get('content-disposition')).toBeNull();
    const etag = res.headers.get('etag')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    const other = await render(dscn.id, 'w=180&format=jpeg&q=50');
    expect(other.headers.get('etag')).not.toBe(etag);
    const thumb = await app.thumbnail(dscn.id, { headers: { accept: 'image/jpeg' } });
    expect(thumb.headers.get('etag')).not.toBe(etag);
    const again = await render(dscn.id, 'w=180&format=jpeg', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    const head = await render(dscn.id, 'w=180&format=jpeg', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(data.length));
    expect(head.headers.get('etag')).toBe(etag);
    expect(await head.text()).toBe('');
  });

  test('renditions are stored under the item, and go when it is deleted', async () => {
    const item = await app.uploadFile(await fixture('Canon_40D.jpg'), 'gone.jpg');
    await imageBytes(await render(item.id, 'w=50&h=40&fit=cover&q=70&format=webp'), 'image/webp');
    await imageBytes(await app.thumbnail(item.id));
    expect(await app.storedThumbnails(item.id)).toEqual(['256.webp', 'r-50x40-cover-q70.webp']);
    const rows = () =>
      app.services.database.db
        .selectFrom('renditions')
        .select('key')
        .where('media_id', '=', item.id)
        .execute();
    expect(await rows()).toHaveLength(2);
    expect((await app.request('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect(await app.storedThumbnails(item.id)).toEqual([]);
    expect(await rows()).toEqual([]);
    await expectError(await render(item.id, 'w=50'), 404, 'NOT_FOUND');
  });
});

describe('coalescing', () => {
  test('concurrent identical first requests share one render', async () => {
    const item = await app.uploadFile(await fixture('portrait_6.jpg'), 'coalesce.jpg');
    const n = 8;
    const { images, thumbnails } = app.services;
    const realRender = images.render.bind(images);
    const realGet = thumbnails.render.bind(thumbnails);
    let asked = 0;
    let renders = 0;
    let arrived!: () => void;
    const allArrived = new Promise<void>((resolve) => (arrived = resolve));
    // The render is held until all n requests have asked for the rendition.
    thumbnails.render = (record: MediaRecord, spec: RenderSpec) => {
      if (++asked === n) arrived();
      return realGet(record, spec);
    };
    images.render = async (...args: Parameters<typeof realRender>) => {
      renders++;
      await allArrived;
      return realRender(...args);
    };
    try {
      const responses = await Promise.all(
        Array.from({ length: n }, () => render(item.id, 'w=333&h=222&fit=cover&format=avif')),
      );
      const bodies = await Promise.all(responses.map((res) => imageBytes(res, 'image/avif')));
      expect(renders).toBe(1);
      expect(new Set(bodies.map((b) => b.toString('base64'))).size).toBe(1);
      expect(await app.storedThumbnails(item.id)).toEqual(['r-333x222-cover-q80.avif']);
    } finally {
      arrived();
      delete (images as { render?: unknown }).render;
      delete (thumbnails as { render?: unknown }).render;
    }
  });
});

describe('settings', () => {
  test('STOWAGE_RENDER=off: the route does not exist (404)', async () => {
    const off = await startThumbApp({ STOWAGE_RENDER: 'off' });
    try {
      const item = await off.uploadFile(await fixture('Canon_40D.jpg'), 'a.jpg');
      const res = await off.request('GET', `/api/media/${item.id}/render?w=50`);
      await expectError(res, 404, 'NOT_FOUND');
      // Thumbnails are not renditions on demand: they stay.
      await imageBytes(await off.thumbnail(item.id));
    } finally {
      await off.close();
    }
  });

  test("renders take the image processor's slots: past its queue, 503 with Retry-After, never a 500", async () => {
    const busy = await startThumbApp({ STOWAGE_IMAGE_CONCURRENCY: '1', STOWAGE_IMAGE_QUEUE: '0' });
    try {
      const large = await sharp(await fixture('DSCN0025.jpg'))
        .resize(4000, 3000, { fit: 'fill' })
        .jpeg({ quality: 90 })
        .toBuffer();
      const item = await busy.uploadFile(large, 'large.jpg');
      const { images } = busy.services;
      const real = images.render.bind(images);
      let started!: () => void;
      const slowOneRunning = new Promise<void>((resolve) => (started = resolve));
      // Instrumentation only: says when the real processor has the render (it takes the slot at once).
      images.render = (...args: Parameters<typeof real>) => {
        const rendering = real(...args);
        started();
        return rendering;
      };
      const get = (query: string) => busy.request('GET', `/api/media/${item.id}/render?${query}`);
      try {
        // A full-size AVIF (a second or more) holds the only slot…
        const slow = get('w=2560&h=2560&format=avif');
        await slowOneRunning;
        // …so another render, with no room to wait, is refused at once.
        const refused = await get('w=100');
        expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
        await expectError(refused, 503, 'UNAVAILABLE');
        await imageBytes(await slow, 'image/avif');
        await imageBytes(await get('w=100'));
      } finally {
        delete (images as { render?: unknown }).render;
      }
    } finally {
      await busy.close();
    }
  });

  test('renders are limited per user, and per client address (IPv6 /64) without a token', async () => {
    const limited = await startThumbApp({ STOWAGE_RENDER_RATE_LIMIT: '3', STOWAGE_TRUST_PROXY: '127.0.0.1' });
    try {
      const item = await limited.uploadFile(await fixture('Canon_40D.jpg'), 'a.jpg', {
        fields: { visibility: 'public' },
      });
      const get = (query: string, as: 'alice' | 'bob' | null, from = '192.0.2.1') =>
        limited.request('GET', `/api/media/${item.id}/render?${query}`, {
          as,
          headers: { 'x-forwarded-for': from },
        });
      // Per user, from any address; cached renditions count too: each may be a new size.
      for (const w of [20, 21, 20]) await imageBytes(await get(`w=${w}`, 'alice', `192.0.2.${w}`));
      const refused = await get('w=22', 'alice', '192.0.2.99');
      await expectError(refused, 429, 'RATE_LIMITED');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      await imageBytes(await get('w=22', 'bob'));
      // A revalidation renders nothing and is not counted.
      const etag = (await get('w=23', 'bob')).headers.get('etag')!;
      const revalidated = await limited.request('GET', `/api/media/${item.id}/render?w=23`, {
        as: 'alice',
        headers: { 'if-none-match': etag },
      });
      expect(revalidated.status).toBe(304);

      // Without a token: per address, an IPv6 /64 being one address.
      for (const host of ['1', '2', 'abcd:1'])
        await imageBytes(await get('w=30', null, `2001:db8:0:7::${host}`));
      await expectError(await get('w=30', null, '2001:db8:0:7::ffff'), 429, 'RATE_LIMITED');
      await imageBytes(await get('w=30', null, '2001:db8:0:8::1'));
      // A signed-in user behind that address still has their own budget.
      await imageBytes(await get('w=30', 'bob', '2001:db8:0:7::1'));
    } finally {
      await limited.close();
    }
  });
});
