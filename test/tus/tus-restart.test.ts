import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { PASSWORDS } from '../helpers/app.ts';
import { MiB, pdfOfSize, sha256, until } from '../helpers/common.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';

/**
 * kill -9 in the middle of a PATCH, then resume: the single-pass state (hash, type, scan) died
 * with the process, so the completion falls back to one pass over the stored bytes, and the item
 * is exactly the file. The same for a partial upload, whose bytes are never flushed by its PATCHes
 * (the concatenation writes them again): what the process wrote is in the page cache, and kept.
 */

const TUS = '/api/media/uploads';
const TUS_HEADER = { 'tus-resumable': '1.0.0' };

function startServer(dataDir: string): Promise<ServerProcess> {
  return startServerProcess({ cwd: dataDir, env: { STOWAGE_DATA_DIR: dataDir } });
}

async function login(base: string): Promise<Record<string, string>> {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
  });
  expect(res.status).toBe(200);
  return { authorization: `Bearer ${((await res.json()) as { accessToken: string }).accessToken}` };
}

describe('a server killed in the middle of a tus PATCH', () => {
  test.each([
    { kind: 'upload', partial: false },
    { kind: 'partial upload, then concatenated', partial: true },
  ])(
    'the client resumes at the offset on disk and the file is stored byte for byte ($kind)',
    { timeout: 60_000 },
    async ({ partial }) => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-tus-crash-'));
      await fs.writeFile(
        path.join(dir, 'users'),
        `alice:${await new PasswordHasher().hash(PASSWORDS.alice)}\n`,
        {
          mode: 0o600,
        },
      );
      const data = pdfOfSize(16 * MiB);
      let server: ServerProcess | undefined;
      try {
        server = await startServer(dir);
        let auth = await login(server.base);
        const created = await fetch(`${server.base}${TUS}`, {
          method: 'POST',
          headers: {
            ...auth,
            ...TUS_HEADER,
            'upload-length': String(data.length),
            ...(partial ? { 'upload-concat': 'partial' } : {}),
          },
        });
        expect(created.status).toBe(201);
        const uploadPath = new URL(created.headers.get('location')!, server.base).pathname;
        const file = path.join(dir, 'uploads', uploadPath.split('/').pop()!);

        // A PATCH that declares the whole file, sends 6 MiB and hangs there.
        const request = http.request({
          host: '127.0.0.1',
          port: server.port,
          method: 'PATCH',
          path: uploadPath,
          headers: {
            ...auth,
            ...TUS_HEADER,
            'upload-offset': '0',
            'content-type': 'application/offset+octet-stream',
            'content-length': String(data.length),
          },
        });
        const cut = new Promise<void>((resolve) => {
          request.on('error', () => resolve());
          request.on('response', () => resolve());
        });
        request.write(data.subarray(0, 6 * MiB));
        await until(async () => (await fs.stat(file)).size >= 5 * MiB, 20_000, 'the PATCH reaching the disk');
        await server.kill('SIGKILL');
        await cut;

        server = await startServer(dir);
        auth = await login(server.base);
        const head = await fetch(`${server.base}${uploadPath}`, {
          method: 'HEAD',
          headers: { ...auth, ...TUS_HEADER },
        });
        expect(head.status).toBe(200);
        const offset = Number(head.headers.get('upload-offset'));
        expect(offset).toBe((await fs.stat(file)).size);
        expect(offset).toBeGreaterThanOrEqual(5 * MiB);
        expect(offset).toBeLessThanOrEqual(6 * MiB);

        const rest = await fetch(`${server.base}${uploadPath}`, {
          method: 'PATCH',
          headers: {
            ...auth,
            ...TUS_HEADER,
            'upload-offset': String(offset),
            'content-type': 'application/offset+octet-stream',
          },
          body: data.subarray(offset),
        });
        expect(rest.status).toBe(204);
        let mediaId = rest.headers.get('media-id');
        if (partial) {
          expect(mediaId).toBeNull();
          const final = await fetch(`${server.base}${TUS}`, {
            method: 'POST',
            headers: { ...auth, ...TUS_HEADER, 'upload-concat': `final;${uploadPath}` },
          });
          expect(final.status).toBe(201);
          mediaId = final.headers.get('media-id');
        }
        expect(mediaId).toBeTruthy();
        const item = await fetch(`${server.base}/api/media/${mediaId}`, { headers: auth });
        expect(await item.json()).toMatchObject({ size: data.length, sha256: sha256(data) });
        const content = await fetch(`${server.base}/api/media/${mediaId}/content`, { headers: auth });
        expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(data));
        expect(await fs.readdir(path.join(dir, 'uploads'))).toEqual([]);
      } finally {
        await server?.kill('SIGTERM');
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
  );
});
