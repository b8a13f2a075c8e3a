/**
 * Baseline of figure 7c: ffmpeg alone extracting the poster frame Stowage extracts (one second
 * in, first video stream, one frame, JPEG q2: src/video/video-tools.ts), then sharp alone making
 * the thumbnail of it with Stowage's options (fit inside SIZE×SIZE, WebP quality 80 effort 4).
 * One untimed run first (Stowage's ffmpeg and sharp have likewise run at upload, for the
 * placeholder), then one timed run; prints its milliseconds.
 *
 * usage: node ffmpeg-poster-thumbnail.ts VIDEO SIZE SCRATCH_DIR
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);
const [file, sizeArg, scratch] = process.argv.slice(2);
const size = Number(sizeArg ?? 256);

async function once(n: number): Promise<Buffer> {
  const poster = path.join(scratch!, `baseline-poster-${process.pid}-${n}.jpg`);
  await run('ffmpeg', [
    ...['-nostdin', '-v', 'error', '-ss', '1.000', '-i', `file:${path.resolve(file!)}`],
    ...['-map', '0:v:0', '-frames:v', '1', '-an', '-sn', '-dn', '-q:v', '2', '-f', 'image2', '-y', poster],
  ]);
  return sharp(poster, { failOn: 'error', sequentialRead: true, autoOrient: true })
    .resize(size, size, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 80, effort: 4 })
    .toBuffer();
}

await once(0);
const started = performance.now();
const output = await once(1);
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, bytes: output.length }));
