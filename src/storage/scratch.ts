import { randomBytes } from 'node:crypto';
import { lstat, mkdir, opendir, readFile, readlink, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isNotFound } from './blob-store.ts';

/** What an instance records about itself, so that others can tell whether it still runs. */
interface InstanceRecord {
  pid: number;
  host: string;
  /** Linux boot id: a pid only means something within one boot. */
  bootId: string | null;
  /** The pid namespace: a pid only means something within one namespace (containers). */
  pidNamespace: string | null;
  /** The process's start time in clock ticks since boot: tells a reused pid from ours. */
  startTicks: string | null;
  startedAt: string;
}

type Liveness = 'self' | 'alive' | 'dead' | 'unknown';

const ID_RE = /^[0-9a-f]{16}$/;

/**
 * Scratch space (unfinished blob writes, spool files, decoder temp folders) of one server process
 * on a data directory that several processes may share. Each process writes only into folders of
 * its own, named by a random instance id, and records in `registryDir` who it is: pid, host, boot
 * id, pid namespace and process start time.
 *
 * Why not sweep by age alone: the start-up sweep must remove what a crashed process left behind
 * right away (a crash mid-upload can leave gigabytes), but must never touch the files of another
 * process that is still writing them. With a record per process, a folder whose owner certainly
 * is gone (same host and boot, same pid namespace, and that pid no longer runs — or runs a process
 * started at another time, i.e. a reused pid — or the host has rebooted since) is removed whole at
 * once. Whatever cannot be decided — an owner on another host sharing the directory over the
 * network, a missing or unreadable record, a system without /proc — is only ever swept by age, as
 * are files inside live folders (a write in progress changes its file with every chunk, so only
 * files of failed cleanups get old). A record is a plain file rather than a lock: POSIX locks are
 * not reliable on network file systems and Node has no flock, while a stale record costs nothing.
 */
export class ScratchLease {
  readonly id: string;
  readonly #registry: string;
  readonly #self: InstanceRecord;
  /** Parents under which this instance has a folder (every instance uses the same ones). */
  readonly #parents = new Set<string>();

  private constructor(id: string, registry: string, self: InstanceRecord) {
    this.id = id;
    this.#registry = registry;
    this.#self = self;
  }

  /** Records this process in `registryDir` under a new instance id. */
  static async acquire(registryDir: string): Promise<ScratchLease> {
    await mkdir(registryDir, { recursive: true, mode: 0o700 });
    const self: InstanceRecord = {
      pid: process.pid,
      host: os.hostname(),
      bootId: await bootId(),
      pidNamespace: await pidNamespace('self'),
      startTicks: await startTicks('self'),
      startedAt: new Date().toISOString(),
    };
    const id = randomBytes(8).toString('hex');
    // Written before any scratch folder exists, so a folder whose record is missing is never ours.
    await writeFile(path.join(registryDir, `${id}.json`), JSON.stringify(self), { flag: 'wx', mode: 0o600 });
    return new ScratchLease(id, registryDir, self);
  }

  /** This instance's own folder under `parent`, created if needed. */
  async area(parent: string): Promise<string> {
    const resolved = path.resolve(parent);
    const dir = path.join(resolved, this.id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    this.#parents.add(resolved);
    return dir;
  }

  /**
   * Under `parent`: removes the folders of instances that are gone, and anything (in any folder,
   * or loose, as versions before per-instance folders left it) last changed before `before`.
   * Returns how many entries went.
   */
  async sweep(parent: string, before: number): Promise<number> {
    let removed = 0;
    let dir;
    try {
      dir = await opendir(parent);
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw error;
    }
    for await (const entry of dir) {
      if (entry.name.startsWith('.')) continue; // a store's own registry
      const full = path.join(parent, entry.name);
      if (entry.isDirectory() && ID_RE.test(entry.name)) {
        const liveness = await this.#liveness(entry.name);
        if (liveness === 'dead') {
          await rm(full, { recursive: true, force: true });
          removed++;
          continue;
        }
        // The folder itself stays, even when empty: its owner may be alive on another host.
        removed += await removeOlder(full, before);
      } else if (await olderThan(full, before)) {
        await rm(full, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  /** Removes the records of instances that are gone and whose folders were all swept. */
  async pruneDead(): Promise<number> {
    let removed = 0;
    for await (const entry of await opendir(this.#registry)) {
      const id = entry.name.replace(/\.json$/, '');
      if (!ID_RE.test(id) || entry.name === id || (await this.#liveness(id)) !== 'dead') continue;
      const left = await Promise.all([...this.#parents].map((p) => exists(path.join(p, id))));
      if (left.some(Boolean)) continue;
      await unlink(path.join(this.#registry, entry.name)).catch(() => undefined);
      removed++;
    }
    return removed;
  }

  /** Removes this instance's folders and then its record (at shutdown, when nothing is in flight). */
  async release(): Promise<void> {
    for (const parent of this.#parents)
      await rm(path.join(parent, this.id), { recursive: true, force: true });
    await rm(path.join(this.#registry, `${this.id}.json`), { force: true });
  }

  async #liveness(id: string): Promise<Liveness> {
    if (id === this.id) return 'self';
    let other: Partial<InstanceRecord>;
    try {
      other = JSON.parse(await readFile(path.join(this.#registry, `${id}.json`), 'utf8')) as typeof other;
    } catch {
      return 'unknown';
    }
    const self = this.#self;
    if (typeof other.pid !== 'number' || other.host !== self.host || self.bootId === null) return 'unknown';
    if (other.bootId !== self.bootId) return other.bootId ? 'dead' : 'unknown'; // rebooted since
    if (other.pidNamespace !== self.pidNamespace || self.pidNamespace === null) return 'unknown';
    try {
      process.kill(other.pid, 0);
    } catch (error) {
      // EPERM: the pid runs, as another user.
      return (error as NodeJS.ErrnoException).code === 'ESRCH' ? 'dead' : 'alive';
    }
    const ticks = await startTicks(String(other.pid));
    if (ticks !== null && other.startTicks && ticks !== other.startTicks) return 'dead'; // pid reused
    return 'alive';
  }
}

async function bootId(): Promise<string | null> {
  return readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
    (text) => text.trim() || null,
    () => null,
  );
}

async function pidNamespace(pid: string): Promise<string | null> {
  return readlink(`/proc/${pid}/ns/pid`).catch(() => null);
}

/** Field 22 of /proc/PID/stat (proc(5)): the process's start time after boot, in clock ticks. */
async function startTicks(pid: string): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // The command name (field 2) is in parentheses and may contain spaces; fields 3… follow it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

async function olderThan(file: string, before: number): Promise<boolean> {
  const st = await lstat(file).catch(() => null);
  return st !== null && st.mtimeMs < before;
}

/** Removes the entries of `dir` last changed before `before`; returns how many. */
async function removeOlder(dir: string, before: number): Promise<number> {
  let removed = 0;
  let handle;
  try {
    handle = await opendir(dir);
  } catch (error) {
    if (isNotFound(error)) return 0;
    throw error;
  }
  for await (const entry of handle) {
    const full = path.join(dir, entry.name);
    if (!(await olderThan(full, before))) continue;
    // Decoder temp folders too, hence recursive.
    await rm(full, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}
