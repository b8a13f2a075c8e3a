import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';

/**
 * A real S3 server for the tests that need one: Ceph's S3 gateway (radosgw), which `.ci/run`
 * starts with scripts/start-ceph-rgw.sh and points the tests at through STOWAGE_TEST_S3_ENDPOINT,
 * STOWAGE_TEST_S3_ACCESS_KEY and STOWAGE_TEST_S3_SECRET_KEY. Every test file gets its own bucket
 * on it, emptied and deleted after. Without the variables the S3 suites are skipped, except on CI
 * (CI=true), where a skipped S3 suite would hide that nothing was tested: there they fail.
 */
const endpoint = process.env.STOWAGE_TEST_S3_ENDPOINT?.trim() || undefined;
const accessKeyId = process.env.STOWAGE_TEST_S3_ACCESS_KEY?.trim() || 'stowage-test';
const secretAccessKey = process.env.STOWAGE_TEST_S3_SECRET_KEY?.trim() || 'stowage-test-secret';
const onCi = process.env.CI === 'true' || process.env.CI === '1';
const REGION = 'us-east-1';
let told = false;

/**
 * Whether the S3 suites can run; says once (per test file) why not when they cannot. Throws on CI
 * without a server, so the test file fails instead of being skipped.
 */
export function s3Available(): boolean {
  if (endpoint) return true;
  if (onCi) {
    throw new Error(
      'STOWAGE_TEST_S3_ENDPOINT is not set on CI: the S3 suites must run (.ci/run starts radosgw with scripts/start-ceph-rgw.sh)',
    );
  }
  if (!told) {
    told = true;
    console.warn(
      'skipping S3 tests: start radosgw with `bash scripts/start-ceph-rgw.sh` and export the STOWAGE_TEST_S3_* variables it prints to run them',
    );
  }
  return false;
}

/** What an S3 client needs to reach one test bucket. */
export interface S3Target {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export interface TestBucket extends S3Target {
  /** Aborts every unfinished multipart upload, deletes every object, then the bucket. */
  drop(): Promise<void>;
}

/** A plain SDK client for `target`, with the settings the app uses (see src/storage/s3.ts). */
export function s3Client(target: Omit<S3Target, 'bucket'>): S3Client {
  return new S3Client({
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A new, empty bucket with a unique name on the test S3 server. */
export async function createTestBucket(): Promise<TestBucket> {
  if (!endpoint) throw new Error('STOWAGE_TEST_S3_ENDPOINT is not set (check s3Available() first)');
  // Bucket names: 3-63 characters, lower case letters, digits and hyphens.
  const bucket = `stowage-t-${randomBytes(6).toString('hex')}`;
  const target = { endpoint, bucket, accessKeyId, secretAccessKey, region: REGION };
  const client = s3Client(target);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return { ...target, drop: () => dropBucket(target) };
}

async function dropBucket(target: S3Target): Promise<void> {
  const client = s3Client(target);
  const Bucket = target.bucket;
  try {
    // Bounded: what cannot be removed shows up as DeleteBucket's BucketNotEmpty below.
    for (let round = 0; round < 20; round++) {
      const uploads = (await client.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads ?? [];
      const objects = (await client.send(new ListObjectsV2Command({ Bucket }))).Contents ?? [];
      if (uploads.length === 0 && objects.length === 0) break;
      await Promise.all([
        ...uploads.map(({ Key, UploadId }) =>
          client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined),
        ),
        ...objects.map(({ Key }) => client.send(new DeleteObjectCommand({ Bucket, Key }))),
      ]);
    }
    await client.send(new DeleteBucketCommand({ Bucket }));
  } finally {
    client.destroy();
  }
}

export interface S3Proxy {
  /** http://127.0.0.1:PORT, to use as the S3 endpoint instead of the server's. */
  endpoint: string;
  /** "METHOD /path?query" of every request that passed, in order. */
  seen: string[];
  stop(): Promise<void>;
}

export interface S3ProxyOptions {
  /** Answers a request itself with an S3 error instead of forwarding it; null forwards. */
  refuse?: (req: IncomingMessage, body: Buffer) => { status: number; code: string } | null;
  /** Rewrites the body of the server's answer (XML listings) before the client gets it. */
  rewrite?: (req: IncomingMessage, body: string) => string;
}

/**
 * A pass-through proxy in front of the test S3 server, to play an S3-compatible server that
 * differs from it: one that refuses some operations, or whose listings say something else.
 * Request signatures stay valid: the Host header and the body are passed on as they are.
 */
export async function startS3Proxy(target: string, options: S3ProxyOptions): Promise<S3Proxy> {
  const upstreamUrl = new URL(target);
  const seen: string[] = [];
  const proxy: Server = createServer((req, res) => {
    void readBody(req).then((body) => {
      seen.push(`${req.method} ${req.url}`);
      const refusal = options.refuse?.(req, body);
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${refusal.code}</Code><Message>refused</Message></Error>`,
        );
        return;
      }
      const upstream = request(
        {
          host: upstreamUrl.hostname,
          port: upstreamUrl.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          const rewrite = options.rewrite;
          const type = String(up.headers['content-type'] ?? '');
          if (!rewrite || !/xml/.test(type)) {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
            return;
          }
          void readBody(up).then((raw) => {
            const text = rewrite(req, raw.toString('utf8'));
            const { 'content-length': _length, 'transfer-encoding': _encoding, ...headers } = up.headers;
            res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': Buffer.byteLength(text) });
            res.end(text);
          });
        },
      );
      upstream.on('error', () => res.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    async stop() {
      const closed = new Promise((resolve) => proxy.close(resolve));
      proxy.closeAllConnections();
      await closed;
    },
  };
}

async function readBody(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
