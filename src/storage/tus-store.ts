import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import type { Config } from '../config.ts';
import type { ReadableDataStore } from '../http/tus/tus-uploads.ts';

/** Where unfinished resumable uploads live: beside the blobs, in the same kind of storage. */
export async function createTusStore(config: Config): Promise<ReadableDataStore> {
  const expirationPeriodInMilliseconds = config.uploadExpiry * 1000;
  const directory = path.join(config.dataDir, 'uploads');
  await fs.mkdir(directory, { recursive: true, mode: 0o700 });
  return new FileStore({ directory, expirationPeriodInMilliseconds });
}
