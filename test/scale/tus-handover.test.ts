import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadHmacKey, loadSigningKey } from '../../src/auth/keys.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { PASSWORDS } from '../helpers/app.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { MiB, pdfOfSize, sha256, until } from './scale-helpers.ts';

/**
 * tus's lock hand-over across instances: a PATCH left hanging on instance A (a client that lost
 * its connection without A noticing) must not block the client's resume on instance B. B's
 * request asks A, through the Redis lock, to let go; A stops reading, keeps what it received and
 * answers; B then serves the resume at once, and the completion (on B, which has none of A's
 * single-pass state) reads the stored bytes once. Both instances share one data directory.
 */

const TUS = '/api/media/uploads';
const TUS_HEADER = { 'tus-resumable': '1.0.0' };
const canRun = pgAvailable() && redisAvailable();

describe.skipIf(!canRun)('a resume on another instance while the first request still hangs', () => {
  let tmp: string;
  let database: TestDatabase | undefined;
  const servers: ServerProcess[] = [];

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-handover-'));
    [database] = await Promise.all([createTestDatabase(), flushRedisDb(REDIS_DB.tusHandover)]);
    const usersFile = path.join(tmp, 'users');
    await fs.writeFile(usersFile, `alice:${await new PasswordHasher().hash(PASSWORDS.alice)}\n`, {
      mode: 0o600,
    });
    const jwtKeyFile = path.join(tmp, 'jwt-ed25519.pem');
    const linkKeyFile = path.join(tmp, 'link-hmac.key');
    await loadSigningKey(jwtKeyFile);
    await loadHmacKey(linkKeyFile);
    const env = {
      STOWAGE_DATABASE_URL: database.url,
      STOWAGE_REDIS_URL: redisUrlFor(REDIS_DB.tusHandover),
      STOWAGE_USERS_FILE: usersFile,
      STOWAGE_JWT_KEY_FILE: jwtKeyFile,
      STOWAGE_LINK_KEY_FILE: linkKeyFile,
    };
    for (const name of ['a', 'b']) {
      servers.push(
        await startServerProcess({
          cwd: tmp,
          name: `instance ${name}`,
          // One data directory on shared storage (local files), one database, one Redis.
          env: { ...env, STOWAGE_DATA_DIR: path.join(tmp, 'data') },
        }),
      );
    }
  }, 60_000);

  afterAll(async () => {
    // SIGKILL: a graceful stop would wait for requests a failed test left hanging.
    await Promise.all(servers.map((s) => s.kill('SIGKILL')));
    await database?.drop();
    await flushRedisDb(REDIS_DB.tusHandover).catch(() => undefined);
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }, 30_000);

  test(
    'B answers the resume within seconds, at the offset A stored, and completes the file',
    { timeout: 60_000 },
    async () => {
      const [a, b] = servers as [ServerProcess, ServerProcess];
      const login = await fetch(`${a.base}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
      });
      const auth = {
        authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}`,
      };
      const data = pdfOfSize(24 * MiB);
      const created = await fetch(`${a.base}${TUS}`, {
        method: 'POST',
        headers: { ...auth, ...TUS_HEADER, 'upload-length': String(data.length) },
      });
      expect(created.status).toBe(201);
      const uploadPath = new URL(created.headers.get('location')!, a.base).pathname;

      // On A: a PATCH declaring the whole file sends 10 MiB and then nothing more, without closing.
      const hanging = new Promise<{ status: number; offset: string | undefined }>((resolve, reject) => {
        const request = http.request({
          host: '127.0.0.1',
          port: a.port,
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
        request.on('error', reject);
        request.on('response', (res) => {
          res.resume();
          resolve({
            status: res.statusCode ?? 0,
            offset: res.headers['upload-offset'] as string | undefined,
          });
          request.destroy();
        });
        request.write(data.subarray(0, 10 * MiB));
      });
      const file = path.join(tmp, 'data', 'uploads', uploadPath.split('/').pop()!);
      await until(async () => (await fs.stat(file)).size === 10 * MiB, 20_000, 'A storing what it received');

      // On B: the client resumes. A's lease would hold the lock for as long as A's request hangs.
      const started = Date.now();
      const head = await fetch(`${b.base}${uploadPath}`, {
        method: 'HEAD',
        headers: { ...auth, ...TUS_HEADER },
        signal: AbortSignal.timeout(15_000),
      });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(head.status).toBe(200);
      const offset = Number(head.headers.get('upload-offset'));
      expect(offset).toBe(10 * MiB);
      // A let go: its hanging request got its answer, with the offset it stored.
      const answered = await hanging;
      expect(answered).toEqual({ status: 204, offset: String(offset) });

      const rest = await fetch(`${b.base}${uploadPath}`, {
        method: 'PATCH',
        headers: {
          ...auth,
          ...TUS_HEADER,
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
        body: data.subarray(offset),
      });
      expect(rest.status, await rest.clone().text()).toBe(204);
      const item = await fetch(`${a.base}/api/media/${rest.headers.get('media-id')}`, { headers: auth });
      expect(await item.json()).toMatchObject({ size: data.length, sha256: sha256(data) });
    },
  );
});
