/**
 * The server's live view of the users file. It follows changes while the server runs: an inotify
 * watch on the directory (which also sees the file being replaced by rename, as the CLI and most
 * editors do) and a periodic stat as a fallback for file systems and mounts where watching fails
 * (network file systems, Kubernetes secret symlink swaps). A file that stops parsing, or vanishes,
 * leaves the last good state in place; the log says why, by line number, never with a hash.
 */
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import type { FSWatcher, Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { isUsableHash } from './passwords.ts';
import type { PasswordHasher } from './passwords.ts';
import { describeErrors, parseUsersFile, rehashMarker } from './user-file.ts';
import type { Role, UserRecord } from './user-file.ts';
import { readUsersFile, updateUsersFile, UsersFileParseError } from './users-file-io.ts';

export interface UsersChange {
  added: string[];
  /** Users no longer in the file: end their sessions. */
  removed: string[];
  /** Users whose password hash changed: end their sessions. */
  credentialsChanged: string[];
  rolesChanged: string[];
  /**
   * Users whose hash the server rewrote in a stronger scheme, same password (UserRecord.rehashOf):
   * not a credentials change, so their sessions go on.
   */
  rehashed: string[];
}

export type UsersChangeListener = (change: UsersChange) => void;

export interface UsersStoreOptions {
  /** Fallback stat interval (default 1000 ms). */
  pollIntervalMs?: number;
  /** Quiet time after a change before reading, so a write in progress is not read (default 100 ms). */
  debounceMs?: number;
  /** Set false to rely on the periodic stat alone (default true). */
  watch?: boolean;
}

function fingerprint(stat: Stats | null): string {
  return stat ? `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}:${stat.mode}` : 'missing';
}

function sameRoles(a: readonly Role[], b: readonly Role[]): boolean {
  return a.length === b.length && a.every((r) => b.includes(r));
}

function diff(before: ReadonlyMap<string, UserRecord>, after: ReadonlyMap<string, UserRecord>): UsersChange {
  const change: UsersChange = {
    added: [],
    removed: [],
    credentialsChanged: [],
    rolesChanged: [],
    rehashed: [],
  };
  for (const [name, old] of before) {
    const now = after.get(name);
    if (!now) change.removed.push(name);
    else {
      if (now.hash !== old.hash) {
        // A rehash, or a copy of the file put back to the line that was just rehashed: the same
        // password either way (see UserRecord.rehashOf).
        const sameSecret = now.rehashOf === rehashMarker(old.hash) || old.rehashOf === rehashMarker(now.hash);
        if (sameSecret) change.rehashed.push(name);
        else change.credentialsChanged.push(name);
      }
      if (!sameRoles(now.roles, old.roles)) change.rolesChanged.push(name);
    }
  }
  for (const name of after.keys()) if (!before.has(name)) change.added.push(name);
  return change;
}

export class UsersStore {
  readonly path: string;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  readonly #debounceMs: number;
  readonly #watch: boolean;
  #users: ReadonlyMap<string, UserRecord> = new Map();
  #fingerprint = 'missing';
  #mode: number | null = null;
  readonly #listeners = new Set<UsersChangeListener>();
  #watcher: FSWatcher | null = null;
  #poll: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #reloading: Promise<void> | null = null;
  #reloadAgain = false;
  #closed = false;
  readonly #upgrades = new Map<string, Promise<void>>();

  private constructor(file: string, logger: Logger, options: UsersStoreOptions) {
    this.path = path.resolve(file);
    this.#logger = logger;
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#debounceMs = options.debounceMs ?? 100;
    this.#watch = options.watch ?? true;
  }

  /**
   * Loads the file (missing = no users) and starts following it. A file with errors at start is
   * an error (UsersFileParseError): there is no earlier good state to fall back on.
   */
  static async open(file: string, logger: Logger, options: UsersStoreOptions = {}): Promise<UsersStore> {
    const store = new UsersStore(file, logger, options);
    const stat = await fs.stat(store.path).catch(() => null);
    const parsed = await readUsersFile(store.path);
    if (parsed.errors.length > 0) throw new UsersFileParseError(store.path, parsed.errors);
    store.#users = parsed.users;
    store.#fingerprint = fingerprint(stat);
    store.#checkMode(stat);
    store.#warnUnusable(parsed.users.values());
    store.#startWatching();
    return store;
  }

  /**
   * When the file holds no users, creates it with an `admin` user (role admin) and a random
   * password, and returns that password so it can be shown once; returns null when users exist.
   */
  static async ensureInitialAdmin(file: string, hasher: PasswordHasher): Promise<string | null> {
    const current = await readUsersFile(file);
    if (current.errors.length > 0) throw new UsersFileParseError(file, current.errors);
    if (current.users.size > 0) return null;
    const password = randomBytes(18).toString('base64url');
    const hash = await hasher.hash(password);
    return updateUsersFile(file, (users) => {
      if (users.size > 0) return null;
      users.set('admin', { username: 'admin', hash, roles: ['admin'] });
      return password;
    });
  }

  get(username: string): UserRecord | undefined {
    return this.#users.get(username);
  }

  list(): UserRecord[] {
    return [...this.#users.values()];
  }

  get count(): number {
    return this.#users.size;
  }

  /** Listeners run synchronously after the new state is in place; returns an unsubscribe function. */
  onChange(listener: UsersChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Reads the file now if it changed; resolves once the new state (if any) is in place. */
  async refresh(): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = this.#reloadLoop().finally(() => {
      this.#reloading = null;
    });
    return this.#reloading;
  }

  /**
   * Replaces `username`'s hash `from` (which a login has just verified) with the one `rehash`
   * makes from the same password, in the background. The file is rewritten under its lock and
   * atomically (updateUsersFile): the user's roles stay, every other line stays byte for byte, and
   * nothing is written when the line changed since the login (a new password or a removal wins).
   * The line is marked as a rehash (UserRecord.rehashOf) so that no instance takes it for a new
   * password and ends the user's sessions. A failure only logs: the next login tries again.
   * The returned promise settles when the attempt is over, and never rejects.
   */
  upgradeHash(username: string, from: string, rehash: () => Promise<string>): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const running = this.#upgrades.get(username);
    if (running) return running;
    const job = (async () => {
      const hash = await rehash();
      const written = await updateUsersFile(
        this.path,
        (users) => {
          const user = users.get(username);
          if (!user || user.hash !== from) return false;
          users.set(username, { ...user, hash, rehashOf: rehashMarker(from) });
          return true;
        },
        // Another writer (the CLI) holding the lock for long is waited for only so long: this
        // is an improvement that can wait for the next login, and must not hold up a shutdown.
        { timeoutMs: 10_000 },
      );
      if (written) {
        this.#logger.info({ path: this.path, username }, 'users file: password hash upgraded to argon2id');
        await this.refresh();
      }
    })()
      .catch((error: unknown) => {
        this.#logger.warn(
          { err: error, path: this.path, username },
          'users file: could not upgrade a password hash; the next login tries again',
        );
      })
      .finally(() => this.#upgrades.delete(username));
    this.#upgrades.set(username, job);
    return job;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#debounce) clearTimeout(this.#debounce);
    await Promise.all(this.#upgrades.values());
    await this.#reloading;
  }

  #startWatching(): void {
    this.#watchDirectory();
    this.#poll = setInterval(() => void this.#pollOnce(), this.#pollIntervalMs);
    this.#poll.unref();
  }

  #watchDirectory(): void {
    if (!this.#watch || this.#closed) return;
    const base = path.basename(this.path);
    try {
      this.#watcher = watch(path.dirname(this.path), { persistent: false }, (_event, name) => {
        if (name === null || name === base) this.#schedule();
      });
      this.#watcher.on('error', (error) => {
        this.#logger.warn({ err: error }, 'users file: watching stopped; relying on periodic checks');
        this.#watcher?.close();
        this.#watcher = null;
      });
    } catch (error) {
      this.#logger.debug(
        { err: error },
        'users file: cannot watch its directory; relying on periodic checks',
      );
    }
  }

  async #pollOnce(): Promise<void> {
    if (this.#closed) return;
    // The directory may appear later (or come back): watching is cheaper than polling alone.
    if (!this.#watcher) this.#watchDirectory();
    const stat = await fs.stat(this.path).catch(() => null);
    if (fingerprint(stat) !== this.#fingerprint) this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.refresh().catch((error: unknown) =>
        this.#logger.error({ err: error }, 'users file: reload failed'),
      );
    }, this.#debounceMs);
    this.#debounce.unref();
  }

  async #reloadLoop(): Promise<void> {
    do {
      this.#reloadAgain = false;
      await this.#reload();
    } while (this.#reloadAgain && !this.#closed);
  }

  async #reload(): Promise<void> {
    const before = await fs.stat(this.path).catch(() => null);
    const fp = fingerprint(before);
    if (fp === this.#fingerprint || this.#closed) return;
    if (!before) {
      this.#fingerprint = fp;
      this.#logger.warn(
        { path: this.path, users: this.#users.size },
        'users file is missing; keeping the users loaded before (write an empty file to remove them all)',
      );
      return;
    }
    let text: string;
    try {
      text = await fs.readFile(this.path, 'utf8');
    } catch (error) {
      this.#logger.error(
        { err: error, path: this.path },
        'users file: cannot read it; keeping the last good state',
      );
      return;
    }
    // Changed while being read (an in-place write in progress): read again once it settles.
    const after = await fs.stat(this.path).catch(() => null);
    if (fingerprint(after) !== fp) {
      this.#schedule();
      return;
    }
    this.#fingerprint = fp;
    this.#checkMode(before);
    const parsed = parseUsersFile(text);
    if (parsed.errors.length > 0) {
      this.#logger.error(
        { path: this.path, errors: parsed.errors },
        `users file has errors; keeping the last good state: ${describeErrors(parsed.errors)}`,
      );
      return;
    }
    const change = diff(this.#users, parsed.users);
    this.#users = parsed.users;
    const changed = Object.values(change).some((names: string[]) => names.length > 0);
    if (!changed) return;
    this.#warnUnusable(change.added.concat(change.credentialsChanged).map((n) => parsed.users.get(n)!));
    this.#logger.info({ path: this.path, users: parsed.users.size, ...change }, 'users file reloaded');
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        this.#logger.error({ err: error }, 'users file: change listener failed');
      }
    }
  }

  #checkMode(stat: Stats | null): void {
    if (!stat || stat.mode === this.#mode) return;
    this.#mode = stat.mode;
    const octal = (stat.mode & 0o777).toString(8).padStart(4, '0');
    if ((stat.mode & 0o022) !== 0) {
      this.#logger.warn(
        { path: this.path, mode: octal },
        'users file is writable by group or others: anyone who can write it can make themselves admin; chmod 600 it',
      );
    } else if ((stat.mode & 0o004) !== 0) {
      this.#logger.warn(
        { path: this.path, mode: octal },
        'users file is readable by others, exposing password hashes; chmod 600 it',
      );
    }
  }

  #warnUnusable(users: Iterable<UserRecord>): void {
    for (const user of users) {
      if (!isUsableHash(user.hash)) {
        this.#logger.warn(
          { path: this.path, username: user.username },
          'users file: unsupported password hash (use argon2id via "stowage users passwd", or htpasswd -B); this user cannot log in',
        );
      }
    }
  }
}
