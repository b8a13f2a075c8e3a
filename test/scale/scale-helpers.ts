import crypto from 'node:crypto';
import http from 'node:http';
import {
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListMultipartUploadsCommandOutput,
} from '@aws-sdk/client-s3';
import * as tus from 'tus-js-client';
import { s3Client, type S3Target } from '../helpers/s3.ts';
import { MiB, readResponse, type RawResponse } from '../helpers/common.ts';

/** Shared by the scale-out tests: files, uploads over real sockets, and a look into the bucket. */

export { MiB, pdfOfSize, sha256, until } from '../helpers/common.ts';

/** `size` bytes that start like a ZIP archive, a type the default allow-list refuses. */
export function zipOfSize(size: number): Buffer {
  const data = crypto.randomBytes(size);
  Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00]).copy(data);
  return data;
}

/** The app's environment for a test bucket. */
export function s3Env(s3: S3Target): Record<string, string> {
  return {
    STOWAGE_STORAGE: 's3',
    STOWAGE_S3_ENDPOINT: s3.endpoint,
    STOWAGE_S3_BUCKET: s3.bucket,
    STOWAGE_S3_REGION: s3.region,
    STOWAGE_S3_ACCESS_KEY_ID: s3.accessKeyId,
    STOWAGE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    STOWAGE_S3_FORCE_PATH_STYLE: 'true',
  };
}

export interface BucketContents {
  /** Every object's key, sorted. */
  objects: string[];
  /** Every unfinished multipart upload (its parts are stored but invisible). */
  uploads: { key: string; uploadId: string; initiated: Date }[];
}

/** What is in the bucket, asked the way any S3 client would (ListObjectsV2, ListMultipartUploads). */
export async function bucketContents(s3: S3Target): Promise<BucketContents> {
  const client = s3Client(s3);
  try {
    const objects: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const o of page.Contents ?? []) if (o.Key) objects.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const listed: ListMultipartUploadsCommandOutput = await client.send(
      new ListMultipartUploadsCommand({ Bucket: s3.bucket }),
    );
    const uploads = (listed.Uploads ?? []).map((u) => ({
      key: u.Key ?? '',
      uploadId: u.UploadId ?? '',
      initiated: u.Initiated ?? new Date(0),
    }));
    return { objects: objects.sort(), uploads };
  } finally {
    client.destroy();
  }
}

export type HttpResult = RawResponse;

const BOUNDARY = '----stowage-scale-test-boundary';

/**
 * POSTs `data` as the `file` part of a multipart upload over a real socket, written in 1 MiB
 * pieces with backpressure. Stops writing once the server answers (it may refuse the upload
 * before the body is complete), so the answer is what comes back.
 */
export function uploadMultipart(options: {
  base: string;
  token: string;
  data: Buffer;
  filename: string;
  fields?: Record<string, string>;
}): Promise<HttpResult> {
  const url = new URL('/api/media/upload', options.base);
  const head = Buffer.from(
    Object.entries(options.fields ?? {})
      .map(
        ([name, value]) =>
          `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      )
      .join('') +
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${options.filename}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  return new Promise((resolve, reject) => {
    let answered = false;
    const request = http.request(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${options.token}`,
        'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
        'content-length': head.length + options.data.length + tail.length,
      },
    });
    request.on('response', (response) => {
      answered = true;
      readResponse(response).then((result) => {
        resolve(result);
        request.destroy();
      }, reject);
    });
    request.on('error', (error) => {
      if (!answered) reject(error);
    });
    void (async () => {
      const pieces: Buffer[] = [head];
      for (let at = 0; at < options.data.length; at += MiB) pieces.push(options.data.subarray(at, at + MiB));
      pieces.push(tail);
      for (const piece of pieces) {
        if (answered || request.destroyed) return;
        if (!request.write(piece)) {
          await new Promise<void>((drained) => {
            const done = () => {
              request.off('drain', done);
              request.off('close', done);
              drained();
            };
            request.on('drain', done);
            request.on('close', done);
          });
        }
      }
      if (!answered && !request.destroyed) request.end();
    })();
  });
}

export interface TusOutcome {
  /** The Media-Id header of the response that completed the upload. */
  mediaId: string;
  /** The upload's URL. */
  url: string;
  /** Method of every request the client made, in order. */
  methods: string[];
}

/** A complete upload with the stock tus client (tus-js-client's Node build). */
export function tusUpload(options: {
  endpoint: string;
  token: string;
  data: Buffer;
  chunkSize?: number;
  metadata?: Record<string, string>;
}): Promise<TusOutcome> {
  return new Promise((resolve, reject) => {
    let mediaId: string | undefined;
    const methods: string[] = [];
    const upload = new tus.Upload(options.data, {
      endpoint: options.endpoint,
      headers: { Authorization: `Bearer ${options.token}` },
      retryDelays: [],
      metadata: { filename: 'upload.pdf', ...options.metadata },
      ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
      onAfterResponse: (req, res) => {
        methods.push(req.getMethod());
        mediaId ??= res.getHeader('Media-Id') || undefined;
      },
      onSuccess: () => {
        if (!mediaId || !upload.url) reject(new Error('the upload finished without a Media-Id'));
        else resolve({ mediaId, url: upload.url, methods });
      },
      onError: reject,
    });
    upload.start();
  });
}
