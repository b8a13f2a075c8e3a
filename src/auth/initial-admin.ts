/**
 * Handing the generated password of the first administrator to the operator. On a terminal it is
 * printed there, once. Anywhere else (a log file, the journal, a container's log driver) stderr is
 * kept and shipped, and a password in it would live on in every copy: so it goes into a file that
 * only the server's user can read, and the log names that file. The file is deleted as soon as the
 * password is no longer the generated one, so the secret does not outlive its use.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PasswordHasher } from './passwords.ts';
import type { UsersStore } from './users-store.ts';

export const INITIAL_ADMIN = 'admin';
export const INITIAL_PASSWORD_FILE = 'initial-admin-password';

export interface Terminal {
  isTTY?: boolean;
  write(text: string): unknown;
}

/** Where the generated password is kept until it is changed. */
export function initialPasswordPath(dataDir: string): string {
  return path.join(dataDir, INITIAL_PASSWORD_FILE);
}

/**
 * Shows the generated password once: on `stderr` when it is a terminal, else by writing it to
 * the file (mode 0600) and logging only the file's path.
 */
export async function announceInitialAdmin(options: {
  password: string;
  usersFile: string;
  dataDir: string;
  stderr: Terminal;
  logger: Logger;
}): Promise<void> {
  const { password, usersFile, dataDir, stderr, logger } = options;
  if (stderr.isTTY === true) {
    stderr.write(
      [
        '',
        '  No users existed, so an administrator was created:',
        `    username: ${INITIAL_ADMIN}`,
        `    password: ${password}`,
        `  It is stored only as a hash in ${usersFile}; note it now.`,
        `  Change it with: npx stowage users passwd ${INITIAL_ADMIN}`,
        '',
        '',
      ].join('\n'),
    );
    return;
  }
  const file = initialPasswordPath(dataDir);
  // A fresh file, never an existing one (or a symlink planted in its place) written through.
  await fs.rm(file, { force: true });
  const handle = await fs.open(file, 'wx', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(`${password}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  logger.warn(
    { path: file, username: INITIAL_ADMIN },
    `no users existed, so an administrator "${INITIAL_ADMIN}" was created; its password is in ${file} ` +
      `(readable by this user only, deleted once the password is changed with "stowage users passwd ${INITIAL_ADMIN}")`,
  );
}

/**
 * Deletes the password file once the admin's password is no longer the generated one (changed, or
 * the user removed): checked at start and whenever the users file changes. The check is a
 * verification of the kept password against the admin's hash, so a rehash of the same password
 * (users-store upgradeHash) does not count as a change.
 */
export class InitialPasswordFile {
  readonly #file: string;
  readonly #users: UsersStore;
  readonly #hasher: PasswordHasher;
  readonly #logger: Logger;
  #checking: Promise<void> | null = null;
  #again = false;

  constructor(dataDir: string, deps: { users: UsersStore; hasher: PasswordHasher; logger: Logger }) {
    this.#file = initialPasswordPath(dataDir);
    this.#users = deps.users;
    this.#hasher = deps.hasher;
    this.#logger = deps.logger;
  }

  /** Checks now, and after every change of the users file; returns the unsubscribe function. */
  async follow(): Promise<() => void> {
    const off = this.#users.onChange(() => void this.check());
    await this.check();
    return off;
  }

  /** Deletes the file if its password no longer logs the admin in. Never throws. */
  check(): Promise<void> {
    if (this.#checking) {
      this.#again = true;
      return this.#checking;
    }
    this.#checking = (async () => {
      do {
        this.#again = false;
        await this.#checkOnce().catch((error: unknown) => {
          this.#logger.warn(
            { err: error, path: this.#file },
            'could not check the initial admin password file',
          );
        });
      } while (this.#again);
    })().finally(() => {
      this.#checking = null;
    });
    return this.#checking;
  }

  async #checkOnce(): Promise<void> {
    let password: string;
    try {
      password = (await fs.readFile(this.#file, 'utf8')).trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const admin = this.#users.get(INITIAL_ADMIN);
    if (admin && password !== '' && (await this.#hasher.verify(admin.hash, password))) return;
    await fs.rm(this.#file, { force: true });
    this.#logger.info(
      { path: this.#file },
      `the generated password of "${INITIAL_ADMIN}" is no longer in use; deleted the file that held it`,
    );
  }
}
