import type { Figure, Measure } from '../lib/stats.ts';

/** The round-by-round series of figures 1–4 (see transfer.ts for how each is measured). */
export interface TransferSeries {
  up: Measure;
  upBare: Measure;
  tus: Measure;
  tusBare: Measure;
  tusBareTus: Measure;
  tusParallel: Measure;
  tusLast: Measure;
  tusChunk: Measure;
  tusDocumentLast: Measure;
  tusDocumentChunk: Measure;
  rssTusLargest: Measure;
  rssTusSmall: Measure;
  down: Measure;
  accel: Measure;
  nginx: Measure;
  downBare: Measure;
  rssUp: Measure;
  rssUpBare: Measure;
  rssDown: Measure;
  rssDownBare: Measure;
  rssIdle: Measure;
  rssIdleBare: Measure;
  rssUpGrowth: Measure;
  rssUpGrowthBare: Measure;
  rssDownGrowth: Measure;
  rssDownGrowthBare: Measure;
  rssUpLargest: Measure;
  rssUpSmall: Measure;
  rssDownLargest: Measure;
  rssDownSmall: Measure;
}

/** What each of figures 1–4 compares, in words, with its target. Sizes are display strings. */
export function transferDefinitions(
  s: TransferSeries,
  size: { main: string; small: string; largest: string },
): Figure[] {
  const file = `the ${size.main} random file`;
  const fresh = 'Each server process is started fresh for its one transfer.';
  return [
    {
      id: '1',
      title: `multipart upload of ${size.main}, scanning off`,
      how:
        `A: \`curl -F file=@FILE\` of ${file} to Stowage's POST /api/media/upload (type sniffing, SHA-256, ` +
        `size limit, blob written and fsynced, SQLite row). B: the same curl command to ` +
        `bench/baselines/upload-sha256.ts (node:http body → SHA-256 → file, fsynced). ` +
        `MB/s = file bytes / curl's time_total. ${fresh}`,
      a: s.up,
      b: s.upBare,
      target: { on: 'ratio', op: '>=', value: 0.75 },
    },
    {
      id: '2',
      title: `tus upload of ${size.main} in 8 MiB chunks`,
      how:
        `A: tus-js-client (its own process, file read as a stream, chunkSize 8 MiB) uploading ${file} to ` +
        `/api/media/uploads until the completing PATCH answers with Media-Id; seconds from start() to ` +
        `onSuccess. B: \`curl -T FILE\` (one streamed PUT) to bench/baselines/upload-sha256.ts. ${fresh}`,
      a: s.tus,
      b: s.tusBare,
      target: { on: 'ratio', op: '>=', value: 0.85 },
    },
    {
      id: '2b',
      title: `tus upload of ${size.main}, parallelUploads 4 vs one stream`,
      how:
        `A: figure 2's upload with tus-js-client's \`parallelUploads: 4\` (four partial uploads sent at ` +
        `once, then one concatenation POST that stores the file; the client reads the file into memory ` +
        `first, outside the timed part). B: figure 2's A of the same round. ${fresh}`,
      a: s.tusParallel,
      b: s.tus,
    },
    {
      id: '2c',
      title: `tus: the completing PATCH of ${size.main} vs one 8 MiB PATCH`,
      how:
        "A: seconds of figure 2's completing PATCH (its last 8 MiB, then the completion of the whole file: " +
        'checks, commit, Media-Id). B: the median seconds of the other PATCHes of the same upload (8 MiB each). ' +
        'The difference is the time from the last byte to the answer.',
      a: s.tusLast,
      b: s.tusChunk,
      target: { on: 'ratio', op: '<=', value: 3 },
    },
    {
      id: '2f',
      title: `tus: figure 2c for a document of ${size.main} (no ffprobe at completion)`,
      how:
        "A and B as in figure 2c, for the same random bytes under a PDF's first line instead of an MP4's " +
        "`ftyp` box: a document's completion starts no ffprobe (a video's does, for its metadata). " +
        `What figure 2c is without the video's metadata. ${fresh}`,
      a: s.tusDocumentLast,
      b: s.tusDocumentChunk,
    },
    {
      id: '2d',
      title: `tus upload of ${size.main}: Stowage vs a bare tus server, the same client`,
      how:
        "A: figure 2's A. B: the same tus-js-client command to bench/baselines/tus-sha256.ts (node:http: " +
        'each PATCH piped through the running SHA-256 into the file, fsynced at the end; no checks, no ' +
        `database, no locks). What Stowage's own work costs on the resumable path. ${fresh}`,
      a: s.tus,
      b: s.tusBareTus,
      target: { on: 'ratio', op: '>=', value: 0.85 },
    },
    {
      id: '2e',
      title: `tus upload of ${size.main}: the bare tus server vs the bare pipe (what figure 2 can reach)`,
      how:
        "A: figure 2d's B (tus-js-client to the bare tus server). B: figure 2's B (`curl -T` to the bare " +
        'pipe). The ceiling of figure 2 on this machine: the cost of the client and of one round trip per ' +
        '8 MiB, with no server work at all to speak of.',
      a: s.tusBareTus,
      b: s.tusBare,
    },
    {
      id: '3',
      title: `download of ${size.main} (/content) through nginx with X-Accel-Redirect`,
      how:
        `A: \`curl -o /dev/null\` of GET /api/media/{id}/content (Bearer token) through Debian's nginx running ` +
        `deploy/nginx.conf (master_process off, no access log) in front of a freshly started Stowage with ` +
        `STOWAGE_ACCEL_REDIRECT: Stowage authorises, nginx sends the file from its internal location. ` +
        `B: the same file from nginx alone (sendfile on, a single process). Page cache warm for both. ` +
        `MB/s = bytes / curl's time_total.`,
      a: s.accel,
      b: s.nginx,
      target: { on: 'ratio', op: '>=', value: 0.9 },
    },
    {
      id: '3b',
      title: 'download streamed by Stowage (no proxy) vs nginx alone, context',
      how:
        'A: `curl -o /dev/null` of GET /api/media/{id}/content straight from a freshly started Stowage, ' +
        "which streams the file (no STOWAGE_ACCEL_REDIRECT). B: figure 3's B.",
      a: s.down,
      b: s.nginx,
    },
    {
      id: '3c',
      title: 'download streamed by Stowage vs a bare node:http stream.pipeline server',
      how:
        "A: figure 3b's A. B: bench/baselines/download-pipeline.ts (fs.createReadStream piped into the " +
        'response with stream.pipeline), fresh process.',
      a: s.down,
      b: s.downBare,
      target: { on: 'ratio', op: '>=', value: 1 },
    },
    {
      id: '4a',
      title: 'peak RSS during the upload of figure 1',
      how: "A: VmHWM of the Stowage process over its start and figure 1's upload. B: VmHWM of the bare upload server over the same.",
      a: s.rssUp,
      b: s.rssUpBare,
      target: { on: 'ratio', op: '<=', value: 1.5 },
    },
    {
      id: '4b',
      title: 'peak RSS during the streamed download of figure 3b',
      how: "A: VmHWM of the Stowage process over its start and figure 3b's download. B: VmHWM of the bare download server (3c) over the same.",
      a: s.rssDown,
      b: s.rssDownBare,
      target: { on: 'ratio', op: '<=', value: 1.5 },
    },
    {
      id: '4c',
      title: `peak RSS flat with file size: upload ${size.largest} vs ${size.small}`,
      how: `A: Stowage's VmHWM over a multipart upload of ${size.largest}; B: the same with ${size.small}. "Flat" is taken as at most 10 % more.`,
      a: s.rssUpLargest,
      b: s.rssUpSmall,
      target: { on: 'ratio', op: '<=', value: 1.1 },
    },
    {
      id: '4d',
      title: `peak RSS flat with file size: download ${size.largest} vs ${size.small}`,
      how: `A: Stowage's VmHWM over the /content download of ${size.largest}; B: the same with ${size.small}.`,
      a: s.rssDownLargest,
      b: s.rssDownSmall,
      target: { on: 'ratio', op: '<=', value: 1.1 },
    },
    {
      id: '4h',
      title: `peak RSS flat with file size: tus upload ${size.largest} vs ${size.small}`,
      how: `A: Stowage's VmHWM over figure 2's tus upload of ${size.largest}; B: the same with ${size.small}.`,
      a: s.rssTusLargest,
      b: s.rssTusSmall,
      target: { on: 'ratio', op: '<=', value: 1.1 },
    },
    {
      id: '4e',
      title: 'peak RSS of a started, idle server (context for 4a/4b)',
      how: "A: VmHWM of a freshly started Stowage that served nothing (only /healthz polled until ready). B: the same for the bare upload server. Both run .ts through Node's type stripping.",
      a: s.rssIdle,
      b: s.rssIdleBare,
    },
    {
      id: '4f',
      title: 'RSS added by the upload (4a minus idle)',
      how: "A: 4a's A minus 4e's A of the same round. B: 4a's B minus the bare upload server's idle peak. What the transfer itself costs, without the fixed footprint.",
      a: s.rssUpGrowth,
      b: s.rssUpGrowthBare,
    },
    {
      id: '4g',
      title: 'RSS added by the download (4b minus idle)',
      how: "A: 4b's A minus 4e's A of the same round. B: 4b's B minus the bare download server's idle peak.",
      a: s.rssDownGrowth,
      b: s.rssDownGrowthBare,
    },
  ];
}
