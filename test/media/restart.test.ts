import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { createTestApp, PASSWORDS } from '../helpers/app.ts';
import {
  eventually,
  leftovers,
  MiB,
  multipart,
  NOTHING,
  pdf,
  pdfStream,
  streamUpload,
} from './media-helpers.ts';

/**
 * What a crash leaves behind is cleaned up when the server starts again: unfinished writes at
 * once, blobs without a row once they are old enough not to belong to an upload in progress.
 */

/** The real server process on `dataDir`. */
function startServer(dataDir: string): Promise<ServerProcess> {
  return startServerProcess({ cwd: dataDir, env: { STOWAGE_DATA_DIR: dataDir } });
}

async function login(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { accessToken: string }).accessToken;
}

describe('a server killed in the middle of an upload', () => {
  test('restarts clean: the temp file is swept and there is no item', { timeout: 60_000 }, async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-crash-'));
    const users = `alice:${await new PasswordHasher().hash(PASSWORDS.alice)}\n`;
    await fs.writeFile(path.join(dir, 'users'), users, { mode: 0o600 });
    let server: ServerProcess | undefined;
    try {
      server = await startServer(dir);
      const port = server.port;
      const upload = streamUpload({
        port,
        token: await login(port),
        filename: 'crash.pdf',
        chunks: pdfStream(256 * MiB),
      });
      const incomplete = path.join(dir, 'blobs', '.incomplete');
      await eventually(async () => {
        const [temp] = (await leftovers(dir)).incomplete;
        expect((await fs.stat(path.join(incomplete, temp!))).size).toBeGreaterThan(MiB);
      });
      await server.kill('SIGKILL');
      expect((await upload).status).toBeUndefined();
      // The crash did leave an unfinished write behind.
      expect((await leftovers(dir)).incomplete).toHaveLength(1);

      server = await startServer(dir);
      await eventually(async () => expect(await leftovers(dir)).toEqual(NOTHING));
      const token = await login(server.port);
      const get = (url: string) =>
        fetch(`http://127.0.0.1:${server!.port}${url}`, {
          headers: { authorization: `Bearer ${token}` },
        }).then((r) => r.json());
      expect(await get('/api/media/list')).toEqual({ items: [], nextCursor: null });
      expect(await get('/api/users/me')).toMatchObject({ usage: { files: 0, bytes: 0 } });
    } finally {
      await server?.kill('SIGTERM');
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('blobs without a row', () => {
  test('are removed at start when older than an hour; fresh ones and blobs with a row are kept', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-orphans-'));
    try {
      // A first run stores one real item.
      const first = await createTestApp({ STOWAGE_DATA_DIR: dir });
      const { body, contentType } = multipart([{ name: 'file', filename: 'kept.pdf', data: pdf(10) }]);
      const token = (await first.login('alice')).accessToken;
      const res = await first.app.inject({
        method: 'POST',
        url: '/api/media/upload',
        headers: { ...first.auth(token), 'content-type': contentType },
        payload: body,
      });
      expect(res.statusCode).toBe(201);
      const item = res.json<{ id: string }>();
      await first.close();

      const blob = (id: string) => path.join(dir, 'blobs', 'media', id.slice(0, 2), id);
      const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
      const oldOrphan = crypto.randomBytes(16).toString('base64url');
      const freshOrphan = crypto.randomBytes(16).toString('base64url');
      for (const id of [oldOrphan, freshOrphan]) {
        await fs.mkdir(path.dirname(blob(id)), { recursive: true });
        await fs.writeFile(blob(id), pdf());
      }
      await fs.utimes(blob(oldOrphan), twoHoursAgo, twoHoursAgo);
      await fs.utimes(blob(item.id), twoHoursAgo, twoHoursAgo);

      const second = await createTestApp({ STOWAGE_DATA_DIR: dir });
      try {
        await second.services.sweeper.stop(); // waits for the sweep that runs at start
        const exists = (file: string) =>
          fs.stat(file).then(
            () => true,
            () => false,
          );
        expect({
          old: await exists(blob(oldOrphan)),
          fresh: await exists(blob(freshOrphan)),
          item: await exists(blob(item.id)),
        }).toEqual({ old: false, fresh: true, item: true });
        const token2 = (await second.login('alice')).accessToken;
        const content = await second.app.inject({
          url: `/api/media/${item.id}/content`,
          headers: second.auth(token2),
        });
        expect(content.rawPayload).toEqual(pdf(10));
      } finally {
        await second.close();
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
