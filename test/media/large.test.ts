import crypto from 'node:crypto';
import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, expect, test } from 'vitest';
import {
  MiB,
  pdf,
  pdfStream,
  startMediaApp,
  streamUpload,
  type MediaApp,
  type MediaItem,
} from './media-helpers.ts';

/**
 * A large file over real HTTP, streamed both ways: the server's memory must not grow with the
 * file. The test never holds the file either (a generator produces it, hashes are computed on the
 * fly). STOWAGE_LARGE_TEST_MIB makes it bigger for a benchmark run (e.g. 1024).
 */
const SIZE = Number(process.env.STOWAGE_LARGE_TEST_MIB ?? 256) * MiB;
/** Well below the file size: what streaming costs at most (buffers, heap growth, page cache aside). */
const MAX_GROWTH = 100 * MiB;

let app: MediaApp;

beforeAll(async () => {
  app = await startMediaApp();
  // Warm up both paths once, so the baseline includes the code and its caches.
  const warm = await streamUpload({
    port: app.port,
    token: app.tokens.alice,
    filename: 'warm.pdf',
    chunks: [pdf(100)],
  });
  await download((JSON.parse(warm.body) as MediaItem).urls.content, app.tokens.alice);
});
afterAll(async () => {
  await app?.close();
});

/**
 * V8 collects the garbage of a stream (every chunk is garbage once written) when it sees fit,
 * which lets tens of MiB pile up on a busy machine. Collecting it eagerly while sampling makes
 * the figure show what the server holds, not when the collector last ran. What remains (some tens
 * of MiB: the young generation growing under the allocation rate, allocator slack) is the same for
 * 64 MiB and 1 GiB files.
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Samples the resident set size of this process (which runs the server) until stopped. */
function sampleRss(): { stop(): number } {
  let max = 0;
  const sample = () => {
    gc();
    max = Math.max(max, process.memoryUsage().rss);
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

function download(url: string, token: string): Promise<{ status: number; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      `${app.base}${url}`,
      { headers: { authorization: `Bearer ${token}` } },
      (response) => {
        const hash = crypto.createHash('sha256');
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, bytes, sha256: hash.digest('hex') }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
  });
}

test(`a ${SIZE / MiB} MiB upload and download stream with flat memory`, { timeout: 120_000 }, async () => {
  gc();
  const baseline = process.memoryUsage().rss;
  const rss = sampleRss();

  const sent = crypto.createHash('sha256');
  function* hashed() {
    for (const chunk of pdfStream(SIZE, 256 * 1024)) {
      sent.update(chunk);
      yield chunk;
    }
  }
  const result = await streamUpload({
    port: app.port,
    token: app.tokens.alice,
    filename: 'large.pdf',
    chunks: hashed(),
  });
  expect(result.status, result.body).toBe(201);
  const item = JSON.parse(result.body) as MediaItem;
  const sentSha = sent.digest('hex');
  expect(item).toMatchObject({ size: SIZE, sha256: sentSha, mimeType: 'application/pdf' });

  const back = await download(item.urls.content, app.tokens.alice);
  expect(back).toEqual({ status: 200, bytes: SIZE, sha256: sentSha });

  const growth = rss.stop() - baseline;
  expect(growth, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`).toBeLessThan(MAX_GROWTH);
});
