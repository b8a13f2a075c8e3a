import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../lib/context.ts';
import { download, downloadFollowing, expectStatus, mbps, redirectTarget, uploadForm } from '../lib/curl.ts';
import { fresh, type FreshRun } from '../lib/fresh.ts';
import { fmtSize } from '../lib/rss.ts';
import { s3Bucket, type S3Bucket } from '../lib/s3.ts';
import { deleteMedia, startBaseline, startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figures 10 and 11: uploads and downloads with S3 storage (radosgw) against a bare node:http
 * server doing the same with the AWS SDK (bench/baselines/s3-pipe.ts), and the presigned redirect
 * against curl fetching the presigned URL itself. curl is the client on both sides; every server
 * is started fresh for its one transfer (its peak RSS is then comparable, row 10b).
 */

interface Ctx extends Context {
  dataDir: string;
  s3: S3Bucket;
}

function stowageS3(ctx: Ctx, redirect = false): () => Promise<Stowage> {
  return () =>
    startStowage(ctx, ctx.dataDir, {
      STOWAGE_STORAGE: 's3',
      STOWAGE_S3_ENDPOINT: ctx.s3.endpoint,
      STOWAGE_S3_BUCKET: ctx.s3.bucket,
      STOWAGE_S3_ACCESS_KEY_ID: ctx.s3.accessKeyId,
      STOWAGE_S3_SECRET_ACCESS_KEY: ctx.s3.secretAccessKey,
      STOWAGE_S3_FORCE_PATH_STYLE: 'true',
      ...(redirect ? { STOWAGE_S3_REDIRECT: 'true' } : {}),
    });
}

const bare = (ctx: Ctx) => () =>
  startBaseline(ctx, 's3-pipe.ts', [ctx.s3.bucket], {
    BENCH_S3_ENDPOINT: ctx.s3.endpoint,
    BENCH_S3_ACCESS_KEY: ctx.s3.accessKeyId,
    BENCH_S3_SECRET_KEY: ctx.s3.secretAccessKey,
  });

const sizeOf = (file: string) => fs.statSync(file).size;

/** Figure 10's A: `curl -F` to a fresh Stowage on S3; MB/s and the stored item's id. */
function stowageUpload(ctx: Ctx, file: string): Promise<FreshRun<{ mbps: number; id: string }>> {
  return fresh(stowageS3(ctx), async (s: Stowage) => {
    const t = expectStatus(
      await uploadForm(`${s.url}/api/media/upload`, file, await s.login()),
      201,
      'upload',
    );
    return { mbps: mbps(sizeOf(file), t.seconds), id: (JSON.parse(t.body) as { id: string }).id };
  });
}

/** Figure 10's B: the same `curl -F` to the bare server, which streams the body to `key`. */
function bareUpload(ctx: Ctx, file: string, key: string): Promise<FreshRun<number>> {
  return fresh(bare(ctx), async (s) => {
    return mbps(
      sizeOf(file),
      expectStatus(await uploadForm(`${s.url}/${key}`, file), 201, 'bare upload').seconds,
    );
  });
}

/** Figure 11's A: GET /api/media/{id}/content, streamed by a fresh Stowage from S3; MB/s. */
function stowageDownload(ctx: Ctx, id: string, bytes: number): Promise<FreshRun<number>> {
  return fresh(stowageS3(ctx), async (s: Stowage) => {
    const t = expectStatus(
      await download(`${s.url}/api/media/${id}/content`, await s.login()),
      200,
      'download',
    );
    return mbps(bytes, t.seconds);
  });
}

/** Figure 11's B: GET /KEY from the bare server (GetObject piped to the socket); MB/s. */
function bareDownload(ctx: Ctx, key: string, bytes: number): Promise<FreshRun<number>> {
  return fresh(bare(ctx), async (s) => {
    return mbps(bytes, expectStatus(await download(`${s.url}/${key}`), 200, 'bare download').seconds);
  });
}

/**
 * Figure 11b, A and B on one fresh Stowage with STOWAGE_S3_REDIRECT, in the round's order. A:
 * `curl -L` of /content (the 302 and the presigned GET, both timed). B: the presigned URL of a
 * 302 asked for just before (not timed), fetched by curl. MB/s each.
 */
function redirectPair(ctx: Ctx, r: number, id: string, bytes: number): Promise<FreshRun<[number, number]>> {
  return fresh(stowageS3(ctx, true), async (s: Stowage) => {
    const token = await s.login();
    const url = `${s.url}/api/media/${id}/content`;
    return alternate(
      r,
      async () =>
        mbps(bytes, expectStatus(await downloadFollowing(url, token), 200, 'download (redirect)').seconds),
      async () => {
        const presigned = await redirectTarget(url, token);
        return mbps(bytes, expectStatus(await download(presigned), 200, 'presigned GET').seconds);
      },
    );
  });
}

export async function s3Figures(context: Context): Promise<Figure[]> {
  const ctx: Ctx = {
    ...context,
    dataDir: path.join(context.tmp, 'stowage-s3'),
    s3: await s3Bucket(context),
  };
  const file = ctx.files.main;
  const bytes = sizeOf(file);
  const m = (label: string, unit: string): Measure => ({ label, unit, values: [] });
  const s = {
    up: m('Stowage on S3', 'MB/s'),
    upBare: m('bare lib-storage Upload', 'MB/s'),
    rssUp: m('Stowage on S3', 'MiB'),
    rssUpBare: m('bare S3 server', 'MiB'),
    down: m('Stowage on S3', 'MB/s'),
    downBare: m('bare GetObject pipe', 'MB/s'),
    redirect: m('Stowage 302 + presigned GET', 'MB/s'),
    presigned: m('presigned GET alone', 'MB/s'),
  };
  for (let r = 0; r < ctx.settings.rounds; r++) {
    const label = `round ${r + 1}/${ctx.settings.rounds}`;
    const key = `bare/round-${r}`;
    const [up, upBare] = await alternate(
      r,
      () => stowageUpload(ctx, file),
      () => bareUpload(ctx, file, key),
    );
    s.up.values.push(up.result.mbps);
    s.upBare.values.push(upBare.result);
    s.rssUp.values.push(up.peakRssMiB);
    s.rssUpBare.values.push(upBare.peakRssMiB);
    const id = up.result.id;
    const [down, downBare] = await alternate(
      r,
      () => stowageDownload(ctx, id, bytes),
      () => bareDownload(ctx, key, bytes),
    );
    s.down.values.push(down.result);
    s.downBare.values.push(downBare.result);
    const pair = await redirectPair(ctx, r, id, bytes);
    s.redirect.values.push(pair.result[0]);
    s.presigned.values.push(pair.result[1]);
    // Gigabytes must not pile up on the test cluster's 8 GiB disk.
    await fresh(stowageS3(ctx), async (st: Stowage) => deleteMedia(st, await st.login(), id));
    await ctx.s3.deleteObject(key);
    await ctx.s3.collectGarbage();
    ctx.log(
      `[10] ${label}: upload ${n(up.result.mbps)} MB/s, bare ${n(upBare.result)}; ` +
        `[11] download ${n(down.result)}, bare ${n(downBare.result)}; ` +
        `redirect ${n(pair.result[0])}, presigned ${n(pair.result[1])}`,
    );
  }
  return definitions(s, fmtSize(bytes));
}

function definitions(s: Record<string, Measure>, size: string): Figure[] {
  const fresh = 'Each server process is started fresh for its one transfer.';
  const sdk =
    'the SDK settings of src/storage/s3.ts (path-style, WHEN_REQUIRED checksums, 8 MiB parts, 4 at a time)';
  return [
    {
      id: '10',
      title: `multipart upload of ${size} on S3 (radosgw)`,
      how:
        `A: figure 1's \`curl -F file=@FILE\` of the ${size} random file to a Stowage with STOWAGE_STORAGE=s3 on a local ` +
        `radosgw (scripts/start-ceph-rgw.sh). B: the same curl command to bench/baselines/s3-pipe.ts, a node:http ` +
        `server piping the request body into one \`@aws-sdk/lib-storage\` Upload with ${sdk}, answering when it ` +
        `completes. MB/s = file bytes / curl's time_total. ${fresh}`,
      a: s.up!,
      b: s.upBare!,
      target: { on: 'ratio', op: '>=', value: 0.85 },
    },
    {
      id: '10b',
      title: 'peak RSS during the upload of figure 10, context',
      how: "A: VmHWM of Stowage on S3 over its start and figure 10's upload. B: the same for the bare S3 server.",
      a: s.rssUp!,
      b: s.rssUpBare!,
    },
    {
      id: '11',
      title: `download of ${size} on S3, streamed by Stowage`,
      how:
        `A: \`curl -o /dev/null\` of GET /api/media/{id}/content (Bearer token) of figure 10's item from a Stowage on ` +
        `S3 (no redirect: Stowage streams the GetObject body). B: GET of figure 10's B object from ` +
        `bench/baselines/s3-pipe.ts (GetObject, its body piped to the response). ${fresh}`,
      a: s.down!,
      b: s.downBare!,
      target: { on: 'ratio', op: '>=', value: 0.85 },
    },
    {
      id: '11b',
      title: `download of ${size} on S3 with STOWAGE_S3_REDIRECT`,
      how:
        'A: `curl -L -o /dev/null` of GET /api/media/{id}/content from a Stowage with STOWAGE_S3_REDIRECT=true: ' +
        'the 302 and the presigned GET from radosgw, both timed. B: curl of the presigned URL of a 302 asked for ' +
        'just before (untimed), from the same server.',
      a: s.redirect!,
      b: s.presigned!,
      target: { on: 'ratio', op: '>=', value: 0.95 },
    },
  ];
}

function n(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}
