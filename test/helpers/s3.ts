import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';

interface S3rverObject {
  content: Readable | null;
  range?: { start: number; end: number };
}

/** The slice of a Koa context that the added operations use. */
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  params?: Record<string, string | undefined>;
  status: number;
  body: unknown;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/** The part of s3rver (which ships no types) that the helper uses. */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
  /** Koa's middleware list; s3rver's router is the last entry. */
  middleware: KoaMiddleware[];
  store: {
    getObject(
      bucket: string,
      key: string,
      options?: { start?: number; end?: number },
    ): Promise<S3rverObject | null>;
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
    getBucket(bucket: string): Promise<unknown>;
    deleteObject(bucket: string, key: string): Promise<void>;
  };
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;
type S3ErrorConstructor = new (code: string, message?: string, detail?: Record<string, string>) => Error;

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /**
   * Sets an object's last-modified time (as listings report it), e.g. to make it look like a
   * leftover from hours ago.
   */
  backdateObject(key: string, to: Date): Promise<void>;
  /** Sets when an unfinished multipart upload was initiated (as ListMultipartUploads reports it). */
  backdateUpload(uploadId: string, to: Date): Promise<void>;
  stop(): Promise<void>;
}

/**
 * An in-process s3rver on 127.0.0.1 with a random port and a throwaway data directory. It checks
 * request signatures with its fixed S3RVER/S3RVER account.
 *
 * s3rver 3.7 leaves out parts of the standard multipart API that S3 clients rely on (@tus/s3-store,
 * and our own sweep of unfinished uploads): ListParts, AbortMultipartUpload and
 * ListMultipartUploads, and it accepts parts for, or completes, an upload that does not exist.
 * The helper fills those gaps with the standard S3 API — same requests, same XML shapes, same
 * errors (NoSuchUpload, NoSuchBucket) as AWS S3 and MinIO — in front of s3rver's own routes, over
 * s3rver's own store and signature check, so the code under test keeps to the plain S3 API. It
 * also fixes two s3rver bugs (see below).
 */
export async function startS3Server(bucket = 'stowage-test'): Promise<TestS3Server> {
  const requireFromHere = createRequire(import.meta.url);
  const S3rver = requireFromHere('s3rver') as S3rverConstructor;
  const directory = await mkdtemp(path.join(tmpdir(), 'stowage-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  fixFirstByteRange(server);
  serializeDeletes(server);
  addMultipartOperations(server, requireFromHere);
  const { port } = await server.run();
  const uploadDir = (id: string) => path.join(server.store.getResourcePath(bucket, undefined, 'uploads'), id);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    region: 'us-east-1',
    async backdateObject(key, to) {
      await utimes(server.store.getResourcePath(bucket, key, 'object'), to, to);
    },
    async backdateUpload(uploadId, to) {
      await utimes(path.join(uploadDir(uploadId), 'key'), to, to);
    },
    async stop() {
      const closing = server.close();
      // Keep-alive sockets of clients that were not destroyed would otherwise hold close() open.
      server.httpServer?.closeAllConnections();
      await closing;
      await rm(directory, { recursive: true, force: true });
    },
  };
}

const XMLNS = { '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' } };
const OWNER = { ID: '123456789000', DisplayName: 'S3rver' };

interface PendingUpload {
  key: string;
  uploadId: string;
  initiated: Date;
}

interface StoredPart {
  number: number;
  etag: string;
  size: number;
  lastModified: Date;
}

/**
 * ListParts (GET /bucket/key?uploadId=…), AbortMultipartUpload (DELETE /bucket/key?uploadId=…) and
 * ListMultipartUploads (GET /bucket?uploads), plus NoSuchUpload for UploadPart and
 * CompleteMultipartUpload on an unknown upload. s3rver's FilesystemStore keeps an unfinished
 * upload in `<bucket>/._S3rver_uploads/<uploadId>/` with the files `key`, `metadata`, and `<n>` +
 * `<n>.md5` per part; a part counts once its `.md5` is written (s3rver writes it last).
 * The middleware goes in front of s3rver's router, after its logging, XML encoding and
 * virtual-host handling; requests are authenticated with s3rver's own signature check.
 */
