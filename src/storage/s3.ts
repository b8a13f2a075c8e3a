import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  paginateListObjectsV2,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest } from '@smithy/types';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  assertValidKey,
  BlobNotFoundError,
  isNotFound,
  type BlobStore,
  type PresignedHeaders,
} from './blob-store.ts';
import { assertPrefix, assertRange } from './keys.ts';
import { isBlobKey } from './key-layout.ts';
import { S3BlobWriter } from './s3-writer.ts';

export interface S3BlobStoreOptions {
  /** For S3-compatible servers (MinIO, Ceph, R2); omit for AWS. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** Both or neither; without them the SDK's default chain (env, profile, instance role) applies. */
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  /** Default 8 MiB; at least 5 MiB (the S3 minimum). Memory per upload is about partSize × (queueSize + 1). */
  partSizeBytes?: number;
  /** Parts uploaded in parallel per blob; default 4. */
  queueSize?: number;
  /** Connections to the server; every download in progress holds one. Default 256. */
  maxSockets?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DELETE_BATCH = 1000;
/** The largest object one CopyObject request may copy. */
const MAX_COPY_SIZE = 5 * 1024 ** 3;

export class S3BlobStore implements BlobStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  #batchDelete = true;

  constructor(opts: S3BlobStoreOptions) {
    const { accessKeyId, secretAccessKey } = opts;
    if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
      throw new Error('S3 accessKeyId and secretAccessKey must be given together');
    }
    this.#partSize = opts.partSizeBytes ?? 8 * 1024 * 1024;
    this.#queueSize = opts.queueSize ?? 4;
    if (this.#partSize < MIN_PART_SIZE)
      throw new Error(`S3 part size must be at least ${MIN_PART_SIZE} bytes`);
    if (!Number.isInteger(this.#queueSize) || this.#queueSize < 1)
      throw new Error('S3 queue size must be >= 1');
    this.#bucket = opts.bucket;
    const maxSockets = opts.maxSockets ?? 256;
    this.#client = new S3Client({
      region: opts.region,
      forcePathStyle: opts.forcePathStyle,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey } } : {}),
      // The SDK's default CRC checksums and aws-chunked bodies are refused by many S3-compatible
      // servers; WHEN_REQUIRED keeps to what plain S3 has always accepted.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { httpAgent: { maxSockets }, httpsAgent: { maxSockets } },
    });
  }

  createWriter(key: string): S3BlobWriter {
    assertValidKey(key);
    return new S3BlobWriter({
      client: this.#client,
      bucket: this.#bucket,
      key,
      partSizeBytes: this.#partSize,
      queueSize: this.#queueSize,
    });
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    assertValidKey(key);
    if (range) assertRange(range);
    try {
      const res = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      if (!(res.Body instanceof Readable)) throw new Error('S3 GetObject returned no readable body');
      return res.Body;
    } catch (err) {
      throw isNotFound(err) ? new BlobNotFoundError(key) : err;
    }
  }

  /**
   * One CopyObject: the object store copies the bytes itself (radosgw and others often only add a
   * reference to the same data). The copy gets none of the source's metadata, like any blob.
   * Above CopyObject's 5 GiB limit the caller writes the bytes instead.
   */
  async adoptObject(sourceKey: string, key: string, size: number): Promise<boolean> {
    assertValidKey(sourceKey);
    assertValidKey(key);
    if (size > MAX_COPY_SIZE) return false;
    await this.#client.send(
      new CopyObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        CopySource: `${this.#bucket}/${sourceKey.split('/').map(encodeURIComponent).join('/')}`,
        MetadataDirective: 'REPLACE',
      }),
    );
    return true;
  }

  async stat(key: string): Promise<{ size: number } | null> {
    assertValidKey(key);
    try {
      const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }));
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
  }

  async deletePrefix(prefix: string): Promise<void> {
    assertPrefix(prefix, false);
    let batch: string[] = [];
    // Deleting keys already listed does not disturb the continuation token of later pages.
    for await (const { key } of this.#listAll(prefix)) {
      batch.push(key);
      if (batch.length === DELETE_BATCH) {
        await this.#deleteBatch(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.#deleteBatch(batch);
  }

  async *list(prefix: string): AsyncIterable<{ key: string; lastModified: Date }> {
    assertPrefix(prefix, true);
    yield* this.#listAll(prefix);
  }

  async *#listAll(prefix: string): AsyncGenerator<{ key: string; lastModified: Date }> {
    const pages = paginateListObjectsV2({ client: this.#client }, { Bucket: this.#bucket, Prefix: prefix });
    for await (const page of pages) {
      for (const obj of page.Contents ?? []) {
        if (obj.Key !== undefined && obj.LastModified) yield { key: obj.Key, lastModified: obj.LastModified };
      }
    }
  }

  async sweepIncomplete(olderThanMs: number, now = Date.now()): Promise<number> {
    // A multipart upload names no owner, so age alone decides, on every instance alike.
    const cutoff = now - olderThanMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.#client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.#bucket,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (err) {
        // Some servers (minimal gateways) do not list uploads; nothing to sweep there.
        if (isUnsupported(err)) return removed;
        throw err;
      }
      for (const upload of page.Uploads ?? []) {
        const { Key, UploadId, Initiated } = upload;
        // Only our own blob keys: the bucket also holds tus's resumable uploads, which tus expires.
        const ours = Key !== undefined && isBlobKey(Key);
        if (!Key || !UploadId || !Initiated || !ours || Initiated.getTime() >= cutoff) continue;
        try {
          await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId }));
          removed++;
        } catch (err) {
          if (!isNotFound(err)) throw err; // aborted meanwhile
        }
      }
      if (!page.IsTruncated || (!page.NextKeyMarker && !page.NextUploadIdMarker)) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async ping(): Promise<void> {
    await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }));
  }

  localPath(): null {
    return null;
  }

  /**
   * A URL that GETs `key` for `expiresInSeconds`, making S3 answer with the given response headers
   * (response-content-type & co., which S3 accepts only on signed requests). What
   * @aws-sdk/s3-request-presigner does, which is not a dependency here: the SDK builds the request
   * with its own middleware (endpoint, path or virtual-host style, key encoding), which is stopped
   * just before it would be signed and sent, and signed instead as a SigV4 query-string
   * ("presigned") request with an unsigned payload.
   */
  async presignGet(key: string, headers: PresignedHeaders, expiresInSeconds: number): Promise<string> {
    assertValidKey(key);
    const command = new GetObjectCommand({
      Bucket: this.#bucket,
      Key: key,
      ResponseContentType: headers.contentType,
      ResponseCacheControl: headers.cacheControl,
      ...(headers.contentDisposition === undefined
        ? {}
        : { ResponseContentDisposition: headers.contentDisposition }),
    });
    const config = this.#client.config;
    const signer = new SignatureV4({
      credentials: config.credentials,
      region: config.region,
      service: 's3',
      sha256: config.sha256,
      // S3 signs the path as sent (already encoded once), unlike other services.
      uriEscapePath: false,
      applyChecksum: false,
    });
    const stack = this.#client.middlewareStack.clone();
    stack.addRelativeTo(
      () => async (args: { request: unknown }) => {
        const request = args.request as HttpRequest;
        // Per-attempt SDK headers would otherwise be signed into a URL that the client sends.
        for (const name of ['amz-sdk-invocation-id', 'amz-sdk-request', 'x-amz-user-agent'])
          delete request.headers[name];
        request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        const presigned = await signer.presign(request, {
          expiresIn: expiresInSeconds,
          unsignableHeaders: new Set(['content-type']),
        });
        return { response: {}, output: { $metadata: {}, presigned } };
      },
      { name: 'stowagePresign', relation: 'before', toMiddleware: 'httpSigningMiddleware', override: true },
    );
    const handler = command.resolveMiddleware(stack, config, {});
    const { output } = await handler({ input: command.input });
    return formatUrl((output as unknown as { presigned: HttpRequest }).presigned);
  }

  /** Closes pooled connections; in-flight requests fail. */
  close(): void {
    this.#client.destroy();
  }

  async #deleteBatch(keys: string[]): Promise<void> {
    if (this.#batchDelete) {
      try {
        const command = new DeleteObjectsCommand({
          Bucket: this.#bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
        });
        useContentMd5(command);
        const res = await this.#client.send(command);
        const failed = res.Errors ?? [];
        if (failed.length > 0) {
          const first = failed[0];
          throw new Error(
            `S3 could not delete ${failed.length} object(s), e.g. ${first?.Key}: ${first?.Code} ${first?.Message}`,
          );
        }
        return;
      } catch (err) {
        if (!isUnsupported(err)) throw err;
        this.#batchDelete = false;
      }
    }
    for (const Key of keys) {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key }));
    }
  }
}

