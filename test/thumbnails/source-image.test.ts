import fs from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mediaImageSource } from '../../src/media/image-source.ts';
import { errorCode } from '../images/image-fixtures.ts';
import { ffmpegAvailable, mediaFile } from '../video/media-files.ts';
import { fixture, startThumbApp, type ThumbApp } from './thumb-helpers.ts';

/**
 * mediaImageSource: the one local image every rendition of an item is made from (the
 * original of an image, the upright poster of a video), removed again once it has been used.
 */
describe.runIf(ffmpegAvailable())('the source image of an item', () => {
  let app: ThumbApp;
  beforeAll(async () => {
    app = await startThumbApp();
  });
  afterAll(async () => {
    await app.close();
  });

  const source = () => mediaImageSource(app.services.storage, app.config.dataDir, app.services.video);

  async function record(id: string) {
    const item = await app.services.repo.get(id);
    expect(item).toBeDefined();
    return item!;
  }

  test('an image is its stored original, as is', async () => {
    const data = await fixture('portrait_6.jpg');
    const item = await record((await app.uploadFile(data, 'p.jpg')).id);
    const seen = await source()(item, async (image) => ({
      ...image,
      bytes: await fs.readFile(image.file),
    }));
    expect(seen!.mimeType).toBe('image/jpeg');
    expect(seen!.bytes.equals(data)).toBe(true);
  });

  test('a video is its poster: an upright JPEG, removed after use', async () => {
    const data = await fs.readFile(await mediaFile(app.dir, 'rotated.mp4'));
    const item = await record((await app.uploadFile(data, 'r.mp4')).id);
    const seen = await source()(item, async (image) => ({
      ...image,
      meta: await sharp(image.file).metadata(),
    }));
    expect(seen!.mimeType).toBe('image/jpeg');
    expect({ width: seen!.meta.width, height: seen!.meta.height, format: seen!.meta.format }).toEqual({
      width: 240,
      height: 320,
      format: 'jpeg',
    });
    await expect(fs.stat(seen!.file)).rejects.toThrow();
  });

  test('audio has none; without ffmpeg a video cannot give one (UNSUPPORTED_MEDIA_TYPE)', async () => {
    const audio = await record(
      (await app.uploadFile(await fs.readFile(await mediaFile(app.dir, 'audio.mp3')), 'a.mp3')).id,
    );
    const use = () => Promise.resolve();
    expect(await source()(audio, use)).toBeNull();
    const video = await record(
      (await app.uploadFile(await fs.readFile(await mediaFile(app.dir, 'clip.mp4')), 'c.mp4')).id,
    );
    const withoutFfmpeg = mediaImageSource(app.services.storage, app.config.dataDir, null);
    expect(await errorCode(withoutFfmpeg(video, use))).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});
