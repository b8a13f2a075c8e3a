/**
 * Baseline of figures 10 and 11: a bare node:http server in front of an S3 bucket, with the SDK
 * settings Stowage uses (src/storage/s3.ts: path-style, WHEN_REQUIRED checksums; 8 MiB parts, 4
 * at a time). POST or PUT /KEY pipes the request body (whatever it is: multipart or raw) into an
 * `@aws-sdk/lib-storage` Upload and answers 201 once it is complete; GET /KEY pipes a GetObject
 * body into the response, Content-Length set. Nothing else: no authentication, no database.
 *
 * usage: BENCH_S3_ENDPOINT=… BENCH_S3_ACCESS_KEY=… BENCH_S3_SECRET_KEY=… node s3-pipe.ts PORT BUCKET
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

const [port, bucket] = process.argv.slice(2);
const client = new S3Client({
  endpoint: process.env.BENCH_S3_ENDPOINT,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: {
    accessKeyId: process.env.BENCH_S3_ACCESS_KEY ?? '',
    secretAccessKey: process.env.BENCH_S3_SECRET_KEY ?? '',
  },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});

function fail(res: http.ServerResponse, error: unknown): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(500);
  res.end(String(error));
}

http
  .createServer((req, res) => {
    const key = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    if (key === '' || key === 'ready') return void res.end('ready');
    if (req.method === 'POST' || req.method === 'PUT') {
      const upload = new Upload({
        client,
        params: { Bucket: bucket, Key: key, Body: req },
        partSize: 8 * 1024 * 1024,
        queueSize: 4,
      });
      upload.done().then(
        () => {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ key }));
        },
        (error: unknown) => fail(res, error),
      );
      return;
    }
    client.send(new GetObjectCommand({ Bucket: bucket, Key: key })).then(
      (object) => {
        if (!(object.Body instanceof Readable)) return fail(res, 'GetObject returned no stream');
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': object.ContentLength,
        });
        pipeline(object.Body, res).catch(() => res.destroy());
      },
      (error: unknown) => fail(res, error),
    );
  })
  .listen(Number(port), '127.0.0.1');
