import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startListeningApp, type ListeningApp } from '../helpers/app.ts';
import { KiB, pdfOfSize, sha256, until } from '../helpers/common.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';

/**
 * Issue 10, end to end: a PATCH left hanging on one instance (its client went quiet) must not
 * block the client's resume on another instance for more than a few seconds. The resuming
 * request asks the hanging one, through Redis, to let go of the upload's lock (tus's hand-over),
 * instead of waiting for a lease or a timeout. Two instances share the database, the data
 * directory and Redis, as behind a load balancer without sticky sessions.
 */
const DB = REDIS_DB.uploadLockHandover;
const TUS = '/api/media/uploads';

describe.skipIf(!redisAvailable())('an upload lock held by a hanging request on another instance', () => {
  let dir: string;
  let a: ListeningApp;
  let b: ListeningApp;
  beforeAll(async () => {
    await flushRedisDb(DB);
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-handover-'));
    const env = { STOWAGE_DATA_DIR: dir, STOWAGE_REDIS_URL: redisUrlFor(DB) };
    a = await startListeningApp(env);
    b = await startListeningApp(env);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await fs.rm(dir, { recursive: true, force: true });
    await flushRedisDb(DB);
  });

  it('is handed over within a few seconds, and the upload resumes there', async () => {
    const file = pdfOfSize(256 * KiB);
    const created = await fetch(`${a.base}${TUS}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${a.tokens.alice}`,
        'tus-resumable': '1.0.0',
        'upload-length': String(file.length),
        'upload-metadata': `filename ${Buffer.from('handover.pdf').toString('base64')}`,
      },
    });
    expect(created.status).toBe(201);
    const uploadPath = new URL(created.headers.get('location')!, a.base).pathname;
    const id = uploadPath.split('/').at(-1)!;

    // A PATCH to instance A that sends 64 KiB of the file and then goes quiet, connection open.
    const hanging = http.request(`${a.base}${uploadPath}`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${a.tokens.alice}`,
        'tus-resumable': '1.0.0',
        'upload-offset': '0',
        'content-type': 'application/offset+octet-stream',
        'content-length': String(file.length),
      },
    });
    hanging.on('error', () => undefined);
    hanging.on('response', (response) => response.resume());
    hanging.write(file.subarray(0, 64 * KiB));
    try {
      // A holds the lock: it is writing what arrived.
      const stored = path.join(dir, 'uploads', id);
      await until(async () => ((await fs.stat(stored).catch(() => undefined))?.size ?? 0) > 0, 10_000);

      // The client resumes on instance B: HEAD for the offset, then PATCH the rest.
      const started = Date.now();
      const head = await fetch(`${b.base}${uploadPath}`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${b.tokens.alice}`, 'tus-resumable': '1.0.0' },
        signal: AbortSignal.timeout(15_000),
      });
      // Not the lock's lease or acquisition timeout, let alone the hanging request's own timeout.
      expect(Date.now() - started).toBeLessThan(5000);
      expect(head.status).toBe(200);
      const offset = Number(head.headers.get('upload-offset'));
      expect(offset).toBeGreaterThan(0);
      expect(offset).toBeLessThanOrEqual(64 * KiB);

      const rest = await fetch(`${b.base}${uploadPath}`, {
        method: 'PATCH',
        headers: {
          authorization: `Bearer ${b.tokens.alice}`,
          'tus-resumable': '1.0.0',
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
        body: file.subarray(offset),
        signal: AbortSignal.timeout(15_000),
      });
      expect(rest.status, await rest.text()).toBe(204);
      expect(rest.headers.get('upload-offset')).toBe(String(file.length));
    } finally {
      hanging.destroy();
    }

    // The stored item has exactly the file's bytes.
    const lookup = await fetch(`${a.base}/api/media/lookup`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.tokens.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sha256: [sha256(file)] }),
    });
    expect(lookup.status).toBe(200);
    expect(Object.keys(((await lookup.json()) as { found: Record<string, string> }).found)).toEqual([
      sha256(file),
    ]);
  });
});
