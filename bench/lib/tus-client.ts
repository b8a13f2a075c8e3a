/**
 * Figure 2's client, run as its own process so it does not share an event loop with the benchmark:
 * tus-js-client (the stock Node client) uploading FILE as a stream in CHUNK-byte PATCH requests,
 * over PARALLEL concatenated partial uploads (default 1: one plain upload).
 * Prints the completing response's Media-Id, the seconds from start() to success, the seconds of
 * the completing request alone (its last chunk plus the server's completion of the whole file, or
 * with PARALLEL > 1 the final concatenation POST), and the seconds of every other PATCH.
 *
 * usage: node tus-client.ts ENDPOINT TOKEN FILE CHUNK [PARALLEL]
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const [endpoint, token, file, chunk, parallel = '1'] = process.argv.slice(2);
const size = fs.statSync(file!).size;
const parallelUploads = Number(parallel);
let mediaId: string | undefined;
let lastSeconds = 0;
const patchSeconds: number[] = [];
const started = performance.now();
// Requests of parallel partial uploads overlap: each is timed from its own start.
const requestStarts = new Map<unknown, number>();

await new Promise<void>((resolve, reject) => {
  const upload = new tus.Upload(parallelUploads > 1 ? fs.readFileSync(file!) : fs.createReadStream(file!), {
    endpoint: endpoint!,
    // A stream needs its size; a buffer (parallel uploads, which must slice it) has one.
    ...(parallelUploads > 1 ? {} : { uploadSize: size }),
    chunkSize: Number(chunk),
    ...(parallelUploads > 1 ? { parallelUploads } : {}),
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: path.basename(file!) },
    retryDelays: [],
    onBeforeRequest: (req) => {
      requestStarts.set(req, performance.now());
    },
    onAfterResponse: (req, res) => {
      const seconds = (performance.now() - (requestStarts.get(req) ?? started)) / 1000;
      const completed = res.getHeader('Media-Id');
      if (completed) {
        mediaId = completed;
        lastSeconds = seconds;
      } else if (req.getMethod() === 'PATCH') {
        patchSeconds.push(seconds);
      }
    },
    onSuccess: () => resolve(),
    onError: reject,
  });
  upload.start();
});

console.log(
  JSON.stringify({ mediaId, seconds: (performance.now() - started) / 1000, lastSeconds, patchSeconds }),
);
