/**
 * Reading and rewriting the users file. Every rewrite happens under an exclusive lock file and
 * replaces the file atomically (temp file, fsync, rename, fsync of the directory), so concurrent
 * CLI runs lose no line and the server never reads half a file.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeErrors, parseUsersFile, serializeUsers } from './user-file.ts';
import type { ParsedUsersFile, UserRecord, UsersFileError } from './user-file.ts';

export class UsersFileParseError extends Error {
  readonly errors: UsersFileError[];

  constructor(file: string, errors: UsersFileError[]) {
    super(`the users file ${file} has errors: ${describeErrors(errors)}`);
    this.name = 'UsersFileParseError';
    this.errors = errors;
  }
}

export class UsersFileLockError extends Error {
  constructor(lockPath: string) {
    super(`timed out waiting for the lock ${lockPath}; if no other "stowage users" command runs, remove it`);
    this.name = 'UsersFileLockError';
  }
}

/** A missing file reads as an empty one: no users yet. */
export async function readUsersFile(file: string): Promise<ParsedUsersFile> {
  let text = '';
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return parseUsersFile(text);
}

export interface LockOptions {
  /** Give up waiting after this long (default 60 s, longer than staleMs so a stale lock is broken). */
  timeoutMs?: number;
  /** A lock not refreshed for this long is considered abandoned (default 30 s). */
  staleMs?: number;
}

const HOST = hostname();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isStale(lockPath: string, staleMs: number): Promise<{ stale: boolean; ino?: number }> {
  try {
    const [stat, content] = await Promise.all([fs.stat(lockPath), fs.readFile(lockPath, 'utf8')]);
    if (Date.now() - stat.mtimeMs > staleMs) return { stale: true, ino: stat.ino };
    // A holder on this machine that no longer runs (killed mid-write) need not be waited out.
    const [pid, host] = content.split('\n');
    const holderGone = host === HOST && Number(pid) > 0 && !isAlive(Number(pid));
    return { stale: holderGone, ino: stat.ino };
  } catch {
    return { stale: false };
  }
}

/**
 * Removes a stale lock without removing a fresh one that another process created in between:
 * the lock is first moved aside, and put back if it turns out not to be the one judged stale.
 */
async function breakLock(lockPath: string, staleIno: number): Promise<void> {
  const aside = `${lockPath}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await fs.rename(lockPath, aside);
  } catch {
    return;
  }
  const moved = await fs.stat(aside).catch(() => null);
  if (moved && moved.ino !== staleIno) await fs.link(aside, lockPath).catch(() => undefined);
  await fs.unlink(aside).catch(() => undefined);
}

async function acquireLock(lockPath: string, options: LockOptions): Promise<() => Promise<void>> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const staleMs = options.staleMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    try {
      const handle = await fs.open(lockPath, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n${HOST}\n`);
      } finally {
        await handle.close();
      }
      // Keeps the lock fresh should the holder be slow, so nobody breaks it as stale.
      const now = (): Date => new Date();
      const refresh = setInterval(
        () => void fs.utimes(lockPath, now(), now()).catch(() => undefined),
        staleMs / 3,
      );
      refresh.unref();
      return async () => {
        clearInterval(refresh);
        await fs.unlink(lockPath).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const { stale, ino } = await isStale(lockPath, staleMs);
    if (stale && ino !== undefined) {
      await breakLock(lockPath, ino);
      continue;
    }
    if (Date.now() >= deadline) throw new UsersFileLockError(lockPath);
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 250);
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Atomically replaces `file` with `text`, mode 0600, keeping the previous owner when run as root. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const dir = path.dirname(file);
  const previous = await fs.stat(file).catch(() => null);
  const temp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const handle = await fs.open(temp, 'wx', 0o600);
  try {
    try {
      await handle.chmod(0o600);
      // Root running the CLI must not leave a file that the server's own user can no longer read.
      if (previous && process.getuid?.() === 0) await handle.chown(previous.uid, previous.gid);
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, file);
  } catch (error) {
    await fs.unlink(temp).catch(() => undefined);
    throw error;
  }
  await fsyncDirectory(dir);
}

/** Where the file really lives, so rewriting a symlinked users file keeps the symlink. */
async function resolveTarget(file: string): Promise<string> {
  try {
    return await fs.realpath(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return path.resolve(file);
    throw error;
  }
}

/**
 * Reads the users file under the lock, lets `mutate` change the users, and writes the result.
 * Refuses to touch a file with parse errors: rewriting it would silently drop the broken lines.
 * Keep `mutate` quick (hash passwords before calling): other writers wait for it.
 */
export async function updateUsersFile<T>(
  file: string,
  mutate: (users: Map<string, UserRecord>) => T | Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const target = await resolveTarget(file);
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const release = await acquireLock(`${target}.lock`, options);
  try {
    const parsed = await readUsersFile(target);
    if (parsed.errors.length > 0) throw new UsersFileParseError(file, parsed.errors);
    const users = new Map(parsed.users);
    const result = await mutate(users);
    const text = serializeUsers(users, parsed);
    const exists = await fs.stat(target).then(
      () => true,
      () => false,
    );
    if (!exists || text !== serializeUsers(parsed.users, parsed)) await writeAtomically(target, text);
    return result;
  } finally {
    await release();
  }
}
