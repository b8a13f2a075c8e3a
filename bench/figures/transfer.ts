import fs from 'node:fs';
import path from 'node:path';
import { BENCH, type Context } from '../lib/context.ts';
import { download, expectStatus, mbps, uploadForm, uploadRaw } from '../lib/curl.ts';
import { fresh, type FreshRun } from '../lib/fresh.ts';
import { runOk } from '../lib/proc.ts';
import { fmtSize, MiB } from '../lib/rss.ts';
import {
  deleteMedia,
  startBaseline,
  startNginx,
  startStowage,
  type Server,
  type Stowage,
} from '../lib/servers.ts';
import { alternate, median, rotate, type Figure, type Measure } from '../lib/stats.ts';
import { startNginx as startFrontNginx } from '../../test/helpers/nginx.ts';
import { transferDefinitions, type TransferSeries } from './transfer-defs.ts';

/**
 * Figures 1–4: upload and download throughput against bare servers, and the servers' peak RSS.
 * Every Stowage or bare node server measured here is started fresh for its one transfer (see
 * fresh.ts); nginx runs for the whole group (its memory is not compared). Stowage keeps one data
 * directory across restarts, so the download phase serves the item the upload phase stored.
 */

const TUS_CHUNK = 8 * MiB;

interface Ctx extends Context {
  dataDir: string;
  filesDir: string;
}

const stowage = (ctx: Ctx) => () => startStowage(ctx, ctx.dataDir);
/** The prefix of the internal location in deploy/nginx.conf. */
const ACCEL_PREFIX = '/_stowage_blobs/';
const stowageAccel = (ctx: Ctx) => () =>
  startStowage(ctx, ctx.dataDir, { STOWAGE_ACCEL_REDIRECT: ACCEL_PREFIX });
const bareUpload = (ctx: Ctx) => () => startBaseline(ctx, 'upload-sha256.ts', [ctx.tmp]);
const bareTusServer = (ctx: Ctx) => () => startBaseline(ctx, 'tus-sha256.ts', [ctx.tmp]);
const bareDownload = (ctx: Ctx) => () => startBaseline(ctx, 'download-pipeline.ts', [ctx.filesDir]);
const sizeOf = (file: string) => fs.statSync(file).size;
const idle = async () => undefined;

/** `curl -F` to a fresh Stowage; MB/s and the stored item's id (kept for the download phase). */
function stowageMultipart(ctx: Ctx, file: string): Promise<FreshRun<{ mbps: number; id: string }>> {
  return fresh(stowage(ctx), async (s: Stowage) => {
    const t = await uploadForm(`${s.url}/api/media/upload`, file, await s.login());
    expectStatus(t, 201, 'multipart upload');
    return { mbps: mbps(sizeOf(file), t.seconds), id: (JSON.parse(t.body) as { id: string }).id };
  });
}

/** `curl -F` or `curl -T` to a fresh bare upload server; MB/s. */
function bareUploadOf(ctx: Ctx, send: typeof uploadForm, file: string): Promise<FreshRun<number>> {
  return fresh(bareUpload(ctx), async (s) => {
    return mbps(sizeOf(file), expectStatus(await send(s.url, file), 201, 'bare upload').seconds);
  });
}

interface TusRun {
  mbps: number;
  /** Seconds of the completing request (its last chunk and the completion of the whole file). */
  lastSeconds: number;
  /** Median seconds of the other PATCHes (one chunk each). */
  chunkSeconds: number;
}

/**
 * tus-js-client, in its own process, uploading `file` to `endpoint` over `parallel` concatenated
 * partial uploads (1: one plain upload); MB/s, request times and the completing answer's Media-Id.
 */
async function tusClient(
  ctx: Ctx,
  endpoint: string,
  token: string,
  file: string,
  parallel: number,
): Promise<TusRun & { mediaId: string }> {
  const client = path.join(BENCH, 'lib', 'tus-client.ts');
  const args = [client, endpoint, token, file, String(TUS_CHUNK), String(parallel)];
  const out = JSON.parse((await runOk(process.execPath, args)).stdout) as {
    mediaId?: string;
    seconds: number;
    lastSeconds: number;
    patchSeconds: number[];
  };
  if (!out.mediaId) throw new Error('tus upload finished without a Media-Id');
  const chunkSeconds = median(out.patchSeconds);
  ctx.log(
    `[2] tus ×${parallel} to ${new URL(endpoint).pathname}: ${out.seconds.toFixed(2)} s, ` +
      `completing request ${out.lastSeconds.toFixed(2)} s, median PATCH ${chunkSeconds.toFixed(3)} s`,
  );
  return {
    mediaId: out.mediaId,
    mbps: mbps(sizeOf(file), out.seconds),
    lastSeconds: out.lastSeconds,
    chunkSeconds,
  };
}

