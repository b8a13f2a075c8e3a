import type { Readable, Writable } from 'node:stream';

/**
 * Where blobs (uploaded files and their renditions) live. Keys are produced by the server, never
 * by clients: slash-separated segments of [A-Za-z0-9_.-] with no empty, "." or ".." segment.
 * Implementations: local disk (local.ts) and S3-compatible object storage (s3.ts).
 */
export interface BlobStore {
  /**
   * Starts writing a blob at `key`. Nothing is visible at `key` until commit() resolves; abort()
   * (or a failed commit) leaves nothing behind.
   */
  createWriter(key: string): BlobWriter;
  /** Streams the blob, or the inclusive byte range [start, end] of it. Throws BlobNotFoundError. */
  read(key: string, range?: { start: number; end: number }): Promise<Readable>;
  /** Size of the blob, or null when it does not exist. */
  stat(key: string): Promise<{ size: number } | null>;
  /** Removes the blob; succeeds when it is already gone. */
  delete(key: string): Promise<void>;
  /** Removes every blob whose key starts with `prefix` (which ends with "/"). */
  deletePrefix(prefix: string): Promise<void>;
  /** Every committed key under `prefix` with its last-modified time: used to find orphans. */
  list(prefix: string): AsyncIterable<{ key: string; lastModified: Date }>;
  /**
   * Removes unfinished writes left by a crash or a failed cleanup: those not changed for
   * `olderThanMs` before `now` (default: the current time), and on local disk every one of a
   * process that is gone. Never one of a live process's uploads in progress. Returns how many.
   */
  sweepIncomplete(olderThanMs: number, now?: number): Promise<number>;
  /** Throws when the storage cannot be reached or written (readiness check). */
  ping(): Promise<void>;
  /** A local file path for a committed blob when the store is on local disk, else null. */
  localPath(key: string): string | null;
  /**
   * Makes a finished local file the blob at `key` without copying it (local disk, same file
   * system: a hard link); false when that is not possible and the bytes must be written instead.
   * The caller still removes its own name for the file.
   */
  adopt?(file: string, key: string): Promise<boolean>;
  /**
   * Makes the object at `sourceKey` in the same bucket (a finished tus upload on S3, `size` bytes)
   * the blob at `key` by a copy inside the object store, the bytes never passing through this
   * process; false when the store cannot (then the bytes must be written instead). The caller
   * still removes the source object.
   */
  adoptObject?(sourceKey: string, key: string, size: number): Promise<boolean>;
  /** Releases connections (S3) or this process's scratch space (local disk); optional. */
  close?(): void | Promise<void>;
}

export interface BlobWriter {
  /** Write the bytes here; respects backpressure. Errors of the backend destroy this stream. */
  readonly stream: Writable;
  /**
   * A local file that holds the bytes once `stream` has finished, before commit (local disk), or
   * null: lets the ingest decode an image before deciding to keep it, without a second copy.
   */
  readonly tempPath: string | null;
  /** Makes the blob durable and visible at its key. Call after `stream` has finished. */
  commit(): Promise<void>;
  /** Discards whatever was written. Idempotent; safe at any point, also after a failure. */
  abort(): Promise<void>;
}

export class BlobNotFoundError extends Error {
  constructor(key: string) {
    super(`blob not found: ${key}`);
    this.name = 'BlobNotFoundError';
  }
}

/**
 * Whether `error` says that a blob (or file, object, multipart upload) is not there: the one place
 * that knows how each backend says so. Local disk: ENOENT, or ENOTDIR when a path component is
 * not a directory; S3 and its clones: NoSuchKey, NoSuchUpload, NotFound (HEAD has no body, so the
 * SDK names it after the status) or a bare 404, but never a missing bucket, which is a
 * misconfiguration and must not pass for a missing blob.
 */
export function isNotFound(error: unknown): boolean {
  if (error instanceof BlobNotFoundError) return true;
  if (typeof error !== 'object' || error === null) return false;
  const { code, name, $metadata } = error as {
    code?: unknown;
    name?: unknown;
    $metadata?: { httpStatusCode?: unknown };
  };
  if (code === 'ENOENT' || code === 'ENOTDIR') return true;
  if (name === 'NoSuchBucket') return false;
  return (
    name === 'NoSuchKey' ||
    name === 'NoSuchUpload' ||
    name === 'NotFound' ||
    $metadata?.httpStatusCode === 404
  );
}

/**
 * Whether `error` says the storage has no room: the disk is full (ENOSPC), the user's disk quota
 * is used up (EDQUOT) or the file system's file size limit is reached (EFBIG); an S3 clone that
 * answers 507 Insufficient Storage (MinIO: XMinioStorageFull). Answered 507 INSUFFICIENT_STORAGE,
 * never blamed on the client.
 */
export function isStorageFull(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, name, $metadata } = error as {
    code?: unknown;
    name?: unknown;
    $metadata?: { httpStatusCode?: unknown };
  };
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return true;
  return name === 'XMinioStorageFull' || $metadata?.httpStatusCode === 507;
}

const KEY_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

/** Rejects keys that could address anything outside the store. */
export function assertValidKey(key: string): void {
  if (!KEY_RE.test(key) || key.split('/').some((s) => s === '.' || s === '..')) {
    throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
  }
}

/** The response headers of the contract that a presigned GET makes the object store send. */
export interface PresignedHeaders {
  contentType: string;
  contentDisposition: string | undefined;
  cacheControl: string;
}

/** A store that can hand out a short-lived URL for reading one object (S3). */
export interface PresigningStore {
  presignGet(key: string, headers: PresignedHeaders, expiresInSeconds: number): Promise<string>;
}
