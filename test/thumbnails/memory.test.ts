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

  beforeAll(async () => {
    t = await startThumbApp();
    const images = t.services.images;
    const real = images.thumbnail.bind(images);
    images.thumbnail = async (...args) => {
      renders++;
      return real(...args);
    };
  });
  afterAll(() => t.close());

  async function thumbBytes(id: string): Promise<Buffer> {
    const res = await t.thumbnail(id);
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
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
});
