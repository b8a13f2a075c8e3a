import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestApp, PASSWORDS } from '../helpers/app.ts';
import { captureLogs, LEVEL, type LogLine } from '../helpers/logs.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { tempDir } from '../helpers/temp.ts';
import {
  eventually,
  expectError,
  KiB,
  leftovers,
  MiB,
  pdfOfSize,
  png,
  startMediaApp,
  streamUpload,
  type MediaApp,
} from './media-helpers.ts';

/**
 * A full disk is the server's problem, not the client's: every upload path answers 507
 * INSUFFICIENT_STORAGE in the contract's shape, says so in the log at error level, keeps nothing
 * partial, leaves the user's usage alone, and works again once there is room. The disk is a real,
 * small tmpfs mounted over the blob store and over the resumable uploads' directory.
 */

/** Whether this process may mount a tmpfs (root, or CAP_SYS_ADMIN). */
const canMount = ((): boolean => {
  const probe = mkdtempSync(path.join(os.tmpdir(), 'stowage-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(probe);
  }
})();
if (!canMount) {
  console.warn(
    'disk-full tests SKIPPED: mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN)',
  );
}

const DISK = 4 * MiB;

describe.skipIf(!canMount)('a full disk', () => {
  const logs = captureLogs();
  let dir: string;
  let blobs: string;
  let uploads: string;
  let app: MediaApp;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-full-'));
    blobs = path.join(dir, 'blobs');
    uploads = path.join(dir, 'uploads');
    for (const mountPoint of [blobs, uploads]) {
      await fs.mkdir(mountPoint);
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK},mode=0700`, 'tmpfs', mountPoint]);
    }
    // The thumbnail case fills the disk before the first request renders: none is rendered ahead.
    app = await startMediaApp(
      { STOWAGE_DATA_DIR: dir, STOWAGE_THUMBNAILS_AHEAD: 'off' },
      { logger: logs.logger },
    );
  });
  afterAll(async () => {
    await app?.close();
    for (const mountPoint of [blobs, uploads]) {
      try {
        execFileSync('umount', [mountPoint]);
      } catch {
        // not mounted (setup failed early)
      }
    }
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Takes all but `room` bytes of the file system at `mountPoint`; returns how to give them back. */
  async function fill(mountPoint: string, room = 0): Promise<() => Promise<void>> {
    const filler = path.join(mountPoint, 'filler');
    const { bavail, bsize } = await fs.statfs(mountPoint);
    await fs.writeFile(filler, Buffer.alloc(Math.max(0, bavail * bsize - room)));
    return () => fs.rm(filler);
  }

  /** The log lines at error level about a full disk since `from`, with the system's error code. */
  function fullDiskErrors(from: number): { code: string | undefined; msg: string }[] {
    return logs
      .lines()
      .slice(from)
      .filter((line) => line.level >= LEVEL.error && /storage is full/.test(line.msg))
      .map((line) => ({ code: line.err?.code, msg: line.msg }));
  }

  async function usage(): Promise<unknown> {
    return (await app.api('GET', '/api/users/me')).json<{ usage: unknown }>().usage;
  }

  /** Nothing of a failed write is left: no temp file, no spool file, no blob, no row. */
  async function expectNothingKept(extraBlobs: string[] = []): Promise<void> {
    await eventually(async () => {
      expect(await leftovers(dir)).toEqual({ blobs: extraBlobs, incomplete: [], spool: [] });
    });
    expect(await app.rows()).toBe(0);
    expect(await usage()).toEqual({ files: 0, bytes: 0 });
  }

  const tus = (method: string, url: string, headers: Record<string, string>, payload?: Buffer) =>
    app.app.inject({
      method: method as 'POST',
      url,
      headers: { authorization: `Bearer ${app.tokens.alice}`, 'tus-resumable': '1.0.0', ...headers },
      ...(payload ? { payload } : {}),
    });

  test('a multipart upload larger than the free space: 507, an error in the log, nothing kept', async () => {
    const from = logs.lines().length;
    const res = await app.upload([{ name: 'file', filename: 'big.pdf', data: pdfOfSize(DISK + MiB) }]);
    expectError(res, 507, 'INSUFFICIENT_STORAGE');
    expect(fullDiskErrors(from)).toEqual([{ code: 'ENOSPC', msg: expect.any(String) as string }]);
    await expectNothingKept();
  });

  test('a disk that is already full, then freed: 507, then the same upload is stored', async () => {
    const data = pdfOfSize(300 * KiB);
    const free = await fill(blobs, 64 * KiB);
    const from = logs.lines().length;
    expectError(await app.upload([{ name: 'file', filename: 'a.pdf', data }]), 507, 'INSUFFICIENT_STORAGE');
    expect(fullDiskErrors(from)).toHaveLength(1);
    await expectNothingKept(['filler']);

    // The same over a real socket (the reported case: a 400 blaming the client).
    const streamed = await streamUpload({
      port: app.port,
      token: app.tokens.alice,
      filename: 'a.pdf',
      chunks: [data],
    });
    expect({ status: streamed.status, body: JSON.parse(streamed.body) as unknown }).toMatchObject({
      status: 507,
      body: { error: { code: 'INSUFFICIENT_STORAGE' } },
    });
    expect(fullDiskErrors(from)).toHaveLength(2);
    await expectNothingKept(['filler']);

    await free();
    const item = await app.uploadFile(data, 'a.pdf');
    const content = await app.api('GET', `/api/media/${item.id}/content`);
    expect(content.rawPayload.equals(data)).toBe(true);
    expect(await usage()).toEqual({ files: 1, bytes: data.length });
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    await expectNothingKept();
  });

  test('a resumable upload whose PATCH fills the disk: 507, an error in the log', async () => {
    const size = DISK + MiB;
    const created = await tus('POST', '/api/media/uploads', { 'upload-length': String(size) });
    expect(created.statusCode).toBe(201);
    const url = new URL(created.headers.location as string, 'http://x').pathname;
    const from = logs.lines().length;
    const patch = await tus(
      'PATCH',
      url,
      { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      pdfOfSize(size),
    );
    expectError(patch, 507, 'INSUFFICIENT_STORAGE');
    expect(fullDiskErrors(from).map((line) => line.code)).toEqual(['ENOSPC']);
    // The client gives up: nothing of it stays, and it never was an item.
    expect((await tus('DELETE', url, {})).statusCode).toBe(204);
    expect(await fs.readdir(uploads)).toEqual([]);
    await expectNothingKept();
  });

  test('a resumable upload completed when the blob store is full: 507, the upload is discarded', async () => {
    const data = pdfOfSize(300 * KiB);
    const free = await fill(blobs, 64 * KiB);
    try {
      const created = await tus('POST', '/api/media/uploads', { 'upload-length': String(data.length) });
      expect(created.statusCode, created.body).toBe(201);
      const url = new URL(created.headers.location as string, 'http://x').pathname;
      const from = logs.lines().length;
      // The last byte arrives: the finished file is copied into the (other, full) blob store.
      const patch = await tus(
        'PATCH',
        url,
        { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
        data,
      );
      expectError(patch, 507, 'INSUFFICIENT_STORAGE');
      expect(fullDiskErrors(from).map((line) => line.code)).toEqual(['ENOSPC']);
      expect(await fs.readdir(uploads)).toEqual([]);
      expect(await app.services.database.db.selectFrom('reservations').selectAll().execute()).toEqual([]);
      await expectNothingKept(['filler']);
    } finally {
      await free();
    }
  });

  test('a thumbnail that cannot be cached: 507 (documented), nothing partial, served once there is room', async () => {
    const item = await app.uploadFile(await png(600, 400), 'photo.png');
    const free = await fill(blobs);
    const url = `/api/media/${item.id}/thumbnail?size=256`;
    try {
      const from = logs.lines().length;
      expectError(await app.api('GET', url), 507, 'INSUFFICIENT_STORAGE');
      expect(fullDiskErrors(from).map((line) => line.code)).toEqual(['ENOSPC']);
      expect((await leftovers(dir)).incomplete).toEqual([]);
    } finally {
      await free();
    }
    const thumbnail = await app.api('GET', url);
    expect(thumbnail.status).toBe(200);
    expect(thumbnail.headers['content-type']).toMatch(/^image\//);
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    await expectNothingKept();
  });
});

/** Whether `prlimit` (util-linux) can lower another process's limits here. */
const havePrlimit = ((): boolean => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!havePrlimit) console.warn('the EFBIG test is SKIPPED: prlimit (util-linux) is not installed');

describe.skipIf(!havePrlimit)('a file size limit (EFBIG)', () => {
  test(
    'is answered 507 like a full disk, logged at error level, nothing kept',
    { timeout: 60_000 },
    async () => {
      const dir = tempDir('stowage-efbig-');
      // A first app writes the users file; the real server process then runs on the same directory.
      const setup = await createTestApp({ STOWAGE_DATA_DIR: dir });
      await setup.app.close();
      await setup.services.close();
      const server = await startServerProcess({ cwd: dir, env: { STOWAGE_DATA_DIR: dir } });
      try {
        // RLIMIT_FSIZE, as `ulimit -f` sets it: Node ignores SIGXFSZ, so writes past it fail EFBIG.
        execFileSync('prlimit', ['--pid', String(server.child.pid), `--fsize=${2 * MiB}:${2 * MiB}`]);
        const login = await fetch(`${server.base}/api/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
        });
        const { accessToken } = (await login.json()) as { accessToken: string };
        const result = await streamUpload({
          port: server.port,
          token: accessToken,
          filename: 'big.pdf',
          chunks: [pdfOfSize(2 * MiB + 100 * KiB)],
        });
        expect({ status: result.status, body: JSON.parse(result.body) as unknown }).toMatchObject({
          status: 507,
          body: { error: { code: 'INSUFFICIENT_STORAGE' } },
        });
        await eventually(() => {
          const lines = server
            .output()
            .split('\n')
            .filter((line) => line.startsWith('{'))
            .map((line) => JSON.parse(line) as LogLine);
          expect(
            lines.find((line) => line.level >= LEVEL.error && /storage is full/.test(line.msg)),
          ).toMatchObject({
            err: { code: 'EFBIG' },
          });
        });
        await eventually(async () => {
          expect(await leftovers(dir)).toEqual({ blobs: [], incomplete: [], spool: [] });
        });
        const list = await fetch(`${server.base}/api/media/list`, {
          headers: { authorization: `Bearer ${accessToken}` },
        });
        expect(await list.json()).toEqual({ items: [], nextCursor: null });
      } finally {
        await server.kill('SIGTERM');
      }
    },
  );
});
