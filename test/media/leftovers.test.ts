import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clamdAvailable, EICAR, startClamd, type RunningClamd } from '../helpers/clamd.ts';
import {
  eventually,
  expectNothingStored,
  KiB,
  MiB,
  NOTHING,
  pdfStream,
  startMediaApp,
  streamUpload,
  type MediaApp,
  type StreamedResult,
} from './media-helpers.ts';

/**
 * Every way an upload can fail, over a real socket with multi-megabyte bodies, must leave no row,
 * no blob, no temp file and no spool file behind. (A crash and what it leaves: restart.test.ts.)
 */

const LIMIT = 3 * MiB;
/** A body far larger than anything the server should read of it (produced lazily, never held). */
const HUGE = 512 * MiB;

function errorCode(result: StreamedResult): string | undefined {
  try {
    return (JSON.parse(result.body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** The server answers as soon as it knows; it may close the connection before reading the rest. */
function expectRefused(result: StreamedResult, status: number, code: string): void {
  if (result.status === undefined) {
    // The connection was reset before the answer could be read: allowed, but only that way.
    expect(result.error?.code).toMatch(/^(ECONNRESET|EPIPE)$/);
    return;
  }
  expect({ status: result.status, code: errorCode(result) }).toEqual({ status, code });
}

describe('failed uploads leave nothing behind', () => {
  let clamd: RunningClamd | undefined;
  let app: MediaApp;
  beforeAll(async () => {
    if (clamdAvailable()) clamd = await startClamd({ streamMaxLength: 16 * MiB });
    app = await startMediaApp({
      STOWAGE_MAX_UPLOAD_BYTES: String(LIMIT),
      ...(clamd ? { STOWAGE_CLAMD: clamd.url } : {}),
    });
  });
  afterAll(async () => {
    await app?.close();
    await clamd?.stop();
  });

  const upload = (chunks: Iterable<Buffer>, extra: Partial<Parameters<typeof streamUpload>[0]> = {}) =>
    streamUpload({ port: app.port, token: app.tokens.alice, filename: 'file.pdf', chunks, ...extra });

  test('a refused type', async () => {
    function* executable() {
      const head = Buffer.alloc(64 * KiB);
      head.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
      yield head;
      yield* pdfStream(HUGE);
    }
    const result = await upload(executable());
    expectRefused(result, 415, 'UNSUPPORTED_MEDIA_TYPE');
    // Refused from the first bytes: the rest of the body is never read (only socket buffers fill).
    expect(result.sent).toBeLessThan(16 * MiB);
    await expectNothingStored(app);
  });

  test('the size limit, passed in the middle of the body', async () => {
    const result = await upload(pdfStream(HUGE));
    expectRefused(result, 413, 'PAYLOAD_TOO_LARGE');
    expect(result.sent).toBeLessThan(LIMIT + 16 * MiB);
    await expectNothingStored(app);
  });

  test.skipIf(!clamdAvailable())('malware', async () => {
    const result = await upload(
      pdfStream(2 * MiB, 64 * KiB, { at: MiB, bytes: Buffer.from(EICAR, 'latin1') }),
    );
    expectRefused(result, 422, 'MALWARE_DETECTED');
    await expectNothingStored(app);
  });

  test('the client aborting mid-upload', async () => {
    const result = await upload(pdfStream(LIMIT - MiB), {
      abortAfter: MiB + 5000,
      onAbortPoint: async (request) => {
        // Abort only once the server is writing the file, so there is something to clean up.
        await eventually(async () => {
          const [temp] = (await app.leftovers()).incomplete;
          expect(temp).toBeDefined();
          const { size } = await fs.stat(path.join(app.dir, 'blobs', '.incomplete', temp!));
          expect(size).toBeGreaterThan(0);
        });
        request.destroy();
      },
    });
    expect(result.status).toBeUndefined();
    await expectNothingStored(app);
    // The server is fine afterwards.
    expect((await app.api('GET', '/api/media/list')).json()).toEqual({ items: [], nextCursor: null });
  });

  test('a disk error when the blob is moved into place', async () => {
    // A file where the blob directory should be: creating media/xx/ fails (ENOTDIR) at commit.
    const mediaDir = path.join(app.dir, 'blobs', 'media');
    await fs.rm(mediaDir, { recursive: true, force: true });
    await fs.writeFile(mediaDir, 'not a directory');
    try {
      const result = await upload(pdfStream(MiB));
      expect({ status: result.status, code: errorCode(result) }).toEqual({ status: 500, code: 'INTERNAL' });
      await eventually(async () => expect(await app.leftovers()).toEqual({ ...NOTHING, blobs: ['media'] }));
      expect(await app.rows()).toBe(0);
    } finally {
      await fs.rm(mediaDir, { force: true });
    }
  });
});

describe('the quota, passed in the middle of the body', () => {
  test('leaves nothing behind', async () => {
    const app = await startMediaApp({ STOWAGE_QUOTA_BYTES: String(MiB) });
    try {
      const result = await streamUpload({
        port: app.port,
        token: app.tokens.alice,
        filename: 'q.pdf',
        chunks: pdfStream(4 * MiB),
      });
      expectRefused(result, 413, 'QUOTA_EXCEEDED');
      await expectNothingStored(app);
      expect((await app.api('GET', '/api/users/me')).json().usage).toEqual({ files: 0, bytes: 0 });
    } finally {
      await app.close();
    }
  });
});