/** tus-js-client to a fresh Stowage (see tusClient); the item is deleted after. */
function stowageTus(ctx: Ctx, file: string, parallel = 1): Promise<FreshRun<TusRun>> {
  let id = '';
  return fresh(
    stowage(ctx),
    async (s: Stowage) => {
      const { mediaId, ...run } = await tusClient(
        ctx,
        `${s.url}/api/media/uploads`,
        await s.login(),
        file,
        parallel,
      );
      id = mediaId;
      return run;
    },
    async (s) => deleteMedia(s, await s.login(), id),
  );
}

/** The same client to a fresh bare tus server (bench/baselines/tus-sha256.ts); MB/s. */
function bareTus(ctx: Ctx, file: string): Promise<FreshRun<number>> {
  return fresh(bareTusServer(ctx), async (s) => {
    return (await tusClient(ctx, `${s.url}/uploads`, 'unused', file, 1)).mbps;
  });
}

/** GET /api/media/{id}/content from a fresh Stowage; MB/s. The item is deleted after, if `remove`. */
function stowageDownload(ctx: Ctx, id: string, bytes: number, remove = true): Promise<FreshRun<number>> {
  let token = '';
  return fresh(
    stowage(ctx),
    async (s: Stowage) => {
      token = await s.login();
      const t = expectStatus(await download(`${s.url}/api/media/${id}/content`, token), 200, 'download');
      return mbps(bytes, t.seconds);
    },
    async (s) => (remove ? deleteMedia(s, token, id) : undefined),
  );
}

/**
 * GET /api/media/{id}/content through nginx running deploy/nginx.conf in front of a fresh Stowage
 * with STOWAGE_ACCEL_REDIRECT: Stowage authorises, nginx sends the file (sendfile); MB/s.
 */
function accelDownload(ctx: Ctx, id: string, bytes: number): Promise<FreshRun<number>> {
  return fresh(stowageAccel(ctx), async (s: Stowage) => {
    const front = await startFrontNginx({
      dir: fs.mkdtempSync(path.join(ctx.tmp, 'nginx-accel-')),
      upstreams: [new URL(s.url).host],
      blobRoot: path.join(ctx.dataDir, 'blobs'),
      accessLog: false,
    });
    try {
      const url = `${front.base}/api/media/${id}/content`;
      const t = expectStatus(await download(url, await s.login()), 200, 'download through nginx (accel)');
      return mbps(bytes, t.seconds);
    } finally {
      await front.stop();
    }
  });
}

/** GET /NAME from nginx or the bare download server; MB/s. */
async function plainDownload(server: Server, file: string): Promise<number> {
  const t = await download(`${server.url}/${path.basename(file)}`);
  return mbps(sizeOf(file), expectStatus(t, 200, `${server.name} download`).seconds);
}