function addMultipartOperations(server: S3rverInstance, load: NodeJS.Require): void {
  const authenticate = (load('s3rver/lib/middleware/authentication.js') as () => KoaMiddleware)();
  const S3Error = load('s3rver/lib/models/error.js') as S3ErrorConstructor;
  const { store } = server;
  const uploadsDir = (bucket: string) => store.getResourcePath(bucket, undefined, 'uploads');
  const noSuchUpload = (uploadId: string) =>
    new S3Error(
      'NoSuchUpload',
      'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
      { UploadId: uploadId },
    );

  /** The upload's key, or undefined when there is no such (unfinished) upload. */
  const keyOf = async (bucket: string, uploadId: string): Promise<string | undefined> => {
    if (!/^[A-Za-z0-9_-]+$/.test(uploadId)) return undefined;
    return readFile(path.join(uploadsDir(bucket), uploadId, 'key'), 'utf8').catch(() => undefined);
  };
  const pendingUpload = async (bucket: string, key: string, uploadId: string): Promise<void> => {
    if ((await keyOf(bucket, uploadId)) !== key) throw noSuchUpload(uploadId);
  };

  const listParts = async (bucket: string, uploadId: string): Promise<StoredPart[]> => {
    const dir = path.join(uploadsDir(bucket), uploadId);
    const parts: StoredPart[] = [];
    for (const name of await readdir(dir).catch(() => [])) {
      if (!/^\d+$/.test(name)) continue;
      const md5 = await readFile(path.join(dir, `${name}.md5`), 'utf8').catch(() => undefined);
      const info = await stat(path.join(dir, name)).catch(() => undefined);
      if (md5 === undefined || !info) continue; // still being written, or aborted meanwhile
      parts.push({
        number: Number(name),
        etag: JSON.stringify(md5),
        size: info.size,
        lastModified: info.mtime,
      });
    }
    return parts.sort((a, b) => a.number - b.number);
  };

  const listUploads = async (bucket: string): Promise<PendingUpload[]> => {
    const root = uploadsDir(bucket);
    const uploads: PendingUpload[] = [];
    for (const uploadId of await readdir(root).catch(() => [])) {
      const keyFile = path.join(root, uploadId, 'key');
      const [key, info] = await Promise.all([
        readFile(keyFile, 'utf8').catch(() => undefined),
        stat(keyFile).catch(() => undefined),
      ]);
      if (key !== undefined && info) uploads.push({ key, uploadId, initiated: info.mtime });
    }
    // By key, then by upload id: the order the markers below page through.
    return uploads.sort((a, b) => compare(a.key, b.key) || compare(a.uploadId, b.uploadId));
  };

  const handle = async (ctx: KoaContext, bucket: string, key: string | undefined): Promise<boolean> => {
    const q = (name: string) => single(ctx.query[name]);
    const uploadId = q('uploadId');
    if (key === undefined) {
      if (ctx.method !== 'GET' || !('uploads' in ctx.query)) return false;
      const prefix = q('prefix') ?? '';
      const keyMarker = q('key-marker') ?? '';
      const uploadIdMarker = q('upload-id-marker') ?? '';
      const maxUploads = intParam(q('max-uploads'), 1000, 1000);
      const after = (u: PendingUpload) =>
        keyMarker === '' ||
        u.key > keyMarker ||
        (uploadIdMarker !== '' && u.key === keyMarker && u.uploadId > uploadIdMarker);
      const all = (await listUploads(bucket)).filter((u) => u.key.startsWith(prefix) && after(u));
      const page = all.slice(0, maxUploads);
      const last = page.at(-1);
      const truncated = all.length > page.length;
      ctx.body = {
        ListMultipartUploadsResult: {
          ...XMLNS,
          Bucket: bucket,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
          ...(truncated && last ? { NextKeyMarker: last.key, NextUploadIdMarker: last.uploadId } : {}),
          Prefix: prefix,
          MaxUploads: maxUploads,
          IsTruncated: truncated,
          Upload: page.map((u) => ({
            Key: u.key,
            UploadId: u.uploadId,
            Initiator: OWNER,
            Owner: OWNER,
            StorageClass: 'STANDARD',
            Initiated: u.initiated.toISOString(),
          })),
        },
      };
      return true;
    }
    if (uploadId === undefined) return false;
    if (ctx.method === 'GET') {
      await pendingUpload(bucket, key, uploadId);
      const marker = intParam(q('part-number-marker'), 0);
      const maxParts = intParam(q('max-parts'), 1000, 1000);
      const all = (await listParts(bucket, uploadId)).filter((p) => p.number > marker);
      const page = all.slice(0, maxParts);
      const truncated = all.length > page.length;
      ctx.body = {
        ListPartsResult: {
          ...XMLNS,
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          Initiator: OWNER,
          Owner: OWNER,
          StorageClass: 'STANDARD',
          PartNumberMarker: marker,
          NextPartNumberMarker: page.at(-1)?.number ?? marker,
          MaxParts: maxParts,
          IsTruncated: truncated,
          Part: page.map((p) => ({
            PartNumber: p.number,
            LastModified: p.lastModified.toISOString(),
            ETag: p.etag,
            Size: p.size,
          })),
        },
      };
      return true;
    }
    if (ctx.method === 'DELETE') {
      await pendingUpload(bucket, key, uploadId);
      await rm(path.join(uploadsDir(bucket), uploadId), { recursive: true, force: true });
      ctx.status = 204;
      return true;
    }
    if (ctx.method === 'PUT' || ctx.method === 'POST') {
      // UploadPart and CompleteMultipartUpload stay s3rver's, but only for an upload that exists.
      await pendingUpload(bucket, key, uploadId);
    }
    return false;
  };

  const multipart: KoaMiddleware = async (ctx, next) => {
    // Path-style: /bucket, /bucket/ (how SDKs address the bucket itself) or /bucket/key.
    const match = /^\/([^/]+)(?:\/(.+)|\/)?$/.exec(ctx.path);
    const bucket = match?.[1] && decodeURIComponent(match[1]);
    const key = match?.[2] === undefined ? undefined : decodeURIComponent(match[2]);
    const ours =
      bucket !== undefined &&
      ((key === undefined && 'uploads' in ctx.query) || (key !== undefined && 'uploadId' in ctx.query));
    if (!ours) return next();
    ctx.params = { bucket, ...(key === undefined ? {} : { key }) };
    await authenticate(ctx, async () => {
      if (!(await store.getBucket(bucket))) {
        throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
      }
      if (!(await handle(ctx, bucket, key))) await next();
    });
  };
  // In front of s3rver's router (the last middleware): Koa composes the list when run() listens.
  server.middleware.splice(server.middleware.length - 1, 0, multipart);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A whole-number query parameter; S3 caps max-parts and max-uploads at 1000. */
function intParam(raw: string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, max) : fallback;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * s3rver 3.7 reads the range end with `end || Infinity`, so "bytes=0-0" returns the whole object
 * instead of its first byte (real S3 returns one byte). Re-open that one case with the right end.
 */
function fixFirstByteRange(server: S3rverInstance): void {
  const { store } = server;
  const getObject = store.getObject.bind(store);
  store.getObject = async (bucket, key, options) => {
    const object = await getObject(bucket, key, options);
    if (options?.end === 0 && object?.content && object.range) {
      object.content.destroy();
      object.content = createReadStream(store.getResourcePath(bucket, key, 'object'), { start: 0, end: 0 });
      object.range.end = 0;
    }
    return object;
  };
}

/**
 * s3rver deletes the keys of one DeleteObjects request concurrently, and each delete removes its
 * emptied parent folders; siblings then trip over the vanished folder and the request fails with
 * 500 InternalError (hidden by SDK retries, but flaky). One delete at a time avoids that.
 */
function serializeDeletes(server: S3rverInstance): void {
  const { store } = server;
  const deleteObject = store.deleteObject.bind(store);
  let last: Promise<unknown> = Promise.resolve();
  store.deleteObject = (bucket, key) => {
    const next = last.then(() => deleteObject(bucket, key));
    last = next.catch(() => {});
    return next;
  };
}
