import path from 'node:path';
import { BENCH, type Context } from '../lib/context.ts';
import { download, expectStatus, uploadForm } from '../lib/curl.ts';
import { runOk } from '../lib/proc.ts';
import { deleteMedia, startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figure 7a: the first (uncached) thumbnail of a 12-megapixel JPEG. Each round uploads the photo
 * again (untimed), so the timed request renders; sharp alone renders the same thumbnail from the
 * same file in its own process.
 */

const SIZE = 256;

async function firstThumbnail(stowage: Stowage, token: string, jpeg: string): Promise<number> {
  const up = expectStatus(await uploadForm(`${stowage.url}/api/media/upload`, jpeg, token), 201, 'upload');
  const id = (JSON.parse(up.body) as { id: string }).id;
  const t = expectStatus(
    await download(`${stowage.url}/api/media/${id}/thumbnail?size=${SIZE}`, token),
    200,
    'thumbnail',
  );
  await deleteMedia(stowage, token, id);
  return t.seconds * 1000;
}

async function sharpAlone(jpeg: string): Promise<number> {
  const script = path.join(BENCH, 'baselines', 'sharp-thumbnail.ts');
  const out = await runOk(process.execPath, [script, jpeg, String(SIZE)]);
  return (JSON.parse(out.stdout) as { ms: number }).ms;
}

export async function thumbnailFigures(ctx: Context): Promise<Figure[]> {
  // A render takes a fraction of a second: three times the rounds cost little and steady the median.
  const rounds = ctx.settings.rounds * 3;
  const stowage = await startStowage(ctx, path.join(ctx.tmp, 'stowage-thumbnail'));
  const token = await stowage.login();
  // One untimed render first: the first image a server process ever decodes also loads libvips' codecs.
  await firstThumbnail(stowage, token, ctx.files.jpeg);

  const a: Measure = { label: 'Stowage first thumbnail', unit: 'ms', values: [] };
  const b: Measure = { label: 'sharp alone', unit: 'ms', values: [] };
  for (let r = 0; r < rounds; r++) {
    const [ms, baseline] = await alternate(
      r,
      () => firstThumbnail(stowage, token, ctx.files.jpeg),
      () => sharpAlone(ctx.files.jpeg),
    );
    a.values.push(ms);
    b.values.push(baseline);
    ctx.log(
      `[7] round ${r + 1}/${rounds}: first thumbnail ${ms.toFixed(0)} ms, sharp alone ${baseline.toFixed(0)} ms`,
    );
  }
  await stowage.stop();
  return [
    {
      id: '7a',
      title: `first thumbnail (${SIZE} px WebP) of a 12-megapixel JPEG`,
      how:
        `A: curl's time_total of GET /api/media/{id}/thumbnail?size=${SIZE} right after uploading the 4000×3000 JPEG ` +
        `(renders, stores the rendition, answers it). B: bench/baselines/sharp-thumbnail.ts: the same sharp ` +
        `pipeline and options on the same file, one warm-up render then one timed render. ${rounds} rounds.`,
      a,
      b,
      target: { on: 'ratio', op: '<=', value: 1.3 },
    },
  ];
}