/**
 * DeleteObjects requires a body checksum. The SDK now sends CRC32, but older MinIO, Ceph and other
 * servers insist on Content-MD5, which AWS accepts as well.
 */
function useContentMd5(command: DeleteObjectsCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      const { headers, body } = request;
      if (headers && (typeof body === 'string' || body instanceof Uint8Array)) {
        for (const name of Object.keys(headers)) {
          const lower = name.toLowerCase();
          if (lower.startsWith('x-amz-checksum-') || lower.startsWith('x-amz-sdk-checksum-'))
            delete headers[name];
        }
        headers['content-md5'] = createHash('md5').update(body).digest('base64');
      }
      return next(args);
    },
    // Build step, low priority: runs after the SDK's checksum middleware has added its headers.
    { step: 'build', priority: 'low', name: 'stowageContentMd5' },
  );
}

/** RFC 3986 percent-encoding, as SigV4 canonicalises query strings. */
function escapeUri(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function formatUrl(request: HttpRequest): string {
  const query = Object.entries(request.query ?? {})
    .flatMap(([name, value]) =>
      value === null
        ? [escapeUri(name)]
        : (Array.isArray(value) ? value : [value]).map((v) => `${escapeUri(name)}=${escapeUri(v)}`),
    )
    .join('&');
  const port = request.port === undefined ? '' : `:${request.port}`;
  return `${request.protocol}//${request.hostname}${port}${request.path}${query ? `?${query}` : ''}`;
}

function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}

/** The server does not implement the operation (or, for DeleteObjects, our way of calling it). */
function isUnsupported(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  const status = statusOf(err);
  return (
    status === 501 ||
    status === 405 ||
    ['NotImplemented', 'MethodNotAllowed', 'MissingContentMD5', 'InvalidRequest'].includes(err.name)
  );
}
