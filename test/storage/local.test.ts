import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalBlobStore } from '../../src/storage/local.ts';
import { blobStoreContract, failingSource, put, readAll, source } from './blob-store.contract.ts';

const roots: string[] = [];

async function makeStore(): Promise<LocalBlobStore> {
  const root = await mkdtemp(path.join(tmpdir(), 'stowage-blobs-'));
  roots.push(root);
  return LocalBlobStore.create(root);
}

afterEach(async () => {
  await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
});

blobStoreContract(makeStore, { largeSize: 20 * 1024 * 1024 + 12345, partSize: 5 * 1024 * 1024 });

describe('LocalBlobStore', () => {
  /** Unfinished writes (in the process's own folder under .incomplete), as paths relative to it. */
  const incomplete = async (store: LocalBlobStore): Promise<string[]> =>
    (await readdir(path.join(store.root, '.incomplete'), { recursive: true }))
      .filter((name) => name.endsWith('.tmp'))
      .sort();

  it('leaves no temp file after commit or abort', async () => {
    const store = await makeStore();
    await put(store, 'a/committed', Buffer.from('data'));
    expect(await incomplete(store)).toEqual([]);

    const aborted = store.createWriter('a/aborted');
    await pipeline(source(Buffer.from('data')), aborted.stream);
    await aborted.abort();
    const failed = store.createWriter('a/failed');
    await expect(pipeline(failingSource(100_000), failed.stream)).rejects.toThrow();
    await failed.abort();
    const open = store.createWriter('a/open');
    await open.abort();
    expect(await incomplete(store)).toEqual([]);
  });

  it('sweeps temp files a crash left behind once they are old enough', async () => {
    const store = await makeStore();
    for (const key of ['crash/1', 'crash/2']) {
      await pipeline(source(Buffer.from('half an upload')), store.createWriter(key).stream);
    }
    const [stale, fresh] = await incomplete(store);
    expect(fresh).toBeDefined();
    const old = new Date(Date.now() - 3_600_000);
    await utimes(path.join(store.root, '.incomplete', stale!), old, old);

    expect(await store.sweepIncomplete(2 * 3_600_000)).toBe(0);
    expect(await store.sweepIncomplete(60_000)).toBe(1);
    expect(await incomplete(store)).toEqual([fresh]);
    // Ages count from the `now` given (the sweeper's clock), not from the wall clock.
    expect(await store.sweepIncomplete(60_000, Date.now() + 3 * 3_600_000)).toBe(1);
    expect(await incomplete(store)).toEqual([]);
  });

  it('keeps every key inside the root', async () => {
    const store = await makeStore();
    expect(store.localPath('x/y.jpg')).toBe(path.join(store.root, 'x', 'y.jpg'));
    for (const key of ['../escape', 'a/../../escape', '/etc/passwd', '.incomplete/x']) {
      expect(() => store.createWriter(key)).toThrow(/invalid blob key/);
      expect(() => store.localPath(key)).toThrow(/invalid blob key/);
    }
    await expect(store.deletePrefix('../')).rejects.toThrow();
    expect(await readdir(path.dirname(store.root))).toContain(path.basename(store.root));
  });

  it('stores blobs readable by the owner only, at localPath', async () => {
    const store = await makeStore();
    const writer = store.createWriter('private/blob');
    await pipeline(source(Buffer.from('secret')), writer.stream);
    const [temp] = await incomplete(store);
    expect((await stat(path.join(store.root, '.incomplete', temp!))).mode & 0o777).toBe(0o600);
    await writer.commit();
    const file = store.localPath('private/blob');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(file)).size).toBe(6);
  });

  it('exposes the finished bytes at tempPath before commit, and moves them on commit', async () => {
    const store = await makeStore();
    const data = randomBytes(300_000);
    const writer = store.createWriter('probe/original');
    await pipeline(source(data), writer.stream);
    expect((await readFile(writer.tempPath)).equals(data)).toBe(true);
    await writer.commit();
    await expect(stat(writer.tempPath)).rejects.toThrow(/ENOENT/);
    expect((await readFile(store.localPath('probe/original'))).equals(data)).toBe(true);
  });

  it('finishes a download even when the blob is deleted meanwhile', async () => {
    const store = await makeStore();
    const data = Buffer.alloc(1024 * 1024, 7);
    await put(store, 'racy', data);
    const stream = await store.read('racy');
    await store.delete('racy');
    expect((await readAll(stream)).equals(data)).toBe(true);
  });
});
