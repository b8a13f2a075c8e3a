import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { tusUpload } from '../tus/tus-helpers.ts';
import { mediaFile } from '../video/media-files.ts';
import { fixture, imageBytes, startThumbApp, type ThumbApp } from './thumb-helpers.ts';

/**
 * STOWAGE_THUMBNAILS_AHEAD (on by default, off in the other thumbnail suites): each stored image's
 * default thumbnail is rendered in the background, so that the first person to open a library of
 * fresh uploads does not wait for the renders (the console's grid asks for exactly that thumbnail).
 */
describe('thumbnails rendered ahead of the first request', () => {
  let app: ThumbApp;
  beforeAll(async () => {
    app = await startThumbApp({ STOWAGE_THUMBNAILS_AHEAD: 'on' });
  });
  afterAll(() => app?.close());

  /** What /metrics says is waiting to be rendered ahead. */
  async function pending(): Promise<number> {
    const text = await (await fetch(`${app.base}/metrics`)).text();
    const line = /^stowage_thumbnails_ahead_pending (\d+)$/m.exec(text);
    if (!line) throw new Error('/metrics has no stowage_thumbnails_ahead_pending');
    return Number(line[1]);
  }
  const settled = () => eventually(async () => expect(await pending()).toBe(0), 30_000);
  const thumbFile = (id: string) => path.join(app.dir, 'blobs', 'thumbs', id, '256.webp');

  test('an uploaded image has its default thumbnail stored before anyone asks, and that is what is served', async () => {
    const item = await app.uploadFile(await fixture('DSCN0025.jpg'), 'a.jpg');
    await eventually(async () => expect(await app.storedThumbnails(item.id)).toEqual(['256.webp']));
    const stored = await fs.readFile(thumbFile(item.id));
    const served = await imageBytes(await app.thumbnail(item.id));
    expect(served.equals(stored)).toBe(true);
    // A size nobody rendered ahead is rendered on its first request, as before.
    await imageBytes(await app.thumbnail(item.id, { query: 'size=512' }));
    expect(await app.storedThumbnails(item.id)).toEqual(['256.webp', '512.webp']);
  });

  test('so has an image uploaded with tus', async () => {
    const { mediaId } = await tusUpload(app, await fixture('Canon_40D.jpg'), {
      metadata: { filename: 'b.jpg' },
    });
    await eventually(async () => expect(await app.storedThumbnails(mediaId!)).toEqual(['256.webp']));
  });

  test('videos, audio and documents are left to their first request', async () => {
    const video = await app.uploadFile(await fs.readFile(await mediaFile(app.dir, 'clip.mp4')), 'c.mp4');
    const pdf = await app.uploadFile(Buffer.from('%PDF-1.4\n%%EOF\n'), 'd.pdf');
    // One at a time, in the order stored: once this image's thumbnail is there, the others' turn is past.
    const image = await app.uploadFile(await fixture('image01137.jpg'), 'e.jpg');
    await eventually(async () => expect(await app.storedThumbnails(image.id)).toEqual(['256.webp']));
    await settled();
    expect(await app.storedThumbnails(video.id)).toEqual([]);
    expect(await app.storedThumbnails(pdf.id)).toEqual([]);
    // The video's poster still comes on request.
    await imageBytes(await app.thumbnail(video.id));
  });

  test('an item deleted while its thumbnail waits or renders leaves no rendition behind', async () => {
    // Large enough that its render is still under way when the DELETE comes.
    const photo = await sharp({
      create: {
        width: 3000,
        height: 2000,
        channels: 3,
        background: '#6a8',
        noise: { type: 'gaussian', mean: 128, sigma: 40 },
      },
    })
      .jpeg()
      .toBuffer();
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push((await app.uploadFile(photo, `gone-${i}.jpg`)).id);
    // By now the first are rendered, one is rendering and the last wait their turn.
    for (const id of ids) expect((await app.request('DELETE', `/api/media/${id}`)).status).toBe(204);
    await settled();
    for (const id of ids) expect({ id, files: await app.storedThumbnails(id) }).toEqual({ id, files: [] });
    // The worker goes on after the items that failed under it.
    const kept = await app.uploadFile(photo, 'kept.jpg');
    await eventually(async () => expect(await app.storedThumbnails(kept.id)).toEqual(['256.webp']));
  });
});

describe('STOWAGE_THUMBNAILS_AHEAD=off', () => {
  let app: ThumbApp;
  beforeAll(async () => {
    app = await startThumbApp({ STOWAGE_THUMBNAILS_AHEAD: 'off' });
  });
  afterAll(() => app?.close());

  test('renders a thumbnail only when it is asked for', async () => {
    const first = await app.uploadFile(await fixture('DSCN0025.jpg'), 'a.jpg');
    // Had the first been rendered ahead, it would be by the time the second's is asked for and served.
    const second = await app.uploadFile(await fixture('Canon_40D.jpg'), 'b.jpg');
    await imageBytes(await app.thumbnail(second.id));
    expect(await app.storedThumbnails(first.id)).toEqual([]);
    expect(await app.storedThumbnails(second.id)).toEqual(['256.webp']);
  });
});
