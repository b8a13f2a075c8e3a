import type { Config } from '../config.ts';
import {
  assertValidKey,
  type BlobStore,
  type PresignedHeaders,
  type PresigningStore,
} from '../storage/blob-store.ts';

/**
 * Who sends a blob's bytes once Stowage has authorised the request and answered what it can
 * decide itself (304, 416): nginx from disk (X-Accel-Redirect), or the object store through a
 * presigned URL. Without one, Stowage streams the bytes.
 */
export type BlobOffload =
  | { kind: 'accel'; uri: (key: string) => string }
  | { kind: 'presign'; url: (key: string, headers: PresignedHeaders) => Promise<string> };

/** The contract caps a presigned URL's life at 60 s: long enough to follow a redirect, no more. */
export const PRESIGN_TTL_SECONDS = 60;

function canPresign(store: BlobStore): store is BlobStore & PresigningStore {
  return typeof (store as Partial<PresigningStore>).presignGet === 'function';
}

/**
 * The X-Accel-Redirect target for a blob key: the configured prefix (nginx's internal location)
 * plus the key. Keys are produced by the server and checked to be plain path segments, so no
 * client-controlled text can reach the header; each segment is percent-encoded all the same
 * (a no-op for valid keys) so that nothing could ever be read by nginx as a query or a "..".
 */
export function accelUri(prefix: string, key: string): string {
  assertValidKey(key);
  return prefix + key.split('/').map(encodeURIComponent).join('/');
}

export function createOffload(config: Config, store: BlobStore): BlobOffload | undefined {
  const prefix = config.accelRedirect;
  if (prefix !== undefined) return { kind: 'accel', uri: (key) => accelUri(prefix, key) };
  if (config.s3Redirect) {
    if (!canPresign(store)) throw new Error('STOWAGE_S3_REDIRECT needs a storage that can presign URLs');
    return {
      kind: 'presign',
      url: (key, headers) => store.presignGet(key, headers, PRESIGN_TTL_SECONDS),
    };
  }
  return undefined;
}
