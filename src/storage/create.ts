import type { StorageConfig } from '../config.ts';
import type { BlobStore } from './blob-store.ts';
import { LocalBlobStore } from './local.ts';
import type { ScratchLease } from './scratch.ts';

/**
 * The AWS SDK is loaded only when S3 is configured: it costs tens of MiB of memory. `scratch`:
 * where this process keeps unfinished writes on a shared local directory.
 */
export async function createBlobStore(config: StorageConfig, scratch?: ScratchLease): Promise<BlobStore> {
  if (config.kind === 'local') {
    return LocalBlobStore.create(config.dir, scratch, { groupReadable: config.groupReadable ?? false });
  }
  const { S3BlobStore } = await import('./s3.ts');
  return new S3BlobStore({
    endpoint: config.endpoint,
    bucket: config.bucket,
    region: config.region,
    accessKeyId: config.accessKeyId,
    secretAccessKey: config.secretAccessKey,
    forcePathStyle: config.forcePathStyle,
  });
}
