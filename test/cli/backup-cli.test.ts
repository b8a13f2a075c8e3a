import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import type { Manifest } from '../../src/cli/backup-manifest.ts';
import type { ServerProcess } from '../helpers/server-process.ts';
import {
  content,
  distinctPdf,
  login,
  newDataDir,
  problemLines,
  sha256,
  startServer,
  stowage,
  upload,
} from './ops-helpers.ts';

/**
 * `stowage backup` and `stowage restore`, as an operator runs them: the real CLI against the real
 * server process, over HTTP for what the server serves.
 */

async function readManifest(dir: string): Promise<Manifest> {
  return JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

describe('backup under load, restore, serve', () => {
  test(
    'a backup taken during uploads and deletes restores to a server that serves every item byte-exact',
    { timeout: 120_000 },
    async () => {
      const { project, dataDir } = await newDataDir();
      const env = { STOWAGE_DATA_DIR: dataDir };
      const uploaded = new Map<string, Buffer>();
      const deleted = new Set<string>();
      let server: ServerProcess | undefined = await startServer(project, env);
      let restored: ServerProcess | undefined;
      try {
        const base = server.base;
        const token = await login(base);
        for (let i = 0; i < 40; i++) {
          const data = distinctPdf();
          uploaded.set(await upload(base, token, data), data);
        }
        const before = new Set(uploaded.keys());
        const deletable = [...before].slice(0, 10);

        // Uploads and deletes keep going for as long as the backup runs.
        let running = true;
        const uploader = async () => {
          while (running) {
            const data = distinctPdf();
            uploaded.set(await upload(base, token, data), data);
          }
        };
        const deleter = async () => {
          for (const id of deletable) {
            if (!running) return;
            const res = await fetch(`${base}/api/media/${id}`, {
              method: 'DELETE',
              headers: { authorization: `Bearer ${token}` },
            });
            expect(res.status).toBe(204);
            deleted.add(id);
          }
        };
        const load = Promise.all([uploader(), uploader(), deleter()]);
        const backupDir = path.join(project, 'backup');
        const backup = await stowage(['backup', backupDir], project, env);
        running = false;
        await load;
        expect(backup.stderr).toBe('');
        expect(backup.code).toBe(0);
        // Same file system: hard links, no second copy of the bytes.
        expect(backup.stdout).toMatch(/backup complete .*\(\d+ hard-linked, 0 copied\)/);
        expect(await exists(`${backupDir}.partial`)).toBe(false);
        const manifest = await readManifest(backupDir);
        const inBackup = new Map(manifest.items.map((item) => [item.id, item]));
        // The uploads went on through the backup: the server holds items the snapshot does not.
        expect(
          [...uploaded.keys()].filter((id) => !deleted.has(id) && !inBackup.has(id)).length,
        ).toBeGreaterThan(0);
        // Every item that existed before and was never deleted is in it, with its own bytes.
        for (const id of before) if (!deleted.has(id)) expect(inBackup.has(id)).toBe(true);
        for (const item of manifest.items) {
          const data = uploaded.get(item.id)!;
          expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
          const file = await fs.readFile(path.join(backupDir, item.path));
          expect(file.equals(data)).toBe(true);
        }
        // An item left out was one deleted while the backup ran, and the report said so.
        for (const { id } of manifest.dropped) {
          expect(deleted.has(id)).toBe(true);
          expect(backup.stdout).toContain(`item=${id}: deleted after the snapshot`);
        }
        await server.kill('SIGTERM');
        server = undefined;

        // Restored into a fresh data directory, the server serves exactly the backed-up items.
        const fresh = path.join(project, 'restored');
        const freshEnv = { STOWAGE_DATA_DIR: fresh };
        const restore = await stowage(['restore', backupDir], project, freshEnv);
        expect(restore.stderr).toBe('');
        expect(restore.code).toBe(0);
        const fsck = await stowage(['fsck', '--verify', '--min-age', '0'], project, freshEnv);
        expect(problemLines(fsck.stdout)).toEqual([]);
        expect(fsck.code).toBe(0);

        restored = await startServer(project, freshEnv);
        const token2 = await login(restored.base);
        for (const item of manifest.items) {
          const got = await content(restored.base, token2, item.id);
          expect(got.status).toBe(200);
          expect(got.body.equals(uploaded.get(item.id)!)).toBe(true);
        }
        const listed: string[] = [];
        for (let cursor: string | null = ''; cursor !== null;) {
          const res = await fetch(
            `${restored.base}/api/media/list?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
            {
              headers: { authorization: `Bearer ${token2}` },
            },
          );
          const page = (await res.json()) as { items: { id: string }[]; nextCursor: string | null };
          listed.push(...page.items.map((i) => i.id));
          cursor = page.nextCursor;
        }
        expect(listed.sort()).toEqual([...inBackup.keys()].sort());
        // Usage was carried over consistently with the rows (dropped items taken off).
        const me = await fetch(`${restored.base}/api/users/me`, {
          headers: { authorization: `Bearer ${token2}` },
        });
        expect(((await me.json()) as { usage: unknown }).usage).toEqual({
          files: manifest.items.length,
          bytes: manifest.items.reduce((sum, item) => sum + item.size, 0),
        });
      } finally {
        await server?.kill('SIGTERM');
        await restored?.kill('SIGTERM');
      }
    },
  );
});

describe('backup and restore refuse what they cannot do safely', () => {
  test(
    'a file missing from the store: the item is dropped from the backup and reported, exit 1',
    { timeout: 60_000 },
    async () => {
      const { project, dataDir } = await newDataDir();
      const env = { STOWAGE_DATA_DIR: dataDir };
      const server = await startServer(project, env);
      const ids: string[] = [];
      try {
        const token = await login(server.base);
        for (let i = 0; i < 3; i++) ids.push(await upload(server.base, token, distinctPdf()));
      } finally {
        await server.kill('SIGTERM');
      }
      const gone = ids[1]!;
      await fs.rm(path.join(dataDir, 'blobs', 'media', gone.slice(0, 2), gone));
      const backupDir = path.join(project, 'backup');
      const backup = await stowage(['backup', '--copy', backupDir], project, env);
      expect(backup.code).toBe(1);
      // --copy: files of their own, not hard links to the live ones.
      expect(backup.stdout).toContain('(0 hard-linked, 2 copied)');
      expect(backup.stderr).toContain(
        `dropped media/${gone.slice(0, 2)}/${gone} item=${gone}: file missing from the storage`,
      );
      const manifest = await readManifest(backupDir);
      expect(manifest.items.map((i) => i.id).sort()).toEqual(ids.filter((id) => id !== gone).sort());
      for (const item of manifest.items) {
        const copied = await fs.stat(path.join(backupDir, item.path));
        expect(copied.nlink).toBe(1);
        expect(copied.size).toBe(item.size);
      }
      // The copy is consistent without it: restored, fsck finds nothing wrong.
      const freshEnv = { STOWAGE_DATA_DIR: path.join(project, 'restored') };
      expect((await stowage(['restore', backupDir], project, freshEnv)).code).toBe(0);
      const fsck = await stowage(['fsck', '--verify', '--min-age', '0'], project, freshEnv);
      expect(fsck.stdout).toBe('');
      expect(fsck.code).toBe(0);
    },
  );

  test(
    'restore refuses a non-empty data directory and a tampered backup, writing nothing',
    { timeout: 60_000 },
    async () => {
      const { project, dataDir } = await newDataDir();
      const env = { STOWAGE_DATA_DIR: dataDir };
      const server = await startServer(project, env);
      const ids: string[] = [];
      try {
        const token = await login(server.base);
        for (let i = 0; i < 3; i++) ids.push(await upload(server.base, token, distinctPdf()));
      } finally {
        await server.kill('SIGTERM');
      }
      const backupDir = path.join(project, 'backup');
      expect((await stowage(['backup', backupDir], project, env)).code).toBe(0);

      // A data directory with anything in it is refused.
      const busy = path.join(project, 'busy');
      await fs.mkdir(busy);
      await fs.writeFile(path.join(busy, 'something'), 'x');
      const intoBusy = await stowage(['restore', backupDir], project, { STOWAGE_DATA_DIR: busy });
      expect(intoBusy.code).toBe(1);
      expect(intoBusy.stderr).toContain('is not empty');
      expect(await fs.readdir(busy)).toEqual(['something']);

      // One byte changed in one file (a new file: the backup's are hard links to the live ones).
      const manifest = await readManifest(backupDir);
      const victim = path.join(backupDir, manifest.items[0]!.path);
      const bytes = await fs.readFile(victim);
      bytes[10] = bytes[10]! ^ 0xff;
      await fs.rm(victim);
      await fs.writeFile(victim, bytes);
      const fresh = path.join(project, 'fresh');
      const tampered = await stowage(['restore', backupDir], project, { STOWAGE_DATA_DIR: fresh });
      expect(tampered.code).toBe(1);
      expect(tampered.stderr).toContain(`sha256-mismatch ${manifest.items[0]!.path}`);
      expect(tampered.stderr).toContain('nothing was restored');
      expect(await exists(fresh)).toBe(false);

      // The database itself is covered too, and so is a file that went missing.
      await fs.writeFile(
        victim,
        (await fs.readFile(victim)).map((b, i) => (i === 10 ? b ^ 0xff : b)),
      );
      await fs.appendFile(path.join(backupDir, 'stowage.db'), 'x');
      await fs.rm(path.join(backupDir, manifest.items[1]!.path));
      const damaged = await stowage(['restore', backupDir], project, { STOWAGE_DATA_DIR: fresh });
      expect(damaged.code).toBe(1);
      expect(damaged.stderr).toContain('size-mismatch stowage.db');
      expect(damaged.stderr).toContain(`missing ${manifest.items[1]!.path}`);
      expect(damaged.stderr).not.toContain(`mismatch ${manifest.items[0]!.path}`);
      expect(await exists(fresh)).toBe(false);
    },
  );

  test('restore refuses a manifest that names files outside the backup', { timeout: 60_000 }, async () => {
    const { project, dataDir } = await newDataDir();
    const env = { STOWAGE_DATA_DIR: dataDir };
    const server = await startServer(project, env);
    try {
      await upload(server.base, await login(server.base), distinctPdf());
    } finally {
      await server.kill('SIGTERM');
    }
    const backupDir = path.join(project, 'backup');
    expect((await stowage(['backup', backupDir], project, env)).code).toBe(0);
    const original = await readManifest(backupDir);
    // A file outside the backup, with its true size and sha256 in the manifest.
    const outside = path.join(project, 'secret');
    await fs.writeFile(outside, 'not part of any backup');
    const secret = { size: 22, sha256: sha256(Buffer.from('not part of any backup')) };
    const fresh = path.join(project, 'fresh');
    const attempts: Manifest[] = [
      { ...original, database: { path: '../secret', ...secret } },
      { ...original, usersFile: { path: `${outside}`, ...secret } },
      {
        ...original,
        items: [
          {
            id: '../../../secret',
            key: 'media/../../../../secret',
            path: 'blobs/media/../../../../secret',
            ...secret,
          },
        ],
      },
      { ...original, items: [{ ...original.items[0]!, path: '../secret', ...secret }] },
    ];
    for (const attempt of attempts) {
      await fs.writeFile(path.join(backupDir, 'manifest.json'), JSON.stringify(attempt));
      const result = await stowage(['restore', backupDir], project, { STOWAGE_DATA_DIR: fresh });
      expect(result.code, JSON.stringify(attempt.database)).toBe(1);
      expect(result.stderr).toMatch(/outside the backup|bad-entry/);
      expect(await exists(fresh)).toBe(false);
    }
  });

  test(
    'backup refuses a non-empty target, and a DIR.partial it did not start',
    { timeout: 60_000 },
    async () => {
      const { project, dataDir } = await newDataDir();
      const target = path.join(project, 'target');
      await fs.mkdir(target);
      await fs.writeFile(path.join(target, 'keep'), 'x');
      const result = await stowage(['backup', target], project, { STOWAGE_DATA_DIR: dataDir });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('is not empty');
      expect(await fs.readdir(target)).toEqual(['keep']);
      expect(await exists(`${target}.partial`)).toBe(false);

      // A database to back up: the one a server creates at its start.
      const server = await startServer(project, { STOWAGE_DATA_DIR: dataDir });
      await server.kill('SIGTERM');
      // What an interrupted backup left (it carries the marker) is replaced; anything else is not.
      const next = path.join(project, 'next');
      await fs.mkdir(`${next}.partial`);
      await fs.writeFile(path.join(`${next}.partial`, 'not ours'), 'x');
      const foreign = await stowage(['backup', next], project, { STOWAGE_DATA_DIR: dataDir });
      expect(foreign.code).toBe(1);
      expect(foreign.stderr).toContain('is not an unfinished backup');
      expect(await fs.readdir(`${next}.partial`)).toEqual(['not ours']);
      await fs.writeFile(path.join(`${next}.partial`, '.stowage-backup-in-progress'), '');
      const resumed = await stowage(['backup', next], project, { STOWAGE_DATA_DIR: dataDir });
      expect(resumed.code).toBe(0);
      expect(await exists(`${next}.partial`)).toBe(false);
      expect((await readManifest(next)).items).toEqual([]);
      expect((await fs.stat(next)).mode & 0o777).toBe(0o700);
      expect((await fs.stat(path.join(next, 'stowage.db'))).mode & 0o777).toBe(0o600);
    },
  );

  test.each([
    ['PostgreSQL', { STOWAGE_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' }, /pg_dump/],
    ['S3', { STOWAGE_STORAGE: 's3', STOWAGE_S3_BUCKET: 'none' }, /versioning and replication/],
  ])('backup and restore on %s say to use its own tools, exit 2', async (_name, extra, advice) => {
    const { project, dataDir } = await newDataDir();
    const env = { STOWAGE_DATA_DIR: dataDir, ...extra };
    for (const command of ['backup', 'restore']) {
      const result = await stowage([command, path.join(project, 'b')], project, env);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(advice);
      expect(await exists(path.join(project, 'b'))).toBe(false);
    }
  });
});
