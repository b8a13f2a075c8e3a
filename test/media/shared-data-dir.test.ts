import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createTestApp, startListeningApp } from '../helpers/app.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/temp.ts';
import { eventually, leftovers, MiB, pdfStream, streamUpload } from './media-helpers.ts';

/**
 * Several instances on one data directory (docs/deployment.md, "Several instances"): starting one
 * must not sweep away another's upload in progress, while what a crashed process left behind is
 * still removed at start.
 */

const SRC = path.join(import.meta.dirname, '..', '..', 'src');

/**
 * A process that does what a server does on `dataDir` — takes its scratch lease, writes half a
 * blob and a spool file — and then dies without cleaning up, as if killed.
 */
async function crashedInstance(dataDir: string): Promise<{ write: string; spool: string }> {
  const script = `
    import { writeFileSync } from 'node:fs';
    import { ScratchLease } from ${JSON.stringify(path.join(SRC, 'storage', 'scratch.ts'))};
    import { LocalBlobStore } from ${JSON.stringify(path.join(SRC, 'storage', 'local.ts'))};
    const lease = await ScratchLease.acquire(${JSON.stringify(path.join(dataDir, 'instances'))});
    const store = await LocalBlobStore.create(${JSON.stringify(path.join(dataDir, 'blobs'))}, lease);
    const writer = store.createWriter('media/ab/abandoned');
    writer.stream.write(Buffer.alloc(2 * 1024 * 1024, 1));
    await new Promise((resolve) => writer.stream.end(resolve));
    const spool = (await lease.area(${JSON.stringify(path.join(dataDir, 'tmp'))})) + '/image.spool';
    writeFileSync(spool, 'half an image');
    console.log(JSON.stringify({ write: writer.tempPath, spool }));
    process.exit(0);
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  const left = JSON.parse(stdout) as { write: string; spool: string };
  expect((await fs.stat(left.write)).size).toBe(2 * 1024 * 1024);
  return left;
}

describe('a second instance starting on a shared data directory', () => {
  test(
    'leaves the first one’s upload in flight alone and sweeps a crashed one’s leftovers',
    { timeout: 90_000 },
    async () => {
      const dir = tempDir('stowage-shared-');
      const env = { STOWAGE_DATA_DIR: dir };
      const a = await startListeningApp(env); // writes the users file the others read
      // Released in `finally` too: a failed check must not leave A's upload (and A's close) waiting.
      let release = () => {};
      let b: Awaited<ReturnType<typeof createTestApp>> | undefined;
      try {
        // A third server process crashed in the middle of an upload and of an image decode: it
        // left an unfinished write and a spool file in its folders (restart.test.ts kills a real
        // server; here the process is a small one, for speed, using the same storage code).
        const crash = await crashedInstance(dir);
        // Instance A is in the middle of a slow upload when B starts.
        const gate = new Promise<void>((resolve) => (release = resolve));
        const hash = crypto.createHash('sha256');
        const total = 6 * MiB;
        let produced = 0;
        async function* slowFile() {
          for (const chunk of pdfStream(total)) {
            if (produced >= 2 * MiB) await gate;
            hash.update(chunk);
            produced += chunk.length;
            yield chunk;
          }
        }
        const upload = streamUpload({
          port: a.port,
          token: a.tokens.alice,
          filename: 'slow.pdf',
          chunks: slowFile(),
        });
        let inFlight = '';
        await eventually(async () => {
          const mine = (await leftovers(dir)).incomplete.map((f) =>
            path.join(dir, 'blobs', '.incomplete', f),
          );
          const current = mine.filter((f) => f !== crash.write);
          expect(current).toHaveLength(1);
          inFlight = current[0]!;
          expect((await fs.stat(inFlight)).size).toBeGreaterThan(MiB);
        });
        // A's spool folder holds work in progress too (an image being decoded, say).
        const spoolAreas = (await fs.readdir(path.join(dir, 'tmp'))).filter(
          (name) => !crash.spool.includes(name),
        );
        expect(spoolAreas).toHaveLength(1);
        const spooled = path.join(dir, 'tmp', spoolAreas[0]!, 'decoding.spool');
        await fs.writeFile(spooled, 'in progress');

        b = await createTestApp(env);
        await b.services.sweeper.idle(); // B's start-up sweep
        await b.services.sweeper.tick(); // and a periodic one
        // The crashed process's write went at once; A's upload and spool file are untouched.
        await expect(fs.stat(crash.write)).rejects.toThrow(/ENOENT/);
        await expect(fs.stat(crash.spool)).rejects.toThrow(/ENOENT/);
        expect((await fs.stat(inFlight)).size).toBeGreaterThan(MiB);
        expect(await fs.readFile(spooled, 'utf8')).toBe('in progress');

        release();
        const result = await upload;
        expect({ status: result.status, error: result.error?.code }).toEqual({
          status: 201,
          error: undefined,
        });
        const item = JSON.parse(result.body) as { id: string; size: number; sha256: string };
        expect(item.size).toBe(total);
        expect(item.sha256).toBe(hash.digest('hex'));
        // Served byte-exact, by either instance.
        const token = (await b.login('alice')).accessToken;
        for (const [base, bearer] of [
          [a.base, a.tokens.alice],
          [null, token],
        ] as const) {
          const bytes = base
            ? Buffer.from(
                await (
                  await fetch(`${base}/api/media/${item.id}/content`, {
                    headers: { authorization: `Bearer ${bearer}` },
                  })
                ).arrayBuffer(),
              )
            : (await b.app.inject({ url: `/api/media/${item.id}/content`, headers: b.auth(bearer) }))
                .rawPayload;
          expect(crypto.createHash('sha256').update(bytes).digest('hex')).toBe(item.sha256);
        }
        // Nothing else is left of the crash or the upload.
        await fs.rm(spooled);
        expect((await leftovers(dir)).incomplete).toEqual([]);
      } finally {
        release();
        await b?.app.close();
        await b?.services.close();
        await a.app.close();
        await a.services.close();
      }
    },
  );
});
