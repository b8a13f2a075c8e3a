import path from 'node:path';
import { BENCH, type Context } from '../lib/context.ts';
import { download, expectStatus, uploadForm } from '../lib/curl.ts';
import { runOk } from '../lib/proc.ts';
import { deleteMedia, NO_THUMBNAILS_AHEAD, startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figures 7a and 7d: the first (uncached) thumbnail, and the first rendition on demand, of a
 * 12-megapixel JPEG. Each round uploads the photo again (untimed), so the timed request renders;
 * sharp alone renders the same image from the same file in its own process.
 */

const SIZE = 256;
/** Figure 7d's rendition: an 800×800 square cut from the middle of the photo. */
const RENDER = { width: 800, height: 800, fit: 'cover' } as const;

interface FirstRendition {
  id: string;
  title: string;
  label: string;
  /** The path and query after /api/media/{id}. */
  route: string;
  /** bench/baselines/sharp-thumbnail.ts's arguments after the file. */
  baselineArgs: string[];
  how: string;
}

async function firstRendition(stowage: Stowage, token: string, jpeg: string, route: string): Promise<number> {
  const up = expectStatus(await uploadForm(`${stowage.url}/api/media/upload`, jpeg, token), 201, 'upload');
  const id = (JSON.parse(up.body) as { id: string }).id;
  const t = expectStatus(await download(`${stowage.url}/api/media/${id}${route}`, token), 200, route);
  await deleteMedia(stowage, token, id);
  return t.seconds * 1000;
}

async function sharpAlone(jpeg: string, args: string[]): Promise<number> {
  const script = path.join(BENCH, 'baselines', 'sharp-thumbnail.ts');
  const out = await runOk(process.execPath, [script, jpeg, ...args]);
  return (JSON.parse(out.stdout) as { ms: number }).ms;
}

async function measure(ctx: Context, figure: FirstRendition): Promise<Figure> {
  // A render takes a fraction of a second: three times the rounds cost little and steady the median.
  const rounds = ctx.settings.rounds * 3;
  // Measured is the render a first request waits for: no thumbnail rendered ahead may answer it
  // (7a) or share the cores with it (7d).
  const stowage = await startStowage(ctx, path.join(ctx.tmp, `stowage-${figure.id}`), NO_THUMBNAILS_AHEAD);
  const token = await stowage.login();
  // One untimed render first: the first image a server process ever decodes also loads libvips' codecs.
  await firstRendition(stowage, token, ctx.files.jpeg, figure.route);

  const a: Measure = { label: figure.label, unit: 'ms', values: [] };
  const b: Measure = { label: 'sharp alone', unit: 'ms', values: [] };
  for (let r = 0; r < rounds; r++) {
    const [ms, baseline] = await alternate(
      r,
      () => firstRendition(stowage, token, ctx.files.jpeg, figure.route),
      () => sharpAlone(ctx.files.jpeg, figure.baselineArgs),
    );
    a.values.push(ms);
    b.values.push(baseline);
    ctx.log(
      `[${figure.id}] round ${r + 1}/${rounds}: ${figure.label} ${ms.toFixed(0)} ms, sharp alone ${baseline.toFixed(0)} ms`,
    );
  }
  await stowage.stop();
  return {
    id: figure.id,
    title: figure.title,
    how:
      `A: curl's time_total of GET /api/media/{id}${figure.route} right after uploading the 4000×3000 JPEG ` +
      `to a server with STOWAGE_THUMBNAILS_AHEAD=off ` +
      `(renders, stores the rendition, answers it). B: bench/baselines/sharp-thumbnail.ts ${figure.baselineArgs.join(' ')}: ` +
      `${figure.how} on the same file, one warm-up render then one timed render. ${rounds} rounds.`,
    a,
    b,
    target: { on: 'ratio', op: '<=', value: 1.3 },
  };
}

export async function thumbnailFigures(ctx: Context): Promise<Figure[]> {
  return [
    await measure(ctx, {
      id: '7a',
      title: `first thumbnail (${SIZE} px WebP) of a 12-megapixel JPEG`,
      label: 'Stowage first thumbnail',
      route: `/thumbnail?size=${SIZE}`,
      baselineArgs: [String(SIZE)],
      how: 'the same sharp pipeline and options',
    }),
  ];
}

export async function renderFigures(ctx: Context): Promise<Figure[]> {
  const { width, height, fit } = RENDER;
  return [
    await measure(ctx, {
      id: '7d',
      title: `first rendition (${width}×${height} ${fit}, WebP) of a 12-megapixel JPEG`,
      label: 'Stowage first render',
      route: `/render?w=${width}&h=${height}&fit=${fit}`,
      baselineArgs: [String(width), String(height), fit],
      how: 'the same sharp pipeline and options (resize to exactly 800×800, centre crop, WebP q80)',
    }),
  ];
}
