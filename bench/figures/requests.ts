import path from 'node:path';
import type { Context } from '../lib/context.ts';
import { download, expectStatus, uploadForm } from '../lib/curl.ts';
import { expectClean, load, type LoadResult } from '../lib/load.ts';
import { startBaseline, startStowage } from '../lib/servers.ts';
import { rotate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figures 5 and 7b: requests per second with 50 connections. Per round, three wrk runs in rotating
 * order against two long-running servers: the bare hello, Stowage's GET /api/media/{id} (JSON) and
 * Stowage's cached thumbnail of the same item.
 */

const CONNECTIONS = 50;
const WARMUP_SECONDS = 2;

export async function requestFigures(ctx: Context): Promise<Figure[]> {
  const { rounds, loadSeconds } = ctx.settings;
  const stowage = await startStowage(ctx, path.join(ctx.tmp, 'stowage-requests'));
  const hello = await startBaseline(ctx, 'hello.ts');
  const token = await stowage.login();
  const auth = `Authorization: Bearer ${token}`;
  const up = expectStatus(
    await uploadForm(`${stowage.url}/api/media/upload`, ctx.files.jpeg, token),
    201,
    'upload',
  );
  const id = (JSON.parse(up.body) as { id: string }).id;
  const thumbUrl = `${stowage.url}/api/media/${id}/thumbnail?size=256`;
  expectStatus(await download(thumbUrl, token), 200, 'first thumbnail');

  const targets = {
    hello: `${hello.url}/`,
    json: `${stowage.url}/api/media/${id}`,
    thumb: thumbUrl,
  };
  const run = async (url: string, seconds: number): Promise<LoadResult> =>
    expectClean(await load({ url, connections: CONNECTIONS, seconds, headers: [auth], tmp: ctx.tmp }), url);
  for (const url of Object.values(targets)) await run(url, WARMUP_SECONDS);

  const rps = (label: string): Measure => ({ label, unit: 'req/s', values: [] });
  const p99 = (label: string): Measure => ({ label, unit: 'ms', values: [] });
  const m = {
    helloRps: rps('bare node hello'),
    jsonRps: rps('Stowage GET /api/media/{id}'),
    thumbRps: rps('Stowage cached thumbnail'),
    helloP99: p99('bare node hello'),
    jsonP99: p99('Stowage GET /api/media/{id}'),
  };
  for (let r = 0; r < rounds; r++) {
    const [h, j, t] = await rotate(r, [
      () => run(targets.hello, loadSeconds),
      () => run(targets.json, loadSeconds),
      () => run(targets.thumb, loadSeconds),
    ]);
    m.helloRps.values.push(h!.rps);
    m.jsonRps.values.push(j!.rps);
    m.thumbRps.values.push(t!.rps);
    m.helloP99.values.push(h!.p99Ms);
    m.jsonP99.values.push(j!.p99Ms);
    ctx.log(
      `[5/7b] round ${r + 1}/${rounds}: hello ${h!.rps.toFixed(0)} req/s, media ${j!.rps.toFixed(0)} req/s ` +
        `(p99 ${j!.p99Ms.toFixed(1)} ms), thumbnail ${t!.rps.toFixed(0)} req/s`,
    );
  }
  await stowage.stop();
  await hello.stop();

  const wrk = `wrk -t1 -c${CONNECTIONS} -d${loadSeconds}s, after a ${WARMUP_SECONDS} s warm-up of each URL; every response checked to be 2xx.`;
  return [
    {
      id: '5',
      title: `authenticated GET /api/media/{id}, ${CONNECTIONS} connections`,
      how: `A: req/s of GET /api/media/{id} with a Bearer token (JWT check, item read, JSON). B: req/s of bench/baselines/hello.ts (node:http, small JSON body), same headers. ${wrk}`,
      a: m.jsonRps,
      b: m.helloRps,
      target: { on: 'ratio', op: '>=', value: 0.35 },
    },
    {
      id: '5b',
      title: `p99 latency of figure 5's GET /api/media/{id}`,
      how: `A: wrk's p99 latency of figure 5's A runs; B: the same of the hello baseline (context). Target on A itself.`,
      a: m.jsonP99,
      b: m.helloP99,
      target: { on: 'a', op: '<=', value: 20 },
    },
    {
      id: '7b',
      title: 'cached thumbnail (256 px WebP) vs figure 5',
      how: `A: req/s of GET /api/media/{id}/thumbnail?size=256 of the 12 MP JPEG, rendered once before (served from storage). B: figure 5's A, measured in the same rounds. ${wrk}`,
      a: m.thumbRps,
      b: m.jsonRps,
      target: { on: 'ratio', op: '>=', value: 0.5 },
    },
  ];
}
