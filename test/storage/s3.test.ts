import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/storage/s3.ts';
import {
  createTestBucket,
  s3Available,
  s3Client,
  startS3Proxy,
  type S3ProxyOptions,
  type TestBucket,
} from '../helpers/s3.ts';
import { blobStoreContract, put, readAll } from './blob-store.contract.ts';

const PART = 5 * 1024 * 1024;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
let server: TestBucket | undefined;
const stores: S3BlobStore[] = [];

function makeStore(overrides: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  const store = new S3BlobStore({ ...server!, forcePathStyle: true, partSizeBytes: PART, ...overrides });
  stores.push(store);
  return store;
}

const startProxy = (refuse: NonNullable<S3ProxyOptions['refuse']>) =>
  startS3Proxy(server!.endpoint, { refuse });

describe.skipIf(!s3Available())('S3 (radosgw)', () => {
  beforeAll(async () => {
    server = await createTestBucket();
  });

  afterAll(async () => {
    for (const store of stores) store.close();
    await server?.drop();
  });

  blobStoreContract(() => Promise.resolve(makeStore()), { largeSize: 4 * PART + 12345, partSize: PART });

  describe('S3BlobStore', () => {
    it('makes the writer fail instead of hanging when the backend refuses the upload', async () => {
      const store = makeStore({ bucket: 'stowage-no-such-bucket' });
      const writer = store.createWriter('k');
      const endless = Readable.from(
        (function* () {
          for (;;) yield Buffer.alloc(65536);
        })(),
      );
      // radosgw sends NoSuchBucket without a message (the SDK then says "UnknownError").
      await expect(pipeline(endless, writer.stream)).rejects.toMatchObject({ name: 'NoSuchBucket' });
      await expect(writer.commit()).rejects.toThrow();
      await writer.abort();
    });

    it('fails ping when the bucket or server is unreachable', async () => {
      await expect(makeStore().ping()).resolves.toBeUndefined();
      await expect(makeStore({ bucket: 'stowage-no-such-bucket' }).ping()).rejects.toThrow();
      await expect(
        makeStore({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1' }).ping(),
      ).rejects.toThrow();
    });

    it('aborts unfinished uploads of its own keys once they are old enough, and only those', async () => {
      const store = makeStore();
      const Bucket = server!.bucket;
      const client = s3Client(server!);
      try {
        const start = async (Key: string) => {
          const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
          await client.send(
            new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: Buffer.from('part') }),
          );
          return UploadId!;
        };
        const crashed = await start('media/ab/CrashedCrashedCrashedC');
        const rendition = await start('thumbs/RenditionRenditionRe/256.webp');
        const tus = await start('0123456789abcdef'); // a resumable upload: tus expires those itself
        const pending = async () =>
          ((await client.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads ?? [])
            .map((u) => u.UploadId)
            .sort();

        // The server's own clock says when each began; the sweep measures the age at `now`.
        expect(await store.sweepIncomplete(HOUR, Date.now())).toBe(0);
        expect(await pending()).toEqual([crashed, rendition, tus].sort());
        expect(await store.sweepIncomplete(HOUR, Date.now() + HOUR + MINUTE)).toBe(2);
        expect(await pending()).toEqual([tus]);
        // Gone, not just unlisted (radosgw 16 answers NoSuchKey here where AWS says NoSuchUpload).
        await expect(
          client.send(
            new ListPartsCommand({ Bucket, Key: 'media/ab/CrashedCrashedCrashedC', UploadId: crashed }),
          ),
        ).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
      } finally {
        client.destroy();
      }
    });

    it('sweeps nothing, without failing, on a server that cannot list multipart uploads', async () => {
      const proxy = await startProxy((req) =>
        req.method === 'GET' && new URL(req.url ?? '/', 'http://x').searchParams.has('uploads')
          ? { status: 501, code: 'NotImplemented' }
          : null,
      );
      try {
        const store = makeStore({ endpoint: proxy.endpoint });
        await expect(store.sweepIncomplete(0, Date.now() + HOUR)).resolves.toBe(0);
        expect(proxy.seen.some((r) => r.startsWith('GET') && r.includes('uploads'))).toBe(true);
      } finally {
        await proxy.stop();
      }
    });

    it('sends batch deletes with a correct Content-MD5, as older MinIO and Ceph require', async () => {
      const proxy = await startProxy((req, body) => {
        if (!isBatchDelete(req)) return null;
        const md5 = req.headers['content-md5'];
        if (!md5) return { status: 400, code: 'MissingContentMD5' };
        return md5 === createHash('md5').update(body).digest('base64')
          ? null
          : { status: 400, code: 'BadDigest' };
      });
      try {
        const store = makeStore({ endpoint: proxy.endpoint });
        for (const k of ['d/1', 'd/2', 'd/3']) await put(store, k, Buffer.from(k));
        await store.deletePrefix('d/');
        expect(await store.stat('d/1')).toBeNull();
        expect(proxy.seen.filter((r) => r.startsWith('POST'))).toHaveLength(1);
        expect(proxy.seen.filter((r) => r.startsWith('DELETE'))).toEqual([]);
      } finally {
        await proxy.stop();
      }
    });

    it('falls back to single deletes on a server without DeleteObjects', async () => {
      const proxy = await startProxy((req) =>
        isBatchDelete(req) ? { status: 501, code: 'NotImplemented' } : null,
      );
      try {
        const store = makeStore({ endpoint: proxy.endpoint });
        for (const k of ['f/1', 'f/2/3', 'keep']) await put(store, k, Buffer.from(k));
        await store.deletePrefix('f/');
        expect(await store.stat('f/1')).toBeNull();
        expect(await store.stat('f/2/3')).toBeNull();
        expect((await readAll(await store.read('keep'))).toString()).toBe('keep');
        expect(proxy.seen.filter((r) => r.startsWith('DELETE'))).toHaveLength(2);
      } finally {
        await proxy.stop();
      }
    });

    it('has no local path, for blobs or for writes in progress', async () => {
      const store = makeStore();
      expect(store.localPath()).toBeNull();
      const writer = store.createWriter('no-temp');
      expect(writer.tempPath).toBeNull();
      await writer.abort();
    });
  });
});

function isBatchDelete(req: IncomingMessage): boolean {
  return req.method === 'POST' && new URL(req.url ?? '/', 'http://x').searchParams.has('delete');
}
