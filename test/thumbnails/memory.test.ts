import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Thumbnails } from '../../src/media/thumbnails.ts';
import { mediaImageSource } from '../../src/media/image-source.ts';
import { fixture, startThumbApp, type ThumbApp } from './thumb-helpers.ts';

/** Rendered thumbnails are kept in memory within a byte budget and served without storage reads. */
describe('thumbnails kept in memory', () => {
  let t: ThumbApp;
  let renders = 0;
  /** What the image processor returned, render by render. */
  const rendered: Buffer[] = [];

  beforeAll(async () => {
    t = await startThumbApp();
    const images = t.services.images;
    const real = images.thumbnail.bind(images);
    images.thumbnail = async (...args) => {
      renders++;
      const bytes = await real(...args);
      rendered.push(bytes);
      return bytes;
    };
  });
  afterAll(() => t.close());

  async function thumbBytes(id: string): Promise<Buffer> {
    const res = await t.thumbnail(id);
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  }

  /** A Thumbnails of its own on the test app's storage and cache, with its own memory budget. */
  function thumbnailsWith(memoryBudgetBytes?: number): Thumbnails {
    const { storage, images, renditionCache } = t.services;
    return new Thumbnails({
      storage,
      images,
      source: mediaImageSource(storage, path.join(t.dir, 'tmp'), null),
      cache: renditionCache,
      ...(memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes }),
    });
  }

  it('serves a remembered rendition even when its stored copy is gone, without rendering again', async () => {
    const item = await t.uploadFile(await fixture('DSCN0025.jpg'), 'a.jpg');
    renders = 0;
    const first = await thumbBytes(item.id);
    await fs.rm(path.join(t.dir, 'blobs', 'thumbs', item.id), { recursive: true });
    const second = await thumbBytes(item.id);
    expect(second.equals(first)).toBe(true);
    expect(renders).toBe(1);
  });

  it('keeps no more than its budget: past it, renditions come from storage or are rendered again', async () => {
    const { storage, images, renditionCache } = t.services;
    const tiny = new Thumbnails({
      storage,
      images,
      source: mediaImageSource(storage, path.join(t.dir, 'tmp'), null),
      cache: renditionCache,
      memoryBudgetBytes: 1,
    });
    const item = await t.uploadFile(await fixture('portrait_6.jpg'), 'p.jpg');
    const record = (await t.services.media.find(item.id))!;
    renders = 0;
    const a = await tiny.get(record, 256, 'webp');
    expect(a.bytes?.length).toBeGreaterThan(0);
    await fs.rm(path.join(t.dir, 'blobs', 'thumbs', item.id), { recursive: true });
    const b = await tiny.get(record, 256, 'webp');
    expect(renders).toBe(2);
    expect(b.size).toBe(a.size);
  });

  // Issue 9: sharp's output buffer wraps libvips' allocation, several times the image's size, held
  // outside anything V8 counts; remembered as such, the budget bounded a fifth of what was held.
  it('remembers a copy in a buffer of its own size, not the buffer the renderer returned', async () => {
    const tiny = thumbnailsWith();
    const item = await t.uploadFile(await fixture('Canon_40D.jpg'), 'c.jpg');
    const record = (await t.services.media.find(item.id))!;
    rendered.length = 0;
    const kept = await tiny.get(record, 256, 'webp');
    expect(rendered).toHaveLength(1);
    expect(kept.bytes!.equals(rendered[0]!)).toBe(true);
    expect(kept.bytes!.buffer).not.toBe(rendered[0]!.buffer);
    expect(kept.bytes!.byteOffset).toBe(0);
    expect(kept.bytes!.buffer.byteLength).toBe(kept.size);
    // Counted with its bytes and a per-entry overhead, so tiny renditions are bounded too.
    expect(tiny.memoryBytes).toBeGreaterThan(kept.size);
    expect(tiny.memoryBytes).toBeLessThan(kept.size + 4096);
  });

  it('forgets the renditions of a deleted item at once', async () => {
    const thumbnails = t.services.thumbnails;
    const before = thumbnails.memoryBytes;
    const item = await t.uploadFile(await fixture('DSCN0025.jpg'), 'd.jpg');
    await thumbBytes(item.id);
    const withIt = thumbnails.memoryBytes;
    expect(withIt).toBeGreaterThan(before);
    const res = await t.request('DELETE', `/api/media/${item.id}`);
    expect(res.status).toBe(204);
    expect(thumbnails.memoryBytes).toBe(before);
  });

  it('stays within its budget, counting what each rendition holds, over many renders', async () => {
    const budget = 24 * 1024;
    const small = thumbnailsWith(budget);
    const item = await t.uploadFile(await fixture('portrait_6.jpg'), 'q.jpg');
    const record = (await t.services.media.find(item.id))!;
    let most = 0;
    for (const size of [16, 32, 64, 128, 256, 512]) {
      for (const format of ['webp', 'jpeg'] as const) {
        await small.get(record, size, format);
        expect(small.memoryBytes).toBeLessThanOrEqual(budget);
        most = Math.max(most, small.memoryBytes);
      }
    }
    expect(most).toBeGreaterThan(budget / 2);
  });
});
