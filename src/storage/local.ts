import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import {
  chmod,
  link,
  lstat,
  mkdir,
  open,
  opendir,
  realpath,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { assertValidKey, BlobNotFoundError, isNotFound, type BlobStore } from './blob-store.ts';
import { SettlingBlobWriter } from './settling-writer.ts';
import { ScratchLease } from './scratch.ts';
import { assertPrefix, assertRange } from './keys.ts';

/**
 * Temp files live inside the root so that the final rename never crosses a filesystem, each
 * process's in a folder of its own (`.incomplete/INSTANCE/`): several servers may share the
 * directory, and one must never sweep another's writes in progress (see scratch.ts).
 */
const INCOMPLETE_DIR = '.incomplete';

/**
 * Modes of committed blobs and their folders. Private by default; group-readable when a front
 * nginx sends the files itself (STOWAGE_ACCEL_REDIRECT), its worker user being in the group. Set
 * with chmod, so the process umask (systemd's UMask=0077) does not take the group's bits away.
 */
export interface BlobModes {
  groupReadable: boolean;
}
const GROUP_FILE_MODE = 0o640;
const GROUP_DIR_MODE = 0o750;

export class LocalBlobStore implements BlobStore {
  readonly root: string;
  readonly #incompleteDir: string;
  /** This process's folder for unfinished writes. */
  readonly #tempDir: string;
  readonly #lease: ScratchLease;
  readonly #ownsLease: boolean;
  readonly #groupReadable: boolean;

  private constructor(
    root: string,
    lease: ScratchLease,
    tempDir: string,
    ownsLease: boolean,
    modes: BlobModes,
  ) {
    this.root = root;
    this.#incompleteDir = path.join(root, INCOMPLETE_DIR);
    this.#lease = lease;
    this.#tempDir = tempDir;
    this.#ownsLease = ownsLease;
    this.#groupReadable = modes.groupReadable;
  }

  /**
   * `lease`: this process's scratch lease on the data directory; without one the store records
   * the process itself, inside the root. `modes`: group-readable files for nginx (X-Accel-Redirect).
   */
  static async create(
    rootDir: string,
    lease?: ScratchLease,
    modes: BlobModes = { groupReadable: false },
  ): Promise<LocalBlobStore> {
    await mkdir(path.join(rootDir, INCOMPLETE_DIR), { recursive: true });
    if (modes.groupReadable) await chmod(rootDir, GROUP_DIR_MODE);
    // The containment check compares resolved paths, so the root itself must be resolved too.
    const root = await realpath(rootDir);
    const owner = lease ?? (await ScratchLease.acquire(path.join(root, INCOMPLETE_DIR, '.instances')));
    const tempDir = await owner.area(path.join(root, INCOMPLETE_DIR));
    return new LocalBlobStore(root, owner, tempDir, lease === undefined, modes);
  }

  createWriter(key: string): LocalBlobWriter {
    const target = this.#pathOf(key);
    const temp = path.join(this.#tempDir, `${randomBytes(16).toString('hex')}.tmp`);
    return new LocalBlobWriter(temp, target, this.root, this.#groupReadable);
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const file = this.#pathOf(key);
    if (range) assertRange(range);
    // Open first, then stream from the descriptor: a delete racing with the read cannot turn an
    // answered 200/206 into a mid-body ENOENT.
    const handle = await open(file, 'r').catch((err: unknown) => {
      throw isNotFound(err) ? new BlobNotFoundError(key) : err;
    });
    try {
      if (!(await handle.stat()).isFile()) throw new BlobNotFoundError(key);
    } catch (err) {
      await handle.close();
      throw err;
    }
    // 1 MiB reads: a quarter of the system calls of the default 64 KiB for large downloads.
    const highWaterMark = 1024 * 1024;
    return handle.createReadStream(
      range ? { start: range.start, end: range.end, highWaterMark } : { highWaterMark },
    );
  }

  async stat(key: string): Promise<{ size: number } | null> {
    const file = this.#pathOf(key);
    try {
      const st = await stat(file);
      return st.isFile() ? { size: st.size } : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async adopt(file: string, key: string): Promise<boolean> {
    const target = this.#pathOf(key);
    const [source, root] = await Promise.all([stat(file), stat(this.root)]);
    if (source.dev !== root.dev) return false;
    const handle = await open(file, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    const dir = path.dirname(target);
    const firstCreated = await mkdir(dir, { recursive: true });
    if (this.#groupReadable) await shareCreatedDirs(dir, firstCreated);
    // A hard link, not a rename: the owner of `file` (tus) may still look at it and removes it itself.
    await link(file, target);
    if (this.#groupReadable) await chmod(target, GROUP_FILE_MODE);
    for (const d of dirsToSync(dir, firstCreated, this.root)) await fsyncDir(d);
    return true;
  }

  async delete(key: string): Promise<void> {
    const file = this.#pathOf(key);
    try {
      await unlink(file);
    } catch (err) {
      // EISDIR: the key names a folder of other blobs, so there is no blob to remove (as on S3).
      if (!isNotFound(err) && !hasCode(err, 'EISDIR')) throw err;
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    assertPrefix(prefix, false);
    const dir = this.#pathOf(prefix.slice(0, -1));
    // "a/" names what is under the folder a; a blob stored at "a" itself is not part of it.
    const st = await lstat(dir).catch((err: unknown) => {
      if (isNotFound(err)) return null;
      throw err;
    });
    if (st?.isDirectory()) await rm(dir, { recursive: true, force: true });
  }

  async *list(prefix: string): AsyncIterable<{ key: string; lastModified: Date }> {
    assertPrefix(prefix, true);
    const start = prefix === '' ? this.root : this.#pathOf(prefix.slice(0, -1));
    yield* this.#walk(start, prefix);
  }

  async *#walk(dir: string, keyPrefix: string): AsyncGenerator<{ key: string; lastModified: Date }> {
    let handle;
    try {
      handle = await opendir(dir);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for await (const entry of handle) {
      const key = keyPrefix + entry.name;
      if (keyPrefix === '' && entry.name === INCOMPLETE_DIR) continue;
      if (entry.isDirectory()) {
        yield* this.#walk(path.join(dir, entry.name), `${key}/`);
      } else if (entry.isFile() && isValidKey(key)) {
        // Entries deleted while we walk are simply not reported.
        const st = await stat(path.join(dir, entry.name)).catch(() => null);
        if (st) yield { key, lastModified: st.mtime };
      }
    }
  }

  async sweepIncomplete(olderThanMs: number, now = Date.now()): Promise<number> {
    // mtime moves with every write, so a slow upload that is still receiving data is left alone;
    // the folders of processes that are gone go at once, whatever their age.
    return this.#lease.sweep(this.#incompleteDir, now - olderThanMs);
  }

  async ping(): Promise<void> {
    const probe = path.join(this.#tempDir, `ping-${randomBytes(8).toString('hex')}`);
    await writeFile(probe, 'ping', { flag: 'wx', mode: 0o600 });
    await unlink(probe);
  }

  /** Removes this process's scratch when the store recorded the process itself. */
  async close(): Promise<void> {
    if (this.#ownsLease) await this.#lease.release();
  }

  localPath(key: string): string {
    return this.#pathOf(key);
  }

  #pathOf(key: string): string {
    assertValidKey(key);
    if (key.split('/')[0] === INCOMPLETE_DIR) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
    const resolved = path.resolve(this.root, key);
    if (!resolved.startsWith(this.root + path.sep)) {
      throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
    }
    return resolved;
  }
}

export class LocalBlobWriter extends SettlingBlobWriter {
  readonly stream: WriteStream;
  /** The bytes are readable here once `stream` closed, until commit renames or abort removes it. */
  readonly tempPath: string;
  readonly #temp: string;
  readonly #target: string;
  readonly #root: string;
  readonly #groupReadable: boolean;

  constructor(temp: string, target: string, root: string, groupReadable = false) {
    super();
    this.#temp = temp;
    this.tempPath = temp;
    this.#target = target;
    this.#root = root;
    this.#groupReadable = groupReadable;
    // flush: fsync before close, so a finished stream means the bytes are on disk.
    this.stream = createWriteStream(temp, { flags: 'wx', mode: 0o600, flush: true });
    // Failures also reach the caller through commit(); without a listener, an error after the
    // caller's pipeline settled would crash the process.
    this.stream.on('error', () => {});
  }

  protected async completeWrite(): Promise<void> {
    const dir = path.dirname(this.#target);
    const firstCreated = await mkdir(dir, { recursive: true });
    if (this.#groupReadable) {
      await shareCreatedDirs(dir, firstCreated);
      await chmod(this.#temp, GROUP_FILE_MODE);
    }
    await rename(this.#temp, this.#target);
    // New directory entries are only durable once their parent directory is synced.
    for (const d of dirsToSync(dir, firstCreated, this.#root)) await fsyncDir(d);
  }

  protected async abortWrite(committing: Promise<void> | undefined): Promise<void> {
    if (committing) {
      const committed = await committing.then(
        () => true,
        () => false,
      );
      if (committed) {
        await rm(this.#target, { force: true });
        return;
      }
    }
    if (!this.stream.closed) {
      // Waiting for close also covers a destroy before the file was opened: the open completes
      // (creating the file) before close is emitted, so the unlink below cannot run too early.
      const closed = new Promise((resolve) => this.stream.once('close', resolve));
      this.stream.destroy();
      await closed;
    }
    await rm(this.#temp, { force: true });
  }
}

/** The target's directory, plus every directory mkdir created and the one it created it in. */
function dirsToSync(dir: string, firstCreated: string | undefined, root: string): string[] {
  const dirs = [dir];
  if (firstCreated === undefined) return dirs;
  const stop = path.dirname(firstCreated);
  let d = dir;
  while (d !== stop && d.startsWith(root + path.sep)) {
    d = path.dirname(d);
    dirs.push(d);
  }
  return dirs;
}

/** Makes the folders mkdir created (firstCreated down to dir) searchable and readable by the group. */
async function shareCreatedDirs(dir: string, firstCreated: string | undefined): Promise<void> {
  if (firstCreated === undefined) return;
  const stop = path.dirname(firstCreated);
  for (let d = dir; d !== stop && d.length > stop.length; d = path.dirname(d)) await chmod(d, GROUP_DIR_MODE);
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function hasCode(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

function isValidKey(key: string): boolean {
  try {
    assertValidKey(key);
    return true;
  } catch {
    return false;
  }
}
