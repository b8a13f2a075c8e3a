import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { BlobNotFoundError, type BlobStore } from '../../src/storage/blob-store.ts';

export interface ContractOptions {
  /** Large enough to span several parts of a multipart upload. */
  largeSize: number;
  /** A size at which a part boundary lies, to read a range across it. */
  partSize: number;
}

/** Sends `data` through a pipeline in 64 KiB chunks, as the ingest pipeline does. */
export function source(data: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
    })(),
  );
}

export async function put(store: BlobStore, key: string, data: Buffer): Promise<void> {
  const writer = store.createWriter(key);
  await pipeline(source(data), writer.stream);
  await writer.commit();
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A source that fails after `bytes`, like a client that disconnects mid-upload. */
export function failingSource(bytes: number): Readable {
  return Readable.from(
    (function* () {
      yield randomBytes(bytes);
      throw new Error('client went away');
    })(),
  );
}

async function collectKeys(store: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const { key } of store.list(prefix)) keys.push(key);
  return keys.sort();
}

async function expectAbsent(store: BlobStore, key: string): Promise<void> {
  expect(await store.stat(key)).toBeNull();
  await expect(store.read(key)).rejects.toBeInstanceOf(BlobNotFoundError);
}

export function blobStoreContract(makeStore: () => Promise<BlobStore>, opts: ContractOptions): void {
  describe('BlobStore contract', () => {
    let store: BlobStore;
    let p: string;

    beforeEach(async () => {
      store = await makeStore();
      p = `t${randomBytes(6).toString('hex')}/`;
    });

    it('reads back exactly what was written, for empty, small and multi-part blobs', async () => {
      for (const size of [0, 1, 100_000, opts.largeSize]) {
        const data = randomBytes(size);
        await put(store, `${p}blob-${size}`, data);
        expect(await store.stat(`${p}blob-${size}`)).toEqual({ size });
        expect((await readAll(await store.read(`${p}blob-${size}`))).equals(data)).toBe(true);
      }
    });

    it('shows nothing at the key until commit, even after the stream finished', async () => {
      for (const size of [1000, opts.largeSize]) {
        const key = `${p}pending-${size}`;
        const writer = store.createWriter(key);
        await pipeline(source(randomBytes(size)), writer.stream);
        await sleep(200);
        await expectAbsent(store, key);
        expect(await collectKeys(store, p)).toEqual([]);
        await writer.commit();
        expect(await store.stat(key)).toEqual({ size });
        await store.delete(key);
      }
    });

    it('leaves nothing after abort, whether the stream finished, failed, or is still open', async () => {
      const finishedWriter = store.createWriter(`${p}finished`);
      await pipeline(source(randomBytes(opts.largeSize)), finishedWriter.stream);
      await finishedWriter.abort();
      await expectAbsent(store, `${p}finished`);

      const failed = store.createWriter(`${p}failed`);
      await expect(pipeline(failingSource(opts.partSize + 1000), failed.stream)).rejects.toThrow(
        'client went away',
      );
      await failed.abort();
      await failed.abort();
      await expectAbsent(store, `${p}failed`);

      const open = store.createWriter(`${p}open`);
      open.stream.write(randomBytes(1000));
      await open.abort();
      expect(open.stream.destroyed).toBe(true);
      await expect(open.commit()).rejects.toThrow();
      await expectAbsent(store, `${p}open`);
      expect(await collectKeys(store, p)).toEqual([]);
    });

    it('removes a committed blob when aborted after commit', async () => {
      const writer = store.createWriter(`${p}late`);
      await pipeline(source(Buffer.from('row insert failed')), writer.stream);
      await writer.commit();
      await writer.abort();
      await expectAbsent(store, `${p}late`);
    });

    it('refuses to commit a stream that was not ended', async () => {
      const writer = store.createWriter(`${p}unended`);
      writer.stream.write(Buffer.from('partial'));
      await expect(writer.commit()).rejects.toThrow(/before the stream was ended/);
      await writer.abort();
      await expectAbsent(store, `${p}unended`);
    });

    it('serves inclusive byte ranges', async () => {
      const data = randomBytes(opts.largeSize);
      const key = `${p}ranged`;
      await put(store, key, data);
      const last = data.length - 1;
      const boundary = opts.partSize;
      for (const [start, end] of [
        [0, 0],
        [10, 19],
        [last, last],
        [0, last],
        [boundary - 5, boundary + 5],
      ] as const) {
        const got = await readAll(await store.read(key, { start, end }));
        expect(got.equals(data.subarray(start, end + 1))).toBe(true);
      }
    });

    it('reports size and absence through stat, and rejects reads of missing blobs', async () => {
      await put(store, `${p}sized`, Buffer.alloc(1234, 1));
      expect(await store.stat(`${p}sized`)).toEqual({ size: 1234 });
      await expectAbsent(store, `${p}missing`);
      await expect(store.read(`${p}missing`, { start: 0, end: 0 })).rejects.toBeInstanceOf(BlobNotFoundError);
      // A "folder" of other blobs is not itself a blob.
      await put(store, `${p}dir/child`, Buffer.from('x'));
      await expectAbsent(store, `${p}dir`);
    });

    it('deletes idempotently', async () => {
      await put(store, `${p}gone`, Buffer.from('bye'));
      await store.delete(`${p}gone`);
      await expectAbsent(store, `${p}gone`);
      await store.delete(`${p}gone`);
      await store.delete(`${p}never-existed`);
    });

    it('deletes everything under a prefix and nothing else', async () => {
      for (const k of ['m/original', 'm/thumbs/small', 'm/thumbs/large', 'mx/original', 'other', 'other2']) {
        await put(store, `${p}${k}`, Buffer.from(k));
      }
      await store.deletePrefix(`${p}m/`);
      expect(await collectKeys(store, p)).toEqual([`${p}mx/original`, `${p}other`, `${p}other2`]);
      await store.deletePrefix(`${p}m/`);
      await store.deletePrefix(`${p}nothing-here/`);
      await store.deletePrefix(`${p}other/`);
      expect(await collectKeys(store, p)).toEqual([`${p}mx/original`, `${p}other`, `${p}other2`]);
    });

    it('lists committed keys under a prefix with their modification time', async () => {
      const before = Date.now() - 5000;
      for (const k of ['a/1', 'a/b/2', 'ab/3']) await put(store, `${p}${k}`, Buffer.from(k));
      const pending = store.createWriter(`${p}a/pending`);
      await pipeline(source(Buffer.from('not yet')), pending.stream);

      expect(await collectKeys(store, `${p}a/`)).toEqual([`${p}a/1`, `${p}a/b/2`]);
      expect(await collectKeys(store, p)).toEqual([`${p}a/1`, `${p}a/b/2`, `${p}ab/3`]);
      expect(await collectKeys(store, `${p}none/`)).toEqual([]);
      for (const key of await collectKeys(store, '')) expect(await store.stat(key), key).not.toBeNull();
      for await (const { lastModified } of store.list(p)) {
        expect(lastModified).toBeInstanceOf(Date);
        expect(lastModified.getTime()).toBeGreaterThan(before);
        expect(lastModified.getTime()).toBeLessThan(Date.now() + 5000);
      }
      await pending.abort();
    });

    it('rejects keys that could address something outside the store', async () => {
      for (const key of ['../x', '/abs', 'a//b', 'a/./b', 'a/../b', '', 'a/', 'sp ace']) {
        expect(() => store.createWriter(key), key).toThrow(/invalid blob key/);
        await expect(store.read(key), key).rejects.toThrow(/invalid blob key/);
        await expect(store.stat(key), key).rejects.toThrow(/invalid blob key/);
        await expect(store.delete(key), key).rejects.toThrow(/invalid blob key/);
      }
      await expect(store.deletePrefix('../')).rejects.toThrow(/invalid blob key/);
      await expect(store.deletePrefix('')).rejects.toThrow(/invalid blob prefix/);
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