function series(ctx: Ctx): TransferSeries {
  const m = (label: string, unit: string): Measure => ({ label, unit, values: [] });
  const [large, small] = [fmtSize(ctx.settings.largestBytes), fmtSize(ctx.settings.smallBytes)];
  return {
    up: m('Stowage', 'MB/s'),
    upBare: m('bare pipe+SHA-256', 'MB/s'),
    tus: m('Stowage tus', 'MB/s'),
    tusBare: m('bare pipe+SHA-256 (curl -T)', 'MB/s'),
    tusBareTus: m('bare tus server (tus-js-client)', 'MB/s'),
    tusParallel: m('Stowage tus, parallelUploads 4', 'MB/s'),
    tusLast: m('completing PATCH', 's'),
    tusChunk: m('one 8 MiB PATCH (median)', 's'),
    tusDocumentLast: m('completing PATCH, document', 's'),
    tusDocumentChunk: m('one 8 MiB PATCH (median), document', 's'),
    rssTusLargest: m(`Stowage tus, ${large}`, 'MiB'),
    rssTusSmall: m(`Stowage tus, ${small}`, 'MiB'),
    down: m('Stowage', 'MB/s'),
    accel: m('nginx + Stowage (X-Accel-Redirect)', 'MB/s'),
    nginx: m('nginx sendfile', 'MB/s'),
    downBare: m('bare node pipeline', 'MB/s'),
    rssUp: m('Stowage', 'MiB'),
    rssUpBare: m('bare upload server', 'MiB'),
    rssDown: m('Stowage', 'MiB'),
    rssDownBare: m('bare download server', 'MiB'),
    rssIdle: m('Stowage', 'MiB'),
    rssIdleBare: m('bare upload server', 'MiB'),
    rssUpGrowth: m('Stowage', 'MiB'),
    rssUpGrowthBare: m('bare upload server', 'MiB'),
    rssDownGrowth: m('Stowage', 'MiB'),
    rssDownGrowthBare: m('bare download server', 'MiB'),
    rssUpLargest: m(`Stowage, ${large}`, 'MiB'),
    rssUpSmall: m(`Stowage, ${small}`, 'MiB'),
    rssDownLargest: m(`Stowage, ${large}`, 'MiB'),
    rssDownSmall: m(`Stowage, ${small}`, 'MiB'),
  };
}

