import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { BENCH, type Context } from '../lib/context.ts';
import { download, expectStatus, mbps, uploadForm } from '../lib/curl.ts';
import { runOk } from '../lib/proc.ts';
import { deleteMedia, NO_THUMBNAILS_AHEAD, startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figure 7c: the first poster thumbnail of a 10 s 1080p H.264 video against ffmpeg extracting the
 * same frame alone plus sharp. Figure 12: uploading a 12-megapixel JPEG with camera data and
 * ThumbHash against the same build with them switched off (STOWAGE_MEDIA_METADATA=off).
 */

const SIZE = 256;

async function makeVideo(ctx: Context): Promise<string> {
  const out = path.join(ctx.tmp, 'files', 'full-hd-10s.mp4');
  await runOk('ffmpeg', [
    ...['-v', 'error', '-nostdin', '-y'],
    ...['-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=25:duration=10'],
    ...['-f', 'lavfi', '-i', 'sine=frequency=440:duration=10'],
    ...['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', out],
  ]);
  return out;
}

/** The 12 MP photo of figure 7a with a camera's EXIF block (and GPS), as a phone would send it. */
async function makeCameraPhoto(ctx: Context): Promise<string> {
  const out = path.join(ctx.tmp, 'files', 'photo-12mp-exif.jpg');
  await sharp(ctx.files.jpeg)
    .withExif({
      IFD0: { Make: 'NIKON', Model: 'COOLPIX P6000' },
      IFD2: {
        DateTimeOriginal: '2024:05:01 10:22:03',
        ExposureTime: '1/250',
        FNumber: '45/10',
        ISOSpeedRatings: '64',
      },
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '43/1 28/1 6114/1000',
        GPSLongitudeRef: 'E',
        GPSLongitude: '11/1 52/1 538860/10000',
      },
    })
    .jpeg({ quality: 90 })
    .toFile(out);
  return out;
}

async function firstPosterThumbnail(stowage: Stowage, token: string, video: string): Promise<number> {
  const up = expectStatus(await uploadForm(`${stowage.url}/api/media/upload`, video, token), 201, 'upload');
  const id = (JSON.parse(up.body) as { id: string }).id;
  const t = expectStatus(
    await download(`${stowage.url}/api/media/${id}/thumbnail?size=${SIZE}`, token),
    200,
    'thumbnail',
  );
  await deleteMedia(stowage, token, id);
  return t.seconds * 1000;
}

async function baseline(ctx: Context, video: string): Promise<number> {
  const script = path.join(BENCH, 'baselines', 'ffmpeg-poster-thumbnail.ts');
  const out = await runOk(process.execPath, [script, video, String(SIZE), ctx.tmp]);
  return (JSON.parse(out.stdout) as { ms: number }).ms;
}

/** Uploads per round of figure 12: one upload takes a few hundred ms, too short to time alone. */
const UPLOADS_PER_ROUND = 4;

/** MB/s over UPLOADS_PER_ROUND uploads of `file`, one after the other (each deleted, untimed). */
async function uploadRate(stowage: Stowage, token: string, file: string, bytes: number): Promise<number> {
  let seconds = 0;
  for (let i = 0; i < UPLOADS_PER_ROUND; i++) {
    const up = expectStatus(await uploadForm(`${stowage.url}/api/media/upload`, file, token), 201, 'upload');
    seconds += up.seconds;
    await deleteMedia(stowage, token, (JSON.parse(up.body) as { id: string }).id);
  }
  return mbps(bytes * UPLOADS_PER_ROUND, seconds);
}

export async function mediaMetadataFigures(ctx: Context): Promise<Figure[]> {
  const rounds = ctx.settings.rounds * 3;
  const [video, photo] = await Promise.all([makeVideo(ctx), makeCameraPhoto(ctx)]);
  const photoBytes = fs.statSync(photo).size;
  // Figure 12 is the cost of the metadata alone: neither server renders thumbnails ahead, which
  // would run behind each upload and slow the next one on these two cores (on both alike).
  const on = await startStowage(ctx, path.join(ctx.tmp, 'stowage-metadata-on'), NO_THUMBNAILS_AHEAD);
  const off = await startStowage(ctx, path.join(ctx.tmp, 'stowage-metadata-off'), {
    ...NO_THUMBNAILS_AHEAD,
    STOWAGE_MEDIA_METADATA: 'off',
  });
  const [tokenOn, tokenOff] = [await on.login(), await off.login()];
  // Untimed warm-ups: the first decode of a server process loads libvips' codecs.
  await firstPosterThumbnail(on, tokenOn, video);
  await uploadRate(on, tokenOn, photo, photoBytes);
  await uploadRate(off, tokenOff, photo, photoBytes);

  const poster: Measure = { label: 'Stowage first poster thumbnail', unit: 'ms', values: [] };
  const alone: Measure = { label: 'ffmpeg + sharp alone', unit: 'ms', values: [] };
  const withMeta: Measure = { label: 'upload with metadata', unit: 'MB/s', values: [] };
  const without: Measure = { label: 'upload, metadata off', unit: 'MB/s', values: [] };
  for (let r = 0; r < rounds; r++) {
    const [ms, base] = await alternate(
      r,
      () => firstPosterThumbnail(on, tokenOn, video),
      () => baseline(ctx, video),
    );
    poster.values.push(ms);
    alone.values.push(base);
    const [a, b] = await alternate(
      r,
      () => uploadRate(on, tokenOn, photo, photoBytes),
      () => uploadRate(off, tokenOff, photo, photoBytes),
    );
    withMeta.values.push(a);
    without.values.push(b);
    ctx.log(
      `[7c/12] round ${r + 1}/${rounds}: poster thumbnail ${ms.toFixed(0)} ms vs ${base.toFixed(0)} ms alone; ` +
        `upload ${a.toFixed(1)} vs ${b.toFixed(1)} MB/s`,
    );
  }
  await Promise.all([on.stop(), off.stop()]);
  return [
    {
      id: '7c',
      title: `first poster thumbnail (${SIZE} px WebP) of a 10 s 1080p H.264 video`,
      how:
        `A: curl's time_total of GET /api/media/{id}/thumbnail?size=${SIZE} right after uploading the 10 s ` +
        `1920×1080 H.264 + AAC MP4 (extracts the frame at 1 s with ffmpeg, renders, stores, answers). ` +
        `B: bench/baselines/ffmpeg-poster-thumbnail.ts: the same ffmpeg command and sharp pipeline on the ` +
        `same file, one warm-up run then one timed run. ${rounds} rounds.`,
      a: poster,
      b: alone,
      target: { on: 'ratio', op: '<=', value: 1.3 },
    },
    {
      id: '12',
      title: 'upload of a 12-megapixel camera JPEG with metadata and ThumbHash vs without',
      how:
        'A: curl -F upload of the 4000×3000 JPEG with an EXIF block (camera, time, GPS) to a server with ' +
        'STOWAGE_MEDIA_METADATA on (exifr, a ≤100 px decode instead of 8 px, ThumbHash); B: the same upload ' +
        `to a server of the same build with it off; both with STOWAGE_THUMBNAILS_AHEAD=off. MB/s of each over ${UPLOADS_PER_ROUND} uploads in a row; ` +
        `${rounds} rounds.`,
      a: withMeta,
      b: without,
      target: { on: 'ratio', op: '>=', value: 0.9 },
    },
  ];
}
