import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
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

/** The part of s3rver (which ships no types) that the helper uses. */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
  store: {
    getObject(
      bucket: string,
      key: string,
      options?: { start?: number; end?: number },
    ): Promise<S3rverObject | null>;
    getResourcePath(bucket: string, key: string, resource: 'object'): string;
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

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  stop(): Promise<void>;
}

/**
 * An in-process s3rver on 127.0.0.1 with a random port and a throwaway data directory. It checks
 * request signatures with its fixed S3RVER/S3RVER account. It does not implement
 * ListMultipartUploads (501) or AbortMultipartUpload (405).
 */
export async function startS3Server(bucket = 'stowage-test'): Promise<TestS3Server> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
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
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    region: 'us-east-1',
    async stop() {
      const closing = server.close();
      // Keep-alive sockets of clients that were not destroyed would otherwise hold close() open.
      server.httpServer?.closeAllConnections();
      await closing;
      await rm(directory, { recursive: true, force: true });
    },
  };
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