/** One round: every measurement once, each A/B pair in the round's order. */
async function round(ctx: Ctx, nginx: Server, r: number, s: TransferSeries): Promise<void> {
  const label = `round ${r + 1}/${ctx.settings.rounds}`;
  const main = ctx.files.main;
  const push = (m: Measure, value: number) => m.values.push(value);

  // Figures 1 and 4a.
  const [up, upBare] = await alternate(
    r,
    () => stowageMultipart(ctx, main),
    () => bareUploadOf(ctx, uploadForm, main),
  );
  push(s.up, up.result.mbps);
  push(s.upBare, upBare.result);
  push(s.rssUp, up.peakRssMiB);
  push(s.rssUpBare, upBare.peakRssMiB);
  ctx.log(`[1] ${label}: multipart ${n(up.result.mbps)} MB/s, bare ${n(upBare.result)} MB/s`);

  // Figures 2, 2d and 2e: Stowage and the bare tus server with the same client, the bare pipe with curl.
  const [tusRun, tusBareRun, tusBareTusRun] = await rotate<FreshRun<TusRun | number>>(r, [
    () => stowageTus(ctx, main),
    () => bareUploadOf(ctx, uploadRaw, main),
    () => bareTus(ctx, main),
  ]);
  const tus = tusRun as FreshRun<TusRun>;
  const tusBare = tusBareRun!.result as number;
  const tusBareTus = tusBareTusRun!.result as number;
  push(s.tus, tus.result.mbps);
  push(s.tusBare, tusBare);
  push(s.tusBareTus, tusBareTus);
  push(s.tusLast, tus.result.lastSeconds);
  push(s.tusChunk, tus.result.chunkSeconds);
  ctx.log(
    `[2] ${label}: tus ${n(tus.result.mbps)} MB/s, bare pipe ${n(tusBare)} MB/s, bare tus ${n(tusBareTus)} MB/s`,
  );

  // Figure 2b: the same upload over 4 parallel partial uploads (concatenation), after figure 2's.
  const tusParallel = await stowageTus(ctx, main, 4);
  push(s.tusParallel, tusParallel.result.mbps);
  ctx.log(`[2b] ${label}: tus ×4 ${n(tusParallel.result.mbps)} MB/s`);

  // Figure 2f: figure 2c's two times for the same bytes typed as a document.
  const tusDocument = await stowageTus(ctx, ctx.files.document);
  push(s.tusDocumentLast, tusDocument.result.lastSeconds);
  push(s.tusDocumentChunk, tusDocument.result.chunkSeconds);

  // Figure 4h: peak RSS of the tus path, small file vs the largest.
  const tusSmall = await stowageTus(ctx, ctx.files.small);
  const tusLargest = ctx.files.largest === main ? tus : await stowageTus(ctx, ctx.files.largest);
  push(s.rssTusSmall, tusSmall.peakRssMiB);
  push(s.rssTusLargest, tusLargest.peakRssMiB);

  // Figures 3, 3b, 3c and 4b: the item figure 1 stored through nginx with X-Accel-Redirect and
  // streamed by Stowage, then the same file from nginx and the bare server; deleted after.
  const id = up.result.id;
  const [accel, down, viaNginx, downBare] = await rotate<FreshRun<number>>(r, [
    () => accelDownload(ctx, id, sizeOf(main)),
    () => stowageDownload(ctx, id, sizeOf(main), false),
    async () => ({ result: await plainDownload(nginx, main), peakRssMiB: NaN }),
    () => fresh(bareDownload(ctx), (server) => plainDownload(server, main)),
  ]);
  await fresh(stowage(ctx), async (s: Stowage) => deleteMedia(s, await s.login(), id));
  push(s.accel, accel!.result);
  push(s.down, down!.result);
  push(s.nginx, viaNginx!.result);
  push(s.downBare, downBare!.result);
  push(s.rssDown, down!.peakRssMiB);
  push(s.rssDownBare, downBare!.peakRssMiB);
  ctx.log(
    `[3] ${label}: nginx+Stowage (accel) ${n(accel!.result)} MB/s, Stowage ${n(down!.result)}, ` +
      `nginx ${n(viaNginx!.result)}, bare ${n(downBare!.result)}`,
  );

  // Figure 4c/4d: the same transfers with the small file, and with the largest (full mode: 4 GiB).
  const smallUp = await stowageMultipart(ctx, ctx.files.small);
  const smallDown = await stowageDownload(ctx, smallUp.result.id, sizeOf(ctx.files.small));
  push(s.rssUpSmall, smallUp.peakRssMiB);
  push(s.rssDownSmall, smallDown.peakRssMiB);
  if (ctx.files.largest === main) {
    push(s.rssUpLargest, up.peakRssMiB);
    push(s.rssDownLargest, down!.peakRssMiB);
  } else {
    const largeUp = await stowageMultipart(ctx, ctx.files.largest);
    const largeDown = await stowageDownload(ctx, largeUp.result.id, sizeOf(ctx.files.largest));
    push(s.rssUpLargest, largeUp.peakRssMiB);
    push(s.rssDownLargest, largeDown.peakRssMiB);
  }

  // Figure 4e–4g: each server started and left idle, to separate footprint from per-transfer memory.
  const [stowageIdle, upIdle, downIdle] = await rotate<FreshRun<undefined>>(r, [
    () => fresh(stowage(ctx), idle),
    () => fresh(bareUpload(ctx), idle),
    () => fresh(bareDownload(ctx), idle),
  ]);
  push(s.rssIdle, stowageIdle!.peakRssMiB);
  push(s.rssIdleBare, upIdle!.peakRssMiB);
  push(s.rssUpGrowth, up.peakRssMiB - stowageIdle!.peakRssMiB);
  push(s.rssUpGrowthBare, upBare.peakRssMiB - upIdle!.peakRssMiB);
  push(s.rssDownGrowth, down!.peakRssMiB - stowageIdle!.peakRssMiB);
  push(s.rssDownGrowthBare, downBare!.peakRssMiB - downIdle!.peakRssMiB);
  ctx.log(
    `[4] ${label}: peak RSS idle ${n(stowageIdle!.peakRssMiB)} MiB (bare ${n(upIdle!.peakRssMiB)}), ` +
      `upload ${n(up.peakRssMiB)} (bare ${n(upBare.peakRssMiB)}), download ${n(down!.peakRssMiB)} (bare ${n(downBare!.peakRssMiB)})`,
  );
}

export async function transferFigures(context: Context): Promise<Figure[]> {
  const ctx: Ctx = {
    ...context,
    dataDir: path.join(context.tmp, 'stowage-transfer'),
    filesDir: path.dirname(context.files.main),
  };
  const nginx = await startNginx(ctx, ctx.filesDir);
  const s = series(ctx);
  for (let r = 0; r < ctx.settings.rounds; r++) await round(ctx, nginx, r, s);
  await nginx.stop();
  return transferDefinitions(s, {
    main: fmtSize(sizeOf(ctx.files.main)),
    small: fmtSize(ctx.settings.smallBytes),
    largest: fmtSize(ctx.settings.largestBytes),
  });
}

function n(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}
