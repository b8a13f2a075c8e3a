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
   * Removes unfinished writes left by a crash that are older than `olderThanMs` at `now` (the
   * caller's clock, in ms since the epoch; default the system's); returns how many.
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
  /** Releases connections (S3); optional. */
  close?(): void;
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
