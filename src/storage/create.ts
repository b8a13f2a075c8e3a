import type { StorageConfig } from '../config.ts';
import type { BlobStore } from './blob-store.ts';
import { LocalBlobStore } from './local.ts';
import { S3BlobStore } from './s3.ts';

export async function createBlobStore(config: StorageConfig): Promise<BlobStore> {
  if (config.kind === 'local') return LocalBlobStore.create(config.dir);
  return new S3BlobStore({
    endpoint: config.endpoint,
    bucket: config.bucket,
    region: config.region,
    accessKeyId: config.accessKeyId,
    secretAccessKey: config.secretAccessKey,
    forcePathStyle: config.forcePathStyle,
  });
}
