import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EICAR, EICAR_SIGNATURE, clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.ts';
import {
  TUS_HEADER,
  KiB,
  TUS,
  expectError,
  fixture,
  patchHeaders,
  pdfOfSize,
  rawRequest,
  startTusApp,
  tusFailure,
  type TusApp,
} from './tus-helpers.ts';

/**
 * What a resumable upload's bytes go through: the type is checked as soon as the head arrives,
 * and the finished file gets the multipart path's checks (scan, image decoding). A refused upload
 * leaves nothing behind: no item, no blob, no tus file, no reservation.
 */

const GiB = 1024 * 1024 * KiB;
const scanning = clamdAvailable();

let app: TusApp;
let clamd: RunningClamd | undefined;

beforeAll(async () => {
  clamd = scanning ? await startClamd() : undefined;
  app = await startTusApp(clamd ? { STOWAGE_CLAMD: clamd.url } : {});
});
afterAll(async () => {
  await app?.close();
  await clamd?.stop();
});

/** A page with a script, padded past the bytes the type is decided from. */
function html(size: number): Buffer {
  const page = Buffer.from('<!DOCTYPE html><html><body><script>alert(document.cookie)</script>\n');
  return Buffer.concat([page, Buffer.alloc(size - page.length, '<p>filler</p>\n')]);
}

/** A Linux executable's header followed by filler. */
function elf(size: number): Buffer {
  const data = Buffer.alloc(size, 0x90);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3e, 0, 1, 0, 0, 0]).copy(
    data,
  );
  return data;
}

async function expectNothingLeft(uploadPath?: string): Promise<void> {
  if (uploadPath) expect((await app.request('HEAD', uploadPath, { headers: TUS_HEADER })).status).toBe(404);
  expect(await app.uploadFiles()).toEqual([]);
  expect(await app.reservations()).toEqual([]);
  expect(await app.blobFiles()).toEqual([]);
  expect(await app.mediaList()).toEqual([]);
}

/**
 * Creates an upload of `data` and sends it in two PATCHes split at `split`: the first must be
 * accepted (204); the answer to the second, which completes the upload, is returned.
 */
async function inTwoPatches(
  data: Buffer,
  split: number,
  options: { metadata?: Record<string, string> } = {},
): Promise<{ uploadPath: string; last: Response }> {
  const uploadPath = await app.create(data.length, options);
  const first = await app.request('PATCH', uploadPath, {
    headers: patchHeaders(0),
    body: data.subarray(0, split),
  });
  expect(first.status).toBe(204);
  const last = await app.request('PATCH', uploadPath, {
    headers: patchHeaders(split),
    body: data.subarray(split),
  });
  return { uploadPath, last };
}

describe('the type, checked on the first bytes', () => {
  test.each([
    ['HTML', html(64 * KiB), undefined],
    ['an ELF executable', elf(64 * KiB), 'application/x-elf'],
  ])(
    '%s declared as 1 GiB is refused with 415 on the first PATCH, before the rest is sent',
    async (_name, head, detected) => {
      const uploadPath = await app.create(GiB, {
        metadata: { filename: 'movie.mp4', filetype: 'video/mp4' },
      });
      expect(await app.reservations()).toHaveLength(1);
      // The request stays open after its first 64 KiB: the answer must come without the rest.
      const res = await rawRequest(app, 'PATCH', uploadPath, {
        headers: { ...app.bearer('alice'), ...patchHeaders(0), 'content-length': String(GiB) },
        body: head,
        hold: true,
      });
      const body = expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
      if (detected) expect(body.error.details).toMatchObject({ detectedType: detected });
      await expectNothingLeft(uploadPath);
    },
  );

  test('a disallowed type in the creation request itself (creation-with-upload) is refused too', async () => {
    const res = await app.request('POST', TUS, {
      headers: {
        ...TUS_HEADER,
        'upload-length': String(64 * KiB),
        'content-type': 'application/offset+octet-stream',
      },
      body: elf(64 * KiB),
    });
    await expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectNothingLeft();
  });

  test('tus-js-client sending HTML in chunks gets the 415 on its first PATCH and the upload is gone', async () => {
    const failed = await tusFailure(app, html(64 * KiB), {
      chunkSize: 16 * KiB,
      metadata: { filename: 'a.html' },
    });
    expect(failed.status).toBe(415);
    expect(failed.body?.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(failed.outcome.methods).toEqual(['POST', 'PATCH']);
    await expectNothingLeft(new URL(failed.outcome.url!).pathname);
  });

  test('an allowed type goes on; a head too short to decide is checked at completion', async () => {
    const page = html(8 * KiB);
    const { uploadPath, last } = await inTwoPatches(page, 2 * KiB);
    await expectError(last, 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectNothingLeft(uploadPath);
  });
});

describe('checks on the finished file', () => {
  test('a broken JPEG → 422 INVALID_FILE on the completing PATCH, nothing stored', async () => {
    const photo = await fixture('DSCN0025.jpg');
    const broken = photo.subarray(0, Math.floor(photo.length * 0.6));
    const { uploadPath, last } = await inTwoPatches(broken, 32 * KiB, {
      metadata: { filename: 'broken.jpg' },
    });
    await expectError(last, 422, 'INVALID_FILE');
    expect(last.headers.get('media-id')).toBeNull();
    await expectNothingLeft(uploadPath);
  });

  describe.skipIf(!scanning)('malware (real clamd)', () => {
    function infectedPdf(): Buffer {
      const data = pdfOfSize(48 * KiB);
      Buffer.from(EICAR, 'latin1').copy(data, 40 * KiB);
      return data;
    }

    test('an infected file → 422 MALWARE_DETECTED naming the signature on the completing PATCH', async () => {
      const data = infectedPdf();
      const { uploadPath, last } = await inTwoPatches(data, 16 * KiB, {
        metadata: { filename: 'invoice.pdf' },
      });
      const body = await expectError(last, 422, 'MALWARE_DETECTED');
      expect(body.error.details.signature).toBe(EICAR_SIGNATURE);
      await expectNothingLeft(uploadPath);
    });

    test('tus-js-client gets the same answer, and a clean file after it is stored', async () => {
      const failed = await tusFailure(app, infectedPdf(), { chunkSize: 16 * KiB });
      expect(failed.status).toBe(422);
      expect(failed.body?.error).toMatchObject({
        code: 'MALWARE_DETECTED',
        details: { signature: EICAR_SIGNATURE },
      });
      await expectNothingLeft(new URL(failed.outcome.url!).pathname);
      const clean = pdfOfSize(48 * KiB);
      const res = await app.request('POST', TUS, {
        headers: {
          ...TUS_HEADER,
          'upload-length': String(clean.length),
          'content-type': 'application/offset+octet-stream',
        },
        body: clean,
      });
      expect(res.status).toBe(201);
      const mediaId = res.headers.get('media-id');
      expect((await app.mediaList()).map((i) => i.id)).toEqual([mediaId]);
      expect((await app.request('DELETE', `/api/media/${mediaId}`)).status).toBe(204);
    });
  });
});
