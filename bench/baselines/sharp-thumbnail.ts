/**
 * Baseline of figures 7a and 7d: sharp alone rendering the thumbnail or rendition Stowage renders
 * on first request, with the same options (src/images/image-processor.ts: failOn error,
 * sequential read, auto-orient, fit inside WIDTH×HEIGHT without enlargement or, with FIT, as
 * FIT says, WebP quality 80 effort 4), from the same file. One untimed render first (Stowage's
 * sharp has likewise already decoded the image when it probed the upload), then one timed
 * render; prints its milliseconds.
 *
 * usage: node sharp-thumbnail.ts FILE WIDTH [HEIGHT FIT]
 */
import sharp from 'sharp';

const [file, widthArg, heightArg, fitArg] = process.argv.slice(2);
const width = Number(widthArg ?? 256);
const height = heightArg === undefined ? width : Number(heightArg);
const fit = (fitArg ?? 'inside') as 'inside' | 'contain' | 'cover';

function render(): Promise<Buffer> {
  return sharp(file, {
    failOn: 'error',
    limitInputPixels: 100_000_000,
    sequentialRead: true,
    autoOrient: true,
  })
    .resize(width, height, {
      fit,
      withoutEnlargement: fit === 'inside',
      position: 'centre',
      background: { r: 255, g: 255, b: 255, alpha: 0 },
    })
    .timeout({ seconds: 30 })
    .webp({ quality: 80, effort: 4 })
    .toBuffer();
}

await render();
const started = performance.now();
const output = await render();
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, bytes: output.length }));
