/**
 * Baseline of figure 7: sharp alone rendering the thumbnail Stowage renders on first request, with
 * the same options (src/images/image-processor.ts: failOn error, sequential read, auto-orient,
 * fit inside SIZE×SIZE without enlargement, WebP quality 80 effort 4), from the same file. One
 * untimed render first (Stowage's sharp has likewise already decoded the image when it probed
 * the upload), then one timed render; prints its milliseconds.
 *
 * usage: node sharp-thumbnail.ts FILE SIZE
 */
import sharp from 'sharp';

const [file, sizeArg] = process.argv.slice(2);
const size = Number(sizeArg ?? 256);

function render(): Promise<Buffer> {
  return sharp(file, {
    failOn: 'error',
    limitInputPixels: 100_000_000,
    sequentialRead: true,
    autoOrient: true,
  })
    .resize(size, size, { fit: 'inside', withoutEnlargement: true })
    .timeout({ seconds: 30 })
    .webp({ quality: 80, effort: 4 })
    .toBuffer();
}

await render();
const started = performance.now();
const output = await render();
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, bytes: output.length }));
