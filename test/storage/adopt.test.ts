import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdoptingWriter } from '../../src/uploads/adopting-writer.ts';
import type { BlobStore } from '../../src/storage/blob-store.ts';
import { LocalBlobStore } from '../../src/storage/local.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { readAll } from './blob-store.contract.ts';

/** A finished local file (a completed resumable upload) becomes a blob without a second copy. */
describe('adopting a finished local file', () => {
  let dir: string;
  let s3: TestBucket | undefined;
  let bucketStore: S3BlobStore | undefined;
  const bytes = crypto.randomBytes(3 * 1024 * 1024 + 17);

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-adopt-'));
    if (!s3Available()) return;
    s3 = await createTestBucket();
    bucketStore = new S3BlobStore({ ...s3, forcePathStyle: true });
  });
  afterAll(async () => {
    bucketStore?.close();
    await s3?.drop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function finishedFile(name: string): Promise<string> {
    const file = path.join(dir, name);
    await fs.writeFile(file, bytes, { mode: 0o600 });
    return file;
  }

  async function adopt(store: BlobStore, file: string, key: string): Promise<void> {
    const writer = new AdoptingWriter(store, key, { file });
    await pipeline(Readable.from([bytes]), writer.stream);
    await writer.commit();
  }

  it('links the file in on local disk: same inode, nothing written twice, the original name is left to its owner', async () => {
    const store = await LocalBlobStore.create(path.join(dir, 'blobs'));
    const file = await finishedFile('upload-1');
    await adopt(store, file, 'media/ab/adopted');
    const [blob, original] = await Promise.all([fs.stat(store.localPath('media/ab/adopted')), fs.stat(file)]);
    expect(blob.ino).toBe(original.ino);
    expect((await readAll(await store.read('media/ab/adopted'))).equals(bytes)).toBe(true);
    await fs.rm(file);
    expect((await readAll(await store.read('media/ab/adopted'))).equals(bytes)).toBe(true);
  });

  it.skipIf(!s3Available())(
    'copies where the store cannot adopt (object storage), and abort after commit removes the blob',
    async () => {
      const store = bucketStore!;
      const file = await finishedFile('upload-2');
      const writer = new AdoptingWriter(store, 'media/cd/copied', { file });
      await pipeline(Readable.from([bytes]), writer.stream);
      await writer.commit();
      expect((await readAll(await store.read('media/cd/copied'))).equals(bytes)).toBe(true);
      await writer.abort();
      expect(await store.stat('media/cd/copied')).toBeNull();
    },
  );

  it('writes nothing at the key when aborted before commit', async () => {
    const store = await LocalBlobStore.create(path.join(dir, 'blobs2'));
    const writer = new AdoptingWriter(store, 'media/ef/never', { file: await finishedFile('upload-3') });
    await writer.abort();
    await expect(writer.commit()).rejects.toThrow();
    expect(await store.stat('media/ef/never')).toBeNull();
  });
});
