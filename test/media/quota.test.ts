import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  eventually,
  expectError,
  pdfOfSize,
  startMediaApp,
  streamUpload,
  type MediaApp,
  type MediaItem,
  type User,
} from './media-helpers.ts';

const QUOTA = 100_000;

async function me(app: MediaApp, as: User = 'alice') {
  const res = await app.api('GET', '/api/users/me', { as });
  expect(res.status).toBe(200);
  return res.json<{
    username: string;
    usage: { files: number; bytes: number };
    quota: { bytes: number | null };
  }>();
}

describe('the per-user quota', () => {
  let app: MediaApp;
  beforeAll(async () => {
    app = await startMediaApp({ STOWAGE_QUOTA_BYTES: String(QUOTA) });
  });
  afterAll(async () => {
    await app?.close();
  });

  test('an upload that would pass it → 413 QUOTA_EXCEEDED; one that fits exactly is stored', async () => {
    expect(await me(app)).toMatchObject({
      username: 'alice',
      usage: { files: 0, bytes: 0 },
      quota: { bytes: QUOTA },
    });
    const first = await app.uploadFile(pdfOfSize(60_000), 'first.pdf');

    const refused = await app.upload([{ name: 'file', filename: 'second.pdf', data: pdfOfSize(40_001) }]);
    expectError(refused, 413, 'QUOTA_EXCEEDED');
    await eventually(async () => expect((await app.leftovers()).incomplete).toEqual([]));
    expect((await app.leftovers()).blobs).toHaveLength(1);
    expect(await me(app)).toMatchObject({ usage: { files: 1, bytes: 60_000 } });

    await app.uploadFile(pdfOfSize(40_000), 'exact-fit.pdf');
    expect(await me(app)).toMatchObject({ usage: { files: 2, bytes: QUOTA } });
    const full = await app.upload([{ name: 'file', filename: 'tiny.pdf', data: pdfOfSize(100) }]);
    expectError(full, 413, 'QUOTA_EXCEEDED');

    // Deleting gives the bytes back at once.
    expect((await app.api('DELETE', `/api/media/${first.id}`)).status).toBe(204);
    expect(await me(app)).toMatchObject({ usage: { files: 1, bytes: 40_000 } });
    await app.uploadFile(pdfOfSize(60_000), 'again.pdf');
    expect(await me(app)).toMatchObject({ usage: { files: 2, bytes: QUOTA } });
  });

  test("other users are not affected by alice's full quota", async () => {
    expect((await me(app, 'alice')).usage.bytes).toBe(QUOTA);
    const res = await app.upload([{ name: 'file', filename: 'bobs.pdf', data: pdfOfSize(90_000) }], 'bob');
    expect(res.status).toBe(201);
    expect(await me(app, 'bob')).toMatchObject({
      usage: { files: 1, bytes: 90_000 },
      quota: { bytes: QUOTA },
    });
    expect((await me(app, 'alice')).usage).toEqual({ files: 2, bytes: QUOTA });
  });
});

describe('concurrent uploads of one user', () => {
  let app: MediaApp;
  beforeAll(async () => {
    app = await startMediaApp({ STOWAGE_QUOTA_BYTES: String(QUOTA) });
  });
  afterAll(async () => {
    await app?.close();
  });

  test('can never together pass the quota', async () => {
    const SIZE = 30_000; // each fits alone; five together are 150 000 bytes
    const file = pdfOfSize(SIZE);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const uploads = Array.from({ length: 5 }, (_, i) =>
      streamUpload({
        port: app.port,
        token: app.tokens.alice,
        filename: `parallel-${i}.pdf`,
        // The first part of each file goes out, then all five wait until every one of them is
        // being written on the server: each has passed the early quota check with an empty account.
        chunks: (async function* () {
          yield file.subarray(0, 10_000);
          await gate;
          yield file.subarray(10_000);
        })(),
      }),
    );
    await eventually(async () => expect((await app.leftovers()).incomplete).toHaveLength(5));
    release();
    const results = await Promise.all(uploads);

    const stored = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    expect(stored).toHaveLength(3);
    for (const r of refused)
      expect({ status: r.status, code: JSON.parse(r.body).error.code }).toEqual({
        status: 413,
        code: 'QUOTA_EXCEEDED',
      });

    expect(await me(app)).toMatchObject({ usage: { files: 3, bytes: 3 * SIZE } });
    const list = await app.api('GET', '/api/media/list');
    expect(
      list
        .json<{ items: MediaItem[] }>()
        .items.map((i) => i.id)
        .sort(),
    ).toEqual(stored.map((r) => (JSON.parse(r.body) as MediaItem).id).sort());
    await eventually(async () => {
      const files = await app.leftovers();
      expect(files.incomplete).toEqual([]);
      expect(files.blobs).toHaveLength(3);
    });
    expect(await app.rows()).toBe(3);
  });
});
