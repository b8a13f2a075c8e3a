/**
 * Figure 2's client, run as its own process so it does not share an event loop with the benchmark:
 * tus-js-client (the stock Node client) uploading FILE as a stream in CHUNK-byte PATCH requests.
 * Prints the completing response's Media-Id, the seconds from start() to success, and the seconds
 * of the completing request alone (its 8 MiB plus the server's processing of the whole file).
 *
 * usage: node tus-client.ts ENDPOINT TOKEN FILE CHUNK
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const [endpoint, token, file, chunk] = process.argv.slice(2);
const size = fs.statSync(file!).size;
let mediaId: string | undefined;
let requestStarted = 0;
let lastSeconds = 0;
const started = performance.now();

await new Promise<void>((resolve, reject) => {
  const upload = new tus.Upload(fs.createReadStream(file!), {
    endpoint: endpoint!,
    uploadSize: size,
    chunkSize: Number(chunk),
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: path.basename(file!) },
    retryDelays: [],
    onBeforeRequest: () => {
      requestStarted = performance.now();
    },
    onAfterResponse: (_req, res) => {
      lastSeconds = (performance.now() - requestStarted) / 1000;
      mediaId = res.getHeader('Media-Id') ?? mediaId;
    },
    onSuccess: () => resolve(),
    onError: reject,
  });
  upload.start();
});

console.log(JSON.stringify({ mediaId, seconds: (performance.now() - started) / 1000, lastSeconds }));
