import fs from 'node:fs';
import path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { ROOT, type Context } from './context.ts';
import { runOk } from './proc.ts';

/** An S3 server (radosgw) and one bucket on it for this run. */
export interface S3Bucket {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  client: S3Client;
  deleteObject(key: string): Promise<void>;
  /** Frees the space of deleted objects now, where the bench runs the server (else nothing). */
  collectGarbage(): Promise<void>;
}

/**
 * The S3 server of figures 10 and 11: the one named by BENCH_S3_ENDPOINT (with BENCH_S3_ACCESS_KEY
 * and BENCH_S3_SECRET_KEY), or else a throwaway radosgw started here with
 * scripts/start-ceph-rgw.sh (about 30 s, 0.4 GiB) and stopped at the end. Not the tests' server
 * (STOWAGE_TEST_S3_*): radosgw frees a deleted object's space only in its garbage collection, two
 * hours later by default, so a full run (2 GiB a round) would fill a small test cluster; on its own
 * cluster the bench runs that collection after every round (collectGarbage). Either way the run
 * gets its own bucket, emptied and deleted after.
 */
export async function s3Bucket(ctx: Context): Promise<S3Bucket> {
  let endpoint = process.env.BENCH_S3_ENDPOINT?.trim();
  let accessKeyId = process.env.BENCH_S3_ACCESS_KEY?.trim() || 'stowage-test';
  let secretAccessKey = process.env.BENCH_S3_SECRET_KEY?.trim() || 'stowage-test-secret';
  let collectGarbage = async () => undefined;
  if (endpoint) {
    ctx.log(`S3: the server of BENCH_S3_ENDPOINT, ${endpoint}`);
  } else {
    const dir = path.join(ctx.tmp, 'ceph');
    const script = path.join(ROOT, 'scripts', 'start-ceph-rgw.sh');
    ctx.log(`S3: starting radosgw in ${dir} (scripts/start-ceph-rgw.sh; BENCH_S3_ENDPOINT is not set)`);
    ctx.defer(async () => {
      if (fs.existsSync(dir)) await runOk('bash', [script, '--stop', dir]);
    });
    const out = (await runOk('bash', [script, dir], { timeoutMs: 180_000 })).stdout;
    const value = (name: string) => new RegExp(`^export ${name}=(.*)$`, 'm').exec(out)?.[1];
    endpoint = value('STOWAGE_TEST_S3_ENDPOINT');
    if (!endpoint) throw new Error(`start-ceph-rgw.sh printed no endpoint:\n${out}`);
    accessKeyId = value('STOWAGE_TEST_S3_ACCESS_KEY') ?? accessKeyId;
    secretAccessKey = value('STOWAGE_TEST_S3_SECRET_KEY') ?? secretAccessKey;
    const conf = path.join(dir, 'ceph.conf');
    collectGarbage = async () => {
      await runOk('radosgw-admin', ['-c', conf, '-n', 'client.admin', 'gc', 'process', '--include-all']);
    };
  }
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const bucket = `stowage-bench-${Date.now().toString(36)}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  ctx.defer(async () => {
    await emptyBucket(client, bucket);
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
    client.destroy();
  });
  const deleteObject = async (key: string) => {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  };
  return { endpoint, accessKeyId, secretAccessKey, bucket, client, deleteObject, collectGarbage };
}

async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const { Key, UploadId } of uploads.Uploads ?? []) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
  }
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    for (const { Key } of page.Contents ?? []) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
    }
    if (!page.IsTruncated) return;
  }
}
