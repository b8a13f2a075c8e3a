import { createHash } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/storage/s3.ts';
import { startS3Server, type TestS3Server } from '../helpers/s3.ts';
import { blobStoreContract, put, readAll } from './blob-store.contract.ts';

const PART = 5 * 1024 * 1024;
let server: TestS3Server;
const stores: S3BlobStore[] = [];

function makeStore(overrides: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  const store = new S3BlobStore({ ...server, forcePathStyle: true, partSizeBytes: PART, ...overrides });
  stores.push(store);
  return store;
}

beforeAll(async () => {
  server = await startS3Server();
});

afterAll(async () => {
  for (const store of stores) store.close();
  await server?.stop();
});

blobStoreContract(() => Promise.resolve(makeStore()), { largeSize: 4 * PART + 12345, partSize: PART });

describe('S3BlobStore', () => {
  it('makes the writer fail instead of hanging when the backend refuses the upload', async () => {
    const store = makeStore({ bucket: 'no-such-bucket' });
    const writer = store.createWriter('k');
    const endless = Readable.from(
      (function* () {
        for (;;) yield Buffer.alloc(65536);
      })(),
    );
    await expect(pipeline(endless, writer.stream)).rejects.toThrow(/bucket/i);
    await expect(writer.commit()).rejects.toThrow();
    await writer.abort();
  });

  it('fails ping when the bucket or server is unreachable', async () => {
    await expect(makeStore().ping()).resolves.toBeUndefined();
    await expect(makeStore({ bucket: 'no-such-bucket' }).ping()).rejects.toThrow();
    await expect(makeStore({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1' }).ping()).rejects.toThrow();
  });

  it('sweeps nothing, without failing, on a server that cannot list multipart uploads', async () => {
    await expect(makeStore().sweepIncomplete(0)).resolves.toBe(0);
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

function isBatchDelete(req: IncomingMessage): boolean {
  return req.method === 'POST' && new URL(req.url ?? '/', 'http://x').searchParams.has('delete');
}

/**
 * A pass-through proxy in front of s3rver that can answer some requests with an S3 error, to play
 * an S3-compatible server that differs from AWS. Signatures stay valid: the Host header is kept.
 */
async function startProxy(
  refuse: (req: IncomingMessage, body: Buffer) => { status: number; code: string } | null,
): Promise<{ endpoint: string; seen: string[]; stop(): Promise<void> }> {
  const target = new URL(server.endpoint);
  const seen: string[] = [];
  const proxy: Server = createServer((req, res) => {
    void readAll(req).then((body) => {
      seen.push(`${req.method} ${req.url}`);
      const refusal = refuse(req, body);
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${refusal.code}</Code><Message>refused</Message></Error>`,
        );
        return;
      }
      const upstream = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
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
