import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { LocalBlobStore } from '../../src/storage/local.ts';
import { ScratchLease } from '../../src/storage/scratch.ts';
import { tempDir } from '../helpers/temp.ts';
import { source } from './blob-store.contract.ts';

/**
 * Scratch folders on a data directory shared by several processes: a process's folder is removed
 * at once when the process is certainly gone, and otherwise only what is old enough is.
 */

const SCRATCH = path.join(import.meta.dirname, '..', '..', 'src', 'storage', 'scratch.ts');
const DAY = 86_400_000;

/** A real process that takes a lease, writes a half-finished file into its folder and dies. */
async function crashedProcess(registry: string, parent: string): Promise<{ id: string; file: string }> {
  const script = `
    import { writeFileSync } from 'node:fs';
    import { ScratchLease } from ${JSON.stringify(SCRATCH)};
    const lease = await ScratchLease.acquire(${JSON.stringify(registry)});
    const dir = await lease.area(${JSON.stringify(parent)});
    writeFileSync(dir + '/upload.tmp', 'half an upload');
    console.log(lease.id);
    process.exit(0); // no release(): as if killed
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  const id = stdout.trim();
  return { id, file: path.join(parent, id, 'upload.tmp') };
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

describe('ScratchLease', () => {
  it('removes the folder of a process that is gone at once, and its record after', async () => {
    const dir = tempDir('stowage-scratch-');
    const registry = path.join(dir, 'instances');
    const parent = path.join(dir, 'tmp');
    const crashed = await crashedProcess(registry, parent);
    expect(await exists(crashed.file)).toBe(true);

    const lease = await ScratchLease.acquire(registry);
    const own = await lease.area(parent);
    await fs.writeFile(path.join(own, 'mine.spool'), 'in progress');
    // Fresh files, and a cutoff a day back: only the dead process's folder goes.
    expect(await lease.sweep(parent, Date.now() - DAY)).toBe(1);
    expect(await exists(path.join(parent, crashed.id))).toBe(false);
    expect(await exists(path.join(own, 'mine.spool'))).toBe(true);
    expect(await lease.pruneDead()).toBe(1);
    expect((await fs.readdir(registry)).sort()).toEqual([`${lease.id}.json`]);

    await lease.release();
    expect(await fs.readdir(registry)).toEqual([]);
    expect(await fs.readdir(parent)).toEqual([]);
  });

  it('keeps a live process’s folder, and what it cannot judge, until their files are old', async () => {
    const dir = tempDir('stowage-scratch-');
    const registry = path.join(dir, 'instances');
    const parent = path.join(dir, 'tmp');
    const live = await ScratchLease.acquire(registry); // this process: alive
    const liveFile = path.join(await live.area(parent), 'upload.tmp');
    await fs.writeFile(liveFile, 'x');
    // A process on another host sharing the directory (NFS): its pids mean nothing here.
    const remoteId = 'aaaaaaaaaaaaaaaa';
    await fs.writeFile(
      path.join(registry, `${remoteId}.json`),
      JSON.stringify({
        pid: 1,
        host: `not-${os.hostname()}`,
        bootId: 'x',
        pidNamespace: 'x',
        startTicks: '1',
      }),
    );
    await fs.mkdir(path.join(parent, remoteId));
    const remoteFile = path.join(parent, remoteId, 'upload.tmp');
    await fs.writeFile(remoteFile, 'x');
    // A folder without a record, and a loose file (the layout before per-process folders).
    const orphanFile = path.join(parent, 'bbbbbbbbbbbbbbbb', 'upload.tmp');
    await fs.mkdir(path.dirname(orphanFile));
    await fs.writeFile(orphanFile, 'x');
    const loose = path.join(parent, 'old.spool');
    await fs.writeFile(loose, 'x');

    const other = await ScratchLease.acquire(registry);
    await other.area(parent);
    expect(await other.sweep(parent, Date.now() - DAY)).toBe(0);
    for (const file of [liveFile, remoteFile, orphanFile, loose]) expect(await exists(file)).toBe(true);
    expect(await other.pruneDead()).toBe(0);

    // A day later, every file is old: removed, but the folders of live or unknown owners stay.
    expect(await other.sweep(parent, Date.now() + 1000)).toBe(4);
    for (const file of [liveFile, remoteFile, orphanFile, loose]) expect(await exists(file)).toBe(false);
    expect(await exists(path.dirname(liveFile))).toBe(true);
    expect(await exists(path.dirname(remoteFile))).toBe(true);
  });

  it('tells a reused pid from the process that recorded it (its start time differs)', async () => {
    const dir = tempDir('stowage-scratch-');
    const registry = path.join(dir, 'instances');
    const parent = path.join(dir, 'tmp');
    const lease = await ScratchLease.acquire(registry);
    const self = JSON.parse(await fs.readFile(path.join(registry, `${lease.id}.json`), 'utf8')) as Record<
      string,
      unknown
    >;
    // Linux only: elsewhere (no /proc) nothing can be judged, and only age counts.
    if (self.bootId === null) return;
    // This process's pid, recorded by a "process" that started at another time.
    const reusedId = 'cccccccccccccccc';
    await fs.writeFile(path.join(registry, `${reusedId}.json`), JSON.stringify({ ...self, startTicks: '1' }));
    await fs.mkdir(path.join(parent, reusedId), { recursive: true });
    await fs.writeFile(path.join(parent, reusedId, 'upload.tmp'), 'x');
    // And one from before a reboot.
    const rebootedId = 'dddddddddddddddd';
    await fs.writeFile(
      path.join(registry, `${rebootedId}.json`),
      JSON.stringify({ ...self, bootId: 'another-boot' }),
    );
    await fs.mkdir(path.join(parent, rebootedId));
    expect(await lease.sweep(parent, Date.now() - DAY)).toBe(2);
    expect(await fs.readdir(parent)).toEqual([]);
  });
});

describe('two LocalBlobStores on one directory (two processes)', () => {
  it('neither sweeps the other’s write in progress; a dead process’s writes go at once', async () => {
    const dir = tempDir('stowage-shared-');
    const root = path.join(dir, 'blobs');
    const registry = path.join(dir, 'instances');
    const first = await LocalBlobStore.create(root, await ScratchLease.acquire(registry));
    const writing = first.createWriter('media/ab/in-flight');
    await pipeline(source(Buffer.from('half')), writing.stream);
    const crashed = await crashedProcess(registry, path.join(root, '.incomplete'));

    const second = await LocalBlobStore.create(root, await ScratchLease.acquire(registry));
    expect(await second.sweepIncomplete(DAY)).toBe(1);
    expect(await exists(crashed.file)).toBe(false);
    await writing.commit();
    expect(await second.stat('media/ab/in-flight')).toEqual({ size: 4 });
  });
});
